"""`sat-tf`: command-line glue over `sat_tf.workflows` (demo, train, extract, caption, evaluate, distill,
export, serve). Each command parses flags into settings and makes one library call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's Python-side logging

DEFAULT_PRESET = "everyday_lite0_448"  # the shipped preset `sat-tf caption` uses without --model


def run_config(args, base: dict | None = None):
    """Library defaults <- the command's own defaults (`base`) <- --recipe <- --config <- flags."""
    from sat_tf.workflows.flags import section_overrides
    from sat_tf.workflows.run_config import resolve_run_config

    return resolve_run_config(args.recipe, args.config, section_overrides(args), base=base)


# ----- commands -------------------------------------------------------------------------------------
def cmd_demo(args) -> None:
    from sat_tf.demo import DemoConfig, run_demo

    config = DemoConfig.fast() if args.fast else DemoConfig()
    config.seed = args.seed
    run_demo(args.output_dir, config, strategy=args.strategy)


def cmd_train(args) -> None:
    from sat_tf.workflows import train_captioner

    result = train_captioner(run_config(args), args.output_dir, resume=args.resume)
    output = Path(args.output_dir)
    selected = output / "best_model.keras"
    chosen = (
        f"{selected} (best validation epoch; last epoch: {output / 'model.keras'})"
        if selected.is_file()
        else str(output / "model.keras")
    )
    print(f"trained {result.steps} steps at {result.tokens_per_second:,.0f} target tokens/s; model: {chosen}")


def cmd_extract(args) -> None:
    from sat_tf.workflows import extract_split_features

    # Without a recipe or flags, extract with the pretrained encoder of the real-data recipes.
    config = run_config(
        args, base={"model": {"backbone": "efficientnet_lite0", "weights": "imagenet", "append_coordinates": False}}
    )
    cache = extract_split_features(
        config.model, config.data, args.cache_dir, batch_size=args.batch_size, shard_size=args.shard_size
    )
    print(f"{len(cache)} images -> {args.cache_dir} (features {cache.feature_shape}, float16)")


def _decoding_for(args):
    """Decoding settings of --model's first model <- --recipe <- --config <- flags."""
    from sat_tf.workflows import decoding_for
    from sat_tf.workflows.flags import section_overrides

    return decoding_for(args.model[0], args.recipe, args.config, section_overrides(args))


def _photos_before_any_option(argv: list[str]) -> list[str]:
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


def _check_image_files(paths: list[str], skip_bad: bool, more_may_follow: bool = False) -> None:
    """Reports a missing, empty or folder path at once, before the model loads (seconds). With
    `skip_bad`, only when every photo is bad (unless `more_may_follow`: other photos may come)."""
    from sat_tf.errors import ConfigError
    from sat_tf_edge.images import file_problem

    problems = [f"{path}: {problem}" for path in paths if (problem := file_problem(path)) is not None]
    all_bad = len(problems) == len(paths) and not more_may_follow
    if problems and (not skip_bad or all_bad):
        raise ConfigError(f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def cmd_caption(args) -> None:
    _check_image_files(args.images, args.skip_bad)
    from sat_tf.data.images import load_image
    from sat_tf.inference.attention_plot import plot_attention
    from sat_tf.utils.atomic import write_json_atomic
    from sat_tf.workflows import caption_files, load_for_captioning
    from sat_tf.workflows.flags import section_overrides

    loaded = load_for_captioning(args.model, args.recipe, args.config, section_overrides(args), as_caption_command=True)
    captioned = caption_files(loaded.model, args.images, loaded.decoding, skip_bad=args.skip_bad, with_tags=args.tags)
    records = captioned.records()
    plots = attention_plot_paths(args.attention_plot, len(records)) if args.attention_plot else []
    best = captioned.candidates.best()
    for index, record in enumerate(records):
        print(caption_line(record, show_tags=args.tags))
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


def caption_line(record: dict, show_tags: bool = False) -> str:
    """`path<TAB>caption<TAB>(confidence 0.71[: not sure])[<TAB>[tags: ...]]`."""
    from sat_tf_edge.confidence import confidence_text

    line = f"{record['image']}\t{record['caption']}\t{confidence_text(record['confidence'], record['not_sure'])}"
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


def cmd_evaluate(args) -> None:
    from sat_tf.workflows import evaluate_captioner
    from sat_tf.workflows.evaluate import default_evaluation_data
    from sat_tf.workflows.flags import section_overrides
    from sat_tf.workflows.run_config import resolve_run_config

    overrides = section_overrides(args)
    data = None
    if "data" not in overrides and args.recipe is None and args.config is None:
        data = default_evaluation_data(args.model[0])  # the run's own validation split
    if data is None:
        data = resolve_run_config(args.recipe, args.config, {"data": overrides.get("data", {})}).data
    _require_captions_for_a_preset(args.model, data)
    report = evaluate_captioner(
        args.model,
        data,
        _decoding_for(args),
        tokenization=args.tokenization,
        output=args.output,
        verbose=args.verbose,
        instances=args.instances,
    )
    shown = {k: v for k, v in report.items() if k not in ("captions", "data")}
    print(json.dumps(shown, indent=2))


def _require_captions_for_a_preset(models: list[str], data) -> None:
    """A preset was trained on real photos: scoring it on the generated shapes (the data settings'
    default) means nothing, so the photos must be named."""
    from sat_tf.errors import ConfigError
    from sat_tf.workflows.models import is_preset

    if data.is_synthetic and is_preset(models[0]):
        raise ConfigError(
            f"{models[0]} is a pretrained preset: name the photos and their captions "
            "(--captions FILE [--image-dir DIR] [--split-list FILE], or --recipe/--config with a data section)"
        )


def cmd_distill(args) -> None:
    from sat_tf.workflows.distill import write_distillation_captions
    from sat_tf.workflows.flags import section_overrides
    from sat_tf.workflows.run_config import resolve_run_config

    data = resolve_run_config(args.recipe, args.config, {"data": section_overrides(args).get("data", {})}).data
    _require_captions_for_a_preset(args.model, data)
    captions = write_distillation_captions(
        args.model, data, _decoding_for(args), args.output, args.with_references, verbose=args.verbose
    )
    print(f"{args.output}: the teacher's captions of {len(captions)} images")


EXPORT_DECODING_FLAGS = ("beam_size", "length_penalty", "max_length", "no_repeat_ngram_size", "forbid_unknown")


def cmd_export(args) -> None:
    from sat_tf.data.images import load_image
    from sat_tf.errors import ConfigError
    from sat_tf.workflows.caption import load_for_captioning

    if not args.saved_model_dir and not args.tflite_dir:
        raise ConfigError("nothing to export: give --saved-model-dir and/or --tflite-dir")
    # the exports decode as `sat-tf caption` does with this model: its own settings, flags over them
    flags = {key: getattr(args, key) for key in EXPORT_DECODING_FLAGS if getattr(args, key) is not None}
    loaded = load_for_captioning([args.model], overrides={"decoding": flags})
    (model,), decoding = loaded.model.members(), loaded.decoding
    if args.saved_model_dir:
        from sat_tf.export.saved_model import export_saved_model

        path = export_saved_model(
            model,
            args.saved_model_dir,
            args.model_name,
            args.version,
            decoding.max_length,
            decoding.beam_size,
            xla=args.xla,
            tags=args.tags,
            no_repeat_ngram_size=decoding.no_repeat_ngram_size,
            forbid_unknown=decoding.forbid_unknown,
            not_sure_below=decoding.not_sure_below,
        )
        print(f"SavedModel (TF Serving layout): {path}")
    if args.tflite_dir:
        from sat_tf.export.tflite import export_tflite

        size = model.encoder.image_size
        calibration = [load_image(p, size) for p in args.calibration_images] if args.calibration_images else None
        if calibration is None and "int8" in (args.encoder_quantization, args.decoder_quantization):
            raise ConfigError("int8 quantization needs --calibration-images (a few dozen images from your data)")
        paths = export_tflite(
            model,
            args.tflite_dir,
            args.encoder_quantization,
            args.decoder_quantization,
            calibration,
            decoding.max_length,
            # the edge runtime decodes as `sat-tf caption` (tag guidance aside: no ImageNet head on the device)
            decoding=decoding.edge_settings(),
        )
        for key, path in paths.items():
            print(f"{key}: {path} ({path.stat().st_size / 1e6:.2f} MB)")


def cmd_serve(args) -> None:
    from sat_tf.serving.limits import ServingLimits
    from sat_tf.serving.server import serve

    limits = ServingLimits(
        max_image_pixels=args.max_image_pixels,
        image_workers=args.image_workers,
        request_timeout_s=args.request_timeout_s,
        max_in_flight=args.max_in_flight,
        refusal_delay_s=args.refusal_delay_s,
        delayed_refusals=args.delayed_refusals,
    )
    serve(
        args.model_dir,
        args.host,
        args.port,
        args.model_name,
        limits=limits,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_queued_requests=args.max_queued_requests,
        num_batch_threads=args.num_batch_threads,
    )


# ----- the parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from sat_tf.models.config import ENCODER_FEATURE_SETTINGS
    from sat_tf.serving.limits import ServingLimits
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's start-up lines and the metric tools' output"
    )
    parser = argparse.ArgumentParser(prog="sat-tf", description=__doc__, parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, handler, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    demo = command("demo", cmd_demo, "train and evaluate on generated data, write attention plots")
    demo.add_argument("--output-dir", default="sat_tf_demo")
    demo.add_argument("--fast", action="store_true", help="tiny run that checks every stage (seconds)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--strategy", default="default", choices=["default", "mirrored"])

    train = command("train", cmd_train, "train a captioner with the custom distributed loop")
    train.add_argument("--output-dir", required=True, help="the run folder: checkpoints, logs, models, run_config.json")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    add_config_arguments(train)
    for section in ("data", "model", "training", "validation", "decoding", "scst"):
        add_section_flags(train, section)

    extract = command("extract", cmd_extract, "cache a frozen encoder's features of a dataset (resumable)")
    extract.add_argument("--cache-dir", required=True)
    extract.add_argument("--batch-size", type=int, default=32, help="images per encoder call (default: 32)")
    extract.add_argument("--shard-size", type=int, default=1024, help="images per cache file (default: 1024)")
    add_config_arguments(extract)
    add_section_flags(extract, "data", only=("captions", "image_dir", "split_list", "split", "data_root", "skip_bad"))
    add_section_flags(extract, "model", only=ENCODER_FEATURE_SETTINGS)

    caption = command("caption", cmd_caption, "caption image files")
    caption.add_argument("images", nargs="+")
    caption.add_argument(
        "--model",
        nargs="+",
        default=[DEFAULT_PRESET],
        help="model.keras, a run folder (its best_model.keras) or a preset name; several: an "
        f"ensemble (default: the pretrained preset {DEFAULT_PRESET}); it takes several values, so give the "
        "photos before it",
    )
    caption.add_argument(
        "--attention-plot",
        help="write the attention figure here (PNG); with several photos, one file each: "
        "NAME_0.png, NAME_1.png, ... (each printed)",
    )
    caption.add_argument(
        "--k-best",
        type=int,
        default=0,
        metavar="N",
        help="also print the N best captions of the beam (also in --output's JSON as 'candidates')",
    )
    caption.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of failing")
    caption.add_argument(
        "--tags",
        action="store_true",
        help="also print each photo's ImageNet tags (the words the encoder's classifier sees); "
        "captions use them per --tag-guidance (default here: the model's caption_tag_guidance, "
        "auto for models without everyday words)",
    )
    caption.add_argument("--output", help="also write the captions as JSON (caption, confidence, k-best list, tags)")
    add_config_arguments(caption)
    add_section_flags(caption, "decoding")

    evaluate = command(
        "evaluate",
        cmd_evaluate,
        "BLEU-1..4, METEOR, ROUGE-L, CIDEr (0-100) of generated captions; by default on the "
        "validation split of the run that trained --model",
    )
    evaluate.add_argument(
        "--instances",
        help="a COCO instances JSON of the split's photos: also report where the "
        "attention of words naming an annotated object lands (grounding)",
    )
    evaluate.add_argument(
        "--model",
        nargs="+",
        default=[DEFAULT_PRESET],
        help="model.keras, a run folder (its best_model.keras) or a preset name; several: an ensemble "
        f"(default: the pretrained preset {DEFAULT_PRESET})",
    )
    evaluate.add_argument(
        "--tokenization",
        choices=["auto", "ptb", "python"],
        default="auto",
        help="coco-caption's PTB tokenizer (needs Java) or Python; auto: PTB if Java is found",
    )
    evaluate.add_argument("--output", help="also write the report (scores, settings, every caption) as JSON")
    add_config_arguments(evaluate)
    add_section_flags(
        evaluate,
        "data",
        only=(
            "captions",
            "image_dir",
            "split_list",
            "split",
            "data_root",
            "feature_cache",
            "num_images",
            "data_seed",
            "skip_bad",
        ),
    )
    add_section_flags(evaluate, "decoding")

    distill = command(
        "distill",
        cmd_distill,
        "caption a split with a teacher (an ensemble: several --model) into a .jsonl caption file that "
        "a student trains on (sequence-level knowledge distillation)",
    )
    distill.add_argument(
        "--model",
        nargs="+",
        default=[DEFAULT_PRESET],
        help="the teacher: model.keras, a run folder or a preset name; several: an ensemble "
        f"(default: the pretrained preset {DEFAULT_PRESET})",
    )
    distill.add_argument("--output", required=True, help="the .jsonl caption file to write")
    distill.add_argument(
        "--with-references", action="store_true", help="also keep the split's own captions beside the teacher's"
    )
    add_config_arguments(distill)
    add_section_flags(
        distill, "data", only=("captions", "image_dir", "split_list", "split", "data_root", "feature_cache")
    )
    add_section_flags(distill, "decoding")

    export = command("export", cmd_export, "SavedModel for serving and/or TFLite encoder + decoder step")
    export.add_argument(
        "--model",
        default=DEFAULT_PRESET,
        help=f"model.keras, a run folder or a preset name (default: the pretrained preset {DEFAULT_PRESET})",
    )
    export.add_argument("--saved-model-dir", help="TF Serving base path; writes <dir>/<model-name>/<version>/")
    export.add_argument("--model-name", default="sat_tf")
    export.add_argument("--version", type=int, default=1)
    # Decoding flags default to the model's own settings (a preset's, a run's), as `sat-tf caption` uses.
    export.add_argument(
        "--beam-size",
        type=int,
        help="beam of the beam_search signature and of the edge runtime's default decoding (default: the model's)",
    )
    export.add_argument(
        "--length-penalty",
        type=float,
        help="the edge runtime ranks beams by log p / length**this (default: the model's)",
    )
    export.add_argument("--max-length", type=int, help="most tokens per caption (default: the model's)")
    export.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        help="the exports never repeat an n-gram of this size, as sat-tf caption (default: the model's; 0: off)",
    )
    export.add_argument(
        "--forbid-unknown",
        action=argparse.BooleanOptionalAction,
        help="the exports never emit <unk>, as sat-tf caption (default: the model's)",
    )
    export.add_argument(
        "--tags",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the encoder checkpoint's ImageNet tags to the SavedModel's outputs (default: for "
        "EfficientNet-Lite encoders)",
    )
    export.add_argument(
        "--xla",
        action="store_true",
        help="save the SavedModel's decoding loops XLA-compiled (faster batched serving with sat-tf "
        "serve; TF Serving then needs --xla_cpu_compilation_enabled=true)",
    )
    export.add_argument("--tflite-dir", help="writes image_encoder.tflite, decoder_step.tflite, sat_tf_edge.json")
    export.add_argument("--encoder-quantization", choices=["fp32", "fp16", "dynamic", "int8"], default="fp32")
    export.add_argument("--decoder-quantization", choices=["fp32", "fp16", "dynamic", "int8"], default="dynamic")
    export.add_argument("--calibration-images", nargs="+", help="images for int8 calibration")

    serve = command("serve", cmd_serve, "serve an exported SavedModel with TF Serving's REST API")
    serve.add_argument("--model-dir", required=True, help="<dir>/<model-name> (latest version) or a version dir")
    serve.add_argument("--model-name", default=None, help="default: the folder name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--max-batch-size", type=int, default=16, help="most images per graph call (default: 16)")
    serve.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to share its graph call (default: 5)",
    )
    serve.add_argument(
        "--max-queued-requests",
        type=int,
        default=32,
        help="requests waiting for a graph call beyond this are answered 503 (default: 32)",
    )
    serve.add_argument(
        "--num-batch-threads",
        type=int,
        default=2,
        help="graph calls run at once: one decodes while another encodes (default: 2)",
    )
    serve.add_argument(
        "--max-in-flight",
        type=int,
        default=ServingLimits.max_in_flight,
        help=f"requests admitted at once; more get 503 + Retry-After at once (default: {ServingLimits.max_in_flight})",
    )
    serve.add_argument(
        "--max-image-pixels",
        type=int,
        default=ServingLimits.max_image_pixels,
        help="largest image (width x height), checked from its header before decoding "
        f"(default: {ServingLimits.max_image_pixels:,})",
    )
    serve.add_argument(
        "--image-workers",
        type=int,
        default=ServingLimits.image_workers,
        help=f"threads that check and decode request images (default: {ServingLimits.image_workers})",
    )
    serve.add_argument(
        "--request-timeout-s",
        type=float,
        default=ServingLimits.request_timeout_s,
        help="deadline for a request's image checks and its place in a batch; 503 beyond "
        f"(default: {ServingLimits.request_timeout_s:g})",
    )
    serve.add_argument(
        "--refusal-delay-s",
        type=float,
        default=ServingLimits.refusal_delay_s,
        help="a request refused for its size waits this long for its answer, so a client looping on huge images "
        f"costs little (default: {ServingLimits.refusal_delay_s:g}; 0: answer at once)",
    )
    serve.add_argument(
        "--delayed-refusals",
        type=int,
        default=ServingLimits.delayed_refusals,
        help=f"refusals delayed at once; beyond, answered at once (default: {ServingLimits.delayed_refusals})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from sat_tf.utils.quiet import native_stderr_silenced

    argv = sys.argv[1:] if argv is None else list(argv)
    early = _photos_before_any_option(argv)
    if early:  # a missing photo is said in a moment, before TensorFlow and the model load
        from sat_tf.errors import SatTfError

        try:
            _check_image_files(early, skip_bad="--skip-bad" in argv, more_may_follow=True)
        except SatTfError as exc:
            print(f"sat-tf caption: error: {exc}", file=sys.stderr)
            return 2
    # TensorFlow's C++ start-up lines (CUDA probing, oneDNN) and the metric tools' Java output go
    # to fd 2, below Python; drop them unless --verbose, keeping Python's own messages.
    with native_stderr_silenced("--verbose" not in argv):
        if "--verbose" not in argv:
            import logging

            logging.getLogger("tensorflow").setLevel(logging.ERROR)
        args = build_parser().parse_args(argv)
        return _run(args)


def _run(args) -> int:
    from sat_tf.errors import SatTfError

    try:
        args.handler(args)
    except SatTfError as exc:
        print(f"sat-tf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sat-tf {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
