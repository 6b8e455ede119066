"""Presets: a captioner saved as only what is not installed (decoder + fine-tuned encoder blocks),
rebuilt with the ImageNet encoder from its package; int8/float16/float32 weight storage."""

import json

import numpy as np
import pytest

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.inference import generate_captions
from sat_tf.models.captioner import Captioner
from sat_tf.models.config import ModelConfig, build_captioner
from sat_tf.models.preset import PresetError, load_preset, preset_info, preset_names, save_preset

CAPTIONS = ["a dog runs on the grass", "a man rides a red bike", "two children play in the water"]


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(
        backbone="efficientnet_lite0",
        weights="imagenet",
        feature_layer="top",
        image_size=64,
        fine_tune_top_blocks=2,
        append_coordinates=False,
        embedding_dim=8,
        hidden_dim=16,
        attention_dim=8,
        dropout=0.0,
    )
    model = build_captioner(config, CaptionTokenizer.from_corpus(CAPTIONS))
    rng = np.random.default_rng(0)
    for variable in model.decoder.weights + model.encoder.trainable_weights:  # "trained": not the initial values
        variable.assign(variable.numpy() + rng.normal(0, 0.05, variable.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)


def test_float32_preset_is_the_model(model, images, tmp_path):
    folder = save_preset(
        model, tmp_path / "p32", decoding={"beam_size": 3}, metrics={"BLEU-4": 1.0}, weight_format="float32"
    )
    loaded = Captioner.from_preset(str(folder))
    for a, b in zip(model.weights, loaded.weights):  # the encoder's frozen part came from the package
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert loaded.tokenizer.vocabulary == model.tokenizer.vocabulary
    assert (
        generate_captions(loaded, images=images, max_length=8).best().texts
        == generate_captions(model, images=images, max_length=8).best().texts
    )
    info = preset_info(folder)
    assert info["decoding"] == {"beam_size": 3} and info["metrics"] == {"BLEU-4": 1.0}
    # wherever a model path is taken, a preset folder works too, with its own decoding settings
    from sat_tf.workflows.model_reference import resolve_model
    from sat_tf.workflows.models import load_captioner

    assert load_captioner(folder).tokenizer.vocabulary == model.tokenizer.vocabulary
    assert resolve_model(folder).decoding.beam_size == 3


def test_loading_for_captioning_reads_a_preset_once(model, images, tmp_path, monkeypatch):
    import sat_tf.models.preset as preset_module
    from sat_tf.workflows import load_for_captioning

    folder = save_preset(model, tmp_path / "p", decoding={"beam_size": 2, "length_penalty": 0.5})
    reads = []
    original = preset_module.preset_info
    monkeypatch.setattr(preset_module, "preset_info", lambda *a: reads.append(a) or original(*a))
    import sat_tf.workflows.model_reference as resolver_module  # the one place references are read

    monkeypatch.setattr(resolver_module, "preset_info", preset_module.preset_info)
    loaded = load_for_captioning([str(folder)], overrides={"decoding": {"max_length": 7}}, as_caption_command=True)
    assert len(reads) == 1
    assert (loaded.decoding.beam_size, loaded.decoding.length_penalty) == (2, 0.5)  # the preset's own
    assert loaded.decoding.max_length == 7 and loaded.decoding.tag_guidance == "auto"  # no caption_tag_guidance
    assert loaded.model.members() == [loaded.model]
    explicit = load_for_captioning(
        [str(folder)], overrides={"decoding": {"tag_guidance": "off"}}, as_caption_command=True
    )
    assert explicit.decoding.tag_guidance == "off"  # a setting given wins over the command's default
    pair = load_for_captioning([str(folder), str(folder)])
    assert len(pair.model.members()) == 2 and pair.decoding.beam_size == 2


def test_the_caption_command_decodes_with_the_models_own_tag_guidance(model, tmp_path):
    from sat_tf.workflows import load_for_captioning

    knows_everyday_words = save_preset(model, tmp_path / "q", decoding={"caption_tag_guidance": "off"})
    assert load_for_captioning([str(knows_everyday_words)], as_caption_command=True).decoding.tag_guidance == "off"
    flickr_only = save_preset(model, tmp_path / "p", decoding={"beam_size": 2})
    assert load_for_captioning([str(flickr_only)], as_caption_command=True).decoding.tag_guidance == "auto"
    assert load_for_captioning([str(flickr_only)]).decoding.tag_guidance == "off"  # evaluate, export: the model's


def test_int8_and_float16_presets_round_within_their_step(model, images, tmp_path):
    stored = model.decoder.weights + model.encoder.trainable_weights
    for weight_format in ("int8", "float16"):
        folder = save_preset(model, tmp_path / weight_format, decoding={}, weight_format=weight_format)
        loaded = load_preset(folder)
        for original, restored in zip(stored, loaded.decoder.weights + loaded.encoder.trainable_weights):
            value, back = original.numpy(), restored.numpy()
            if weight_format == "int8" and value.ndim >= 2:
                # one scale per word vector (embedding rows), else per output channel (last axis)
                reduce = tuple(range(1, value.ndim)) if "embedding" in original.path else tuple(range(value.ndim - 1))
                per_channel = np.abs(value).max(axis=reduce, keepdims=True) / 127.0
                assert np.all(np.abs(back - value) <= per_channel / 2 + 1e-7), original.path
            else:
                np.testing.assert_allclose(back, value, rtol=1e-3, atol=1e-4, err_msg=original.path)
    int8_size = (tmp_path / "int8" / "weights.npz").stat().st_size
    assert int8_size < 0.6 * (tmp_path / "float16" / "weights.npz").stat().st_size


def test_bad_presets_are_named(model, tmp_path):
    with pytest.raises(PresetError, match="unknown preset 'nope'"):
        load_preset("nope")
    folder = save_preset(model, tmp_path / "p", decoding={})
    info = json.loads((folder / "config.json").read_text())
    info["variables"] = info["variables"][:-1]
    (folder / "config.json").write_text(json.dumps(info))
    with pytest.raises(PresetError, match="holds"):
        load_preset(folder)
    info["format"] = "other/2"
    (folder / "config.json").write_text(json.dumps(info))
    with pytest.raises(PresetError, match="not a sat_tf_preset/1"):
        load_preset(folder)
    assert isinstance(preset_names(), list)
