"""`sat-tf calibrate`: fit a model's learned confidence on its validation photos."""

from __future__ import annotations

import argparse

from sat_tf.cli.common import names_data, scoring_data

NAME, HELP = (
    "calibrate",
    "fit the model's confidence (a calibrated probability that a caption is better than the median) on its "
    "validation split, with its 'not sure' threshold; kept beside the model (run folder or preset folder)",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.evaluation.calibration import PROMISED_SHARE_GOOD
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    parser.add_argument(
        "--model", required=True, help="a run folder (or a .keras file in one), or a preset folder to calibrate"
    )
    parser.add_argument(
        "--training-photos",
        type=int,
        default=1000,
        help="training photos the novelty of a photo is measured against (a sample; default: 1000)",
    )
    parser.add_argument(
        "--training-image-dir",
        help="take them from this folder of images (default: the training split of the run's data settings)",
    )
    parser.add_argument(
        "--promise",
        type=float,
        default=PROMISED_SHARE_GOOD,
        help="the 'not sure' threshold keeps at least this share of good captions among those shown without "
        f"the flag (default: {PROMISED_SHARE_GOOD})",
    )
    add_config_arguments(parser)
    add_section_flags(parser, "data", only=("captions", "image_dir", "split_list", "split", "data_root"))


def run(args) -> None:
    from sat_tf.errors import ConfigError
    from sat_tf.workflows.calibration import calibrate_captioner, save_calibration, training_photo_sample
    from sat_tf.workflows.caption import load_for_captioning
    from sat_tf.workflows.model_reference import resolve_model

    dev = scoring_data(args, args.model)
    if dev.is_synthetic and not names_data(args):
        raise ConfigError(f"{args.model}: no validation split found: name the dev photos (--captions ...)")
    trained = resolve_model(args.model).run_config
    loaded = load_for_captioning([args.model], as_caption_command=True)
    if args.training_image_dir:
        training = _images_in(args.training_image_dir, args.training_photos)
    elif trained is not None and not trained.data.is_synthetic:
        training = training_photo_sample(trained.data, args.training_photos, loaded.model.encoder.image_size)
    else:
        raise ConfigError(f"{args.model}: no training data settings: give --training-image-dir")
    fitted = calibrate_captioner(loaded, {"validation": dev}, training, share_good=args.promise)
    calibration = fitted.calibration
    assert calibration is not None
    written = save_calibration(args.model, calibration)
    rates = fitted.flag_rates["validation"]
    print(
        f"{written}: confidence from {', '.join(calibration.signals)}; cross-validated AUROC "
        f"{fitted.out_of_fold_auroc['validation']:.3f}; 'not sure' below {calibration.not_sure_below:.3f} "
        f"({rates['not_sure_on_good']:.0%} of the better half, {rates['not_sure_on_rest']:.0%} of the worse half)"
    )


def _images_in(folder: str, count: int) -> list[str]:
    from pathlib import Path

    from sat_tf.errors import ConfigError

    paths = sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise ConfigError(f"{folder}: no .jpg or .png images")
    return paths[:: max(1, len(paths) // count)][:count]
