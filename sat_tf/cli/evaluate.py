"""`sat-tf evaluate`: the standard caption metrics of a model on a split."""

from __future__ import annotations

import argparse
import json

from sat_tf.cli.common import add_model_argument, decoding_of, require_captions_for_a_preset, scoring_data

NAME, HELP = (
    "evaluate",
    "BLEU-1..4, METEOR, ROUGE-L, CIDEr (0-100) of generated captions; by default on the "
    "validation split of the run that trained --model",
)
DATA_FLAGS = (
    "captions",
    "image_dir",
    "split_list",
    "split",
    "data_root",
    "feature_cache",
    "num_images",
    "data_seed",
    "skip_bad",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    parser.add_argument(
        "--instances",
        help="a COCO instances JSON of the split's photos: also report where the "
        "attention of words naming an annotated object lands (grounding)",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--tokenization",
        choices=["auto", "ptb", "python"],
        default="auto",
        help="coco-caption's PTB tokenizer (needs Java) or Python; auto: PTB if Java is found",
    )
    parser.add_argument("--output", help="also write the report (scores, settings, every caption) as JSON")
    add_config_arguments(parser)
    add_section_flags(parser, "data", only=DATA_FLAGS)
    add_section_flags(parser, "decoding")


def run(args) -> None:
    from sat_tf.workflows import evaluate_captioner

    data = scoring_data(args, args.model[0])  # by default the run's own validation split
    require_captions_for_a_preset(args.model, data)
    report = evaluate_captioner(
        args.model,
        data,
        decoding_of(args),
        tokenization=args.tokenization,
        output=args.output,
        verbose=args.verbose,
        instances=args.instances,
    )
    shown = {k: v for k, v in report.items() if k not in ("captions", "data", "confidence", "not_sure")}
    print(json.dumps(shown, indent=2))
