"""Dataset readers on generated files, and on ../shared/data when it is present."""

import json
from pathlib import Path

import pytest

from sat_tf.data.readers import (
    CaptionFileError,
    read_coco_captions,
    read_flickr_tokens,
    read_karpathy_split,
    require_image_files,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_flickr_token_file_with_split(tmp_path):
    (tmp_path / "tokens.txt").write_text("a.jpg#0\tA dog runs .\na.jpg#1\tA dog .\nb.jpg#0\tA cat .\n")
    (tmp_path / "train.txt").write_text("a.jpg\n")
    records = read_flickr_tokens(tmp_path / "tokens.txt", tmp_path / "train.txt", image_dir=tmp_path)
    assert [(r.image_id, r.caption) for r in records] == [("a.jpg", "A dog runs ."), ("a.jpg", "A dog .")]
    assert records[1].source.endswith("tokens.txt:2")
    (tmp_path / "bad.txt").write_text("a.jpg#0\tfine\nno tab here\n")
    with pytest.raises(CaptionFileError, match="bad.txt:2: expected"):
        read_flickr_tokens(tmp_path / "bad.txt")
    (tmp_path / "dev.txt").write_text("c.jpg\n")
    with pytest.raises(CaptionFileError, match="1 image\\(s\\) have no caption"):
        read_flickr_tokens(tmp_path / "tokens.txt", tmp_path / "dev.txt")


def test_karpathy_split_with_restval(tmp_path):
    images = [
        {"filename": "1.jpg", "filepath": "train2014", "split": "train", "sentences": [{"raw": "one"}]},
        {"filename": "2.jpg", "filepath": "val2014", "split": "restval", "sentences": [{"raw": "two"}]},
        {"filename": "3.jpg", "filepath": "val2014", "split": "val", "sentences": [{"raw": "three"}]},
    ]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images}))
    train = read_karpathy_split(tmp_path / "dataset_coco.json", "train", tmp_path)
    assert [r.caption for r in train] == ["one", "two"]
    assert train[1].image_path == str(tmp_path / "val2014" / "2.jpg")
    assert [
        r.caption for r in read_karpathy_split(tmp_path / "dataset_coco.json", "train", tmp_path, include_restval=False)
    ] == ["one"]
    images[2]["sentences"] = [{"tokens": ["no", "raw"]}]
    (tmp_path / "broken.json").write_text(json.dumps({"images": images}))
    with pytest.raises(CaptionFileError, match=r"images\[2\]\.sentences\[0\]: missing string field 'raw'"):
        read_karpathy_split(tmp_path / "broken.json", "val", tmp_path)


def test_coco_captions_json(tmp_path):
    payload = {
        "images": [{"id": 7, "file_name": "x.jpg"}],
        "annotations": [{"image_id": 7, "caption": "a plane"}, {"image_id": 7, "caption": "a jet"}],
    }
    (tmp_path / "captions.json").write_text(json.dumps(payload))
    records = read_coco_captions(tmp_path / "captions.json", tmp_path)
    assert [r.caption for r in records] == ["a plane", "a jet"] and records[0].image_id == "x.jpg"
    payload["annotations"].append({"image_id": 8, "caption": "orphan"})
    (tmp_path / "orphan.json").write_text(json.dumps(payload))
    with pytest.raises(CaptionFileError, match=r"annotations\[2\]: image_id 8 is not in 'images'"):
        read_coco_captions(tmp_path / "orphan.json", tmp_path)
    with pytest.raises(CaptionFileError, match="2 image file\\(s\\) missing"):
        require_image_files(records + read_coco_captions(tmp_path / "captions.json", tmp_path / "elsewhere"))


@pytest.mark.skipif(not (SHARED / "flickr8k").is_dir(), reason="../shared/data/flickr8k is not present")
def test_shared_flickr8k_splits():
    folder = SHARED / "flickr8k"
    train = read_flickr_tokens(folder / "Flickr8k.token.txt", folder / "Flickr_8k.trainImages.txt")
    dev = read_flickr_tokens(folder / "Flickr8k.token.txt", folder / "Flickr_8k.devImages.txt")
    assert len({r.image_id for r in train}) == 6000 and len(train) == 30000
    assert len({r.image_id for r in dev}) == 1000 and len(dev) == 5000
    require_image_files(dev)


@pytest.mark.skipif(not (SHARED / "coco_mini").is_dir(), reason="../shared/data/coco_mini is not present")
def test_shared_coco_mini():
    folder = SHARED / "coco_mini"
    records = read_coco_captions(folder / "captions_val2017.json", folder / "val2017")
    assert len({r.image_id for r in records}) == 79
    require_image_files(records)
