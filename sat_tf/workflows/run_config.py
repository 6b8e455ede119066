"""A run described by one file: data, model, training, validation and decoding settings.

    {"data": {...}, "model": {...}, "training": {...}, "validation": {...}, "decoding": {...},
     "scst": {...}}

Each section is a dataclass, defined beside what it configures, whose fields are the config keys
(and the command line's flags): `DataConfig` (sat_tf.data.sources), `ModelConfig`
(sat_tf.models.config), `TrainConfig` (sat_tf.training.config), `ValidationConfig`
(sat_tf.evaluation.validation), `DecodingConfig` (sat_tf.inference.decoding_config),
`SelfCriticalConfig` (sat_tf.training.self_critical). A
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
from sat_tf.evaluation.validation import ValidationConfig
from sat_tf.inference.decoding_config import DecodingConfig
from sat_tf.models.config import ModelConfig
from sat_tf.training.config import TrainConfig
from sat_tf.training.self_critical import SelfCriticalConfig
from sat_tf.utils.atomic import write_json_atomic

RUN_CONFIG_FILE = "run_config.json"


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainConfig,
    "validation": ValidationConfig,
    "decoding": DecodingConfig,
    "scst": SelfCriticalConfig,
}


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
        return cls(
            **{
                name: _section(section_type, values.get(name, {}), f"{where}: {name}")
                for name, section_type in SECTIONS.items()
            }
        )

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
    """Checks a JSON value against a field's type (int, float, str, bool, a tuple of ints or of
    objects, or optional)."""
    allowed = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None))
        else (hint,)
    )
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
        if base is tuple and isinstance(value, list):
            item = (typing.get_args(kind) or (int,))[0]
            if all(isinstance(v, item) and not isinstance(v, bool) for v in value):
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


def resolve_run_config(
    recipe: str | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: dict | None = None,
    base: dict | None = None,
) -> RunConfig:
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
