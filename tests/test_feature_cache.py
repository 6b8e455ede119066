import json

import numpy as np
import pytest
from PIL import Image

import sat_tf.data.feature_cache as cache_module
from sat_tf.data.feature_cache import FeatureCache, StaleCacheError
from sat_tf.data.pipeline import encode_captions, make_caption_dataset
from sat_tf.data.records import CaptionRecord
from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.inference.features import encoder_identity, extract_to_cache
from sat_tf.models.encoder import Encoder


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(7):
        path = tmp_path / "images" / f"{k}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _frozen_encoder(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    encoder = Encoder("small_cnn", image_size=16, small_cnn_filters=(4, 4))
    encoder.build((None, 16, 16, 3))  # weights drawn right after seeding
    encoder.trainable = False
    return encoder


def test_cache_matches_encoder_and_feeds_the_pipeline(image_files, tmp_path):
    encoder = _frozen_encoder()
    cache = extract_to_cache(encoder, image_files, tmp_path / "cache", batch_size=2, shard_size=3, verbose=False)
    assert len(cache) == 7 and cache.feature_shape == (16, 4)
    assert len(cache.manifest["shards"]) == 3
    from sat_tf.data.images import load_image

    direct = encoder(np.stack([load_image(p, 16) for p in image_files]), training=False).numpy()
    np.testing.assert_allclose(cache.gather(np.arange(7)), direct, rtol=1e-2, atol=1e-3)  # stored as float16
    records = [CaptionRecord(str(k), "a b c", image_index=k) for k in range(7)]
    captions = encode_captions(records, CaptionTokenizer.from_corpus(["a b c"]))
    batch = next(iter(make_caption_dataset(cache, captions, 4, shuffle=False)))
    assert set(batch) == {"features", "tokens", "image_index"} and batch["features"].shape == (4, 16, 4)
    assert batch["image_index"].numpy().tolist() == [0, 1, 2, 3]  # which image each row's features are


def test_interrupted_extraction_resumes_without_redoing_shards(image_files, tmp_path, monkeypatch):
    encoder = _frozen_encoder()
    real_save, saves = cache_module.np.save, []

    def save_then_crash(f, array):
        saves.append(len(array))
        if len(saves) == 2:
            raise KeyboardInterrupt("killed during the second shard")
        real_save(f, array)

    monkeypatch.setattr(cache_module.np, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        extract_to_cache(encoder, image_files, tmp_path / "cache", shard_size=3, verbose=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["manifest.json", "shard-00000.npy"]
    with pytest.raises(StaleCacheError, match="did not finish"):
        FeatureCache(tmp_path / "cache")
    monkeypatch.setattr(cache_module.np, "save", real_save)
    saves.clear()
    resumed = extract_to_cache(encoder, image_files, tmp_path / "cache", shard_size=3, verbose=False)
    assert len(resumed) == 7 and len(resumed.manifest["shards"]) == 3


def test_stale_and_corrupt_caches_are_refused(image_files, tmp_path):
    extract_to_cache(_frozen_encoder(0), image_files, tmp_path / "cache", shard_size=4, verbose=False)
    with pytest.raises(StaleCacheError, match="different encoder fingerprint"):
        FeatureCache(tmp_path / "cache", encoder_identity(_frozen_encoder(1), image_files))
    with pytest.raises(StaleCacheError, match="different images checksum"):
        FeatureCache(tmp_path / "cache", encoder_identity(_frozen_encoder(0), image_files[::-1]))
    shard = tmp_path / "cache" / "shard-00001.npy"
    shard.write_bytes(shard.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(StaleCacheError, match="checksum mismatch"):
        FeatureCache(tmp_path / "cache", verify=True)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["identity"]["encoder"]["backbone"] == "small_cnn"


def test_trainable_encoder_is_refused(image_files, tmp_path):
    with pytest.raises(ValueError, match="frozen encoder"):
        extract_to_cache(Encoder("small_cnn", image_size=16, small_cnn_filters=(4,)), image_files, tmp_path / "c")


def test_truncated_shard_is_refused_and_reads_do_not_map_the_cache(image_files, tmp_path):
    encoder = _frozen_encoder()
    cache = extract_to_cache(encoder, image_files, tmp_path / "cache", batch_size=2, shard_size=3, verbose=False)
    expected = cache.gather(np.arange(len(cache)))
    np.testing.assert_array_equal(FeatureCache(tmp_path / "cache").gather([6, 0, 4]), expected[[6, 0, 4]])
    import os

    maps = open(f"/proc/{os.getpid()}/maps").read() if os.path.exists("/proc/self/maps") else ""
    assert "shard-" not in maps and ".npy" not in maps  # positioned reads, no memory maps
    shard = sorted((tmp_path / "cache").glob("*.npy"))[-1]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(StaleCacheError, match="truncated"):
        FeatureCache(tmp_path / "cache")
