"""`sat-tf caption`: caption photos, folders of photos and lists of them, as they stream."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from sat_tf.cli.common import DEFAULT_PRESET, add_model_argument, check_image_files

NAME, HELP = "caption", "caption photos (files, folders, lists of paths)"


FAST_PATH_NOTE = (
    "Fast path: with a shipped preset that needs no tag guidance (the default does not), photos, folders, "
    "--list, --output, --resume, --k-best, --hide-not-sure, --skip-bad, --photos-per-batch, --workers and "
    "--no-progress run on the preset's float32 TFLite pair without starting TensorFlow (well under a "
    "second for a first caption; up to 128 photos, past which TensorFlow's batches are faster), with the "
    "same captions, confidences and output; the first such run "
    "builds the pair into ~/.cache/sat_tf ($SAT_TF_CACHE). --tags, --attention-plot, --recipe, --config, "
    "decoding flags and other models need TensorFlow and take its path; SAT_TF_NO_FAST_PATH=1 always does."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    parser.epilog = FAST_PATH_NOTE
    parser.add_argument(
        "images", nargs="*", help="photos, and folders searched recursively for image files (.jpg, .png, ...)"
    )
    parser.add_argument(
        "--list",
        action="append",
        default=[],
        metavar="FILE",
        help="a file of photo paths, one a line ('#' starts a comment; relative to the file's folder); may repeat",
    )
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
    parser.add_argument(
        "--output",
        help="also write the captions: to a .jsonl file one record per photo as it is captioned (caption, "
        "confidence, not_sure, k-best list, tags; an unreadable photo with its 'error'), which --resume "
        "continues; to a .json file all of them at the end",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue a .jsonl --output: caption only the photos it does not hold"
    )
    parser.add_argument("--photos-per-batch", type=int, default=32, help="photos decoded and captioned together")
    parser.add_argument("--workers", type=int, default=2, help="threads decoding photos while the model captions")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal)")
    beam = parser.add_argument_group("many machines (Apache Beam; pip install '.[beam]')")
    beam.add_argument(
        "--runner",
        help="caption with an Apache Beam pipeline on this runner (DirectRunner, FlinkRunner, DataflowRunner, ...) "
        "into the .jsonl --output; photos may be paths or glob patterns on any filesystem Beam reads (gs://...)",
    )
    beam.add_argument(
        "--pipeline-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="a Beam pipeline option, for example --pipeline-option=--direct_num_workers=2 or "
        "--pipeline-option=--project=my-project; may repeat",
    )
    beam.add_argument(
        "--pair",
        help="the TFLite pair the workers run (a folder on any Beam filesystem, from sat-tf export --tflite-dir); "
        "default: the model's float32 pair, built here (a shipped preset's is the fast path's, cached)",
    )
    add_config_arguments(parser)
    add_section_flags(parser, "decoding")


def run(args) -> None:
    if args.runner:
        run_on_beam(args)
        return
    photos = photos_of(args)
    from sat_tf.errors import ConfigError
    from sat_tf.utils.atomic import write_json_atomic
    from sat_tf.utils.json_lines import JsonLinesOutput
    from sat_tf.workflows import caption_photos, load_for_captioning
    from sat_tf.workflows.flags import section_overrides

    streaming = bool(args.output) and args.output.endswith(".jsonl")
    if args.resume and not streaming:
        raise ConfigError("--resume continues a .jsonl --output; name one")
    output = JsonLinesOutput(args.output, resume=args.resume) if streaming else None
    todo = [photo for photo in photos if output is None or photo not in output.done]
    loaded = load_for_captioning(args.model, args.recipe, args.config, section_overrides(args), as_caption_command=True)
    plots = attention_plot_paths(args.attention_plot, len(todo)) if args.attention_plot else []
    shown = 0

    def show(batch) -> None:
        nonlocal shown
        show_batch(args, loaded.model, batch, plots[shown : shown + len(batch.paths)])
        shown += len(batch.paths)
        progress.update(len(batch.paths) + len(batch.unreadable))

    with progress_bar(len(todo), disable=args.no_progress) as progress:
        try:
            done = caption_photos(
                loaded,
                todo,
                output,
                # a photo named on the command line must be readable unless --skip-bad; folders and lists may not be
                must_read=frozenset() if args.skip_bad else frozenset(p for p in args.images if not os.path.isdir(p)),
                photos_per_batch=args.photos_per_batch,
                workers=args.workers,
                with_tags=args.tags,
                on_batch=show,
            )
        finally:
            if output is not None:
                output.close()
    if done.skipped:
        print(f"skipped {len(done.skipped)} unreadable image(s): {'; '.join(done.skipped[:3])}", file=sys.stderr)
    if args.output and not streaming:
        write_json_atomic(args.output, {"captions": done.records, "skipped": done.skipped})
    if getattr(args, "build_fast_path", None):  # a request the fast path can take: ready it for next time
        from sat_tf.utils.edge_cache import preset_pair_dir
        from sat_tf.workflows.fast_path import prepare_fast_path

        folder = preset_pair_dir(args.build_fast_path)
        if folder is not None and not folder.is_dir():
            print(f"sat-tf caption: preparing the fast path for the next runs, once ({folder})", file=sys.stderr)
            prepare_fast_path(args.build_fast_path, loaded)


def run_on_beam(args) -> None:
    """`--runner`: the Beam pipeline (`sat_tf_edge.beam`) over the model's TFLite pair."""
    import tempfile

    from sat_tf.errors import ConfigError

    if not (args.output and args.output.endswith(".jsonl")) or args.resume:
        raise ConfigError("--runner writes a new .jsonl --output (without --resume)")
    if args.attention_plot or args.tags:
        raise ConfigError("--runner runs the TFLite pair: no --attention-plot or --tags")
    try:
        from sat_tf_edge.beam import run_caption_pipeline
    except ImportError as exc:
        raise ConfigError(f"--runner needs Apache Beam: pip install '.[beam]' ({exc})") from None
    remote = [p for p in args.images if "://" in p or any(c in p for c in "*?[")]
    if remote and len(remote) < len(args.images):
        raise ConfigError("--runner takes either local photos and folders or patterns/URLs, not both")
    photos = list(args.images) if remote else photos_of(args)
    pair = args.pair or _built_pair(args, tempfile.mkdtemp(prefix="sat_tf_pair_"))
    run_caption_pipeline(photos, pair, args.output, [f"--runner={args.runner}", *args.pipeline_option])
    print(f"{args.output}: captions of {len(photos)} photo source(s), by {args.runner}")


def _built_pair(args, scratch: str) -> str:
    from sat_tf.utils.edge_cache import preset_pair_dir
    from sat_tf.workflows import load_for_captioning
    from sat_tf.workflows.fast_path import pair_for
    from sat_tf.workflows.flags import section_overrides

    models = args.model or [DEFAULT_PRESET]
    cached = preset_pair_dir(models[0]) if len(models) == 1 else None
    as_shipped = not (args.recipe or args.config or section_overrides(args))
    if as_shipped and cached is not None and cached.is_dir():
        return str(cached)  # the fast path's pair: the preset as shipped, built before
    loaded = load_for_captioning(args.model, args.recipe, args.config, section_overrides(args), as_caption_command=True)
    return str(pair_for(args.model or [DEFAULT_PRESET], loaded, scratch))


def photos_of(args) -> list[str]:
    """The photos the arguments name (files, folders' image files, list files), checked before the
    model loads: a bad path named on the command line stops the run unless --skip-bad."""
    from sat_tf.errors import ConfigError
    from sat_tf_edge.photo_files import PhotoListError, find_photos, source_problem

    if not args.images and not args.list:
        raise ConfigError("name photos, folders of photos or a --list file of photo paths")
    check_image_files(args.images, args.skip_bad, more_may_follow=bool(args.list))
    usable = [p for p in args.images if not (args.skip_bad and source_problem(p) is not None)]  # --skip-bad's
    try:
        photos = find_photos(usable, args.list)
    except PhotoListError as exc:
        raise ConfigError(str(exc)) from exc
    if not photos:
        raise ConfigError(f"no photos in {', '.join([*args.images, *args.list])}")
    return photos


def show_batch(args, model, batch, plots: list[Path]) -> None:
    """Prints each photo's line (and its k best), and draws its attention figure when asked."""
    from sat_tf.data.images import load_image
    from sat_tf.inference.attention_plot import plot_attention

    best = batch.candidates.best() if batch.candidates is not None else None
    for index, record in enumerate(batch.records()):
        print(caption_line(record, show_tags=args.tags, hide_not_sure=args.hide_not_sure and not args.always_caption))
        for rank, candidate in enumerate(record["candidates"][: args.k_best] if args.k_best else [], start=1):
            print(f"  {rank}. {candidate}")
        if plots:
            assert best is not None  # a batch with records has candidates
            plot_attention(
                load_image(record["image"]), best.words(index), best.alphas[index], model.feature_grid, plots[index]
            )
            print(f"  attention plot: {plots[index]}")


@contextlib.contextmanager
def progress_bar(total: int, disable: bool):
    """Photos done, rate and time left on stderr (a terminal only, unless disabled)."""
    from tqdm import tqdm

    with tqdm(total=total, unit="photo", file=sys.stderr, disable=True if disable else None, leave=False) as bar:
        yield bar


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
