"""Captioning beyond one machine: an Apache Beam pipeline (DirectRunner, FlinkRunner,
DataflowRunner, ...) that reads photo paths, captions them with `RunInference` and writes the same
JSON Lines records as `sat-tf caption --output FILE.jsonl` (`sat-tf caption --runner` runs it).

Each worker runs the model's TFLite pair through `sat_tf_edge` (LiteRT, numpy, Pillow), without
TensorFlow, which is why this module lives in the edge package: `EdgeCaptionHandler` copies the pair
from any filesystem Beam reads (a local folder, `gs://`, ...) to the worker once and keeps one
captioner per worker process. Photo paths are read through Beam's filesystems too, so
`gs://bucket/photos/*.jpg` works where the runner has the credentials. An unreadable photo becomes
an `{"image", "error"}` record and the run goes on.

Example:
    >>> run_caption_pipeline(
    ...     ["gs://my-bucket/photos/*.jpg"], "gs://my-bucket/pair", "gs://my-bucket/captions.jsonl",
    ...     ["--runner=DataflowRunner", "--project=my-project", "--region=europe-west1",
    ...      "--temp_location=gs://my-bucket/tmp", "--requirements_file=requirements.txt"])

Install with `pip install ".[beam]"` (Apache Beam pinned to a version that installs beside
TensorFlow 2.21).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler

from sat_tf_edge.images import ImageDecodeError
from sat_tf_edge.manifest import MANIFEST_FILE, EdgeManifest
from sat_tf_edge.runtime import EdgeCaptioner


def _copy_local(pair_dir: str) -> str:
    """The pair's files in a local folder (a worker reads them from wherever Beam can)."""
    if os.path.isdir(pair_dir):
        return pair_dir
    local = tempfile.mkdtemp(prefix="sat_tf_pair_")
    with FileSystems.open(FileSystems.join(pair_dir, MANIFEST_FILE)) as source:
        manifest_bytes = source.read()
    manifest = EdgeManifest.from_json(json.loads(manifest_bytes), FileSystems.join(pair_dir, MANIFEST_FILE))
    with open(os.path.join(local, MANIFEST_FILE), "wb") as target:
        target.write(manifest_bytes)
    for name in manifest.files.values():
        with FileSystems.open(FileSystems.join(pair_dir, name)) as source:
            data = source.read()
        with open(os.path.join(local, name), "wb") as target:
            target.write(data)
    return local


class EdgeCaptionHandler(ModelHandler[str, dict, EdgeCaptioner]):
    """`RunInference`'s model handler: photo paths in, `sat-tf caption` records out.

    Args:
        pair_dir: the folder (any Beam filesystem) of a TFLite pair `sat-tf export --tflite-dir`
            or the caption command's fast path wrote.
        threads: LiteRT CPU threads per captioner.
    """

    def __init__(self, pair_dir: str, threads: int | None = None):
        self.pair_dir = pair_dir
        self.threads = threads

    def load_model(self) -> EdgeCaptioner:
        return EdgeCaptioner(_copy_local(self.pair_dir), self.threads)

    def run_inference(
        self, batch: Sequence[str], model: EdgeCaptioner, inference_args: dict[str, Any] | None = None
    ) -> Iterable[dict]:
        for path in batch:
            try:
                with FileSystems.open(path) as photo:
                    caption = model.caption(photo.read())
            except ImageDecodeError as exc:  # named as the command names it: by the photo's path
                yield {"image": path, "error": str(exc).replace("<bytes>", path, 1)}
                continue
            except OSError as exc:
                yield {"image": path, "error": f"{path}: {exc}"}
                continue
            yield caption.record(path, model.vocabulary)

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": 32}


def expand_patterns(patterns: Sequence[str]) -> list[str]:
    """Photo paths from paths and glob patterns on any Beam filesystem (sorted, each once)."""
    paths: list[str] = []
    for result in FileSystems.match(list(patterns)):
        paths += [metadata.path for metadata in result.metadata_list]
    return sorted(dict.fromkeys(paths))


def run_caption_pipeline(photos: Sequence[str], pair_dir: str, output: str, pipeline_args: Sequence[str] = ()) -> None:
    """Captions `photos` (paths or glob patterns, on any Beam filesystem) with the TFLite pair in
    `pair_dir` into the JSON Lines file `output`, on the runner `pipeline_args` name
    (`--runner=...` and its options, as Beam's `PipelineOptions` reads them)."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    paths = [p for p in photos if not any(c in p for c in "*?[")] + expand_patterns(
        [p for p in photos if any(c in p for c in "*?[")]
    )
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
        _ = (
            pipeline
            | "photo paths" >> beam.Create(paths)
            | "caption" >> RunInference(EdgeCaptionHandler(pair_dir))
            | "as JSON" >> beam.Map(json.dumps)
            | "write" >> beam.io.WriteToText(output, shard_name_template="", num_shards=1)
        )
