"""A weight soup of captioners fine-tuned from one model: every floating-point weight replaced by
its weighted mean over the models (Wortsman et al., "Model soups", ICML 2022). Fine-tuned
relatives (here the self-trained student and the preset it started from) sit in one basin of the
loss, so their mean can keep what each is good at for the cost of one model.

Writes a run folder (`<output>/best_model.keras` and the `run_config.json` of the first run folder
among the models) that `sat-tf caption --model`, `sat-tf evaluate` and the quality benchmarks read:

    python -m benchmarks.studies.weight_soup --model everyday_lite0_448 runs/selftrain/student1 \
        --weights 0.5 0.5 --output runs/selftrain/soup
    python -m benchmarks.quality.repetition --model runs/selftrain/soup
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sat_tf.workflows.model_reference import resolve_model  # noqa: E402
from sat_tf.workflows.models import save_captioner  # noqa: E402


def soup(models: list, weights: list[float]):
    """The first model with each float weight set to the weighted mean over `models` (matched by
    variable path)."""
    first = models[0]
    by_path = [{v.path: v for v in model.weights} for model in models]
    if any(set(paths) != set(by_path[0]) for paths in by_path):
        raise SystemExit("the models differ in architecture: a soup needs one architecture")
    total = float(sum(weights))
    for variable in first.weights:
        if keras.backend.is_float_dtype(variable.dtype):
            values = [paths[variable.path].numpy().astype(np.float64) for paths in by_path]
            mean = sum(w * value for w, value in zip(weights, values)) / total
            variable.assign(mean.astype(variable.dtype))
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="preset names, run folders or .keras files")
    parser.add_argument("--weights", type=float, nargs="+", help="one per model (default: equal)")
    parser.add_argument("--output", type=Path, required=True, help="the soup's run folder")
    args = parser.parse_args()
    weights = args.weights or [1.0] * len(args.model)
    if len(weights) != len(args.model):
        raise SystemExit("--weights: one per model")
    resolved = [resolve_model(reference) for reference in args.model]
    models = [reference.load() for reference in resolved]
    args.output.mkdir(parents=True, exist_ok=True)
    save_captioner(soup(models, weights), args.output / "best_model.keras")
    configs = [Path(r) / "run_config.json" for r in args.model if (Path(r) / "run_config.json").is_file()]
    if configs:  # the decoding settings travel with the run's config
        shutil.copy(configs[0], args.output / "run_config.json")
    print(f"wrote {args.output / 'best_model.keras'}")


if __name__ == "__main__":
    main()
