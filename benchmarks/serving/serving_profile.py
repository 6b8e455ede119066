"""Where a served request's time goes: the exported SavedModel called directly (no HTTP) at batch
1, 4 and 16, and the model's encoder alone at batch 1 and 16 (with and without XLA), so the
ceiling batching can reach is visible apart from the server.

    sat-tf export --model flickr8k_lite0 --saved-model-dir runs/serving_graph
    sat-tf export --model flickr8k_lite0 --saved-model-dir runs/serving_xla --xla
    python -m benchmarks.serving.serving_profile --model flickr8k_lite0 \\
        --model-dir runs/serving_graph/sat_tf runs/serving_xla/sat_tf --output benchmarks/results/serving_profile.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.common import DATA, add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import machine, median_ms  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402

DEV_IMAGES = DATA / "flickr8k" / "images"
BATCHES = (1, 4, 16)


def saved_model_costs(version_dir: Path, photos: list[bytes], runs: int) -> dict:
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    costs = {}
    for batch in BATCHES:
        data = tf.constant(photos[:batch])
        costs[f"batch_{batch}_ms_per_photo"] = (
            median_ms(lambda data=data: signature(image_bytes=data)["caption"].numpy(), runs) / batch
        )
    return costs


def encoder_costs(model_name: str, runs: int) -> dict:
    import tensorflow as tf

    from sat_tf.workflows import load_captioner

    model = load_captioner(model_name)
    size = model.encoder.image_size
    costs = {}
    for jit_compile in (False, True):
        encode = tf.function(lambda images: model.encode(images, training=False), jit_compile=jit_compile)
        for batch in (1, 16):
            images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
            name = f"batch_{batch}_ms_per_photo" + ("_xla" if jit_compile else "")
            costs[name] = median_ms(lambda encode=encode, images=images: encode(images).numpy(), runs) / batch
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flickr8k_lite0", help="the model whose encoder is timed alone")
    parser.add_argument("--model-dir", nargs="+", required=True, help="<base>/<model_name> written by sat-tf export")
    parser.add_argument("--images", default=str(DEV_IMAGES))
    parser.add_argument("--runs", type=int, default=10)
    add_output_argument(parser, "serving_profile.json")
    args = parser.parse_args()
    photos = [p.read_bytes() for p in sorted(Path(args.images).glob("*.jpg"))[: max(BATCHES)]]
    if len(photos) < max(BATCHES):
        raise SystemExit(f"{args.images}: need {max(BATCHES)} JPEG photos")
    report = {
        "machine": machine(),
        "command": " ".join(
            ["python -m benchmarks.serving.serving_profile", "--model", args.model, "--model-dir", *args.model_dir]
        ),
        "saved_models": {},
        "encoder": encoder_costs(args.model, args.runs),
    }
    for model_dir in args.model_dir:
        versions = sorted((p for p in Path(model_dir).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        report["saved_models"][model_dir] = saved_model_costs(versions[-1], photos, args.runs)
    print(json.dumps(report, indent=2))
    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
