"""`sat-tf extract`: cache a frozen encoder's features of a dataset (resumable)."""

from __future__ import annotations

import argparse

from sat_tf.cli.common import run_config

NAME, HELP = "extract", "cache a frozen encoder's features of a dataset (resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.models.config import ENCODER_FEATURE_SETTINGS
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--batch-size", type=int, default=32, help="images per encoder call (default: 32)")
    parser.add_argument("--shard-size", type=int, default=1024, help="images per cache file (default: 1024)")
    add_config_arguments(parser)
    add_section_flags(parser, "data", only=("captions", "image_dir", "split_list", "split", "data_root", "skip_bad"))
    add_section_flags(parser, "model", only=ENCODER_FEATURE_SETTINGS)


def run(args) -> None:
    from sat_tf.workflows import extract_split_features

    # Without a recipe or flags, extract with the pretrained encoder of the real-data recipes.
    config = run_config(
        args, base={"model": {"backbone": "efficientnet_lite0", "weights": "imagenet", "append_coordinates": False}}
    )
    cache = extract_split_features(
        config.model, config.data, args.cache_dir, batch_size=args.batch_size, shard_size=args.shard_size
    )
    print(f"{len(cache)} images -> {args.cache_dir} (features {cache.feature_shape}, float16)")
