"""Photo views (training augmentation): each view does what its name says, caches of views are kept
apart, and training reads every view, from feature caches or from the photos."""

import json

import numpy as np
import pytest
from PIL import Image

from sat_tf.cli import main
from sat_tf.data.feature_cache import FeatureCache, StaleCacheError
from sat_tf.data.images import load_image
from sat_tf.data.photo_views import PhotoView, ViewedFeatures, ViewedPhotos, parse_photo_views
from sat_tf.errors import ConfigError
from sat_tf.inference.features import encoder_identity, extract_to_cache
from sat_tf.models.encoder import Encoder
from sat_tf.workflows.run_config import RunConfig


def _noise(height=48, width=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_jpeg_views_lose_more_the_lower_the_quality():
    photo = _noise()
    errors = [np.abs(PhotoView(f"jpeg-{q}").apply(photo).astype(int) - photo).mean() for q in (95, 50, 5)]
    assert PhotoView("jpeg-50").apply(photo).shape == photo.shape
    assert errors[0] < errors[1] < errors[2]
    flat = np.full((32, 32, 3), 120, np.uint8)
    assert np.abs(PhotoView("jpeg-10").apply(flat).astype(int) - 120).max() <= 2  # a flat colour survives


def test_shrink_view_keeps_the_aspect_and_leaves_small_photos():
    photo = _noise(48, 64)
    assert PhotoView("shrink-32").apply(photo).shape == (24, 32, 3)
    assert PhotoView("shrink-100").apply(photo) is photo
    # shrinking averages neighbours (antialiased): noise keeps its mean and loses spread
    small = PhotoView("shrink-16").apply(photo)
    assert abs(small.mean() - photo.mean()) < 3 and small.std() < 0.7 * photo.std()
    flat = np.full((40, 60, 3), 77, np.uint8)
    assert (PhotoView("shrink-12").apply(flat) == 77).all()


def test_sharpen_view_overshoots_at_an_edge_and_keeps_flat_parts():
    step = np.zeros((20, 20, 3), np.uint8)
    step[:, :10] = 80
    step[:, 10:] = 160
    sharp = PhotoView("sharpen-200").apply(step).astype(int)
    assert sharp[:, 9].max() < 80 and sharp[:, 10].min() > 160  # darker and lighter beside the edge
    assert (sharp[:, :5] == 80).all() and (sharp[:, 15:] == 160).all()


def test_views_are_parsed_with_the_original_first_and_bad_names_named():
    assert [v.name for v in parse_photo_views(["jpeg-30", "shrink-128", "jpeg-30", "original"])] == [
        "original",
        "jpeg-30",
        "shrink-128",
    ]
    with pytest.raises(ConfigError, match=r"data.photo_views\[1\]: photo view 'jpeg-100': jpeg takes 1 to 95"):
        parse_photo_views(["shrink-64", "jpeg-100"])
    with pytest.raises(ConfigError, match=r"data.photo_views\[0\]: photo view 'blur-3': expected 'original'"):
        RunConfig.from_dict({"data": {"photo_views": ["blur-3"]}})
    with pytest.raises(ConfigError, match=r"data.photo_views: expected a list"):
        parse_photo_views("jpeg-30")


@pytest.fixture
def image_files(tmp_path):
    paths = []
    for k in range(5):
        path = tmp_path / "images" / f"{k}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(_noise(40, 40, seed=k)).save(path)
        paths.append(str(path))
    return paths


def _frozen_encoder():
    import keras

    keras.utils.set_random_seed(0)
    encoder = Encoder("small_cnn", image_size=16, small_cnn_filters=(4, 4))
    encoder.build((None, 16, 16, 3))
    encoder.trainable = False
    return encoder


def test_a_views_cache_holds_that_view_and_is_kept_apart(image_files, tmp_path):
    encoder = _frozen_encoder()
    view = PhotoView("jpeg-5")
    cache = extract_to_cache(encoder, image_files, tmp_path / "train@jpeg-5", verbose=False, view=view)
    seen = np.stack([np.asarray(Image.fromarray(view.apply(load_image(p))).resize((16, 16), 2)) for p in image_files])
    np.testing.assert_allclose(cache.gather(np.arange(5)), encoder(seen, training=False), rtol=1e-2, atol=1e-3)
    original = extract_to_cache(encoder, image_files, tmp_path / "train", verbose=False)
    assert not np.allclose(original.gather(np.arange(5)), cache.gather(np.arange(5)), atol=1e-2)
    with pytest.raises(StaleCacheError, match="photo view"):  # a view's cache is not the photos'
        FeatureCache(tmp_path / "train@jpeg-5", encoder_identity(encoder, image_files))
    assert cache.manifest["identity"]["photo_view"] == "jpeg-5"
    assert "photo_view" not in json.loads((tmp_path / "train" / "manifest.json").read_text())["identity"] or (
        original.manifest["identity"]["photo_view"] is None
    )


def test_viewed_features_draw_every_view_row_by_row(image_files, tmp_path):
    encoder = _frozen_encoder()
    views = parse_photo_views(["jpeg-5", "shrink-8"])
    caches = [extract_to_cache(encoder, image_files, tmp_path / v.name, verbose=False, view=v) for v in views]
    viewed = ViewedFeatures(caches, seed=3)
    indices = np.arange(5).repeat(40)
    rows = viewed.gather(indices)
    per_view = [c.gather(indices) for c in caches]
    which = np.stack([np.all(rows == p, axis=(1, 2)) for p in per_view], axis=1)  # [rows, views]
    assert which.any(axis=1).all()  # every row is one view's features of its own image
    drawn = np.bincount(which.argmax(axis=1), minlength=3)
    assert (drawn > 40).all(), drawn  # each view about a third of 200 draws
    with pytest.raises(ValueError, match="differ in images"):
        ViewedFeatures([caches[0], extract_to_cache(encoder, image_files[:3], tmp_path / "few", verbose=False)])


def test_viewed_photos_read_each_photo_in_one_of_its_views(image_files):
    views = parse_photo_views(["jpeg-5"])
    viewed = ViewedPhotos(image_files, views, seed=0)
    batch = viewed.load_batch(np.array([0, 1, 2, 3, 4] * 8), 16)
    assert batch.shape == (40, 16, 16, 3) and batch.dtype == np.uint8
    options = [
        [np.asarray(Image.fromarray(v.apply(load_image(p))).resize((16, 16), 2)) for v in views] for p in image_files
    ]
    matched = [[np.array_equal(row, o) for o in options[k % 5]] for k, row in enumerate(batch)]
    assert all(any(m) for m in matched)
    assert {m.index(True) for m in matched} == {0, 1}


@pytest.mark.parametrize("cached", [True, False])
def test_training_reads_the_photo_views(tmp_path, cached):
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for k in range(6):
        Image.fromarray(_noise(40, 40, seed=k)).save(images / f"{k}.jpg")
        lines.append(f"{k}.jpg#0\tpicture number {k % 2}")
    (tmp_path / "tokens.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    argv = ["train", "--captions", str(tmp_path / "tokens.txt"), "--image-dir", str(images), "--output-dir", str(run)]
    argv += ["--photo-views", "jpeg-10,shrink-8", "--epochs", "1", "--batch-size", "3", "--no-append-coordinates"]
    argv += ["--hidden-dim", "8", "--embedding-dim", "4", "--attention-dim", "4"]
    if cached:  # a frozen pretrained backbone: one feature cache per view
        argv += ["--image-size", "64", "--backbone", "efficientnet_lite0", "--weights", "imagenet"]
        argv += ["--feature-cache", "auto"]
    else:  # a trainable CNN: the photos are read through a drawn view each step
        argv += ["--image-size", "16", "--cnn-filters", "4,4"]
    assert main(argv) == 0
    made = sorted(p.name for p in (run / "features").iterdir()) if cached else []
    assert made == (["train", "train@jpeg-10", "train@shrink-8"] if cached else [])
    saved = RunConfig.from_dict(json.loads((run / "run_config.json").read_text()))
    assert saved.data.photo_views == ("jpeg-10", "shrink-8")
