"""The end-to-end captioner: encoder + attention decoder + tokenizer, trainable with `model.fit`."""

from __future__ import annotations

import keras
import tensorflow as tf

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.models.decoder import AttentionDecoder
from sat_tf.models.encoder import Encoder
from sat_tf.models.losses import PENALTY_TARGETS, doubly_stochastic_penalty, masked_cross_entropy_sum

# Chosen by measurement (benchmarks/penalty_sweep.py, README "Penalty weight"): on the synthetic
# demo (L = 64 regions, ~10-word captions) every weight tried (1e-4 ... 1, tau = 1 or T/L) lowered
# attention localization, without improving BLEU-4, so the penalty is available but off by default.
DEFAULT_PENALTY_WEIGHT = 0.0


@keras.saving.register_keras_serializable(package="sat_tf")
class Captioner(keras.Model):
    """"Show, Attend and Tell" captioner with soft attention.

    Batches are dicts with `tokens` (int32 [B, T+1], `<start>` ... `<end>` then `<pad>`) and either
    `images` ([B, H, W, 3], 0..255) or precomputed `features` ([B, L, D]). The loss is the
    cross-entropy per target token (averaged over all real tokens of the global batch) plus
    `penalty_weight` times the doubly stochastic penalty per caption (averaged over the global batch).

    Args:
        encoder: an `Encoder`.
        decoder: an `AttentionDecoder` whose vocabulary matches `tokenizer`.
        tokenizer: the `CaptionTokenizer`; stored inside the `.keras` file.
        penalty_weight: lambda of the doubly stochastic penalty.
        penalty_target: "one" (tau = 1, the paper) or "length" (tau = T/L).
        **kwargs: standard `keras.Model` arguments.

    Example:
        >>> model = Captioner(Encoder("small_cnn", 64), AttentionDecoder(tok.vocabulary_size), tok)
        >>> model.compile(optimizer="adam")
        >>> model.fit(dataset, epochs=3)           # dataset of {"images", "tokens"} dicts

    Reference:
        Xu et al., "Show, Attend and Tell: Neural Image Caption Generation with Visual Attention",
        ICML 2015, equation (14).
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: AttentionDecoder,
        tokenizer: CaptionTokenizer,
        penalty_weight: float = DEFAULT_PENALTY_WEIGHT,
        penalty_target: str = "one",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if penalty_target not in PENALTY_TARGETS:
            raise ValueError(f"penalty_target must be one of {PENALTY_TARGETS}, got '{penalty_target}'")
        if decoder.vocabulary_size != tokenizer.vocabulary_size:
            raise ValueError(
                f"decoder vocabulary_size {decoder.vocabulary_size} != tokenizer's {tokenizer.vocabulary_size}"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.penalty_weight = float(penalty_weight)
        self.penalty_target = penalty_target
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        image_size = self.encoder.image_size
        # Sub-layers may arrive built (deserialisation builds them from their own build config).
        if not self.encoder.built:
            self.encoder.build((None, image_size, image_size, 3))
        if not self.decoder.built:
            height, width = self.encoder.feature_grid()
            self.decoder.build((None, height * width, self.encoder.feature_dim))
        self.built = True

    @property
    def feature_grid(self) -> tuple[int, int]:
        return self.encoder.feature_grid()

    def encode(self, images, training=False) -> tf.Tensor:
        return self.encoder(images, training=training)

    def features_of(self, batch: dict, training=False) -> tf.Tensor:
        """Region features of a batch: given `features`, or encoded from `images`."""
        if "features" in batch:
            return tf.cast(batch["features"], self.compute_dtype)
        return self.encode(batch["images"], training=training)

    def call(self, inputs, training=False):
        """Teacher-forced pass: returns {"logits": [B, T, V], "alphas": [B, T, L]}."""
        features = self.features_of(inputs, training=training)
        logits, alphas = self.decoder(features, inputs["tokens"][:, :-1], training=training)
        return {"logits": logits, "alphas": alphas}

    def compute_caption_loss(self, batch: dict, training: bool = False):
        """Loss of this replica's share of the global batch, scaled so that summing over replicas
        gives the global loss. Returns (loss, logs) where logs hold global-batch values."""
        outputs = self(batch, training=training)
        targets = batch["tokens"][:, 1:]
        mask = tf.not_equal(targets, self.tokenizer.pad_id)
        # The loss is always float32, also under a mixed-precision policy (bfloat16/float16 compute).
        logits, alphas = tf.cast(outputs["logits"], tf.float32), tf.cast(outputs["alphas"], tf.float32)
        cross_entropy_sum = masked_cross_entropy_sum(logits, targets, mask)
        penalty_sum = tf.reduce_sum(doubly_stochastic_penalty(alphas, mask, self.penalty_target))
        num_tokens = tf.reduce_sum(tf.cast(mask, tf.float32))
        num_captions = tf.cast(tf.shape(targets)[0], tf.float32)
        num_tokens, num_captions = _sum_over_replicas([num_tokens, num_captions])
        cross_entropy = cross_entropy_sum / tf.maximum(num_tokens, 1.0)
        penalty = penalty_sum / num_captions
        loss = cross_entropy + self.penalty_weight * penalty
        global_loss, global_cross_entropy, global_penalty = _sum_over_replicas([loss, cross_entropy, penalty])
        logs = {
            "loss": global_loss,
            "cross_entropy": global_cross_entropy,
            "penalty": global_penalty,
            "tokens": num_tokens,
        }
        return loss, logs

    def _update_trackers(self, logs):
        self.loss_tracker.update_state(logs["loss"])
        self.cross_entropy_tracker.update_state(logs["cross_entropy"])
        self.penalty_tracker.update_state(logs["penalty"])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, logs = self.compute_caption_loss(data, training=True)
        gradients = dense_gradients(tape.gradient(loss, self.trainable_variables))
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._update_trackers(logs)

    def test_step(self, data):
        _, logs = self.compute_caption_loss(data, training=False)
        return self._update_trackers(logs)

    @property
    def metrics(self):
        return [self.loss_tracker, self.cross_entropy_tracker, self.penalty_tracker]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            decoder=keras.saving.serialize_keras_object(self.decoder),
            tokenizer=keras.saving.serialize_keras_object(self.tokenizer),
            penalty_weight=self.penalty_weight,
            penalty_target=self.penalty_target,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "tokenizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def dense_gradients(gradients):
    """Embedding gradients arrive as IndexedSlices; Keras' Adam treats those slightly differently
    from dense tensors, so both training paths densify them to stay numerically identical."""
    return [tf.convert_to_tensor(g) if g is not None else None for g in gradients]


def _sum_over_replicas(values):
    """All-reduces (sums) values across replicas; the identity outside a multi-replica context."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
