"""A run described by one file: data, model, training, validation and decoding settings.

    {"data": {...}, "model": {...}, "training": {...}, "validation": {...}, "decoding": {...},
     "scst": {...}}

Each section is a dataclass whose fields are the config keys (and the command line's flags). A
config is built from a shipped recipe (`recipe_names()`), a JSON file, or both (the file's keys
override the recipe's), then from flags; every run folder keeps the resolved config it ran with
(`run_config.json`), so `sat-tf train --config runs/x/run_config.json` repeats the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from importlib import resources
from pathlib import Path

from sat_tf.data.sources import DataConfig
from sat_tf.errors import ConfigError
from sat_tf.models.config import ModelConfig
from sat_tf.training.config import TrainConfig
from sat_tf.utils.atomic import write_json_atomic

RUN_CONFIG_FILE = "run_config.json"


@dataclasses.dataclass
class ValidationConfig:
    """Held-out data for model selection (the paper selects on validation BLEU).

    Args:
        captions: validation caption file (same formats as data.captions); None: held-out
            generated images when training on generated data, else no validation.
        image_dir: folder of the validation images (default: data.image_dir).
        split_list: Flickr split list of the validation images.
        split: Karpathy split used for validation.
        feature_cache: features of the validation images (a folder, or "auto" to extract them).
        num_images: held-out generated images (default: a tenth of data.num_images, at least 64).
    """

    captions: str | None = None
    image_dir: str | None = None
    split_list: str | None = None
    split: str = "val"
    feature_cache: str | None = None
    num_images: int | None = None


@dataclasses.dataclass
class DecodingConfig:
    """How captions are decoded by `caption`, `evaluate` and validation.

    Args:
        beam_size: 1 is greedy decoding.
        length_penalty: beam search ranks by log p / length**length_penalty.
        max_length: most tokens per caption, `<end>` included.
        forbid_unknown: never emit `<unk>`.
        decode_batch_size: images decoded per compiled call.
        no_repeat_ngram_size: n > 0: no caption repeats an n-gram ("on a park on a park"); 0: off.
            3 by default: on Flickr8k dev it removes the 2.1% of captions that repeated a trigram
            and costs nothing (`benchmarks/ngram_blocking.py`).
        tag_guidance: "off", "on" or "auto": make captions contain a word of the encoder's
            ImageNet tags (EfficientNet-Lite encoders; see `sat_tf.inference.tag_guidance`).
            `sat-tf caption` uses "auto" unless told otherwise.
        tag_probability: "on": tags at least this probable constrain the caption.
        tag_auto_probability: "auto": a tag at least this probable that the free caption does not
            name makes that caption constrained.
    """

    beam_size: int = 3
    length_penalty: float = 0.0
    max_length: int = 20
    forbid_unknown: bool = True
    decode_batch_size: int = 64
    no_repeat_ngram_size: int = 3
    tag_guidance: str = "off"
    tag_probability: float = 0.3
    tag_auto_probability: float = 0.5

    def __post_init__(self):
        if self.beam_size < 1:
            raise ConfigError(f"decoding.beam_size must be >= 1; got {self.beam_size}")
        if self.max_length < 1:
            raise ConfigError(f"decoding.max_length must be >= 1; got {self.max_length}")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"decoding.no_repeat_ngram_size must be >= 0; got {self.no_repeat_ngram_size}")
        try:
            self.guidance()
        except ValueError as exc:
            raise ConfigError(f"decoding: {exc}") from None

    def guidance(self):
        """The tag-guidance settings as `sat_tf.inference.tag_guidance.TagGuidance`."""
        from sat_tf.inference.tag_guidance import TagGuidance

        return TagGuidance(self.tag_guidance, self.tag_probability, self.tag_auto_probability)

    def sampler(self):
        from sat_tf.inference import BeamSampler, GreedySampler

        return GreedySampler() if self.beam_size == 1 else BeamSampler(self.beam_size, self.length_penalty)


@dataclasses.dataclass
class SelfCriticalConfig:
    """Self-critical sequence training (Rennie et al. 2017) on CIDEr-D, after cross-entropy.

    Args:
        init_from: the cross-entropy model to fine-tune (a `.keras` file or its run folder); set,
            `sat-tf train` runs self-critical training (one record per image, model selection on
            validation CIDEr) with the training section's optimizer settings.
        num_samples: captions sampled per image (k).
        baseline: "leave_one_out" (mean reward of the image's other samples), "greedy" (the
            greedy caption's reward) or "none".
        max_length: most tokens per sampled caption.
    """

    init_from: str | None = None
    num_samples: int = 5
    baseline: str = "leave_one_out"
    max_length: int = 16

    def __post_init__(self):
        if self.baseline not in ("leave_one_out", "greedy", "none"):
            raise ConfigError(f"scst.baseline must be leave_one_out, greedy or none; got '{self.baseline}'")
        if self.num_samples < 1 or (self.baseline == "leave_one_out" and self.num_samples < 2):
            raise ConfigError(f"scst.num_samples must be >= 2 with the leave-one-out baseline; got {self.num_samples}")


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "training": TrainConfig,
                             "validation": ValidationConfig, "decoding": DecodingConfig, "scst": SelfCriticalConfig}


@dataclasses.dataclass
class RunConfig:
    """Every setting of a run; see the section classes for the keys."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)
    scst: SelfCriticalConfig = dataclasses.field(default_factory=SelfCriticalConfig)

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> "RunConfig":
        """Builds a config from nested dicts; unknown sections or keys are errors naming them."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: expected a JSON object with sections {', '.join(SECTIONS)}")
        unknown = sorted(set(values) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; sections are {', '.join(SECTIONS)}")
        return cls(**{name: _section(section_type, values.get(name, {}), f"{where}: {name}")
                      for name, section_type in SECTIONS.items()})

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())


def _section(section_type: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected an object of settings")
    fields = {f.name for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(section_type)
    checked = {key: _check_type(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        return section_type(**checked)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_type(value, hint, where: str):
    """Checks a JSON value against a field's type (int, float, str, bool, tuple, or optional)."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"),
                                                                                      "UnionType", None)) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{where}: may not be null")
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is str and isinstance(value, str):
            return value
        if base is tuple and isinstance(value, list) and all(isinstance(v, int) for v in value):
            return tuple(value)
    names = " or ".join(getattr(typing.get_origin(k) or k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{where}: expected {names}, got {json.dumps(value)}")


def recipe_names() -> list[str]:
    """The recipes shipped with the package (`sat-tf train --recipe NAME`)."""
    folder = resources.files("sat_tf.workflows") / "recipes"
    return sorted(p.name[: -len(".json")].replace("_", "-") for p in folder.iterdir() if p.name.endswith(".json"))


def read_json_file(path: str | os.PathLike, what: str = "config") -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def load_recipe(name: str) -> dict:
    """A shipped recipe's settings (nested dicts)."""
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe '{name}'; recipes: {', '.join(recipe_names())}")
    resource = resources.files("sat_tf.workflows") / "recipes" / f"{name.replace('-', '_')}.json"
    return json.loads(resource.read_text(encoding="utf-8"))


def merge(base: dict, override: dict) -> dict:
    """Section-wise merge: keys of `override` replace those of `base`."""
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in override.items():
        if isinstance(values, dict) and isinstance(merged.get(name), dict):
            merged[name].update(values)
        else:
            merged[name] = values
    return merged


def resolve_run_config(recipe: str | None = None, config_file: str | os.PathLike | None = None,
                       overrides: dict | None = None, base: dict | None = None) -> RunConfig:
    """Library defaults <- base <- recipe <- config file <- overrides (for example command-line flags)."""
    values: dict = dict(base or {})
    where = "defaults"
    if recipe is not None:
        values, where = merge(values, load_recipe(recipe)), f"recipe {recipe}"
    if config_file is not None:
        values, where = merge(values, read_json_file(config_file)), str(config_file)
    if overrides:
        values = merge(values, overrides)
    return RunConfig.from_dict(values, where)
