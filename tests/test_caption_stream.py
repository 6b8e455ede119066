"""Captioning many photos: finding them (folders, list files), the resumable JSON Lines output, and
`sat-tf caption` streaming a folder into JSON Lines, killed and resumed without losing a line."""

import json

import numpy as np
import pytest
from PIL import Image

from sat_tf.errors import ConfigError
from sat_tf.utils.json_lines import JsonLinesOutput
from sat_tf_edge.photo_files import PhotoListError, find_photos, read_photo_list, source_problem


def _photo(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48, 3), np.uint8)).save(path)
    return str(path)


def test_folders_are_searched_recursively_for_photos_in_a_stable_order(tmp_path):
    b = _photo(tmp_path / "album" / "b.JPG")
    a = _photo(tmp_path / "album" / "a.png")
    deep = _photo(tmp_path / "album" / "day 2" / "c.jpeg")
    _photo(tmp_path / "album" / ".hidden" / "d.jpg")  # hidden folders and files are not photos
    _photo(tmp_path / "album" / ".e.jpg")
    (tmp_path / "album" / "notes.txt").write_text("not a photo")
    single = _photo(tmp_path / "single.webp")
    assert find_photos([str(tmp_path / "album"), single, a]) == [a, b, deep, single]  # each once
    assert source_problem(tmp_path / "album") is None
    (tmp_path / "empty").mkdir()
    assert source_problem(tmp_path / "empty") == "a folder with no image files"
    assert source_problem(tmp_path / "missing.jpg") == "file not found"


def test_a_list_file_names_photos_relative_to_itself(tmp_path):
    inside = _photo(tmp_path / "lists" / "near.jpg")
    elsewhere = _photo(tmp_path / "far" / "away.png")
    listing = tmp_path / "lists" / "photos.txt"
    listing.write_text(f"# my photos\nnear.jpg\n\n  {elsewhere}  \n# the end\n")
    assert read_photo_list(listing) == [inside, elsewhere]
    assert find_photos([inside], [str(listing)]) == [inside, elsewhere]
    with pytest.raises(PhotoListError, match="missing.txt: cannot read the photo list"):
        read_photo_list(tmp_path / "missing.txt")


def test_json_lines_resume_after_a_kill_keeps_every_complete_line(tmp_path):
    path = tmp_path / "captions.jsonl"
    with JsonLinesOutput(path) as output:
        output.write({"image": "a.jpg", "caption": "a cat"})
        output.write({"image": "b.jpg", "caption": "a dog"})
    with open(path, "a") as file:  # killed in the middle of the third line
        file.write('{"image": "c.jpg", "capt')
    with pytest.raises(ConfigError, match="captions.jsonl: exists; --resume"):
        JsonLinesOutput(path)
    with JsonLinesOutput(path, resume=True) as output:
        assert output.done == {"a.jpg", "b.jpg"}
        output.write({"image": "c.jpg", "caption": "a bird"})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["image"] for r in rows] == ["a.jpg", "b.jpg", "c.jpg"] and rows[1]["caption"] == "a dog"


def test_json_lines_refuses_to_resume_a_file_it_did_not_write(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text('{"image": "a.jpg"}\nnot json\n')
    with pytest.raises(ConfigError, match="other.jsonl: line 2 is not JSON"):
        JsonLinesOutput(path, resume=True)
    path.write_text('{"caption": "no image field"}\n')
    with pytest.raises(ConfigError, match="line 1 has no 'image' field"):
        JsonLinesOutput(path, resume=True)
    assert path.read_text() == '{"caption": "no image field"}\n'  # refused, untouched


def test_caption_streams_folders_and_lists_into_json_lines_and_resumes_after_a_kill(
    trained_tiny_model, tiny_data, tmp_path, capsys
):
    from sat_tf.cli import main
    from sat_tf.workflows import caption_files, load_for_captioning
    from sat_tf.workflows.models import save_captioner

    model_file = save_captioner(trained_tiny_model, tmp_path / "tiny.keras")
    images = tiny_data[0].images
    folder = tmp_path / "photos"
    photos = []
    for k in range(7):  # a nested folder of photos, and one broken file among them
        path = folder / ("day2" if k >= 4 else "day1") / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[k]).save(path)
        photos.append(str(path))
    broken = folder / "day1" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    listed = []
    for k in (7, 8):
        listed.append(str(tmp_path / "elsewhere" / f"{k}.png"))
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        Image.fromarray(images[k]).save(listed[-1])
    listing = tmp_path / "more.txt"
    listing.write_text("\n".join(listed) + "\n")
    output = tmp_path / "captions.jsonl"
    argv = ["caption", str(folder), "--list", str(listing), "--model", str(model_file), "--output", str(output)]

    assert main([*argv, "--photos-per-batch", "3", "--no-progress"]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    captioned = {r["image"]: r for r in rows if "caption" in r}
    assert sorted(captioned) == sorted(photos + listed)
    errors = [r for r in rows if "error" in r]
    assert [r["image"] for r in errors] == [str(broken)]
    assert errors[0]["error"].startswith(f"{broken}: not a readable image (")
    assert "skipped 1 unreadable image" in capsys.readouterr().err
    # the same captions and confidences as the library captioning them in one call
    loaded = load_for_captioning([str(model_file)], as_caption_command=True)
    library = caption_files(loaded.model, photos + listed, loaded.decoding, calibration=loaded.calibration).records()
    for record in library:
        assert captioned[record["image"]]["caption"] == record["caption"]
        assert captioned[record["image"]]["confidence"] == pytest.approx(record["confidence"], abs=1e-5)

    # killed after 4 lines and part of the fifth: --resume captions the rest, and no photo twice
    lines = output.read_text().splitlines(keepends=True)
    output.write_text("".join(lines[:4]) + lines[4][:20])
    assert main([*argv, "--resume", "--no-progress"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "\t" in line]
    again = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["image"] for r in again) == sorted(r["image"] for r in rows)  # each once
    assert {r["image"]: r.get("caption") for r in again} == {r["image"]: r.get("caption") for r in rows}
    assert len(printed) == sum("caption" in r for r in again[4:])  # only the photos not done before
    assert main(argv) == 2  # never overwrites a run's output
    assert "captions.jsonl: exists; --resume continues it" in capsys.readouterr().err
