"""`sat-tf export`: a SavedModel for serving and/or the TFLite encoder + decoder step for devices."""

from __future__ import annotations

import argparse

from sat_tf.cli.common import add_model_argument

NAME, HELP = "export", "SavedModel for serving and/or TFLite encoder + decoder step"
EXPORT_DECODING_FLAGS = (
    "beam_size",
    "length_penalty",
    "max_length",
    "no_repeat_ngram_size",
    "no_repeat_content_words",
    "forbid_unknown",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser, several=False)
    parser.add_argument("--saved-model-dir", help="TF Serving base path; writes <dir>/<model-name>/<version>/")
    parser.add_argument("--model-name", default="sat_tf")
    parser.add_argument("--version", type=int, default=1)
    # Decoding flags default to the model's own settings (a preset's, a run's), as `sat-tf caption` uses.
    parser.add_argument(
        "--beam-size",
        type=int,
        help="beam of the beam_search signature and of the edge runtime's default decoding (default: the model's)",
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        help="the edge runtime ranks beams by log p / length**this (default: the model's)",
    )
    parser.add_argument("--max-length", type=int, help="most tokens per caption (default: the model's)")
    parser.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        help="the exports never repeat an n-gram of this size, as sat-tf caption (default: the model's; 0: off)",
    )
    parser.add_argument(
        "--no-repeat-content-words",
        action=argparse.BooleanOptionalAction,
        help="the exports say each content word once, as sat-tf caption (default: the model's)",
    )
    parser.add_argument(
        "--forbid-unknown",
        action=argparse.BooleanOptionalAction,
        help="the exports never emit <unk>, as sat-tf caption (default: the model's)",
    )
    parser.add_argument(
        "--tags",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the encoder checkpoint's ImageNet tags to the SavedModel's outputs (default: for "
        "EfficientNet-Lite encoders)",
    )
    parser.add_argument(
        "--xla",
        action="store_true",
        help="save the SavedModel's decoding loops XLA-compiled (faster batched serving with sat-tf "
        "serve; TF Serving then needs --xla_cpu_compilation_enabled=true)",
    )
    parser.add_argument("--tflite-dir", help="writes image_encoder.tflite, decoder_step.tflite, sat_tf_edge.json")
    parser.add_argument(
        "--web",
        metavar="DIR",
        help="writes a static page that captions photos in the browser with the TFLite pair on LiteRT.js "
        "(serve DIR with any static file server; needs `npm ci --prefix web`)",
    )
    parser.add_argument(
        "--litert-dir",
        help="a node_modules folder holding @litertjs/core for --web (default: the repository's web/node_modules)",
    )
    parser.add_argument(
        "--encoder-quantization",
        choices=["fp32", "fp16", "dynamic", "int8"],
        help="default: fp32 for --tflite-dir; for --web int8 with --calibration-images (captions identical to "
        "sat-tf-edge's), else dynamic",
    )
    parser.add_argument(
        "--decoder-quantization",
        choices=["fp32", "fp16", "dynamic", "int8"],
        help="default: dynamic (int8 for --web with --calibration-images)",
    )
    parser.add_argument("--calibration-images", nargs="+", help="images for int8 calibration")


def run(args) -> None:
    from sat_tf.errors import ConfigError
    from sat_tf.workflows.caption import load_for_captioning

    if not (args.saved_model_dir or args.tflite_dir or args.web):
        raise ConfigError("nothing to export: give --saved-model-dir, --tflite-dir and/or --web")
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
            calibration=loaded.calibration,
            no_repeat_content_words=decoding.no_repeat_content_words,
        )
        print(f"SavedModel (TF Serving layout): {path}")
    if args.tflite_dir:
        from sat_tf.export.tflite import export_tflite

        encoder, decoder = _quantizations(args, "fp32", "dynamic")
        paths = export_tflite(
            model,
            args.tflite_dir,
            encoder,
            decoder,
            _calibration_images(args, model, encoder, decoder),
            decoding.max_length,
            # the edge runtime decodes as `sat-tf caption` (tag guidance aside: no ImageNet head on the device)
            decoding=decoding.edge_settings(),
            calibration=loaded.calibration,
        )
        _print_sizes(paths)
    if args.web:
        from sat_tf.export.web_page import export_web

        # int8 kernels give the browser the very numbers of ai-edge-litert; dynamic-range ones differ slightly
        default = "int8" if args.calibration_images else "dynamic"
        encoder, decoder = _quantizations(args, default, default)
        paths = export_web(
            model,
            args.web,
            decoding.edge_settings(),
            loaded.calibration,
            encoder,
            decoder,
            _calibration_images(args, model, encoder, decoder),
            decoding.max_length,
            runtime_dir=args.litert_dir,
        )
        _print_sizes(paths)
        print(f"serve it with: python -m http.server --directory {args.web} 8000  (then open http://<host>:8000/)")


def _quantizations(args, encoder_default: str, decoder_default: str) -> tuple[str, str]:
    return args.encoder_quantization or encoder_default, args.decoder_quantization or decoder_default


def _calibration_images(args, model, *quantizations: str):
    from sat_tf.data.images import load_image
    from sat_tf.errors import ConfigError

    if not args.calibration_images:
        if "int8" in quantizations:
            raise ConfigError("int8 quantization needs --calibration-images (a few dozen images from your data)")
        return None
    return [load_image(p, model.encoder.image_size) for p in args.calibration_images]


def _print_sizes(paths: dict) -> None:
    for key, path in paths.items():
        print(f"{key}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
