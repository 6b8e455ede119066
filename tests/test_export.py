"""Deployment: the serving SavedModel (fresh process, TF only), TFLite files for every
quantization, the TensorFlow-free edge runtime, and the REST server's contract."""

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sat_tf.export.saved_model import export_saved_model
from sat_tf.export.tflite import QUANTIZATIONS, export_tflite
from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.inference.results import NOT_SURE_BELOW
from sat_tf.serving.server import create_app

REPO = Path(__file__).resolve().parents[1]
# Closeness of each variant's log-probs (of the words that can win a beam) to the Keras model's
# (float32 reference); its probabilities within half of it (|dp| ~ p |d log p|, p < 0.5 for all
# but the top word, whose log-prob is checked).
TOLERANCE = {"fp32": 1e-4, "fp16": 0.02, "dynamic": 0.05, "int8": 0.3}


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(tiny_data):
    return tiny_data[0].images[:6]


# The library's decoding settings each export variant bakes in (the XLA one also blocks repeated
# bigrams and <unk>, so those settings are checked against the library too).
VARIANT_DECODING = {False: {}, True: {"no_repeat_ngram_size": 2, "forbid_unknown": True}}


@pytest.fixture(scope="module", params=[False, True], ids=["graph", "xla"])
def saved_model_dir(trained_tiny_model, tmp_path_factory, request):
    """The SavedModel as exported by default and with XLA-compiled decoding loops (`--xla`)."""
    return export_saved_model(
        trained_tiny_model,
        tmp_path_factory.mktemp("xla" if request.param else "graph"),
        "captioner",
        3,
        max_length=12,
        beam_size=2,
        xla=request.param,
        **VARIANT_DECODING[request.param],
    )


def test_saved_model_loads_with_tensorflow_only_and_matches_the_library(
    trained_tiny_model, saved_model_dir, images, tmp_path
):
    assert saved_model_dir.parts[-2:] == ("captioner", "3")
    # the XLA export marks its decoding loops for compilation; the default export has no such function
    xla = saved_model_dir.parts[-3].startswith("xla")
    assert (b"_XlaMustCompile" in (saved_model_dir / "saved_model.pb").read_bytes()) == xla
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(_png_bytes(image))
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        served = tf.saved_model.load({str(saved_model_dir)!r})
        data = tf.constant([open(p, "rb").read() for p in {[str(f) for f in files]!r}])
        greedy = served.signatures["serving_default"](image_bytes=data)
        beam = served.signatures["beam_search"](image_bytes=data)
        print(json.dumps({{
            "greedy": [c.decode() for c in greedy["caption"].numpy()],
            "tokens": greedy["tokens"].numpy().tolist(),
            "confidence": greedy["confidence"].numpy().tolist(),
            "beam": [c.decode() for c in beam["caption"].numpy()],
            "candidates": [[c.decode() for c in row] for row in beam["candidates"].numpy()],
            "signatures": sorted(served.signatures),
            "imported": [m for m in ("sat_tf", "tensorflow_text", "keras_hub") if m in sys.modules]}}))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["imported"] == []
    assert served["signatures"] == ["beam_search", "caption_images", "serving_default"]
    settings = VARIANT_DECODING[xla]
    library = generate_captions(trained_tiny_model, images=images, max_length=12, **settings).best()
    assert served["greedy"] == library.texts
    assert len(set(library.texts)) > 1  # not a constant caption
    np.testing.assert_allclose(served["confidence"], library.confidence, rtol=1e-4)
    steps = library.tokens.shape[1]
    assert [row[:steps] for row in served["tokens"]] == library.tokens.tolist()
    beam = generate_captions(trained_tiny_model, images=images, sampler=BeamSampler(2), max_length=12, **settings)
    assert served["beam"] == beam.best_texts
    assert served["candidates"] == beam.texts  # the k-best list, best first
    cli = subprocess.run(
        ["saved_model_cli", "show", "--dir", str(saved_model_dir), "--all"], capture_output=True, text=True, timeout=300
    )
    for name in ("serving_default", "caption_images", "beam_search", "image_bytes", "caption", "alphas"):
        assert name in cli.stdout


@pytest.fixture(scope="module")
def tflite_dirs(trained_tiny_model, images, tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    return {
        q: export_tflite(trained_tiny_model, root / q, q, q, representative_images=images, max_length=12)
        for q in QUANTIZATIONS
    }


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_tflite_outputs_are_finite_close_to_keras_and_builtin_only(
    trained_tiny_model, tflite_dirs, images, quantization
):
    from ai_edge_litert.interpreter import Interpreter

    paths = tflite_dirs[quantization]
    encoder = Interpreter(model_path=str(paths["encoder"]))
    decoder = Interpreter(model_path=str(paths["decoder"]))
    for interpreter in (encoder, decoder):
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    encode, step = encoder.get_signature_runner("encode"), decoder.get_signature_runner("step")
    model = trained_tiny_model
    for image in images[:3]:
        pixels = image[np.newaxis].astype(np.float32)
        encoded = encode(image=pixels)
        features = model.encode(pixels)
        constants, state = model.decoder.step_constants(features), model.decoder.initial_state(features)
        token = tf.constant([model.tokenizer.start_id])
        for _ in range(4):  # a few steps along the Keras model's own path
            expected = model.decoder.step(constants, state, token)
            out = step(
                attention_keys=encoded["attention_keys"],
                context_gates=encoded["context_gates"],
                context_outputs=encoded["context_outputs"],
                hidden=state.hidden.numpy(),
                cell=state.cell.numpy(),
                previous_token=token.numpy().astype(np.int32),
            )
            for key in ("log_probs", "alpha"):
                assert np.isfinite(out[key]).all()
            _assert_log_probs_close(out["log_probs"], expected.log_probs.numpy(), quantization)
            np.testing.assert_allclose(out["alpha"], expected.alpha, atol=TOLERANCE[quantization])
            state, token = expected.state, tf.argmax(expected.log_probs, -1, output_type=tf.int32)
    sizes = {q: tflite_dirs[q]["decoder"].stat().st_size for q in QUANTIZATIONS}
    assert sizes["fp16"] < sizes["fp32"] and sizes["dynamic"] < sizes["fp32"]


def _assert_log_probs_close(actual: np.ndarray, expected: np.ndarray, quantization: str) -> None:
    """Log-probs within `TOLERANCE` for the words that can win a beam (probability >= 10%), and
    probabilities within half of it for all. A quantized copy's error in log space grows as a
    word's probability falls and with the logits' range, which depends on where the fixture's
    training ended; in probability it stays bounded."""
    winners = expected > np.log(0.1)
    np.testing.assert_allclose(actual[winners], expected[winners], atol=TOLERANCE[quantization])
    np.testing.assert_allclose(np.exp(actual), np.exp(expected), atol=TOLERANCE[quantization] / 2)


def _without_tensorflow(tmp_path: Path) -> dict:
    """An environment in which `import tensorflow` fails."""
    blocker = tmp_path / "blocker" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('tensorflow is blocked in this test')\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path / "blocker"), "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_edge_runtime_without_tensorflow_matches_keras(trained_tiny_model, tflite_dirs, images, tmp_path):
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(files[-1])
    model_dir = str(tflite_dirs["fp32"]["manifest"].parent)
    env = _without_tensorflow(tmp_path)
    runs = {}
    for beam in (1, 2):
        result = subprocess.run(
            [sys.executable, "-m", "sat_tf_edge.cli", model_dir, *files, "--beam-size", str(beam), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        runs[beam] = [json.loads(line) for line in result.stdout.splitlines()]
    library = generate_captions(trained_tiny_model, images=images, max_length=12).best()
    assert [r["caption"] for r in runs[1]] == library.texts
    np.testing.assert_allclose([r["confidence"] for r in runs[1]], library.confidence, rtol=1e-3)
    # the manifest written without settings keeps the library's threshold
    assert [r["not_sure"] for r in runs[1]] == [bool(c < NOT_SURE_BELOW) for c in library.confidence]
    for row, tokens, length in zip(runs[1], library.tokens, library.lengths):
        assert row["tokens"] == tokens[:length].tolist()
    beam = generate_captions(trained_tiny_model, images=images, sampler=BeamSampler(2), max_length=12)
    assert [r["caption"] for r in runs[2]] == beam.best_texts
    text = subprocess.run(
        [sys.executable, "-m", "sat_tf_edge.cli", model_dir, files[0], "--beam-size", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    flag = ": not sure" if runs[1][0]["not_sure"] else ""
    assert text.stdout == f"{files[0]}\t{library.texts[0]}\t(confidence {runs[1][0]['confidence']:.2f}{flag})\n"
    hiding = subprocess.run(  # alt text: a caption it is not sure of is replaced, the sure ones kept
        [sys.executable, "-m", "sat_tf_edge.cli", model_dir, *files, "--beam-size", "1", "--hide-not-sure"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    shown = [line.split("\t")[1] for line in hiding.stdout.splitlines()]
    assert shown == ["not sure what this is" if r["not_sure"] else r["caption"] for r in runs[1]]
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, env=env)
    assert probe.returncode != 0  # the block really was in place
    bad = subprocess.run(
        [sys.executable, "-m", "sat_tf_edge.cli", model_dir, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode == 2 and "not a readable image" in bad.stderr


def test_rest_server_follows_tf_serving_contract_and_survives_bad_requests(trained_tiny_model, saved_model_dir, images):
    client = create_app(saved_model_dir.parent).test_client()
    status = client.get("/v1/models/captioner").get_json()
    assert status["model_version_status"][0] == {
        "version": "3",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    payload = {"instances": [{"b64": base64.b64encode(_png_bytes(image)).decode()} for image in images[:3]]}
    response = client.post("/v1/models/captioner:predict", json=payload)
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    settings = VARIANT_DECODING[saved_model_dir.parts[-3].startswith("xla")]  # what that export bakes in
    assert [p["caption"] for p in predictions] == generate_captions(
        trained_tiny_model, images=images[:3], max_length=12, **settings
    ).best().texts
    assert {"caption", "tokens", "log_probs", "alphas"} <= set(predictions[0])
    bad_requests = [
        (b"not json", "JSON object"),
        (json.dumps({"instances": "x"}).encode(), "instances"),
        (json.dumps({"instances": [{"b64": "%%%"}]}).encode(), "base64"),
        (json.dumps({"instances": [{"b64": base64.b64encode(b"hello").decode()}]}).encode(), "not a decodable image"),
        (json.dumps({"instances": [[1, 2, 3]]}).encode(), "expected"),
        (json.dumps({"signature_name": "nope", "instances": [{"b64": ""}]}).encode(), "signature_name"),
        (json.dumps({"instances": [{"b64": "AA=="}] * 65}).encode(), "at most"),
    ]
    for body, message in bad_requests:
        response = client.post("/v1/models/captioner:predict", data=body, content_type="application/json")
        assert response.status_code == 400, body
        assert message in response.get_json()["error"]
    assert client.post("/v1/models/captioner:predict", json=payload).status_code == 200  # still serving
    # Like TF Serving, the body is JSON whatever the Content-Type (curl -d sends form encoding).
    plain = client.post("/v1/models/captioner:predict", data=json.dumps(payload), content_type="text/plain")
    assert plain.status_code == 200 and plain.get_json()["predictions"] == predictions
    beam = client.post("/v1/models/captioner:predict", json={"signature_name": "beam_search", **payload})
    assert "score" in beam.get_json()["predictions"][0]


def test_the_manifest_sat_tf_writes_is_the_one_the_edge_package_reads(trained_tiny_model, tflite_dirs):
    from sat_tf_edge.manifest import EdgeManifest

    manifest = EdgeManifest.read(tflite_dirs["dynamic"]["manifest"])
    tokenizer = trained_tiny_model.tokenizer
    assert manifest.vocabulary == list(tokenizer.vocabulary)
    assert manifest.special_ids == {
        "pad": tokenizer.pad_id,
        "start": tokenizer.start_id,
        "end": tokenizer.end_id,
        "unknown": tokenizer.unk_id,
    }
    assert manifest.image_size == trained_tiny_model.encoder.image_size
    assert manifest.feature_grid == trained_tiny_model.feature_grid
    assert manifest.quantization == {"encoder": "dynamic", "decoder": "dynamic"}  # the fixture quantizes both
    assert all((tflite_dirs["dynamic"]["manifest"].parent / name).is_file() for name in manifest.files.values())


def test_edge_manifest_refuses_other_formats_and_names_missing_fields(tmp_path):
    from sat_tf_edge.manifest import EdgeManifest, ManifestError

    manifest = EdgeManifest(
        image_size=32,
        feature_grid=(4, 4),
        max_length=12,
        vocabulary=["<pad>", "<start>", "<end>", "<unk>", "dog"],
        special_ids={"pad": 0, "start": 1, "end": 2, "unknown": 3},
        quantization={"encoder": "fp32", "decoder": "dynamic"},
    )
    manifest.write(tmp_path / "m.json")
    assert EdgeManifest.read(tmp_path / "m.json") == manifest
    values = manifest.to_json()
    with pytest.raises(ManifestError, match="not a sat_tf_edge/1 manifest"):
        EdgeManifest.from_json({**values, "format": "other/9"})
    del values["vocabulary"]
    with pytest.raises(ManifestError, match="missing field"):
        EdgeManifest.from_json(values)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ManifestError, match="broken.json"):
        EdgeManifest.read(tmp_path / "broken.json")


def test_rest_server_accepts_the_columnar_format_and_refuses_deep_nesting(trained_tiny_model, images, tmp_path):
    export_saved_model(trained_tiny_model, tmp_path, "cols", 1, max_length=12)
    client = create_app(tmp_path / "cols").test_client()
    encoded = []
    for image in images[:2]:
        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG")
        encoded.append({"b64": base64.b64encode(png.getvalue()).decode()})
    rows = client.post("/v1/models/cols:predict", json={"instances": encoded}).get_json()["predictions"]
    columns = client.post("/v1/models/cols:predict", json={"inputs": {"image_bytes": encoded}}).get_json()["outputs"]
    assert columns["caption"] == [row["caption"] for row in rows]
    assert columns["tokens"] == [row["tokens"] for row in rows]
    assert (
        client.post("/v1/models/cols:predict", json={"inputs": encoded}).get_json()["outputs"]["caption"]
        == columns["caption"]
    )
    deep = client.post("/v1/models/cols:predict", data=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400 and "nested too deeply" in deep.get_json()["error"]
    both = client.post("/v1/models/cols:predict", json={"inputs": encoded, "instances": encoded})
    assert both.status_code == 400 and "not both" in both.get_json()["error"]
    assert client.get("/v1/models/cols").status_code == 200


def test_the_edge_runtime_decodes_with_the_manifests_settings_as_the_library_does(trained_tiny_model, images, tmp_path):
    """One caption everywhere: the manifest carries the decoding settings, the edge runtime uses them
    by default, and its captions equal the library's under the same settings."""
    from sat_tf_edge import EdgeCaptioner
    from sat_tf_edge.manifest import EdgeManifest

    library = generate_captions(
        trained_tiny_model,
        images=images,
        max_length=12,
        sampler=BeamSampler(2, length_penalty=0.5),
        forbid_unknown=True,
        no_repeat_ngram_size=2,
    )
    library_confidence = library.best().confidence
    # a threshold between the captions' confidences, so both answers occur
    threshold = float(np.median(library_confidence))
    settings = {
        "beam_size": 2,
        "length_penalty": 0.5,
        "forbid_unknown": True,
        "no_repeat_ngram_size": 2,
        "not_sure_below": threshold,
    }
    paths = export_tflite(trained_tiny_model, tmp_path, "fp32", "fp32", max_length=12, decoding=settings)
    assert EdgeManifest.read(paths["manifest"]).decoding == {**settings, "no_repeat_content_words": False}
    edge = EdgeCaptioner(paths["manifest"].parent)
    edge_captions = [edge.caption(image[np.newaxis].astype(np.float32)) for image in images]
    assert [c.text for c in edge_captions] == library.best_texts
    np.testing.assert_allclose([c.score for c in edge_captions], library.scores[:, 0], rtol=1e-3)
    np.testing.assert_allclose([c.confidence for c in edge_captions], library_confidence, rtol=1e-3)
    assert [c.not_sure for c in edge_captions] == [bool(c < threshold) for c in library_confidence]
    assert 0 < sum(c.not_sure for c in edge_captions) < len(images)
    greedy = generate_captions(
        trained_tiny_model, images=images, max_length=12, forbid_unknown=True, no_repeat_ngram_size=2
    ).best()
    assert [edge.caption(image[np.newaxis].astype(np.float32), beam_size=1).text for image in images] == greedy.texts


def test_a_manifest_without_decoding_settings_reads_as_greedy_and_unknown_settings_are_refused():
    from sat_tf_edge.manifest import DEFAULT_DECODING, EdgeManifest, ManifestError

    values = {
        "format": "sat_tf_edge/1",
        "image_size": 8,
        "feature_grid": [2, 2],
        "max_length": 5,
        "vocabulary": ["<pad>", "<start>", "<end>", "<unk>", "a"],
        "special_ids": {"pad": 0, "start": 1, "end": 2, "unknown": 3},
        "quantization": {"encoder": "fp32", "decoder": "fp32"},
    }
    assert EdgeManifest.from_json(values).decoding == DEFAULT_DECODING
    with pytest.raises(ManifestError, match="unknown decoding setting.*beam_width"):
        EdgeManifest.from_json({**values, "decoding": {"beam_width": 3}})
    for threshold in (1.5, "high", None):
        with pytest.raises(ManifestError, match="decoding.not_sure_below must be a number in"):
            EdgeManifest.from_json({**values, "decoding": {"not_sure_below": threshold}})


def test_sat_tf_export_decodes_with_the_models_own_settings_and_flags_override_them(trained_tiny_model, tmp_path):
    """`sat-tf export` takes the run's decoding settings (beam, n-gram blocking, "not sure"
    threshold) into the SavedModel's serving settings and the TFLite manifest; a flag wins."""
    from sat_tf.cli import main
    from sat_tf.export.serving_settings import serving_settings
    from sat_tf.workflows.models import save_captioner
    from sat_tf.workflows.run_config import RUN_CONFIG_FILE, resolve_run_config
    from sat_tf_edge.manifest import MANIFEST_FILE, EdgeManifest

    run = tmp_path / "run"
    run.mkdir()
    save_captioner(trained_tiny_model, run / "model.keras")
    own = {"beam_size": 2, "max_length": 12, "no_repeat_ngram_size": 2, "not_sure_below": 0.4}
    resolve_run_config(None, overrides={"decoding": own}).save(run / RUN_CONFIG_FILE)
    argv = ["export", "--model", str(run / "model.keras"), "--saved-model-dir", str(tmp_path / "serving")]
    assert main([*argv, "--tflite-dir", str(tmp_path / "edge")]) == 0
    assert serving_settings(tmp_path / "serving" / "sat_tf" / "1") == {"not_sure_below": 0.4}
    manifest = EdgeManifest.read(tmp_path / "edge" / MANIFEST_FILE)
    assert manifest.decoding == {
        "beam_size": 2,
        "length_penalty": 0.0,
        "forbid_unknown": True,
        "no_repeat_ngram_size": 2,
        "no_repeat_content_words": False,
        "not_sure_below": 0.4,
    }
    assert (
        main(
            ["export", "--model", str(run / "model.keras"), "--tflite-dir", str(tmp_path / "edge1"), "--beam-size", "1"]
        )
        == 0
    )
    assert EdgeManifest.read(tmp_path / "edge1" / MANIFEST_FILE).decoding["beam_size"] == 1


def test_an_export_without_serving_settings_reads_the_library_defaults(tmp_path):
    from sat_tf.export.serving_settings import serving_settings
    from sat_tf.inference.results import NOT_SURE_BELOW

    assert serving_settings(tmp_path) == {"not_sure_below": NOT_SURE_BELOW}
