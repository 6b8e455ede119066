"""What several commands share: the default model, the model-reference flag, settings from
--recipe/--config/flags, and the early checks of photo paths."""

from __future__ import annotations

import argparse

DEFAULT_PRESET = "everyday_selftrained_lite0_448"  # the shipped preset every command uses without --model


def add_model_argument(parser: argparse.ArgumentParser, role: str = "", several: bool = True, note: str = "") -> None:
    """`--model`: a `.keras` file, a run folder or a preset name (several: an ensemble), defaulting
    to the shipped preset."""
    if several:
        parser.add_argument(
            "--model",
            nargs="+",
            default=[DEFAULT_PRESET],
            help=f"{role}model.keras, a run folder (its best_model.keras) or a preset name; several: an ensemble "
            f"(default: the pretrained preset {DEFAULT_PRESET}){note}",
        )
    else:
        parser.add_argument(
            "--model",
            default=DEFAULT_PRESET,
            help=f"{role}model.keras, a run folder or a preset name (default: the pretrained preset "
            f"{DEFAULT_PRESET}){note}",
        )


def run_config(args, base: dict | None = None):
    """Library defaults <- the command's own defaults (`base`) <- --recipe <- --config <- flags."""
    from sat_tf.workflows.flags import section_overrides
    from sat_tf.workflows.run_config import resolve_run_config

    return resolve_run_config(args.recipe, args.config, section_overrides(args), base=base)


def data_of(args):
    """The data section from --recipe, --config and the data flags (nothing else of the run)."""
    from sat_tf.workflows.flags import section_overrides
    from sat_tf.workflows.run_config import resolve_run_config

    return resolve_run_config(args.recipe, args.config, {"data": section_overrides(args).get("data", {})}).data


def names_data(args) -> bool:
    """Whether --recipe, --config or a data flag names the data to use."""
    from sat_tf.workflows.flags import section_overrides

    return "data" in section_overrides(args) or args.recipe is not None or args.config is not None


def scoring_data(args, model_reference):
    """The split to score a model on: the data the flags name, else the validation split of the run
    that trained it (with its feature cache folder)."""
    from sat_tf.workflows.evaluate import default_evaluation_data

    data = None if names_data(args) else default_evaluation_data(model_reference)
    return data if data is not None else data_of(args)


def decoding_of(args):
    """Decoding settings of --model's first model <- --recipe <- --config <- flags."""
    from sat_tf.workflows import decoding_for
    from sat_tf.workflows.flags import section_overrides

    return decoding_for(args.model[0], args.recipe, args.config, section_overrides(args))


def require_captions_for_a_preset(models: list[str], data) -> None:
    """A preset was trained on real photos: scoring it on the generated shapes (the data settings'
    default) means nothing, so the photos must be named."""
    from sat_tf.errors import ConfigError
    from sat_tf.workflows.models import is_preset

    if data.is_synthetic and is_preset(models[0]):
        raise ConfigError(
            f"{models[0]} is a pretrained preset: name the photos and their captions "
            "(--captions FILE [--image-dir DIR] [--split-list FILE], or --recipe/--config with a data section)"
        )


def photos_before_any_option(argv: list[str]) -> list[str]:
    """`sat-tf caption a.jpg b.jpg --model ...`: the arguments between the command and its first
    option are photos for certain (no option precedes them to take them as its value)."""
    if not argv or argv[0] != "caption":
        return []
    photos = []
    for argument in argv[1:]:
        if argument.startswith("-"):
            break
        photos.append(argument)
    return photos


def check_image_files(paths: list[str], skip_bad: bool, more_may_follow: bool = False) -> None:
    """Reports a missing or empty path, or a folder without image files, at once, before the model
    loads (seconds). With `skip_bad`, only when every photo is bad (unless `more_may_follow`:
    other photos may come)."""
    from sat_tf.errors import ConfigError
    from sat_tf_edge.photo_files import source_problem

    problems = [f"{path}: {problem}" for path in paths if (problem := source_problem(path)) is not None]
    all_bad = len(problems) == len(paths) and not more_may_follow
    if problems and (not skip_bad or all_bad):
        raise ConfigError(f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
