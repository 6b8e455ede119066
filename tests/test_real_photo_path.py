"""The README's real-photo block, end to end, on a tiny generated dataset in Flickr8k's layout:
`sat-tf train --recipe flickr8k-lite0 --data-root DIR`, then `evaluate` and `caption` on the run."""

import json

import numpy as np
import pytest
from PIL import Image

from sat_tf.cli import main

WORDS = [
    "a dog runs on the grass",
    "a red dog plays in the grass",
    "the dog is running",
    "a man rides a bike",
    "a man on a red bike",
    "the man is riding",
]


def _logged_images(log_dir) -> dict[str, list[np.ndarray]]:
    """tag -> decoded images of every tf.summary.image in the event files of `log_dir`."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    images = {}
    for tag in accumulator.Tags()["tensors"]:
        if tag.startswith("images/"):
            events = accumulator.Tensors(tag)
            # an image summary tensor holds [width, height, encoded PNG]
            images[tag] = [tf.io.decode_png(tf.make_ndarray(e.tensor_proto)[2]).numpy() for e in events]
    return images


@pytest.fixture(scope="module")
def flickr_like(tmp_path_factory):
    """12 train + 4 dev JPEGs with 5 captions each, file names and splits as in Flickr8k."""
    root = tmp_path_factory.mktemp("flickr_like")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    lines, splits = [], {"train": [], "dev": []}
    for index in range(16):
        name = f"{1000 + index}_photo.jpg"
        colour = (200, 40, 40) if index % 2 else (40, 160, 40)
        pixels = np.clip(rng.normal(colour, 30, size=(120, 90, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / name, quality=90)
        for k in range(5):
            lines.append(f"{name}#{k}\t{WORDS[(index % 2) * 3 + k % 3]}")
        splits["train" if index < 12 else "dev"].append(name)
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(splits["train"]) + "\n")
    (root / "Flickr_8k.devImages.txt").write_text("\n".join(splits["dev"]) + "\n")
    return root


def test_recipe_train_evaluate_caption(flickr_like, tmp_path, capsys):
    run = tmp_path / "run"
    small = [
        "--image-size",
        "64",
        "--epochs",
        "2",
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
    ]
    assert (
        main(["train", "--recipe", "flickr8k-lite0", "--data-root", str(flickr_like), "--output-dir", str(run), *small])
        == 0
    )
    out = capsys.readouterr().out
    assert "best_model.keras" in out  # the model selected on dev is the one named
    resolved = json.loads((run / "run_config.json").read_text())
    assert resolved["model"]["backbone"] == "efficientnet_lite0" and resolved["data"]["min_word_count"] == 5
    assert resolved["training"]["epochs"] == 2 and resolved["decoding"]["beam_size"] == 3
    for split, count in (("train", 12), ("validation", 4)):
        manifest = json.loads((run / "features" / split / "manifest.json").read_text())
        assert manifest["complete"] and manifest["identity"]["num_images"] == count
    assert (run / "best_model.keras").is_file() and json.loads((run / "best.json").read_text())["epoch"] in (1, 2)
    # TensorBoard: per validation, the score and the attention figure of the first 3 dev images
    figures = _logged_images(run / "logs")
    dev_ids = ["1012_photo.jpg", "1013_photo.jpg", "1014_photo.jpg"]
    assert sorted(figures) == [f"images/attention/{name}" for name in dev_ids]
    for images in figures.values():
        assert len(images) == 2  # one per epoch
        height, width, channels = images[-1].shape
        assert channels == 3 and width > 300 and images[-1].std() > 10  # a drawn figure, not a blank

    # evaluate with no data flags: the run's own dev split, from its cached features, beam 3
    report_path = tmp_path / "dev.json"
    assert main(["evaluate", "--model", str(run), "--output", str(report_path), "--tokenization", "python"]) == 0
    report = json.loads(report_path.read_text())
    assert report["images"] == 4 and report["decoding"]["beam_size"] == 3
    assert report["models"] == [str(run / "best_model.keras")]
    assert len(report["captions"]) == 4 and all(isinstance(c, str) for c in report["captions"].values())
    assert report["confidence"].keys() == report["captions"].keys()
    assert all(0.0 < c <= 1.0 for c in report["confidence"].values())
    assert 0.0 <= report["BLEU-4"] <= 100.0
    # the same split from the image files (features recomputed by the model's encoder)
    from_images = tmp_path / "dev_images.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run),
                "--data-root",
                str(flickr_like),
                "--captions",
                "Flickr8k.token.txt",
                "--image-dir",
                "images",
                "--split-list",
                "Flickr_8k.devImages.txt",
                "--output",
                str(from_images),
                "--tokenization",
                "python",
            ]
        )
        == 0
    )
    assert json.loads(from_images.read_text())["captions"].keys() == report["captions"].keys()

    # self-critical fine-tuning of that model, from the run's own feature caches, selected on dev CIDEr
    scst = tmp_path / "scst"
    assert (
        main(
            [
                "train",
                "--recipe",
                "flickr8k-lite0-scst",
                "--data-root",
                str(flickr_like),
                "--scst-init-from",
                str(run),
                "--output-dir",
                str(scst),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--feature-cache",
                str(run / "features" / "train"),
                "--val-feature-cache",
                str(run / "features" / "validation"),
            ]
        )
        == 0
    )
    assert json.loads((scst / "run_config.json").read_text())["scst"]["init_from"] == str(run)
    assert (scst / "best_model.keras").is_file() and 0.0 <= json.loads((scst / "best.json").read_text())["score"]
    assert not (scst / "features").exists()  # the caches were reused, not extracted again

    # the fine-tuned recipe: its cache holds the 7x7-grid input of the last stage (here 2x2 at 64 px),
    # and an ensemble with the frozen-feature run (whose cache it cannot share) reads the images
    tuned = tmp_path / "tuned"
    assert (
        main(
            [
                "train",
                "--recipe",
                "flickr8k-lite0-ft",
                "--data-root",
                str(flickr_like),
                "--output-dir",
                str(tuned),
                *small,
            ]
        )
        == 0
    )
    manifest = json.loads((tuned / "features" / "train" / "manifest.json").read_text())
    assert manifest["identity"]["encoder"]["cache_layer"] == "block15_expand_conv"
    assert manifest["feature_shape"] == [2, 2, 192]
    # self-critical training of the fine-tuned model: its top trains from the cache, and the
    # TensorBoard figures after each validation read the images through the whole encoder
    tuned_scst = tmp_path / "tuned_scst"
    assert (
        main(
            [
                "train",
                "--recipe",
                "flickr8k-lite0-scst",
                "--data-root",
                str(flickr_like),
                "--scst-init-from",
                str(tuned / "model.keras"),
                "--output-dir",
                str(tuned_scst),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--feature-cache",
                str(tuned / "features" / "train"),
                "--val-feature-cache",
                str(tuned / "features" / "validation"),
            ]
        )
        == 0
    )
    assert sorted(_logged_images(tuned_scst / "logs")) == [f"images/attention/{name}" for name in dev_ids]
    both = tmp_path / "both.json"
    assert main(["evaluate", "--model", str(tuned), str(run), "--output", str(both), "--tokenization", "python"]) == 0
    assert json.loads(both.read_text())["images"] == 4

    photo = flickr_like / "images" / "1013_photo.jpg"
    assert main(["caption", str(photo), "--model", str(run), "--output", str(tmp_path / "c.json")]) == 0
    caption = json.loads((tmp_path / "c.json").read_text())["captions"][0]
    assert len(caption["candidates"]) == 3 and caption["caption"] == caption["candidates"][0]


def test_errors_name_the_setting_and_exit_2(flickr_like, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--recipe",
                "flickr8k-lite0",
                "--data-root",
                str(flickr_like),
                "--output-dir",
                str(tmp_path / "r"),
                "--attention",
                "sideways",
            ]
        )
        == 2
    )
    assert "model.attention must be one of soft, hard" in capsys.readouterr().err
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"training": {"epochs": "many"}}))
    assert main(["train", "--config", str(config), "--output-dir", str(tmp_path / "r")]) == 2
    assert "bad.json: training.epochs: expected int" in capsys.readouterr().err
    config.write_text(json.dumps({"trainig": {}}))
    assert main(["train", "--config", str(config), "--output-dir", str(tmp_path / "r")]) == 2
    assert "unknown section(s) trainig" in capsys.readouterr().err
