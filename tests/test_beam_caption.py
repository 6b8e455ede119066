"""`sat-tf caption --runner`: the Apache Beam pipeline (RunInference over the model's TFLite pair)
writes the records `sat-tf caption --output FILE.jsonl` writes, with the same captions, from the
DirectRunner with 2 worker processes; an unreadable photo becomes an error record. Skips without
Apache Beam (`pip install ".[beam]"`; the README's set-up installs it)."""

import json

import pytest
from PIL import Image

from sat_tf.cli import main

pytest.importorskip("apache_beam", reason="Apache Beam is not installed: pip install '.[beam]'")


def _records(path) -> dict[str, dict]:
    return {r["image"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_a_direct_runner_with_two_workers_captions_as_the_command(trained_tiny_model, tiny_data, tmp_path):
    from sat_tf.workflows.models import save_captioner

    model_file = save_captioner(trained_tiny_model, tmp_path / "tiny.keras")
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for k in range(8):
        Image.fromarray(tiny_data[0].images[k]).save(folder / ("more" if k % 2 else ".") / f"{k}.png")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    common = ["caption", str(folder), "--model", str(model_file), "--no-progress"]

    assert main([*common, "--output", str(tmp_path / "command.jsonl")]) == 0
    workers = ["--pipeline-option=--direct_num_workers=2", "--pipeline-option=--direct_running_mode=multi_processing"]
    assert main([*common, "--runner", "DirectRunner", *workers, "--output", str(tmp_path / "beam.jsonl")]) == 0

    command, beam = _records(tmp_path / "command.jsonl"), _records(tmp_path / "beam.jsonl")
    assert sorted(beam) == sorted(command) and len(beam) == 9
    broken = str(folder / "broken.jpg")
    assert beam[broken]["error"] == command[broken]["error"]
    for image, record in command.items():
        if "caption" in record:
            assert beam[image]["caption"] == record["caption"]
            assert beam[image]["candidates"] == record["candidates"]
            assert beam[image]["confidence"] == pytest.approx(record["confidence"], abs=1e-4)


def test_the_runner_refuses_what_it_cannot_do(tiny_data, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(tiny_data[0].images[0]).save(photo)
    runner = ["caption", str(photo), "--runner", "DirectRunner"]
    assert main([*runner, "--output", str(tmp_path / "x.json")]) == 2
    assert "--runner writes a new .jsonl --output" in capsys.readouterr().err
    assert main([*runner, "--output", str(tmp_path / "x.jsonl"), "--tags"]) == 2
    assert "no --attention-plot or --tags" in capsys.readouterr().err
