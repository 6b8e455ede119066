"""Sequence-level distillation: the teacher's captions written as a caption file a student trains on."""

import json

import numpy as np
from PIL import Image

from sat_tf.cli import main
from sat_tf.data.feature_cache import list_checksum
from sat_tf.data.readers import read_captions
from sat_tf.data.sources import DataConfig, load_captions
from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.inference.decoding_config import DecodingConfig
from sat_tf.workflows.distill import write_distillation_captions
from sat_tf.workflows.models import save_captioner

NUM_IMAGES = 6


def _caption_file(tiny_data, folder):
    """Six of the tiny images as PNG files, the first three with two captions each, listed in a
    shuffled-looking order so the file's image order is not the names' order."""
    data = tiny_data[0]
    folder.mkdir()
    order = [3, 0, 5, 1, 4, 2]
    lines = []
    for k in order:
        Image.fromarray(data.images[k]).save(folder / f"{k}.png")
        captions = ["a first caption", "a second caption"] if k < 3 else ["only caption"]
        lines += [json.dumps({"image": f"{k}.png", "caption": f"{c} of {k}"}) for c in captions]
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "captions.jsonl", [data.images[k] for k in order]


def test_distillation_writes_the_teachers_caption_after_each_images_references(trained_tiny_model, tiny_data, tmp_path):
    captions_file, images = _caption_file(tiny_data, tmp_path / "images")
    teacher = tmp_path / "teacher.keras"
    save_captioner(trained_tiny_model, teacher)
    data = DataConfig(captions=str(captions_file))
    decoding = DecodingConfig(beam_size=2, max_length=12, no_repeat_ngram_size=0)
    output = tmp_path / "distilled.jsonl"

    written = write_distillation_captions([str(teacher)], data, decoding, output, with_references=True, verbose=False)

    # independent expectation: the teacher's own beam search on the same pixels
    expected = generate_captions(
        trained_tiny_model, images=np.stack(images), sampler=BeamSampler(2), max_length=12
    ).best_texts
    assert list(written.values()) == expected
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    source = [json.loads(line) for line in captions_file.read_text().splitlines()]
    by_image: dict[str, list[str]] = {}
    for row in source:
        by_image.setdefault(row["image"], []).append(row["caption"])
    wanted = []
    for name, teacher_caption in zip(by_image, expected):
        wanted += [(str(tmp_path / "images" / name), c) for c in [*by_image[name], teacher_caption]]
    assert [(row["image"], row["caption"]) for row in rows] == wanted
    assert len(rows) == 9 + NUM_IMAGES

    # the student reads it in the split's image order, so the split's feature cache stays valid
    original = load_captions(data, 32, verbose=False).image_paths
    distilled = load_captions(DataConfig(captions=str(output)), 32, verbose=False).image_paths
    assert list_checksum(distilled) == list_checksum(original)


def test_sat_tf_distill_writes_teacher_only_captions_and_refuses_other_formats(
    trained_tiny_model, tiny_data, tmp_path, capsys
):
    captions_file, images = _caption_file(tiny_data, tmp_path / "images")
    teacher = tmp_path / "teacher.keras"
    save_captioner(trained_tiny_model, teacher)
    output = tmp_path / "teacher.jsonl"
    argv = ["distill", "--model", str(teacher), "--captions", str(captions_file), "--beam-size", "1"]
    assert main([*argv, "--max-length", "12", "--no-repeat-ngram-size", "0", "--output", str(output)]) == 0
    greedy = generate_captions(trained_tiny_model, images=np.stack(images), max_length=12).best().texts
    assert [r.caption for r in read_captions(output)] == greedy
    assert f"the teacher's captions of {NUM_IMAGES} images" in capsys.readouterr().out

    assert main([*argv, "--output", str(tmp_path / "teacher.txt")]) == 2
    assert "teacher.txt: the distillation captions are written as a .jsonl caption file" in capsys.readouterr().err
    assert not (tmp_path / "teacher.txt").exists()
