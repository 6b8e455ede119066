"""`sat-tf demo`: the whole flow on the embedded synthetic dataset, in minutes on a CPU.

Generates grounded synthetic images, trains a soft-attention captioner with the custom loop,
captions held-out images, scores BLEU and attention localization, and writes attention plots.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from sat_tf.data import synthetic
from sat_tf.data.pipeline import encode_captions
from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.evaluation.bleu import corpus_bleu
from sat_tf.evaluation.localization import attention_localization
from sat_tf.inference.attention_plot import plot_attention
from sat_tf.inference.greedy import caption_images
from sat_tf.models import AttentionDecoder, Captioner, Encoder
from sat_tf.models.captioner import DEFAULT_PENALTY_WEIGHT
from sat_tf.training import TrainConfig, TrainingData, make_strategy, train
from sat_tf.utils.atomic import write_json_atomic


@dataclasses.dataclass
class DemoConfig:
    """Sizes of the demo; the defaults were measured to finish within 5 minutes on 2 CPU cores."""

    train_images: int = 6000
    test_images: int = 500
    image_size: int = 64
    grid_size: int = 4
    captions_per_image: int = 1
    embedding_dim: int = 64
    hidden_dim: int = 256
    attention_dim: int = 128
    dropout: float = 0.2
    cnn_filters: tuple = (16, 32, 64)
    penalty_weight: float = DEFAULT_PENALTY_WEIGHT
    penalty_target: str = "one"
    batch_size: int = 64
    epochs: int = 20
    learning_rate: float = 3e-3
    plots: int = 4
    seed: int = 0
    jit_compile: bool = False
    normalization: str = "batch"
    # Off: with BatchNorm in training mode, length buckets leak each caption's length (and so the
    # object count) through the batch statistics; see sat_tf.models.backbones.build_small_cnn.
    bucket_by_length: bool = False

    @classmethod
    def fast(cls) -> "DemoConfig":
        """A tiny configuration for tests: exercises every stage in seconds."""
        return cls(train_images=96, test_images=16, hidden_dim=32, embedding_dim=16, attention_dim=16,
                   cnn_filters=(8, 8, 16), batch_size=32, epochs=1, plots=1)


def build_demo_model(config: DemoConfig, tokenizer: CaptionTokenizer) -> Captioner:
    encoder = Encoder("small_cnn", image_size=config.image_size, small_cnn_filters=config.cnn_filters,
                      small_cnn_normalization=config.normalization, append_coordinates=True)
    decoder = AttentionDecoder(tokenizer.vocabulary_size, embedding_dim=config.embedding_dim,
                               hidden_dim=config.hidden_dim, attention_dim=config.attention_dim,
                               dropout=config.dropout)
    return Captioner(encoder, decoder, tokenizer, penalty_weight=config.penalty_weight,
                     penalty_target=config.penalty_target)


def run_demo(output_dir: str | Path, config: DemoConfig | None = None, strategy: str = "default",
             verbose: bool = True) -> dict:
    """Runs the demo and returns its metrics (also written to `output_dir/demo_metrics.json`)."""
    config = config or DemoConfig()
    output_dir = Path(output_dir)
    started = time.perf_counter()
    make = dict(image_size=config.image_size, grid_size=config.grid_size,
                captions_per_image=config.captions_per_image)
    train_set = synthetic.generate(config.train_images, seed=config.seed, id_prefix="train", **make)
    test_set = synthetic.generate(config.test_images, seed=config.seed + 10_000, id_prefix="test", **make)
    tokenizer = CaptionTokenizer.from_corpus(r.caption for r in train_set.records)
    captions = encode_captions(train_set.records, tokenizer)
    train_config = TrainConfig(batch_size=config.batch_size, epochs=config.epochs,
                               learning_rate=config.learning_rate, schedule="cosine",
                               warmup_steps=50, seed=config.seed, checkpoint_every=1000, log_every=20,
                               jit_compile=config.jit_compile, bucket_by_length=config.bucket_by_length)
    if verbose:
        print(f"training on {config.train_images} synthetic images ({len(captions)} captions), "
              f"vocabulary {tokenizer.vocabulary_size} words")
    result = train(lambda: build_demo_model(config, tokenizer), TrainingData(train_set.images, captions),
                   train_config, output_dir, strategy=make_strategy(strategy), verbose=verbose)
    train_seconds = time.perf_counter() - started

    decoded = caption_images(result.model, test_set.images, max_length=24)
    image_ids = test_set.image_ids
    bleu = corpus_bleu(test_set.references(), dict(zip(image_ids, decoded.texts)))
    grid = result.model.feature_grid
    localization = attention_localization([t.split() for t in decoded.texts], decoded.alphas,
                                          test_set.objects, grid, config.image_size)
    plot_dir = output_dir / "attention_plots"
    for index in range(min(config.plots, config.test_images)):
        plot_attention(test_set.images[index], decoded.words(index), decoded.alphas[index], grid,
                       plot_dir / f"test_{index}.png")
    metrics = {
        **bleu,
        "phrase_localization": localization["phrase_accuracy"],
        "word_localization": localization["word_accuracy"],
        "num_phrases": localization["num_phrases"],
        "train_steps": result.steps,
        "train_tokens_per_second": result.tokens_per_second,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
        "examples": [{"image": image_ids[i], "caption": decoded.texts[i],
                      "references": test_set.references()[image_ids[i]]} for i in range(min(5, len(image_ids)))],
        "config": dataclasses.asdict(config),
    }
    write_json_atomic(output_dir / "demo_metrics.json", metrics)
    if verbose:
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("examples", "config")}, indent=2))
        for example in metrics["examples"]:
            print(f"  {example['image']}: {example['caption']!r}  (reference: {example['references'][0]!r})")
        print(f"attention plots: {plot_dir}/   metrics: {output_dir / 'demo_metrics.json'}")
    return metrics
