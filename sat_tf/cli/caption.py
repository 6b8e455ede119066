"""`sat-tf caption`: caption image files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sat_tf.cli.common import add_model_argument, check_image_files

NAME, HELP = "caption", "caption image files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    parser.add_argument("images", nargs="+")
    add_model_argument(parser, note="; it takes several values, so give the photos before it")
    parser.add_argument(
        "--attention-plot",
        help="write the attention figure here (PNG); with several photos, one file each: "
        "NAME_0.png, NAME_1.png, ... (each printed)",
    )
    parser.add_argument(
        "--k-best",
        type=int,
        default=0,
        metavar="N",
        help="also print the N best captions of the beam (also in --output's JSON as 'candidates')",
    )
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of failing")
    parser.add_argument(
        "--tags",
        action="store_true",
        help="also print each photo's ImageNet tags (the words the encoder's classifier sees); "
        "captions use them per --tag-guidance (default here: the model's caption_tag_guidance, "
        "auto for models without everyday words)",
    )
    parser.add_argument(
        "--hide-not-sure",
        action="store_true",
        help="replace a caption the model is not sure of by what it does see ('not sure what this is; it looks "
        "like: elephant 87%%'), for alt text where no caption beats a wrong one; by default every caption is "
        "printed, and a 'not sure' one is marked with what the photo may show: "
        "'(confidence 0.31: not sure; it may show: elephant 87%%)'",
    )
    # every caption is shown by default now; the old switch still parses
    parser.add_argument("--always-caption", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", help="also write the captions as JSON (caption, confidence, k-best list, tags)")
    add_config_arguments(parser)
    add_section_flags(parser, "decoding")


def run(args) -> None:
    check_image_files(args.images, args.skip_bad)
    from sat_tf.data.images import load_image
    from sat_tf.inference.attention_plot import plot_attention
    from sat_tf.utils.atomic import write_json_atomic
    from sat_tf.workflows import caption_files, load_for_captioning
    from sat_tf.workflows.flags import section_overrides

    loaded = load_for_captioning(args.model, args.recipe, args.config, section_overrides(args), as_caption_command=True)
    captioned = caption_files(
        loaded.model,
        args.images,
        loaded.decoding,
        skip_bad=args.skip_bad,
        with_tags=args.tags,
        calibration=loaded.calibration,
        tags_when_not_sure=True,  # what a "not sure" photo may show
    )
    records = captioned.records()
    plots = attention_plot_paths(args.attention_plot, len(records)) if args.attention_plot else []
    best = captioned.candidates.best()
    for index, record in enumerate(records):
        print(caption_line(record, show_tags=args.tags, hide_not_sure=args.hide_not_sure and not args.always_caption))
        for rank, candidate in enumerate(record["candidates"][: args.k_best] if args.k_best else [], start=1):
            print(f"  {rank}. {candidate}")
        if plots:
            plot_attention(
                load_image(record["image"]),
                best.words(index),
                best.alphas[index],
                loaded.model.feature_grid,
                plots[index],
            )
            print(f"  attention plot: {plots[index]}")
    if captioned.skipped:
        print(
            f"skipped {len(captioned.skipped)} unreadable image(s): {'; '.join(captioned.skipped[:3])}", file=sys.stderr
        )
    if args.output:
        write_json_atomic(args.output, {"captions": records, "skipped": captioned.skipped})


def caption_line(record: dict, show_tags: bool = False, hide_not_sure: bool = False) -> str:
    """`path<TAB>caption<TAB>(confidence 0.31[: not sure; it may show: elephant 87%])[<TAB>[tags: ...]]`;
    a "not sure" caption is replaced by what the photo may show only with `hide_not_sure`
    (`sat_tf_edge.confidence.shown_text`)."""
    from sat_tf_edge.confidence import confidence_text, shown_text

    tags = [(tag["word"], tag["probability"]) for tag in record["tags"]]
    text = shown_text(record["caption"], record["not_sure"], tags, hide_not_sure)
    confidence = confidence_text(record["confidence"], record["not_sure"], [] if hide_not_sure else tags)
    line = f"{record['image']}\t{text}\t{confidence}"
    if show_tags:
        shown = ", ".join(f"{tag['word']} {tag['probability']:.2f}" for tag in record["tags"]) or "none"
        line += f"\t[tags: {shown}{'; caption guided by the tags' if record['guided_by_tags'] else ''}]"
    return line


def attention_plot_paths(requested: str, count: int) -> list[Path]:
    """The figure for one photo goes where asked; for several, `<stem>_<i><suffix>` beside it."""
    path = Path(requested)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{index}{path.suffix or '.png'}") for index in range(count)]
