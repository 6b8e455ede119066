"""Mixed-precision training: the policy chosen, bfloat16/float16 compute while training, float32
weights and saved models, loss scaling for float16."""

import json
import zipfile

import keras
import numpy as np
import pytest
from conftest import make_tiny_model

from sat_tf.errors import ConfigError
from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.training import TrainConfig, TrainingData
from sat_tf.training.precision import cpu_supports_bfloat16, resolve_precision
from sat_tf.training.trainer import Trainer


def test_cpu_flags_decide_bfloat16(tmp_path):
    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16 fma\n\nprocessor : 1\n")
    without = tmp_path / "plain"
    without.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f fma\n")
    assert cpu_supports_bfloat16(with_bf16) and not cpu_supports_bfloat16(without)
    assert not cpu_supports_bfloat16(tmp_path / "missing")
    assert resolve_precision("mixed_float16") == "mixed_float16"
    assert resolve_precision("auto") in ("float32", "mixed_bfloat16")
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="half")


def _train(tiny_data, tmp_path, precision: str, steps: int = 6):
    data, tokenizer, captions = tiny_data
    config = TrainConfig(
        batch_size=16,
        epochs=2,
        max_steps=steps,
        learning_rate=3e-3,
        precision=precision,
        bucket_by_length=False,
        log_every=1,
    )

    def validate(model):  # decodes like every validator: must work under a mixed policy too
        return float(
            len(generate_captions(model, images=data.images[:4], sampler=BeamSampler(2), max_length=6).best().texts[0])
        )

    trainer = Trainer(
        lambda: make_tiny_model(tokenizer),
        TrainingData(data.images, captions),
        config,
        tmp_path / precision,
        verbose=False,
        validate=validate,
    )
    result = trainer.fit()
    return trainer, result


@pytest.mark.parametrize("precision, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_trains_in_low_precision_and_saves_float32(tiny_data, tmp_path, precision, compute):
    trainer, result = _train(tiny_data, tmp_path, precision)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = trainer.model
    assert model.decoder.compute_dtype == compute and model.decoder.variable_dtype == "float32"
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    losses = [entry["loss"] for entry in result.history if "loss" in entry]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # 2.99 -> 2.92 on every kernel path
    if precision == "mixed_float16":
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        assert float(trainer.optimizer.dynamic_scale.numpy()) >= 1.0
    assert (tmp_path / precision / "best_model.keras").is_file()  # validated (in float32) and saved
    saved = tmp_path / precision / "model.keras"
    assert compute not in json.dumps(json.loads(zipfile.ZipFile(saved).read("config.json")))
    loaded = keras.saving.load_model(saved)
    assert {layer.compute_dtype for layer in loaded._flatten_layers()} == {"float32"}
    np.testing.assert_array_equal(
        loaded.decoder.trainable_weights[0].numpy(), model.decoder.trainable_weights[0].numpy()
    )


def test_mixed_precision_follows_the_float32_run(tiny_data, tmp_path):
    """The same steps in bfloat16 compute end near the float32 run (same data and initial weights)."""
    _, full = _train(tiny_data, tmp_path, "float32", steps=6)
    _, mixed = _train(tiny_data, tmp_path, "mixed_bfloat16", steps=6)
    full_losses = np.array([e["loss"] for e in full.history if "loss" in e])
    mixed_losses = np.array([e["loss"] for e in mixed.history if "loss" in e])
    # bfloat16 keeps 8 bits of mantissa (~0.4% relative error per value); the loss stays within a few %
    np.testing.assert_allclose(mixed_losses, full_losses, rtol=0.05)
