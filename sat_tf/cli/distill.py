"""`sat-tf distill`: a teacher's captions of a split, for a student to train on."""

from __future__ import annotations

import argparse

from sat_tf.cli.common import add_model_argument, data_of, decoding_of, require_captions_for_a_preset

NAME, HELP = (
    "distill",
    "caption a split with a teacher (an ensemble: several --model) into a .jsonl caption file that "
    "a student trains on (sequence-level knowledge distillation)",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    add_model_argument(parser, role="the teacher: ")
    parser.add_argument("--output", required=True, help="the .jsonl caption file to write")
    parser.add_argument(
        "--with-references", action="store_true", help="also keep the split's own captions beside the teacher's"
    )
    add_config_arguments(parser)
    add_section_flags(
        parser, "data", only=("captions", "image_dir", "split_list", "split", "data_root", "feature_cache")
    )
    add_section_flags(parser, "decoding")


def run(args) -> None:
    from sat_tf.workflows.distill import write_distillation_captions

    data = data_of(args)
    require_captions_for_a_preset(args.model, data)
    captions = write_distillation_captions(
        args.model, data, decoding_of(args), args.output, args.with_references, verbose=args.verbose
    )
    print(f"{args.output}: the teacher's captions of {len(captions)} images")
