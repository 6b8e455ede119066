"""The command line, end to end: demo (fast mode), caption, evaluate, and bad input."""

import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from sat_tf.cli import DEFAULT_PRESET, main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--fast", "--output-dir", str(output)]) == 0
    return output


def test_demo_fast_runs_end_to_end(demo_dir):
    metrics = json.loads((demo_dir / "demo_metrics.json").read_text())
    for key in ("BLEU-1", "BLEU-4", "phrase_localization", "word_localization", "train_tokens_per_second"):
        assert key in metrics
    assert 0.0 <= metrics["phrase_localization"] <= 1.0
    assert (demo_dir / "model.keras").is_file()
    assert (demo_dir / "attention_plots" / "test_0.png").stat().st_size > 1000
    assert list((demo_dir / "checkpoints").glob("ckpt-*.index"))


def test_caption_writes_plot_and_json(demo_dir, tmp_path, capsys):
    from sat_tf.data import synthetic

    image = synthetic.generate(1, seed=99).images[0]
    Image.fromarray(image).save(tmp_path / "shapes.png")
    plot, output = tmp_path / "attention.png", tmp_path / "captions.json"
    assert (
        main(
            [
                "caption",
                str(tmp_path / "shapes.png"),
                "--model",
                str(demo_dir),
                "--attention-plot",
                str(plot),
                "--output",
                str(output),
            ]
        )
        == 0
    )
    assert plot.stat().st_size > 1000
    result = json.loads(output.read_text())
    assert result["captions"][0]["image"].endswith("shapes.png")
    assert str(tmp_path / "shapes.png") in capsys.readouterr().out


def test_caption_prints_every_caption_and_hides_one_only_when_asked(demo_dir, tmp_path, capsys):
    from sat_tf.data import synthetic

    photo = tmp_path / "shapes.png"
    Image.fromarray(synthetic.generate(1, seed=98).images[0]).save(photo)
    output = tmp_path / "captions.json"
    unsure = ["caption", str(photo), "--model", str(demo_dir), "--not-sure-below", "1.0"]
    assert main([*unsure, "--output", str(output)]) == 0
    record = json.loads(output.read_text())["captions"][0]
    assert record["not_sure"] and record["caption"]
    printed = capsys.readouterr().out.strip().splitlines()[-1].split("\t")
    assert printed == [str(photo), record["caption"], f"(confidence {record['confidence']:.2f}: not sure)"]
    assert main([*unsure, "--hide-not-sure"]) == 0  # alt text: no caption rather than a doubtful one
    printed = capsys.readouterr().out.strip().splitlines()[-1].split("\t")
    assert printed == [str(photo), "not sure what this is", f"(confidence {record['confidence']:.2f}: not sure)"]
    sure = ["caption", str(photo), "--model", str(demo_dir), "--not-sure-below", "0.0", "--hide-not-sure"]
    assert main(sure) == 0  # a sure caption is never hidden
    printed = capsys.readouterr().out.strip().splitlines()[-1].split("\t")
    assert printed == [str(photo), record["caption"], f"(confidence {record['confidence']:.2f})"]


def test_caption_names_each_plot_and_prints_the_k_best(demo_dir, tmp_path, capsys):
    from sat_tf.data import synthetic

    photos = []
    for index, image in enumerate(synthetic.generate(2, seed=5).images):
        photos.append(tmp_path / f"photo{index}.png")
        Image.fromarray(image).save(photos[-1])
    output = tmp_path / "captions.json"
    assert (
        main(
            [
                "caption",
                *map(str, photos),
                "--model",
                str(demo_dir),
                "--attention-plot",
                str(tmp_path / "two.png"),
                "--beam-size",
                "3",
                "--k-best",
                "2",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for index in range(2):
        written = tmp_path / f"two_{index}.png"
        assert written.stat().st_size > 1000
        assert f"attention plot: {written}" in out
    candidates = [record["candidates"] for record in json.loads(output.read_text())["captions"]]
    for texts in candidates:
        assert len(texts) == 3  # the beam's list, best first
        for rank, text in enumerate(texts[:2], start=1):
            assert f"  {rank}. {text}" in out
    assert "  3. " not in out


def test_a_missing_photo_is_reported_before_tensorflow_loads(tmp_path):
    script = (
        "import sys; from sat_tf.cli import main; "
        f"code = main(['caption', {str(tmp_path / 'nope.jpg')!r}, '--beam-size', '1']); "
        "print('tensorflow' in sys.modules, code)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["False", "2"], run.stderr[-2000:]
    assert f"sat-tf caption: error: {tmp_path / 'nope.jpg'}: file not found" in run.stderr


def test_bad_photo_paths_are_reported_before_the_model_loads(tmp_path, monkeypatch, capsys):
    import sat_tf.workflows

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the photos were checked")

    monkeypatch.setattr(sat_tf.workflows, "load_for_captioning", no_model)
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name, reason in (
        ("nope.jpg", "file not found"),
        ("folder", "a folder with no image files"),
        ("empty.jpg", "the file is empty"),
    ):
        assert main(["caption", str(tmp_path / name)]) == 2
        assert f"{tmp_path / name}: {reason}" in capsys.readouterr().err
    assert main(["caption", str(tmp_path / "nope.jpg"), str(tmp_path / "folder")]) == 2
    assert "nope.jpg: file not found (and 1 more)" in capsys.readouterr().err


def test_caption_reports_bad_files_by_name(demo_dir, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["caption", str(bad), "--model", str(demo_dir)]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    assert main(["caption", str(bad), str(tmp_path / "ok.png"), "--model", str(demo_dir), "--skip-bad"]) == 0
    assert "skipped 1 unreadable image" in capsys.readouterr().err
    assert main(["caption", str(bad), "--model", str(tmp_path / "nope.keras")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_evaluate_and_train_from_a_caption_file(demo_dir, tmp_path, capsys):
    output = tmp_path / "scores.json"
    assert (
        main(["evaluate", "--model", str(demo_dir / "model.keras"), "--num-images", "8", "--output", str(output)]) == 0
    )
    scores = json.loads(output.read_text())
    assert {"BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"} <= set(scores)
    assert main(["evaluate", "--model", str(demo_dir), "--num-images", "4", "--beam-size", "3"]) == 0
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for k in range(6):
        Image.fromarray(np.full((20, 20, 3), 40 * k, np.uint8)).save(images / f"{k}.png")
        lines.append(json.dumps({"image": f"{k}.png", "caption": f"a shade number {k}"}))
    (images / "captions.jsonl").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--captions",
                str(images / "captions.jsonl"),
                "--output-dir",
                str(run),
                "--image-size",
                "32",
                "--batch-size",
                "3",
                "--epochs",
                "1",
                "--hidden-dim",
                "8",
                "--embedding-dim",
                "4",
                "--attention-dim",
                "4",
            ]
        )
        == 0
    )
    assert (run / "model.keras").is_file()
    hard_run = tmp_path / "hard"
    assert (
        main(
            [
                "train",
                "--captions",
                str(images / "captions.jsonl"),
                "--output-dir",
                str(hard_run),
                "--image-size",
                "32",
                "--batch-size",
                "3",
                "--epochs",
                "1",
                "--hidden-dim",
                "8",
                "--embedding-dim",
                "4",
                "--attention-dim",
                "4",
                "--attention",
                "hard",
            ]
        )
        == 0
    )
    assert keras.saving.load_model(hard_run / "model.keras").decoder.attention_mode == "hard"
    # Hard attention from the soft model, the authors' reward and a leave-one-out baseline; a
    # negligible learning rate leaves the soft model's weights in place.
    hard_from_soft = tmp_path / "hard_from_soft"
    common = [
        "train",
        "--captions",
        str(images / "captions.jsonl"),
        "--image-size",
        "32",
        "--batch-size",
        "3",
        "--epochs",
        "1",
        "--embedding-dim",
        "4",
        "--attention-dim",
        "4",
        "--attention",
        "hard",
        "--init-from",
        str(run),
    ]
    assert (
        main(
            [
                *common,
                "--output-dir",
                str(hard_from_soft),
                "--hidden-dim",
                "8",
                "--learning-rate",
                "1e-12",
                "--hard-reward",
                "mean_word_log_likelihood",
                "--hard-baseline",
                "leave_one_out",
                "--location-samples",
                "2",
            ]
        )
        == 0
    )
    soft, hard = keras.saving.load_model(run / "model.keras"), keras.saving.load_model(hard_from_soft / "model.keras")
    assert (hard.hard_baseline, hard.location_samples, hard.reward_weight) == ("leave_one_out", 2, 0.1)
    for theirs, mine in zip(soft.decoder.trainable_weights, hard.decoder.trainable_weights):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), atol=1e-6)
    assert main([*common, "--output-dir", str(tmp_path / "mismatch"), "--hidden-dim", "16"]) == 2
    assert f"{run}" in capsys.readouterr().err
    (images / "bad.jsonl").write_text('{"image": "0.png"}\n')
    assert main(["train", "--captions", str(images / "bad.jsonl"), "--output-dir", str(run)]) == 2
    assert "bad.jsonl:1: missing field(s) caption" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "sat_tf.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "demo" in result.stdout and "caption" in result.stdout


def test_extract_then_train_on_the_feature_cache(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for k in range(6):
        Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)).save(images / f"{k}.jpg")
        lines.append(f"{k}.jpg#0\tpicture number {k % 2}")
    (tmp_path / "tokens.txt").write_text("\n".join(lines) + "\n")
    common = [
        "--captions",
        str(tmp_path / "tokens.txt"),
        "--image-dir",
        str(images),
        "--image-size",
        "64",
        "--backbone",
        "efficientnet_lite0",
        "--weights",
        "imagenet",
    ]
    assert main(["extract", *common, "--cache-dir", str(tmp_path / "cache"), "--shard-size", "4"]) == 0
    assert "6 images" in capsys.readouterr().out
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *common,
                "--feature-cache",
                str(tmp_path / "cache"),
                "--output-dir",
                str(run),
                "--batch-size",
                "3",
                "--epochs",
                "1",
                "--hidden-dim",
                "8",
                "--embedding-dim",
                "4",
                "--attention-dim",
                "4",
                "--no-append-coordinates",
            ]
        )
        == 0
    )
    assert (run / "model.keras").is_file()
    # the encoder settings come from the cache: no encoder flags needed
    assert (
        main(
            [
                "train",
                "--captions",
                str(tmp_path / "tokens.txt"),
                "--image-dir",
                str(images),
                "--feature-cache",
                str(tmp_path / "cache"),
                "--output-dir",
                str(tmp_path / "run2"),
                "--batch-size",
                "3",
                "--epochs",
                "1",
                "--hidden-dim",
                "8",
                "--embedding-dim",
                "4",
                "--attention-dim",
                "4",
            ]
        )
        == 0
    )
    model = keras.saving.load_model(tmp_path / "run2" / "model.keras")
    assert model.encoder.backbone_name == "efficientnet_lite0" and model.encoder.image_size == 64
    # a setting that contradicts the cache is named
    assert (
        main(
            [
                "train",
                *common,
                "--feature-cache",
                str(tmp_path / "cache"),
                "--output-dir",
                str(run),
                "--feature-layer",
                "stride16",
            ]
        )
        == 2
    )
    assert "model.feature_layer is 'stride16' but the feature cache" in capsys.readouterr().err
    # a cache from other weights is refused with a clear message
    manifest_path = tmp_path / "cache" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["identity"]["encoder_fingerprint"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    assert (
        main(
            [
                "train",
                *common,
                "--feature-cache",
                str(tmp_path / "cache"),
                "--output-dir",
                str(run),
                "--no-append-coordinates",
            ]
        )
        == 2
    )
    assert "different encoder fingerprint" in capsys.readouterr().err


def test_train_selects_on_validation_bleu(tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--output-dir",
                str(run),
                "--num-images",
                "64",
                "--batch-size",
                "16",
                "--epochs",
                "2",
                "--hidden-dim",
                "16",
                "--embedding-dim",
                "8",
                "--attention-dim",
                "8",
                "--cnn-filters",
                "4,8,8",
                "--early-stopping-patience",
                "3",
            ]
        )
        == 0
    )
    best = json.loads((run / "best.json").read_text())
    assert best["epoch"] in (1, 2) and 0.0 <= best["score"] <= 100.0
    assert (run / "best_model.keras").is_file() and (run / "model.keras").is_file()


def test_console_is_quiet_and_bugs_keep_their_traceback(monkeypatch, capsys):
    # a fresh process, as a user runs it: no TensorFlow C++ start-up lines before the help text
    result = subprocess.run(
        [sys.executable, "-m", "sat_tf.cli", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr[:500]
    assert re.search(r"--hidden-dim INT\s+decoder sizes.*?\(default:\s+512\)", result.stdout, re.S)
    assert "--val-captions" in result.stdout
    verbose = subprocess.run(
        [sys.executable, "-m", "sat_tf.cli", "--verbose", "demo", "--help"], capture_output=True, text=True, timeout=120
    )
    assert verbose.returncode == 0
    # a user error is one line with exit status 2; any other exception is a bug and propagates
    import sat_tf.cli.serve as serve_command

    assert main(["evaluate", "--model", "/nonexistent/model.keras"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model file not found" in err and "Traceback" not in err

    def buggy(args):
        raise ValueError("a bug, not the user's fault")

    monkeypatch.setattr(serve_command, "run", buggy)
    with pytest.raises(ValueError, match="a bug"):
        main(["serve", "--model-dir", "x"])


def test_evaluate_defaults_to_the_shipped_preset_and_asks_for_photos(tmp_path, capsys):
    assert main(["evaluate"]) == 2  # a preset on the generated shapes would mean nothing
    assert "is a pretrained preset: name the photos" in capsys.readouterr().err
    lines = []
    for k in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 + 90 * k, np.uint8)).save(tmp_path / f"{k}.png")
        lines.append(json.dumps({"image": f"{k}.png", "caption": "a plain grey square"}))
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    output = tmp_path / "report.json"
    flags = ["--captions", str(tmp_path / "captions.jsonl"), "--tokenization", "python", "--output", str(output)]
    assert main(["evaluate", *flags]) == 0
    report = json.loads(output.read_text())
    assert report["images"] == 2 and report["models"] == [DEFAULT_PRESET]
