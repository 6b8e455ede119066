"""Self-training from photos without captions: a teacher captions a folder (`sat-tf caption
--output FILE.jsonl`), and a `data.mix` source with `min_confidence` trains a student on the
captions the teacher was sure of."""

import json
from pathlib import Path

import pytest
from PIL import Image

from sat_tf.cli import main
from sat_tf.data.readers import CaptionFileError, read_pseudo_captions
from sat_tf.data.sources import DataConfig, load_captions
from sat_tf.errors import ConfigError
from sat_tf.workflows.run_config import RunConfig


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_pseudo_captions_keep_what_the_teacher_was_sure_of(tmp_path):
    rows = [
        {"image": "a.jpg", "caption": "a dog runs", "confidence": 0.9},
        {"image": "b.jpg", "error": "b.jpg: not a readable image (truncated)"},
        {"image": "c.jpg", "caption": "a cat sits", "confidence": 0.5},
        {"image": "d.jpg", "caption": "a man walks", "confidence": 0.2},
    ]
    path = _write_jsonl(tmp_path / "teacher.jsonl", rows)
    kept = read_pseudo_captions(path, min_confidence=0.5)
    assert [(r.image_id, r.caption) for r in kept] == [("a.jpg", "a dog runs"), ("c.jpg", "a cat sits")]
    assert kept[0].image_path == str(tmp_path / "a.jpg") and kept[1].where() == f"{path}:3"
    assert len(read_pseudo_captions(path, min_confidence=0.0)) == 3  # the unreadable photo never counts
    with pytest.raises(CaptionFileError, match=r"none of its 3 captions has a confidence of at least 0.95"):
        read_pseudo_captions(path, min_confidence=0.95)
    _write_jsonl(tmp_path / "plain.jsonl", [{"image": "a.jpg", "caption": "a dog"}])
    with pytest.raises(CaptionFileError, match=r"plain.jsonl:1: field 'confidence' must be a number"):
        read_pseudo_captions(tmp_path / "plain.jsonl", 0.5)
    with pytest.raises(CaptionFileError, match=r"teacher.csv: pseudo-captions are read from the .jsonl"):
        read_pseudo_captions(tmp_path / "teacher.csv", 0.5)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"captions": "t.jsonl", "min_confidence": "high"}, r"data.mix\[0\].min_confidence: expected a number"),
        ({"captions": "t.jsonl", "min_confidence": 0.5, "text_only": True}, r"take neither text_only"),
        ({"captions": "t.jsonl", "min_confidence": 0.5, "split_list": "s.txt"}, r"take neither text_only"),
    ],
)
def test_a_bad_pseudo_caption_source_is_named(entry, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({"data": {"captions": "c.txt", "mix": [entry]}})


def test_a_teacher_captions_a_folder_and_a_student_trains_on_what_it_was_sure_of(
    trained_tiny_model, tiny_data, tmp_path
):
    from sat_tf.workflows.models import load_captioner, save_captioner

    teacher = save_captioner(trained_tiny_model, tmp_path / "teacher.keras")
    images = tiny_data[0].images
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for k in range(8):
        Image.fromarray(images[k]).save(unlabeled / f"{k}.png")
    (unlabeled / "broken.jpg").write_bytes(b"not a photo")
    pseudo = tmp_path / "pseudo.jsonl"
    argv = ["caption", str(unlabeled), "--model", str(teacher), "--output", str(pseudo), "--no-progress"]
    assert main([*argv, "--skip-bad"]) == 0
    rows = [json.loads(line) for line in pseudo.read_text().splitlines()]
    captioned = [row for row in rows if "caption" in row]
    assert len(captioned) == 8 and len(rows) == 9
    threshold = sorted(row["confidence"] for row in captioned)[4]  # the surest half (ties aside)
    sure = {row["image"]: row["caption"] for row in captioned if row["confidence"] >= threshold}

    labelled = tmp_path / "labelled"
    labelled.mkdir()
    for k in range(8, 12):
        Image.fromarray(images[k]).save(labelled / f"{k}.png")
    (labelled / "captions.jsonl").write_text(
        "".join(json.dumps({"image": f"{k}.png", "caption": "a red square"}) + "\n" for k in range(8, 12))
    )
    data = DataConfig(
        captions=str(labelled / "captions.jsonl"),
        mix=({"captions": str(pseudo), "min_confidence": threshold, "weight": 2},),
    )
    loaded = load_captions(data, image_size=trained_tiny_model.encoder.image_size, verbose=False)
    from_teacher = {r.image_path: r.caption for r, s in zip(loaded.records, loaded.record_source) if s == 1}
    assert from_teacher == sure
    assert loaded.source_weights == (1.0, 2.0)

    # the command line trains a student from the teacher's file, like any other source
    run = tmp_path / "student"
    mix = json.dumps([{"captions": str(pseudo), "min_confidence": threshold}])
    train_argv = ["train", "--captions", str(labelled / "captions.jsonl"), "--mix", mix, "--output-dir", str(run)]
    small = ["--image-size", "32", "--embedding-dim", "8", "--hidden-dim", "16", "--attention-dim", "8"]
    small += ["--epochs", "1", "--batch-size", "4", "--min-word-count", "1"]
    assert main([*train_argv, *small]) == 0
    saved = RunConfig.from_dict(json.loads((run / "run_config.json").read_text()))
    assert saved.data.sources()[0].min_confidence == threshold
    assert "red" in load_captioner(run).tokenizer.vocabulary
