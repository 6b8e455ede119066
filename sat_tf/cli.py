"""`sat-tf`: command-line glue over the library (demo, train, extract, caption, evaluate)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the CLI


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _user_errors():
    """Exception types that mean bad input, not a bug: reported without a stack trace."""
    from sat_tf.data.images import ImageLoadError
    from sat_tf.data.pipeline import CaptionDataError
    from sat_tf.data.feature_cache import StaleCacheError
    from sat_tf.data.readers import CaptionFileError
    from sat_tf.evaluation.metrics import JavaNotFoundError
    from sat_tf.training.strategy import WorkerFailureError
    from sat_tf.training.trainer import CheckpointError, NonFiniteLossError

    return (CliError, ImageLoadError, CaptionDataError, CaptionFileError, FileNotFoundError, ValueError,
            JavaNotFoundError, NonFiniteLossError, StaleCacheError, CheckpointError, WorkerFailureError)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--captions", help="captions: .jsonl/.csv (image, caption), a Flickr token .txt, COCO "
                                          "captions .json or a Karpathy split .json; default: synthetic data")
    group.add_argument("--image-dir", help="folder the caption file's image paths are relative to")
    group.add_argument("--split-list", help="Flickr split list (e.g. Flickr_8k.trainImages.txt)")
    group.add_argument("--split", default="train", help="Karpathy split: train (with restval), val or test")
    group.add_argument("--num-images", type=int, default=2000, help="synthetic images to generate")
    group.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data")
    group.add_argument("--skip-bad", action="store_true",
                       help="skip (and count) unreadable images and unusable captions instead of failing")
    group.add_argument("--max-caption-length", type=int, default=32, help="most tokens per caption")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", default="small_cnn",
                       help="small_cnn, efficientnet_lite0/1/2 or a keras.applications name (e.g. resnet50)")
    group.add_argument("--weights", default=None, help='backbone weights: "imagenet" or a local file')
    group.add_argument("--feature-layer", default=None,
                       help='EfficientNet-Lite: "top" (7x7 at 224 px) or "stride16" (14x14); else a layer name')
    group.add_argument("--image-size", type=int, default=None, help="encoder input size (pixels)")
    group.add_argument("--fine-tune-top-blocks", type=int, default=0)
    group.add_argument("--append-coordinates", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--cnn-filters", default="16,32,64", help="small_cnn block widths, comma-separated")
    group.add_argument("--cnn-normalization", choices=["batch", "group", "none"], default="batch")
    group.add_argument("--embedding-dim", type=int, default=64)
    group.add_argument("--hidden-dim", type=int, default=256)
    group.add_argument("--attention-dim", type=int, default=128)
    group.add_argument("--dropout", type=float, default=0.2)
    group.add_argument("--penalty-weight", type=float, default=None, help="lambda of the doubly stochastic penalty")
    group.add_argument("--penalty-target", choices=["one", "length"], default="one")
    group.add_argument("--attention", choices=["soft", "hard"], default="soft",
                       help="soft (deterministic) or hard (stochastic, REINFORCE) attention")
    group.add_argument("--hard-inference", choices=["argmax", "sample", "expectation"], default="expectation",
                       help="hard attention at test time: the expectation (default, best on Flickr8k dev), the "
                            "most likely region, or a sample")
    group.add_argument("--reward-weight", type=float, default=None,
                       help="hard attention: lambda_r of the REINFORCE term (default: sat_tf's)")
    group.add_argument("--entropy-weight", type=float, default=None,
                       help="hard attention: lambda_e of the entropy bonus (default: sat_tf's)")
    group.add_argument("--min-word-count", type=int, default=1)
    group.add_argument("--max-vocabulary", type=int, default=None)


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.training.config import OPTIMIZERS, SCHEDULES
    from sat_tf.training.strategy import STRATEGIES

    group = parser.add_argument_group("training")
    group.add_argument("--output-dir", required=True, help="checkpoints, logs and model.keras go here")
    group.add_argument("--strategy", choices=STRATEGIES, default="default")
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--epochs", type=int, default=10)
    group.add_argument("--max-steps", type=int, default=None)
    group.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    group.add_argument("--learning-rate", type=float, default=2e-3)
    group.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    group.add_argument("--warmup-steps", type=int, default=50)
    group.add_argument("--clip-norm", type=float, default=5.0)
    group.add_argument("--checkpoint-every", type=int, default=500)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--jit-compile", action="store_true")
    group.add_argument("--deterministic", action="store_true",
                       help="deterministic TensorFlow ops: a resumed or repeated run gives the same weights")
    group.add_argument("--bucket-by-length", action=argparse.BooleanOptionalAction, default=None,
                       help="batch captions by length (default: on, except for a BatchNorm small_cnn)")
    group.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    group.add_argument("--feature-cache", help="train on features from `sat-tf extract` instead of images")
    group.add_argument("--val-captions", help="validation captions (same formats as --captions): the best "
                                              "epoch by validation BLEU-4 is kept as best_model.keras")
    group.add_argument("--val-split-list", help="Flickr split list of the validation images")
    group.add_argument("--val-split", default="val", help="Karpathy split used for validation")
    group.add_argument("--early-stopping-patience", type=int, default=None,
                       help="stop after this many epochs without a better validation BLEU-4")


@dataclasses.dataclass
class LoadedData:
    """Images (array, or file paths) and caption records whose `image_index` points into them."""

    images: object
    records: list
    image_index: list[int]
    image_ids: list[str]  # id of each image, in the order of `images`

    def references(self) -> dict[str, list[str]]:
        from sat_tf.data.records import group_references

        return group_references(self.records, [self.image_ids[i] for i in self.image_index])


def _load_dataset(args, image_size: int) -> LoadedData:
    """Synthetic data, or a caption file whose unreadable images are reported (or skipped)."""
    from sat_tf.data import synthetic
    from sat_tf.data.images import scan_images
    from sat_tf.data.readers import index_images, read_captions

    if args.captions is None:
        data = synthetic.generate(args.num_images, seed=args.data_seed, image_size=image_size)
        return LoadedData(data.images, data.records, [r.image_index for r in data.records], data.image_ids)
    records = read_captions(args.captions, args.image_dir, args.split_list, args.split)
    scan = scan_images([r.image_path for r in records], skip_unreadable=args.skip_bad)
    if scan.skipped:
        first = "; ".join(list(scan.skipped.values())[:3])
        print(f"skipped {len(scan.skipped)} unreadable image(s), e.g. {first}", file=sys.stderr)
        readable = set(scan.readable)
        records = [r for r in records if r.image_path in readable]
        if not records:
            raise CliError("no readable images left")
    paths, image_index = index_images(records)
    return LoadedData(paths, records, image_index, paths)


def cmd_demo(args) -> None:
    from sat_tf.demo import DemoConfig, run_demo

    config = DemoConfig.fast() if args.fast else DemoConfig()
    config.seed = args.seed
    run_demo(args.output_dir, config, strategy=args.strategy)


def cmd_train(args) -> None:
    import numpy as np

    from sat_tf.data.pipeline import encode_captions
    from sat_tf.data.tokenizer import CaptionTokenizer
    from sat_tf.models import AttentionDecoder, Captioner, Encoder
    from sat_tf.models.captioner import DEFAULT_ENTROPY_WEIGHT, DEFAULT_PENALTY_WEIGHT, DEFAULT_REWARD_WEIGHT
    from sat_tf.training import TrainConfig, TrainingData, make_strategy, train

    if args.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    # Before any TensorFlow op runs: MultiWorkerMirroredStrategy configures collectives at startup.
    strategy = make_strategy(args.strategy)
    try:
        filters = tuple(int(width) for width in args.cnn_filters.split(","))
    except ValueError:
        raise CliError(f"--cnn-filters must be comma-separated integers, got '{args.cnn_filters}'") from None
    encoder_kwargs = dict(backbone=args.backbone, image_size=args.image_size, weights=args.weights,
                          feature_layer=args.feature_layer,
                          fine_tune_top_blocks=args.fine_tune_top_blocks, small_cnn_filters=filters,
                          small_cnn_normalization=args.cnn_normalization,
                          append_coordinates=args.append_coordinates)
    probe = Encoder(**encoder_kwargs)  # validates the encoder arguments before any data is read
    image_size = probe.image_size
    bucket_by_length = (not probe.uses_batch_statistics) if args.bucket_by_length is None else args.bucket_by_length
    data = _load_dataset(args, image_size)
    tokenizer = CaptionTokenizer.from_corpus([r.caption for r in data.records], min_count=args.min_word_count,
                                             max_size=args.max_vocabulary)
    captions = encode_captions(data.records, tokenizer, data.image_index, max_length=args.max_caption_length,
                               skip_invalid=args.skip_bad)
    if captions.skipped:
        print(f"skipped {len(captions.skipped)} unusable caption(s), e.g. "
              f"{'; '.join(f'{k}: {v}' for k, v in list(captions.skipped.items())[:3])}", file=sys.stderr)
    penalty_weight = DEFAULT_PENALTY_WEIGHT if args.penalty_weight is None else args.penalty_weight

    def build_model():
        decoder = AttentionDecoder(tokenizer.vocabulary_size, embedding_dim=args.embedding_dim,
                                   hidden_dim=args.hidden_dim, attention_dim=args.attention_dim,
                                   dropout=args.dropout, attention_mode=args.attention,
                                   hard_inference=args.hard_inference)
        return Captioner(Encoder(**encoder_kwargs), decoder, tokenizer, penalty_weight=penalty_weight,
                         penalty_target=args.penalty_target,
                         reward_weight=DEFAULT_REWARD_WEIGHT if args.reward_weight is None else args.reward_weight,
                         entropy_weight=DEFAULT_ENTROPY_WEIGHT if args.entropy_weight is None else args.entropy_weight)

    config = TrainConfig(batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps,
                         optimizer=args.optimizer, learning_rate=args.learning_rate, schedule=args.schedule,
                         warmup_steps=args.warmup_steps, clip_norm=args.clip_norm, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, jit_compile=args.jit_compile,
                         bucket_by_length=bucket_by_length, early_stopping_patience=args.early_stopping_patience)
    source = data.images
    if args.feature_cache:
        from sat_tf.data.feature_cache import FeatureCache
        from sat_tf.inference.features import encoder_identity

        if isinstance(data.images, np.ndarray):
            raise CliError("--feature-cache needs a caption file (--captions), not synthetic data")
        source = FeatureCache(args.feature_cache, encoder_identity(probe, data.images))
    result = train(build_model, TrainingData(source, captions, image_size), config, args.output_dir,
                   strategy=strategy, resume=args.resume,
                   validate=_bleu_validator(args, image_size))
    print(f"trained {result.steps} steps at {result.tokens_per_second:,.0f} target tokens/s; "
          f"model: {Path(args.output_dir) / 'model.keras'}")


def _bleu_validator(args, image_size: int):
    """Validation BLEU-4 for model selection: held-out synthetic images, or --val-captions."""
    import numpy as np

    from sat_tf.data import synthetic
    from sat_tf.data.images import load_image
    from sat_tf.data.readers import index_images, read_captions
    from sat_tf.data.records import group_references
    from sat_tf.evaluation.validation import bleu4_validator

    if args.val_captions is None and args.captions is None:
        held_out = synthetic.generate(max(64, args.num_images // 10), seed=args.data_seed + 1_000_003,
                                      image_size=image_size, id_prefix="validation")
        return bleu4_validator(held_out.images, held_out.image_ids, held_out.references())
    if args.val_captions is None:
        return None
    records = read_captions(args.val_captions, args.image_dir, args.val_split_list, args.val_split)
    paths, image_index = index_images(records)
    images = np.stack([load_image(p, image_size) for p in paths])
    return bleu4_validator(images, paths, group_references(records, [paths[i] for i in image_index]))


def cmd_extract(args) -> None:
    from sat_tf.inference.features import extract_to_cache
    from sat_tf.models import Encoder

    if args.captions is None:
        raise CliError("extract needs --captions (a real dataset)")
    encoder = Encoder(args.backbone, image_size=args.image_size, weights=args.weights,
                      feature_layer=args.feature_layer)
    data = _load_dataset(args, encoder.image_size)
    cache = extract_to_cache(encoder, data.images, args.cache_dir, batch_size=args.batch_size,
                             shard_size=args.shard_size)
    print(f"{len(cache)} images -> {args.cache_dir} (features {cache.feature_shape}, float16)")


def load_model(path: str):
    """Loads a trained captioner (`model.keras`, or a training output folder holding one)."""
    import keras

    import sat_tf.models  # noqa: F401  (registers the custom classes)

    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise CliError(f"{path}: model file not found")
    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # Keras raises many types for damaged archives
        raise CliError(f"{path}: not a loadable sat_tf model ({type(exc).__name__}: {exc})") from None


def _decode(model, images, beam_size: int, max_length: int, batch_size: int = 64):
    """Greedy (beam_size 1) or beam-search captions for images, in batches."""
    from sat_tf.inference.beam_search import BeamSearchDecoder
    from sat_tf.inference.greedy import caption_images, concatenate_decoded

    if beam_size < 1:
        raise CliError(f"--beam-size must be >= 1, got {beam_size}")
    if beam_size == 1:
        return caption_images(model, images, max_length, batch_size)
    decoder = BeamSearchDecoder(model, beam_size, max_length)
    parts = [decoder(images=images[i : i + batch_size]).best() for i in range(0, len(images), batch_size)]
    return concatenate_decoded(parts)


def cmd_caption(args) -> None:
    import numpy as np

    from sat_tf.data.images import ImageLoadError, load_image
    from sat_tf.inference.attention_plot import plot_attention

    model = load_model(args.model)
    size = model.encoder.image_size
    loaded, skipped = [], []
    for path in args.images:
        try:
            loaded.append((path, load_image(path, size)))
        except ImageLoadError as exc:
            if not args.skip_bad:
                raise
            skipped.append(str(exc))
    if not loaded:
        raise CliError("no readable images")
    decoded = _decode(model, np.stack([image for _, image in loaded]), args.beam_size, args.max_length)
    results = []
    for index, (path, image) in enumerate(loaded):
        print(f"{path}\t{decoded.texts[index]}")
        results.append({"image": path, "caption": decoded.texts[index],
                        "log_prob": float(decoded.log_probs[index].sum())})
        if args.attention_plot:
            plot_path = Path(args.attention_plot)
            if len(loaded) > 1:
                plot_path = plot_path.with_name(f"{plot_path.stem}_{index}{plot_path.suffix or '.png'}")
            display = load_image(path)
            plot_attention(display, decoded.words(index), decoded.alphas[index], model.feature_grid, plot_path)
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:3])}", file=sys.stderr)
    if args.output:
        from sat_tf.utils.atomic import write_json_atomic

        write_json_atomic(args.output, {"captions": results, "skipped": skipped})


def cmd_evaluate(args) -> None:
    import numpy as np

    from sat_tf.data.images import load_image
    from sat_tf.evaluation.metrics import caption_metrics

    model = load_model(args.model)
    size = model.encoder.image_size
    data = _load_dataset(args, size)
    pixels = data.images if isinstance(data.images, np.ndarray) else np.stack([load_image(p, size) for p in data.images])
    decoded = _decode(model, pixels, args.beam_size, args.max_length)
    scores = caption_metrics(data.references(), dict(zip(data.image_ids, decoded.texts)),
                             tokenization=args.tokenization)
    print(json.dumps(scores, indent=2))
    if args.output:
        from sat_tf.utils.atomic import write_json_atomic

        write_json_atomic(args.output, scores)


def cmd_export(args) -> None:
    from sat_tf.data.images import load_image

    if not args.saved_model_dir and not args.tflite_dir:
        raise ValueError("nothing to export: give --saved-model-dir and/or --tflite-dir")
    model = load_model(args.model)
    if args.saved_model_dir:
        from sat_tf.export.saved_model import export_saved_model

        path = export_saved_model(model, args.saved_model_dir, args.model_name, args.version, args.max_length,
                                  args.beam_size)
        print(f"SavedModel (TF Serving layout): {path}")
    if args.tflite_dir:
        from sat_tf.export.tflite import export_tflite

        size = model.encoder.image_size
        calibration = [load_image(p, size) for p in args.calibration_images] if args.calibration_images else None
        if calibration is None and "int8" in (args.encoder_quantization, args.decoder_quantization):
            raise ValueError("int8 quantization needs --calibration-images (a few dozen images from your data)")
        paths = export_tflite(model, args.tflite_dir, args.encoder_quantization, args.decoder_quantization,
                              calibration, args.max_length)
        for key, path in paths.items():
            print(f"{key}: {path} ({path.stat().st_size / 1e6:.2f} MB)")


def cmd_serve(args) -> None:
    from sat_tf.export.serving import serve

    print(f"serving {args.model_dir} on http://{args.host}:{args.port}/v1/models/<name>", flush=True)
    serve(args.model_dir, args.host, args.port, args.model_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat-tf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train and evaluate on generated data, write attention plots")
    demo.add_argument("--output-dir", default="sat_tf_demo")
    demo.add_argument("--fast", action="store_true", help="tiny run that checks every stage (seconds)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--strategy", default="default", choices=["default", "mirrored"])
    demo.set_defaults(handler=cmd_demo)

    train = commands.add_parser("train", help="train a captioner with the custom distributed loop")
    _add_data_arguments(train)
    _add_model_arguments(train)
    _add_training_arguments(train)
    train.set_defaults(handler=cmd_train)

    extract = commands.add_parser("extract", help="cache a frozen encoder's features of a dataset (resumable)")
    _add_data_arguments(extract)
    extract.add_argument("--cache-dir", required=True)
    extract.add_argument("--backbone", default="efficientnet_lite0")
    extract.add_argument("--weights", default="imagenet")
    extract.add_argument("--image-size", type=int, default=None)
    extract.add_argument("--feature-layer", default=None)
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--shard-size", type=int, default=1024)
    extract.set_defaults(handler=cmd_extract)

    caption = commands.add_parser("caption", help="caption image files")
    caption.add_argument("images", nargs="+")
    caption.add_argument("--model", required=True, help="model.keras or a training output folder")
    caption.add_argument("--attention-plot", help="write the attention figure here (PNG)")
    caption.add_argument("--max-length", type=int, default=20)
    caption.add_argument("--beam-size", type=int, default=1, help="1: greedy decoding")
    caption.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of failing")
    caption.add_argument("--output", help="also write the captions as JSON")
    caption.set_defaults(handler=cmd_caption)

    evaluate = commands.add_parser("evaluate", help="BLEU-1..4, METEOR, ROUGE-L, CIDEr (0-100) of generated captions")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--max-length", type=int, default=20)
    evaluate.add_argument("--beam-size", type=int, default=1, help="1: greedy decoding")
    evaluate.add_argument("--tokenization", choices=["auto", "ptb", "python"], default="auto",
                          help="coco-caption's PTB tokenizer (needs Java) or Python; auto: PTB if Java is found")
    evaluate.add_argument("--output", help="also write the scores as JSON")
    _add_data_arguments(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    export = commands.add_parser("export", help="SavedModel for serving and/or TFLite encoder + decoder step")
    export.add_argument("--model", required=True, help="model.keras or a training output folder")
    export.add_argument("--saved-model-dir", help="TF Serving base path; writes <dir>/<model-name>/<version>/")
    export.add_argument("--model-name", default="sat_tf")
    export.add_argument("--version", type=int, default=1)
    export.add_argument("--beam-size", type=int, default=3, help="beam of the beam_search signature")
    export.add_argument("--max-length", type=int, default=20)
    export.add_argument("--tflite-dir", help="writes image_encoder.tflite, decoder_step.tflite, sat_tf_edge.json")
    export.add_argument("--encoder-quantization", choices=["fp32", "fp16", "dynamic", "int8"], default="fp32")
    export.add_argument("--decoder-quantization", choices=["fp32", "fp16", "dynamic", "int8"], default="dynamic")
    export.add_argument("--calibration-images", nargs="+", help="images for int8 calibration")
    export.set_defaults(handler=cmd_export)

    serve = commands.add_parser("serve", help="serve an exported SavedModel with TF Serving's REST API")
    serve.add_argument("--model-dir", required=True, help="<dir>/<model-name> (latest version) or a version dir")
    serve.add_argument("--model-name", default=None, help="default: the folder name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8501)
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except _user_errors() as exc:
        print(f"sat-tf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sat-tf {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
