"""`sat_tf_edge.json`: what an exported TFLite pair needs besides its two model files.

Written by `sat_tf.export.tflite.export_tflite` and read by `EdgeCaptioner`, both through this
class, so the exporter and the runtime cannot disagree on the format.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from sat_tf_edge.calibration import CalibrationError, ConfidenceCalibration
from sat_tf_edge.confidence import NOT_SURE_BELOW
from sat_tf_edge.tags import Tag, tags_from_probabilities
from sat_tf_edge.text import FUNCTION_WORDS, content_word_ids

FORMAT = "sat_tf_edge/1"
MANIFEST_FILE = "sat_tf_edge.json"
ENCODER_FILE, DECODER_FILE = "image_encoder.tflite", "decoder_step.tflite"


# Greedy, no filtering, the library's default "not sure" threshold: how manifests written before
# they carried decoding settings are read.
DEFAULT_DECODING = {
    "beam_size": 1,
    "length_penalty": 0.0,
    "forbid_unknown": False,
    "no_repeat_ngram_size": 0,
    "no_repeat_content_words": False,
    "not_sure_below": NOT_SURE_BELOW,
}


class ManifestError(ValueError):
    """A manifest is missing, unreadable, of another format, or lacks a field (named)."""


@dataclasses.dataclass
class EdgeManifest:
    """The vocabulary and settings of an exported captioner.

    Args:
        image_size: the encoder's square input size in pixels.
        feature_grid: (rows, columns) of the attention grid.
        max_length: most tokens per caption, `<end>` included.
        vocabulary: words by token id (ids 0-3 are `<pad>`, `<start>`, `<end>`, `<unk>`).
        special_ids: {"pad", "start", "end", "unknown"} -> token id.
        quantization: {"encoder", "decoder"} -> "fp32", "fp16", "dynamic" or "int8".
        files: {"encoder", "decoder"} -> file name beside the manifest.
        attention_mode: "soft" or "hard".
        decoding: the library's decoding settings the runtime uses by default, so a device
            captions as `sat-tf caption` does: {"beam_size", "length_penalty", "forbid_unknown",
            "no_repeat_ngram_size", "no_repeat_content_words", "not_sure_below"} (`DEFAULT_DECODING`
            for those a manifest was written without).
        confidence_calibration: the model's confidence calibration
            (`sat_tf_edge.calibration.ConfidenceCalibration` as JSON), or None: the confidence is
            then the geometric-mean token probability.
        decoder_batch: the decoder step's fixed batch (None: any), the most beams it decodes.
        imagenet_classes: {"names", "words"}: the ImageNet class table of the encoder file's
            classifier (each class's name and caption word or null), when the encoder file gives
            "class_probabilities" (`sat_tf_edge.tags`); None: no tags.
        function_words: the words a caption may say twice under `no_repeat_content_words`
            (`sat_tf_edge.text.FUNCTION_WORDS`), carried so every runtime (the browser's too)
            blocks the same words.
    """

    image_size: int
    feature_grid: tuple[int, int]
    max_length: int
    vocabulary: list[str]
    special_ids: dict[str, int]
    quantization: dict[str, str]
    files: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}
    )
    attention_mode: str = "soft"
    decoding: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_DECODING))
    confidence_calibration: dict | None = None
    decoder_batch: int | None = None
    function_words: list[str] = dataclasses.field(default_factory=lambda: sorted(FUNCTION_WORDS))
    imagenet_classes: dict | None = None

    def __post_init__(self):
        unknown = sorted(set(self.decoding) - set(DEFAULT_DECODING))
        if unknown:
            raise ManifestError(f"{MANIFEST_FILE}: unknown decoding setting(s) {', '.join(unknown)}")
        self.decoding = {**DEFAULT_DECODING, **self.decoding}
        threshold = self.decoding["not_sure_below"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ManifestError(
                f"{MANIFEST_FILE}: decoding.not_sure_below must be a number in [0, 1]; got {threshold!r}"
            )
        self.calibration()  # a malformed calibration is refused when the manifest is read
        batch = self.decoder_batch
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise ManifestError(f"{MANIFEST_FILE}: decoder_batch must be a positive integer or null; got {batch!r}")

    def calibration(self) -> ConfidenceCalibration | None:
        if self.confidence_calibration is None:
            return None
        try:
            return ConfidenceCalibration.from_json(
                self.confidence_calibration, f"{MANIFEST_FILE}: confidence_calibration"
            )
        except CalibrationError as exc:
            raise ManifestError(str(exc)) from None

    def tags(self, class_probabilities: np.ndarray, min_probability: float = 0.1, max_tags: int = 3) -> list[list[Tag]]:
        """[N, 1000] class probabilities -> each image's caption-word tags, as the library's tagger
        gives them (`sat_tf_edge.tags.tags_from_probabilities` over the manifest's class table)."""
        if self.imagenet_classes is None:
            return [[] for _ in class_probabilities]
        table = self.imagenet_classes
        return tags_from_probabilities(class_probabilities, table["names"], table["words"], min_probability, max_tags)

    def content_word_ids(self) -> tuple[int, ...]:
        """The vocabulary's content words: those `no_repeat_content_words` lets a caption say once."""
        return content_word_ids(self.vocabulary, frozenset(self.function_words))

    def to_json(self) -> dict:
        return {"format": FORMAT, **dataclasses.asdict(self), "feature_grid": list(self.feature_grid)}

    @classmethod
    def from_json(cls, values: dict, where: str = MANIFEST_FILE) -> "EdgeManifest":
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise ManifestError(f"{where}: not a {FORMAT} manifest (format: {found!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(values))
        if missing:
            raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
        for key in ("pad", "start", "end", "unknown"):
            if not isinstance(values["special_ids"].get(key), int):
                raise ManifestError(f"{where}: special_ids.{key} must be an integer token id")
        fields = {k: v for k, v in values.items() if k in names}
        fields["feature_grid"] = tuple(fields["feature_grid"])
        return cls(**fields)

    def write(self, path: str | os.PathLike) -> None:
        """Writes the manifest atomically (a temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "EdgeManifest":
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: not a readable sat_tf edge manifest ({exc})") from None
        return cls.from_json(values, str(path))
