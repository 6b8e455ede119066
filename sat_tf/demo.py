"""`sat-tf demo`: the whole flow on the embedded synthetic dataset, in minutes on a CPU.

Generates grounded synthetic images, trains a soft-attention captioner with the custom loop
(the shipped `shapes-demo` recipe), captions held-out images, scores BLEU and attention
localization, and writes attention plots.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from sat_tf.data import synthetic
from sat_tf.data.sources import load_captions
from sat_tf.evaluation.bleu import corpus_bleu
from sat_tf.evaluation.localization import attention_localization
from sat_tf.inference import generate_captions
from sat_tf.inference.attention_plot import plot_attention
from sat_tf.utils.atomic import write_json_atomic
from sat_tf.workflows import resolve_run_config, train_captioner
from sat_tf.workflows.run_config import RunConfig

TEST_SEED_OFFSET = 10_000  # held-out images: another seed than training's


@dataclasses.dataclass
class DemoConfig:
    """What the demo runs: the `shapes-demo` recipe (measured to finish within 5 minutes on 2 CPU
    cores), the held-out set and the plots.

    Args:
        settings: overrides of the recipe, section by section ({"model": {"hidden_dim": 32}}).
        test_images: held-out images captioned and scored.
        plots: attention figures written.
        seed: seed of the data and of training.
    """

    settings: dict = dataclasses.field(default_factory=dict)
    test_images: int = 500
    plots: int = 4
    seed: int = 0

    @classmethod
    def fast(cls) -> "DemoConfig":
        """A tiny configuration for tests: exercises every stage in seconds."""
        return cls(
            settings={
                "data": {"num_images": 96},
                "model": {"hidden_dim": 32, "embedding_dim": 16, "attention_dim": 16, "cnn_filters": [8, 8, 16]},
                "training": {"batch_size": 32, "epochs": 1},
            },
            test_images=16,
            plots=1,
        )

    def run_config(self) -> RunConfig:
        seeds = {"data": {"data_seed": self.seed}, "training": {"seed": self.seed}}
        overrides = {
            name: {**seeds.get(name, {}), **self.settings.get(name, {})} for name in set(seeds) | set(self.settings)
        }
        return resolve_run_config("shapes-demo", overrides=overrides)


def run_demo(
    output_dir: str | Path, config: DemoConfig | None = None, strategy: str = "default", verbose: bool = True
) -> dict:
    """Runs the demo and returns its metrics (also written to `output_dir/demo_metrics.json`)."""
    config = config or DemoConfig()
    run = config.run_config()
    run = dataclasses.replace(run, training=dataclasses.replace(run.training, strategy=strategy))
    output_dir = Path(output_dir)
    started = time.perf_counter()
    if verbose:
        print(f"training on {run.data.num_images} synthetic images")
    result = train_captioner(run, output_dir, verbose=verbose, validate=False)
    train_seconds = time.perf_counter() - started

    image_size = result.model.encoder.image_size
    test_set = load_captions(
        run.data, image_size, id_prefix="test", seed_offset=TEST_SEED_OFFSET, num_images=config.test_images
    )
    decoded = generate_captions(
        result.model, images=test_set.images, sampler=run.decoding.sampler(), max_length=run.decoding.max_length
    ).best()
    image_ids, references = test_set.image_ids, test_set.references()
    bleu = corpus_bleu(references, dict(zip(image_ids, decoded.texts)))
    grid = result.model.feature_grid
    assert isinstance(test_set.images, np.ndarray) and test_set.objects is not None  # generated data
    localization = attention_localization(
        [t.split() for t in decoded.texts],
        decoded.alphas,
        test_set.objects,
        grid,
        image_size,
        synthetic.naming_phrases(),
    )
    plot_dir = output_dir / "attention_plots"
    for index in range(min(config.plots, config.test_images)):
        plot_attention(
            test_set.images[index], decoded.words(index), decoded.alphas[index], grid, plot_dir / f"test_{index}.png"
        )
    examples = [
        {"image": image_ids[i], "caption": decoded.texts[i], "references": references[image_ids[i]]}
        for i in range(min(5, len(image_ids)))
    ]
    metrics = {
        **bleu,
        "phrase_localization": localization["phrase_accuracy"],
        "word_localization": localization["word_accuracy"],
        "num_phrases": localization["num_phrases"],
        "train_steps": result.steps,
        "train_tokens_per_second": result.tokens_per_second,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
        "examples": examples,
        "config": {**dataclasses.asdict(config), "run": run.to_dict()},
    }
    write_json_atomic(output_dir / "demo_metrics.json", metrics)
    if verbose:
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("examples", "config")}, indent=2))
        for example in examples:
            print(f"  {example['image']}: {example['caption']!r}  (reference: {example['references'][0]!r})")
        print(f"attention plots: {plot_dir}/   metrics: {output_dir / 'demo_metrics.json'}")
    return metrics
