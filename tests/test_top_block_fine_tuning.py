"""Fine-tuning the top blocks of a pretrained encoder from a cache of the activations entering them.

The model trained this way must stay one Captioner that captions raw images: its features from
images equal those computed through the cache, before and after training, and after a save/load.
"""

import numpy as np
import pytest
from PIL import Image

from sat_tf.data.feature_cache import FeatureCache, StaleCacheError
from sat_tf.data.pipeline import encode_captions
from sat_tf.data.records import CaptionRecord
from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.inference import GreedySampler, generate_captions
from sat_tf.inference.features import encoder_identity, extract_to_cache
from sat_tf.models.config import ModelConfig, build_captioner
from sat_tf.models.encoder import Encoder
from sat_tf.training import TrainConfig, TrainingData
from sat_tf.training.trainer import Trainer

IMAGE_SIZE = 64  # EfficientNet-Lite0 at 64 px: a 2x2 region grid, fast enough for a test
CAPTIONS = ["a red square", "a green square", "a red dog runs", "a green dog sits"]


def _images(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def test_cut_points_of_efficientnet_lite0():
    images = _images(2)
    for blocks, layer, shape in (
        (1, "head_conv", (2, 2, 320)),
        (2, "block15_expand_conv", (2, 2, 192)),
        (6, "block11_expand_conv", (4, 4, 112)),
    ):
        encoder = Encoder("efficientnet_lite0", image_size=IMAGE_SIZE, feature_layer="top", fine_tune_top_blocks=blocks)
        cached = encoder.cache_input(images)
        assert encoder.cache_layer == layer and tuple(cached.shape[1:]) == shape
        # the two halves compose to the whole network, exactly
        np.testing.assert_array_equal(encoder.features_from_cache(cached), encoder(images))
        trainable = {w.path.split("/")[-2] for w in encoder.trainable_weights}
        assert trainable and not any(name.endswith("_bn") for name in trainable)
        frozen_part = {id(w) for w in encoder.cached_part_weights}
        assert not frozen_part & {id(w) for w in encoder.trainable_weights}
    frozen = Encoder("efficientnet_lite0", image_size=IMAGE_SIZE, feature_layer="top")
    assert frozen.cache_layer is None and frozen.can_cache
    np.testing.assert_array_equal(frozen.cache_input(images), frozen(images))


@pytest.fixture
def image_files(tmp_path):
    paths = []
    for index, pixels in enumerate(_images(8, seed=3).astype(np.uint8)):
        path = tmp_path / f"img{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def _model_config() -> ModelConfig:
    return ModelConfig(
        backbone="efficientnet_lite0",
        weights="imagenet",
        feature_layer="top",
        image_size=IMAGE_SIZE,
        fine_tune_top_blocks=2,
        append_coordinates=False,
        embedding_dim=8,
        hidden_dim=16,
        attention_dim=8,
        dropout=0.0,
    )


def test_training_from_an_intermediate_cache_keeps_one_captioner_of_raw_images(image_files, tmp_path):
    config = _model_config()
    probe = config.build_encoder()
    cache = extract_to_cache(probe, image_files, tmp_path / "cache", verbose=False)
    assert cache.feature_shape == (2, 2, 192)
    records = [
        CaptionRecord(image_id=str(i), caption=CAPTIONS[i % 4], image_path=path, image_index=i)
        for i, path in enumerate(image_files)
    ]
    tokenizer = CaptionTokenizer.from_corpus(CAPTIONS)
    captions = encode_captions(records, tokenizer)
    learning_rate, scale = 1e-3, 0.1
    train_config = TrainConfig(
        batch_size=4,
        epochs=1,
        max_steps=1,
        learning_rate=learning_rate,
        encoder_learning_rate_scale=scale,
        log_every=1,
        clip_norm=None,
    )
    trainer = Trainer(
        lambda: build_captioner(config, tokenizer),
        TrainingData(cache, captions, IMAGE_SIZE),
        train_config,
        tmp_path / "run",
        verbose=False,
    )
    model = trainer.model
    top = model.encoder.trainable_variables
    before = {id(v): v.numpy().copy() for v in model.trainable_variables + model.encoder.cached_part_weights}
    trainer.fit()

    # Adam's first step moves each weight with a non-zero gradient by ~ its learning rate: the
    # decoder by 1e-3, the encoder's top by 1e-3 * 0.1; the frozen part not at all.
    def largest_step(variables):
        return max(float(np.abs(v.numpy() - before[id(v)]).max()) for v in variables)

    assert largest_step(model.decoder.trainable_variables) == pytest.approx(learning_rate, rel=1e-2)
    assert largest_step(top) == pytest.approx(learning_rate * scale, rel=1e-2)
    assert largest_step(model.encoder.cached_part_weights) == 0.0

    # the trained model from raw images == through the cache (float16 storage aside) ...
    images = np.stack([np.asarray(Image.open(p), np.float32) for p in image_files])
    from_images = model.encode(images).numpy()
    through_cache = model.features_from_cache(cache.gather(np.arange(8))).numpy()
    np.testing.assert_allclose(through_cache, from_images, atol=0.02)
    greedy = GreedySampler()
    assert (
        generate_captions(model, images=images, sampler=greedy, max_length=6).best().texts
        == generate_captions(model, features=cache.gather(np.arange(8)), sampler=greedy, max_length=6).best().texts
    )
    # ... and so does it after a save and load, whose cache identity still matches (only the
    # frozen part's weights decide the cache)
    import keras

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.encode(images), from_images, atol=1e-5)
    FeatureCache(tmp_path / "cache", encoder_identity(loaded.encoder, image_files))
    # a cache cut elsewhere is refused
    other = Encoder("efficientnet_lite0", image_size=IMAGE_SIZE, feature_layer="top", fine_tune_top_blocks=1)
    with pytest.raises(StaleCacheError, match="cache_layer"):
        FeatureCache(tmp_path / "cache", encoder_identity(other, image_files))


def test_trainable_backbone_cannot_be_cached(image_files, tmp_path):
    encoder = Encoder("efficientnet_lite0", image_size=IMAGE_SIZE, trainable_backbone=True)
    assert not encoder.can_cache
    with pytest.raises(ValueError, match="frozen encoder"):
        extract_to_cache(encoder, image_files, tmp_path / "cache", verbose=False)


def test_int8_calibration_inputs_of_a_model_with_a_fine_tuned_top():
    """The int8 export's representative inputs replay greedy captions from the photos themselves:
    region features are not the activations a fine-tuned top reads from a cache (the shipped
    presets could not be exported as int8 before)."""
    from sat_tf.export.tflite import PER_IMAGE_INPUTS, representative_inputs

    model = build_captioner(_model_config(), CaptionTokenizer.from_corpus(CAPTIONS))
    images = _images(2, seed=3)
    encoder_samples, step_samples = representative_inputs(model, images, max_length=5)
    assert [s["image"].shape for s in encoder_samples] == [(1, IMAGE_SIZE, IMAGE_SIZE, 3)] * 2
    greedy = generate_captions(model, images=images, max_length=5, sampler=GreedySampler()).best()
    assert len(step_samples) == int(np.sum(greedy.lengths))  # one step per token of each caption
    constants = model.decoder.step_constants(model.encode(images[:1]))
    for name in PER_IMAGE_INPUTS:
        np.testing.assert_allclose(step_samples[0][name], getattr(constants, name).numpy(), rtol=1e-5, atol=1e-5)
