"""One calibrated confidence everywhere: `sat-tf calibrate` writes a calibration beside a model, and the
library, `sat-tf caption`, `sat-tf evaluate`, the SavedModel and the edge runtime then give the same
confidence and the same "not sure" flag for each photo."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sat_tf.cli import main
from sat_tf.data import synthetic
from sat_tf.evaluation.calibration import fit_photo_novelty
from sat_tf.export.saved_model import export_saved_model
from sat_tf.export.tflite import export_tflite
from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.inference.generate import photo_states
from sat_tf_edge.calibration import ConfidenceCalibration, caption_signals


def _calibration(model, images, threshold: float) -> ConfidenceCalibration:
    """Every signal with a weight (so each runtime must compute each one), the novelty of these photos."""
    novelty = fit_photo_novelty(photo_states(model, images), components=2)
    names = ("mean_log_prob", "min_log_prob", "length", "beam_margin", "beam_agreement", "attention_entropy")
    names += ("photo_distance", "photo_residual")
    weights = np.array([1.5, 0.5, -0.2, 0.8, 0.6, -0.4, -0.3, 0.2])
    return ConfidenceCalibration(names, np.zeros(8) - 0.1, np.ones(8), weights, 0.2, novelty, threshold)


def test_the_savedmodel_and_the_edge_runtime_give_the_librarys_calibrated_confidence(
    trained_tiny_model, tiny_data, tmp_path
):
    from sat_tf_edge import EdgeCaptioner

    images = tiny_data[0].images[:8]
    library = generate_captions(
        trained_tiny_model, images=images, sampler=BeamSampler(2), max_length=12, forbid_unknown=True
    )
    probe = _calibration(trained_tiny_model, images, 0.5)
    confidence = library.confidence(probe, trained_tiny_model.tokenizer.end_id)
    threshold = float(np.median(confidence))  # both answers occur
    calibration = _calibration(trained_tiny_model, images, threshold)
    assert not np.allclose(confidence, library.best().confidence)  # not the raw confidence
    # the library's signals are those of the numpy function over its candidates, by hand
    best = library.best()
    by_hand = caption_signals(
        best.log_probs, best.lengths, library.tokens, library.lengths, library.log_probs, best.alphas,
        library.photo_states, calibration.novelty, trained_tiny_model.tokenizer.end_id,
    )  # fmt: skip
    np.testing.assert_allclose(calibration.confidence(by_hand), confidence)

    saved = export_saved_model(
        trained_tiny_model, tmp_path / "serving", "m", 1, max_length=12, beam_size=2, tags=False,
        forbid_unknown=True, not_sure_below=threshold, calibration=calibration,
    )  # fmt: skip
    served = tf.saved_model.load(str(saved)).signatures["caption_images"]  # greedy: beam signals absent
    beam = tf.saved_model.load(str(saved)).signatures["beam_search"]
    png = [tf.io.encode_png(tf.constant(image)).numpy() for image in images]
    served_beam = beam(image_bytes=tf.constant(png))
    assert [c.decode() for c in served_beam["caption"].numpy()] == library.best_texts
    np.testing.assert_allclose(served_beam["confidence"].numpy(), confidence, rtol=1e-4, atol=1e-5)
    greedy = generate_captions(trained_tiny_model, images=images, max_length=12, forbid_unknown=True)
    served_greedy = served(images=tf.constant(images, tf.float32))
    np.testing.assert_allclose(
        served_greedy["confidence"].numpy(), greedy.confidence(calibration, 2), rtol=1e-4, atol=1e-5
    )

    paths = export_tflite(
        trained_tiny_model, tmp_path / "edge", "fp32", "fp32", max_length=12,
        decoding={"beam_size": 2, "forbid_unknown": True, "not_sure_below": threshold}, calibration=calibration,
    )  # fmt: skip
    edge = EdgeCaptioner(paths["manifest"].parent)
    on_device = [edge.caption(image[np.newaxis].astype(np.float32)) for image in images]
    assert [c.text for c in on_device] == library.best_texts
    np.testing.assert_allclose([c.confidence for c in on_device], confidence, atol=1e-3)
    assert [c.not_sure for c in on_device] == [bool(c < threshold) for c in confidence]
    assert 0 < sum(c.not_sure for c in on_device) < len(images)


@pytest.fixture(scope="module")
def calibrated_demo(tmp_path_factory):
    """A demo model calibrated by `sat-tf calibrate` on photo files of the generated shapes."""
    root = tmp_path_factory.mktemp("calibrate")
    model_dir = root / "model"
    assert main(["demo", "--fast", "--output-dir", str(model_dir)]) == 0
    data = synthetic.generate(40, seed=11)
    (root / "images").mkdir()
    lines = []
    for k, image in enumerate(data.images):
        Image.fromarray(image).save(root / "images" / f"{k}.png")
    for record in data.records:
        lines.append(f"{record.image_index}.png#0\t{record.caption}")
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    photos = ["--captions", str(root / "captions.txt"), "--image-dir", str(root / "images")]
    assert main(["calibrate", "--model", str(model_dir), *photos, "--training-image-dir", str(root / "images")]) == 0
    return root, model_dir, photos


def test_calibrate_writes_a_calibration_the_commands_then_use(calibrated_demo, tmp_path, capsys):
    root, model_dir, photos = calibrated_demo
    written = json.loads((model_dir / "confidence_calibration.json").read_text())
    calibration = ConfidenceCalibration.from_json(written)
    assert calibration.signals and "better than the median caption" in calibration.promise
    capsys.readouterr()
    files = [str(root / "images" / f"{k}.png") for k in range(6)]
    assert main(["caption", *files, "--model", str(model_dir), "--output", str(tmp_path / "c.json")]) == 0
    records = json.loads((tmp_path / "c.json").read_text())["captions"]
    assert main(["evaluate", "--model", str(model_dir), *photos, "--output", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["confidence_kind"] == "calibrated"
    for record in records:
        image_id = record["image"]  # a Flickr-format split names its photos by path
        assert report["confidence"][image_id] == pytest.approx(record["confidence"], abs=1e-4)  # batch sizes differ
        assert report["not_sure"][image_id] == record["not_sure"]
        assert record["not_sure"] == (record["confidence"] < calibration.not_sure_below)


def test_a_malformed_calibration_file_is_named(calibrated_demo, capsys):
    root, model_dir, _ = calibrated_demo
    broken = model_dir.parent / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "model.keras").write_bytes((model_dir / "model.keras").read_bytes())
    (broken / "confidence_calibration.json").write_text('{"signals": ["mean_log_prob"], "means": [0]}')
    assert main(["caption", str(root / "images" / "0.png"), "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "confidence_calibration.json: missing field(s) scales, weights, bias" in err
