"""Run configs: recipes load, files round-trip, flags override, and bad keys are named."""

import argparse
import json

import pytest

from sat_tf.errors import ConfigError
from sat_tf.models.config import ModelConfig, build_captioner
from sat_tf.workflows.flags import add_section_flags, section_overrides
from sat_tf.workflows.run_config import RunConfig, recipe_names, resolve_run_config


def test_every_recipe_loads_and_round_trips(tmp_path):
    assert {"flickr8k-lite0", "shapes-demo"} <= set(recipe_names())
    for name in recipe_names():
        config = resolve_run_config(name)
        config.save(tmp_path / f"{name}.json")
        again = resolve_run_config(config_file=tmp_path / f"{name}.json")
        assert again == config
        assert RunConfig.from_dict(json.loads((tmp_path / f"{name}.json").read_text())) == config


def test_precedence_defaults_recipe_file_flags(tmp_path):
    assert resolve_run_config().model.hidden_dim == ModelConfig().hidden_dim == 512
    assert resolve_run_config("shapes-demo").model.hidden_dim == 256
    (tmp_path / "run.json").write_text(json.dumps({"model": {"hidden_dim": 128}, "training": {"epochs": 3}}))
    from_file = resolve_run_config("shapes-demo", tmp_path / "run.json")
    assert from_file.model.hidden_dim == 128 and from_file.model.embedding_dim == 64 and from_file.training.epochs == 3
    parser = argparse.ArgumentParser()
    for section in ("data", "model", "training", "validation", "decoding"):
        add_section_flags(parser, section)
    args = parser.parse_args(
        [
            "--hidden-dim",
            "32",
            "--cnn-filters",
            "4,8",
            "--no-append-coordinates",
            "--val-split-list",
            "dev.txt",
            "--max-vocabulary",
            "none",
            "--beam-size",
            "5",
        ]
    )
    overrides = section_overrides(args)
    assert overrides == {
        "model": {"hidden_dim": 32, "cnn_filters": [4, 8], "append_coordinates": False},
        "validation": {"split_list": "dev.txt"},
        "data": {"max_vocabulary": None},
        "decoding": {"beam_size": 5},
    }
    final = resolve_run_config("shapes-demo", tmp_path / "run.json", overrides)
    assert final.model.hidden_dim == 32 and final.model.cnn_filters == (4, 8) and final.training.epochs == 3
    assert final.validation.split_list == "dev.txt" and final.decoding.beam_size == 5


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="unknown key\\(s\\) hiden_dim"):
        RunConfig.from_dict({"model": {"hiden_dim": 3}})
    with pytest.raises(ConfigError, match='model.dropout: expected float, got "high"'):
        RunConfig.from_dict({"model": {"dropout": "high"}})
    with pytest.raises(ConfigError, match="decoding.beam_size must be >= 1"):
        RunConfig.from_dict({"decoding": {"beam_size": 0}})
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        resolve_run_config("nope")


def test_one_builder_gives_the_configured_model():
    from sat_tf.data.tokenizer import CaptionTokenizer

    tokenizer = CaptionTokenizer(["a", "b"])
    model = build_captioner(
        ModelConfig(
            image_size=32,
            cnn_filters=(4, 8),
            embedding_dim=6,
            hidden_dim=10,
            attention_dim=5,
            dropout=0.1,
            attention="hard",
            penalty_weight=0.5,
        ),
        tokenizer,
    )
    decoder = model.decoder
    assert (decoder.embedding_dim, decoder.hidden_dim, decoder.attention_dim) == (6, 10, 5)
    assert decoder.attention_mode == "hard" and decoder.dropout_rate == 0.1 and model.penalty_weight == 0.5
    assert model.encoder.small_cnn_filters == (4, 8) and model.encoder.image_size == 32
    assert model.feature_grid == (8, 8)  # two stride-2 blocks over 32 px


def test_a_rule_is_written_once_and_named_where_it_is_broken():
    from sat_tf.models.captioner import Captioner
    from sat_tf.models.decoder import AttentionDecoder

    with pytest.raises(ConfigError, match=r"^model\.attention must be one of soft, hard; got 'x'$"):
        ModelConfig(attention="x")
    with pytest.raises(ValueError, match=r"^attention_mode must be one of soft, hard; got 'x'$"):
        AttentionDecoder(10, attention_mode="x")
    with pytest.raises(ConfigError, match=r"^model\.location_samples must be >= 2 with the leave-one-out"):
        ModelConfig(hard_baseline="leave_one_out", location_samples=1)
    with pytest.raises(ValueError, match=r"^location_samples must be >= 2 with the leave-one-out"):
        Captioner(None, None, None, hard_baseline="leave_one_out", location_samples=1)


def test_each_section_lives_beside_what_it_configures():
    from sat_tf.data.sources import DataConfig
    from sat_tf.evaluation.validation import ValidationConfig
    from sat_tf.inference.decoding_config import DecodingConfig
    from sat_tf.training.config import TrainConfig
    from sat_tf.training.self_critical import SelfCriticalConfig

    config = RunConfig()
    for section, kind in (
        ("data", DataConfig),
        ("model", ModelConfig),
        ("training", TrainConfig),
        ("validation", ValidationConfig),
        ("decoding", DecodingConfig),
        ("scst", SelfCriticalConfig),
    ):
        assert type(getattr(config, section)) is kind
