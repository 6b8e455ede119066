"""Deployment report: sizes, latency and caption parity of every export variant.

For a trained model and a folder of test images (Flickr8k dev by default):
- exports the serving SavedModel and the TFLite encoder + decoder step in fp32, fp16, dynamic
  (dynamic-range int8 weights) and int8 (full integer, calibrated on training images read by the
  library's own image loader), and reports each file's size;
- captions every test image with the LiteRT edge runtime (`sat_tf_edge`, installed from export/) for each
  variant and with the Keras model on the same pixels: tokens identical to Keras (count), and the
  BLEU-4 change against the float model (coco-caption);
- times a whole caption from JPEG bytes at batch 1 (decode, resize, encoder, greedy decoder) with
  LiteRT, the SavedModel's serving_default signature and the Keras model, and one decoder step.

    python -m benchmarks.deployment.export_report --model runs/flickr8k/soft/best_model.keras [--images 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.common import DATA, add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from benchmarks.common import machine, median_ms  # noqa: E402  (benchmarks/common.py)

import sat_tf.models  # noqa: E402,F401  (registers the classes)
from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.data.readers import index_images, read_flickr_tokens  # noqa: E402
from sat_tf.data.records import group_references  # noqa: E402
from sat_tf.evaluation.metrics import caption_metrics  # noqa: E402
from sat_tf.export.saved_model import export_saved_model  # noqa: E402
from sat_tf.export.tflite import export_tflite  # noqa: E402
from sat_tf.inference import generate_captions  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402
from sat_tf_edge import EdgeCaptioner  # noqa: E402
from sat_tf_edge.images import load_image as contract_image  # noqa: E402


def load_rgb(source, size: int) -> np.ndarray:
    """The image contract's pixels as the float32 [1, S, S, 3] batch the encoders take."""
    return contract_image(source, size).astype(np.float32)[np.newaxis]


FLICKR8K = DATA / "flickr8k"
# (encoder, decoder) quantization. Dynamic-range convolutions run as slow hybrid kernels on CPU
# (measured: the Lite0 encoder goes from 8 to 26 ms), so "dynamic" quantizes the decoder only;
# the last row pairs the int8 encoder with the dynamic-range decoder.
VARIANTS = {
    "fp32": ("fp32", "fp32"),
    "fp16": ("fp16", "fp16"),
    "dynamic": ("fp32", "dynamic"),
    "int8": ("int8", "int8"),
    "int8 encoder + dynamic decoder": ("int8", "dynamic"),
}


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default=str(FLICKR8K))
    parser.add_argument("--images", type=int, default=1000, help="dev images to caption per variant")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    add_output_argument(parser, "export_report.json")
    args = parser.parse_args()
    model = keras.saving.load_model(args.model)
    size = model.encoder.image_size
    data = Path(args.data)
    tokens_file = data / "Flickr8k.token.txt"
    dev_records = read_flickr_tokens(tokens_file, data / "Flickr_8k.devImages.txt")
    all_dev_paths, dev_index = index_images(dev_records)
    references = group_references(dev_records, [all_dev_paths[i] for i in dev_index])
    dev_paths = all_dev_paths[: args.images]
    references = {p: references[p] for p in dev_paths}
    train_paths, _ = index_images(read_flickr_tokens(tokens_file, data / "Flickr_8k.trainImages.txt"))
    calibration = [load_image(p, size) for p in train_paths[: args.calibration_images]]

    # The host-side decode of the edge runtime; Keras gets the very same pixels.
    pixels = np.concatenate([load_rgb(p, size) for p in dev_paths])
    keras_captions = generate_captions(model, images=pixels, max_length=20, batch_size=50).best()
    float_scores = caption_metrics(references, dict(zip(dev_paths, keras_captions.texts)))
    report = {
        "machine": machine(),
        "model": args.model,
        "images": len(dev_paths),
        "command": " ".join(["python", *sys.argv]),
        "keras": {
            "BLEU-4": float_scores["BLEU-4"],
            "CIDEr": float_scores["CIDEr"],
            "size_mb": _size_mb(Path(args.model)),
        },
        "variants": {},
    }
    work = Path(tempfile.mkdtemp(prefix="sat_tf_export_report_"))
    saved_model = export_saved_model(model, work / "serving", "sat_tf", 1)
    report["saved_model_mb"] = _size_mb(saved_model)
    jpeg_bytes = [Path(p).read_bytes() for p in dev_paths[: args.latency_runs]]

    for name, (encoder_quantization, decoder_quantization) in VARIANTS.items():
        paths = export_tflite(model, work / name, encoder_quantization, decoder_quantization, calibration)
        edge = EdgeCaptioner(paths["manifest"].parent, num_threads=args.threads)
        results = [edge.caption_beam(edge.encode_image(pixels[i : i + 1])) for i in range(len(pixels))]
        identical = sum(
            r.tokens == keras_captions.tokens[i, : keras_captions.lengths[i]].tolist() for i, r in enumerate(results)
        )
        scores = caption_metrics(references, dict(zip(dev_paths, (r.text for r in results))))
        image_iter = iter(range(10**9))
        whole_ms = median_ms(
            lambda edge=edge, image_iter=image_iter: edge.caption(
                jpeg_bytes[next(image_iter) % len(jpeg_bytes)], beam_size=1
            ),
            args.latency_runs,
            warmup=1,
        )
        steps = np.mean([len(r.tokens) for r in results])
        encoded = edge.encode_image(pixels[:1])
        step_inputs = {k: encoded[k] for k in ("attention_keys", "context_gates", "context_outputs", "hidden", "cell")}
        step_ms = median_ms(
            lambda edge=edge, step_inputs=step_inputs: edge.step(**step_inputs, previous_token=np.array([1], np.int32)),
            200,
            warmup=1,
        )
        encoder_ms = median_ms(lambda edge=edge: edge.encode_image(pixels[:1]), args.latency_runs, warmup=1)
        decode_ms = median_ms(lambda: load_rgb(jpeg_bytes[0], size), args.latency_runs)
        report["variants"][name] = {
            "encoder_quantization": encoder_quantization,
            "decoder_quantization": decoder_quantization,
            "encoder_mb": _size_mb(paths["encoder"]),
            "decoder_mb": _size_mb(paths["decoder"]),
            "tokens_identical_to_keras": f"{identical}/{len(results)}",
            "BLEU-4": scores["BLEU-4"],
            "BLEU-4_change": scores["BLEU-4"] - float_scores["BLEU-4"],
            "CIDEr": scores["CIDEr"],
            "caption_from_jpeg_ms": whole_ms,
            "jpeg_decode_resize_ms": decode_ms,
            "encoder_ms": encoder_ms,
            "decoder_step_ms": step_ms,
            "mean_steps": float(steps),
        }
        print(name, report["variants"][name], flush=True)

    served = tf.saved_model.load(str(saved_model))
    serving_default = served.signatures["serving_default"]
    image_iter = iter(range(10**9))
    report["saved_model_caption_from_jpeg_ms"] = median_ms(
        lambda: serving_default(image_bytes=tf.constant([jpeg_bytes[next(image_iter) % len(jpeg_bytes)]])),
        args.latency_runs,
    )
    image_iter = iter(range(10**9))
    report["keras_caption_from_jpeg_ms"] = median_ms(
        lambda: generate_captions(model, images=load_rgb(jpeg_bytes[next(image_iter) % len(jpeg_bytes)], size)),
        args.latency_runs,
    )
    fp32, dynamic = report["variants"]["fp32"], report["variants"]["dynamic"]
    report["dynamic_decoder_size_ratio"] = fp32["decoder_mb"] / dynamic["decoder_mb"]
    report["litert_speedup_over_saved_model"] = {
        name: report["saved_model_caption_from_jpeg_ms"] / variant["caption_from_jpeg_ms"]
        for name, variant in report["variants"].items()
    }
    print({k: v for k, v in report.items() if k != "variants"})
    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
