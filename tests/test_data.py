import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sat_tf.data import synthetic
from sat_tf.data.images import ImageLoadError, load_image, scan_images
from sat_tf.data.pipeline import CaptionDataError, bucket_boundaries, encode_captions, make_caption_dataset
from sat_tf.data.readers import CaptionFileError, index_images, read_caption_file
from sat_tf.data.records import CaptionRecord
from sat_tf.data.tokenizer import CaptionTokenizer


def test_synthetic_data_is_deterministic_and_grounded():
    a = synthetic.generate(20, seed=5, captions_per_image=2)
    b = synthetic.generate(20, seed=5, captions_per_image=2)
    c = synthetic.generate(20, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    assert [r.caption for r in a.records] == [r.caption for r in b.records]
    assert not np.array_equal(a.images, c.images)
    assert len(a.records) == 40
    for image, objects, caption in zip(a.images, a.objects, [r.caption for r in a.records[::2]]):
        # reading order: rows, then columns
        assert [(o.row, o.column) for o in objects] == sorted((o.row, o.column) for o in objects)
        assert caption.split()[1:3] == objects[0].phrase.split()
        for obj in objects:
            x0, y0, x1, y1 = obj.box
            colour = np.array(synthetic.COLOURS[obj.colour])
            patch = image[y0:y1, x0:x1].reshape(-1, 3).astype(int)
            close = np.abs(patch - colour).max(axis=1) <= 12  # the object's colour plus noise
            assert close.mean() > 0.4, obj  # triangles fill half their box


def test_reverse_captions_describe_the_same_scene():
    data = synthetic.generate(30, seed=1, captions_per_image=2)
    for first, second, objects in zip(data.records[::2], data.records[1::2], data.objects):
        assert first.image_id == second.image_id
        if len(objects) == 1:
            assert first.caption == second.caption
        else:
            assert second.caption.split()[1:3] == objects[-1].phrase.split()


def _encoded(captions=("a b", "a b c d", "a", "a b c")):
    records = [CaptionRecord(f"img{i}", c, image_index=i, source=f"file:{i + 1}") for i, c in enumerate(captions)]
    tokenizer = CaptionTokenizer.from_corpus(captions)
    return records, tokenizer


def test_encode_captions_rejects_or_skips_empty_and_long_captions():
    records, tokenizer = _encoded(("a b", "...", "a b c d e f"))
    with pytest.raises(CaptionDataError, match="file:2: empty caption"):
        encode_captions(records, tokenizer, max_words=4)
    encoded = encode_captions(records, tokenizer, max_words=4, skip_invalid=True)
    assert len(encoded) == 1 and encoded.image_index.tolist() == [0]
    assert set(encoded.skipped) == {"file:2", "file:3"}
    assert "over the limit" in encoded.skipped["file:3"]


def test_pipeline_batches_buckets_and_resumes_deterministically():
    data = synthetic.generate(64, seed=2, image_size=32)
    tokenizer = CaptionTokenizer.from_corpus(r.caption for r in data.records)
    encoded = encode_captions(data.records, tokenizer)
    batches = list(make_caption_dataset(data.images, encoded, 8, seed=1, epoch=0))
    again = list(make_caption_dataset(data.images, encoded, 8, seed=1, epoch=0))
    other_epoch = list(make_caption_dataset(data.images, encoded, 8, seed=1, epoch=1))
    resumed = list(make_caption_dataset(data.images, encoded, 8, seed=1, epoch=0, skip_batches=3))
    assert all(b["images"].shape == (8, 32, 32, 3) and b["images"].dtype == tf.uint8 for b in batches)
    boundaries = bucket_boundaries(encoded.lengths)
    assert boundaries  # the synthetic captions have several lengths
    for batch in batches:  # padded to the batch's own longest caption; one length bucket per batch
        tokens = batch["tokens"].numpy()
        assert (tokens[:, -1] != 0).any()
        lengths = (tokens != 0).sum(axis=1)
        assert len(set(np.searchsorted(boundaries, lengths, side="right"))) == 1
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    assert any(not np.array_equal(a["images"], b["images"]) for a, b in zip(batches, other_epoch))
    assert len(resumed) == len(batches) - 3
    for a, b in zip(batches[3:], resumed):
        np.testing.assert_array_equal(a["images"], b["images"])


def test_every_caption_appears_once_per_epoch_without_drop():
    records, tokenizer = _encoded()
    encoded = encode_captions(records, tokenizer)
    images = np.arange(4, dtype=np.uint8).reshape(4, 1, 1, 1).repeat(3, axis=3)
    batches = list(make_caption_dataset(images, encoded, 3, seed=0, drop_remainder=False))
    seen = sorted(int(b["images"].numpy()[k, 0, 0, 0]) for b in batches for k in range(len(b["images"])))
    assert seen == [0, 1, 2, 3]
    for batch in batches:
        for k, token_row in enumerate(batch["tokens"].numpy()):
            index = int(batch["images"].numpy()[k, 0, 0, 0])
            expected = encoded.tokens[index][: encoded.lengths[index]]
            np.testing.assert_array_equal(token_row[: len(expected)], expected)


def _save(image: Image.Image, path, fmt="PNG"):
    image.save(path, format=fmt)
    return str(path)


def test_image_modes_become_rgb(tmp_path):
    gray = _save(Image.new("L", (10, 8), 100), tmp_path / "gray.png")
    rgba = _save(Image.new("RGBA", (10, 8), (255, 0, 0, 255)), tmp_path / "rgba.png")
    palette = _save(Image.new("RGB", (10, 8), (0, 255, 0)).convert("P"), tmp_path / "pal.png")
    deep = _save(Image.fromarray(np.full((8, 10), 65535, np.uint16)), tmp_path / "deep.png")
    assert load_image(gray).shape == (8, 10, 3) and load_image(gray)[0, 0].tolist() == [100] * 3
    assert load_image(rgba)[0, 0].tolist() == [255, 0, 0]
    assert load_image(palette)[0, 0].tolist() == [0, 255, 0]
    assert load_image(deep)[0, 0].tolist() == [255] * 3  # 16-bit scaled, not clipped
    assert load_image(gray, size=4).shape == (4, 4, 3)


def test_bad_images_raise_errors_naming_the_file(tmp_path):
    good = _save(Image.new("RGB", (16, 16)), tmp_path / "good.jpg", "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(good, "rb").read()[:40])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for path, message in [(tmp_path / "missing.jpg", "not found"), (truncated, "truncated"), (text, "not an image")]:
        with pytest.raises(ImageLoadError, match=str(path.name)) as info:
            load_image(path)
        assert message in str(info.value)
    scan = scan_images([good, str(truncated), str(text)], skip_unreadable=True)
    assert scan.readable == [good] and len(scan.skipped) == 2
    with pytest.raises(ImageLoadError):
        scan_images([good, str(text)])


def test_caption_files_report_file_and_line(tmp_path):
    jsonl = tmp_path / "caps.jsonl"
    jsonl.write_text('{"image": "a.jpg", "caption": "a dog"}\n\n{"image": "b.jpg"}\n')
    with pytest.raises(CaptionFileError, match=r"caps.jsonl:3: missing field\(s\) caption"):
        read_caption_file(jsonl)
    jsonl.write_text(
        '{"image": "a.jpg", "caption": "a dog"}\n{"image": "a.jpg", "caption": "dog"}\n'
        '{"image": "b.jpg", "caption": "cat"}\n'
    )
    records = read_caption_file(jsonl)
    assert records[0].image_path == str(tmp_path / "a.jpg") and records[2].source.endswith("caps.jsonl:3")
    assert index_images(records) == ([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")], [0, 0, 1])
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"image": "a.jpg", "caption": "x"}\n{oops\n')
    with pytest.raises(CaptionFileError, match="bad.jsonl:2: invalid JSON"):
        read_caption_file(bad_json)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("image,caption\na.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CaptionFileError, match="latin.csv:2: not valid UTF-8"):
        read_caption_file(latin)
    no_header = tmp_path / "plain.csv"
    no_header.write_text("a.jpg,a dog\n")
    with pytest.raises(CaptionFileError, match="plain.csv:1: the CSV header"):
        read_caption_file(no_header)
