"""One caption everywhere: the default shipped preset, with its default decoding, captions the 79 COCO
photos and 80 Flickr8k dev photos identically through the library (`sat-tf caption`), the SavedModel as `sat-tf
serve` feeds it, and the edge runtime with the manifest's decoding settings, which also flags the
captions the library calls "not sure". Needs the shared real-data folder; skips, saying so, without
it."""

from pathlib import Path

import pytest
import tensorflow as tf

from sat_tf.cli import DEFAULT_PRESET
from sat_tf.export.saved_model import export_saved_model
from sat_tf.export.tflite import export_tflite
from sat_tf.workflows import caption_files, load_for_captioning
from sat_tf_edge import EdgeCaptioner
from sat_tf_edge.images import graph_ready_bytes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "coco_mini").is_dir(), reason=f"{DATA} (the shared real data) is not here")


def _photos() -> list[str]:
    coco = sorted(str(p) for p in (DATA / "coco_mini" / "val2017").glob("*.jpg"))
    dev = (DATA / "flickr8k" / "Flickr_8k.devImages.txt").read_text().split()[:80]
    return coco + [str(DATA / "flickr8k" / "images" / name) for name in dev]


def test_library_saved_model_and_edge_caption_the_preset_alike(tmp_path):
    photos = _photos()
    assert len(photos) == 159
    # decoded as `sat-tf caption` decodes it: the default preset knows everyday words and asks for
    # no tag guidance (the one setting the exports cannot run), so its caption is the same everywhere
    loaded = load_for_captioning([DEFAULT_PRESET], as_caption_command=True)
    decoding = loaded.decoding
    assert decoding.tag_guidance == "off"
    records = caption_files(loaded.model, photos, decoding).records()
    library = [record["caption"] for record in records]

    model, size = loaded.model, loaded.model.encoder.image_size
    version_dir = export_saved_model(
        model,
        tmp_path / "serving",
        "preset",
        1,
        decoding.max_length,
        decoding.beam_size,
        tags=False,
        no_repeat_ngram_size=decoding.no_repeat_ngram_size,
        forbid_unknown=decoding.forbid_unknown,
        no_repeat_content_words=decoding.no_repeat_content_words,
    )
    beam_search = tf.saved_model.load(str(version_dir)).signatures["beam_search"]
    served = []
    for start in range(0, len(photos), 16):  # the bytes `sat-tf serve` hands the graph
        batch = [graph_ready_bytes(Path(p).read_bytes(), size=size) for p in photos[start : start + 16]]
        served += [c.decode() for c in beam_search(image_bytes=tf.constant(batch))["caption"].numpy()]

    export_tflite(
        model, tmp_path / "edge", "fp32", "fp32", None, decoding.max_length, decoding=decoding.edge_settings()
    )
    edge = EdgeCaptioner(tmp_path / "edge")
    on_device = [edge.caption(photo) for photo in photos]  # the manifest's settings, by default

    assert served == library
    assert [caption.text for caption in on_device] == library
    # the same doubt: the device flags the captions the library flags (float noise aside)
    threshold = decoding.not_sure_below
    clear = [abs(record["confidence"] - threshold) > 1e-3 for record in records]
    device_doubts = [caption.not_sure for caption, ok in zip(on_device, clear) if ok]
    assert device_doubts == [record["not_sure"] for record, ok in zip(records, clear) if ok]
