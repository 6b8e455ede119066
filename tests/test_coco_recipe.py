"""The COCO recipe end to end: `sat-tf train --recipe coco-lite0-ft --data-root DIR` on a folder in
the layout of Karpathy's COCO split (`dataset_coco.json`, `train2014/`, `val2014/`), then
`evaluate` on its val split and `caption`. On generated photos always; on the 79 real COCO photos
of `../shared/data/coco_mini` when that folder is there."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sat_tf.cli import main

COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"
TRAIN_FLAGS = [
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--embedding-dim",
    "8",
    "--hidden-dim",
    "16",
    "--attention-dim",
    "8",
    "--warmup-steps",
    "0",
    "--min-word-count",
    "1",
]
WORDS = ["a cat sits on a sofa", "a plate of food on a table", "a bus on a city street", "a cat on a bed"]


def _karpathy_folder(root: Path, photos: list[tuple[str, str, list[str], str]]) -> Path:
    """Writes dataset_coco.json for (filepath, filename, captions, split) rows."""
    images = [
        {
            "filepath": filepath,
            "filename": filename,
            "split": split,
            "cocoid": index,
            "sentences": [{"raw": caption, "tokens": caption.split()} for caption in captions],
        }
        for index, (filepath, filename, captions, split) in enumerate(photos)
    ]
    (root / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    return root


def _run_recipe(root: Path, tmp_path: Path, image_size: int, expected_train: int, expected_val: int, photo: Path):
    run = tmp_path / "run"
    common = ["--recipe", "coco-lite0-ft", "--data-root", str(root), "--image-size", str(image_size)]
    assert main(["train", *common, "--output-dir", str(run), *TRAIN_FLAGS]) == 0
    resolved = json.loads((run / "run_config.json").read_text())
    assert resolved["data"]["split"] == "train" and resolved["validation"]["split"] == "val"
    assert resolved["model"]["backbone"] == "efficientnet_lite0" and resolved["model"]["fine_tune_top_blocks"] == 2
    for split, count in (("train", expected_train), ("validation", expected_val)):  # train includes restval
        manifest = json.loads((run / "features" / split / "manifest.json").read_text())
        assert manifest["complete"] and manifest["identity"]["num_images"] == count
    report_path = tmp_path / "val.json"
    assert main(["evaluate", "--model", str(run), "--output", str(report_path), "--tokenization", "python"]) == 0
    report = json.loads(report_path.read_text())
    assert report["images"] == expected_val and len(report["captions"]) == expected_val
    assert main(["caption", str(photo), "--model", str(run)]) == 0


def test_coco_recipe_on_generated_photos(tmp_path, capsys):
    root = tmp_path / "coco"
    rows, rng = [], np.random.default_rng(0)
    for index in range(14):
        split = "train" if index < 8 else "restval" if index < 10 else "val"
        filepath = "val2014" if split == "val" else "train2014"
        (root / filepath).mkdir(parents=True, exist_ok=True)
        filename = f"COCO_{filepath}_{index:012d}.jpg"
        pixels = np.clip(rng.normal((60 + 40 * (index % 4), 90, 120), 30, (80, 100, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / filepath / filename, quality=90)
        rows.append((filepath, filename, [WORDS[(index + k) % len(WORDS)] for k in range(5)], split))
    _karpathy_folder(root, rows)
    _run_recipe(root, tmp_path, 64, expected_train=10, expected_val=4, photo=root / "val2014" / rows[-1][1])
    assert "(confidence" in capsys.readouterr().out


@pytest.mark.skipif(not COCO_MINI.is_dir(), reason=f"{COCO_MINI} is not here (the shared real-data folder)")
def test_coco_recipe_on_the_real_coco_photos(tmp_path):
    payload = json.loads((COCO_MINI / "captions_val2017.json").read_text())
    captions: dict[int, list[str]] = {}
    for annotation in payload["annotations"]:
        captions.setdefault(annotation["image_id"], []).append(annotation["caption"])
    images = sorted(payload["images"], key=lambda image: image["id"])
    root = tmp_path / "coco"
    root.mkdir()
    os.symlink(COCO_MINI / "val2017", root / "val2017")  # the photos stay where they are
    rows = [
        ("val2017", image["file_name"], captions[image["id"]], "train" if index < 64 else "val")
        for index, image in enumerate(images)
    ]
    _karpathy_folder(root, rows)
    _run_recipe(
        root, tmp_path, 224, expected_train=64, expected_val=len(rows) - 64, photo=COCO_MINI / "val2017" / rows[-1][1]
    )
