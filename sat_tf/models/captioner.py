"""The end-to-end captioner: encoder + attention decoder + tokenizer, trainable with `model.fit`."""

from __future__ import annotations

import keras
import tensorflow as tf

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.models.decoder import AttentionDecoder
from sat_tf.models.encoder import Encoder
from sat_tf.models.hard_attention import (
    attention_entropy,
    location_log_likelihood,
    reinforce_surrogate,
    updated_baseline,
)
from sat_tf.models.losses import PENALTY_TARGETS, doubly_stochastic_penalty, masked_token_cross_entropy

# Chosen by measurement (benchmarks/penalty_sweep.py, README "Penalty weight"): on the synthetic
# demo (L = 64 regions, ~10-word captions) every weight tried (1e-4 ... 1, tau = 1 or T/L) lowered
# attention localization, without improving BLEU-4, so the penalty is available but off by default.
DEFAULT_PENALTY_WEIGHT = 0.0
# Hard attention. The authors' code (arctic-captions, capgen.py) weights the REINFORCE term by 1/10
# on the per-word mean log-likelihood; on ~12-word captions that is ~0.01 on the paper's summed
# log p(y|s,a), which is what `reward_weight` multiplies here. Entropy weight: theirs, 0.002.
DEFAULT_REWARD_WEIGHT = 0.01
DEFAULT_ENTROPY_WEIGHT = 0.002


@keras.saving.register_keras_serializable(package="sat_tf")
class Captioner(keras.Model):
    """"Show, Attend and Tell" captioner with soft attention.

    Batches are dicts with `tokens` (int32 [B, T+1], `<start>` ... `<end>` then `<pad>`) and either
    `images` ([B, H, W, 3], 0..255) or precomputed `features` ([B, L, D]). The loss is the
    cross-entropy per target token (averaged over all real tokens of the global batch) plus
    `penalty_weight` times the doubly stochastic penalty per caption (averaged over the global batch).

    With a hard-attention decoder (`attention_mode="hard"`), training maximises the paper's
    variational bound with its Monte-Carlo gradient (section 4.1): per caption, log p(y|s,a) plus
    `reward_weight` (lambda_r) * (log p(y|s,a) - b) * log p(s|a) plus `entropy_weight` (lambda_e)
    * H[s], with b the moving average of log p(y|s,a) (`baseline_decay`); in minibatches where the
    decoder used the expectation instead of a sample, only the entropy term is added. All terms are
    divided by the global number of target tokens, like the cross-entropy.

    Args:
        encoder: an `Encoder`.
        decoder: an `AttentionDecoder` whose vocabulary matches `tokenizer`.
        tokenizer: the `CaptionTokenizer`; stored inside the `.keras` file.
        penalty_weight: lambda of the doubly stochastic penalty.
        penalty_target: "one" (tau = 1, the paper) or "length" (tau = T/L).
        reward_weight: lambda_r of the REINFORCE term (hard attention only).
        entropy_weight: lambda_e of the attention-entropy bonus (hard attention only).
        baseline_decay: decay of the moving-average baseline b (0.9 in the paper).
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
        reward_weight: float = DEFAULT_REWARD_WEIGHT,
        entropy_weight: float = DEFAULT_ENTROPY_WEIGHT,
        baseline_decay: float = 0.9,
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
        self.reward_weight = float(reward_weight)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
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
        if self.decoder.attention_mode == "hard":
            # b of the REINFORCE term; every replica assigns the same global value.
            self.reward_baseline = self.add_weight(name="reward_baseline", shape=(), initializer="zeros",
                                                   trainable=False, aggregation="only_first_replica")
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
        """Teacher-forced pass: returns {"logits": [B, T, V], "alphas": [B, T, L]} (and, for hard
        attention, "locations" and "used_expectation"; see `AttentionDecoder.teacher_forcing`)."""
        features = self.features_of(inputs, training=training)
        return self.decoder(features, inputs["tokens"][:, :-1], training=training)

    def compute_caption_loss(self, batch: dict, training: bool = False):
        """Loss of this replica's share of the global batch, scaled so that summing over replicas
        gives the global loss. Returns (loss, logs) where logs hold global-batch values."""
        outputs = self(batch, training=training)
        targets = batch["tokens"][:, 1:]
        mask = tf.not_equal(targets, self.tokenizer.pad_id)
        # The loss is always float32, also under a mixed-precision policy (bfloat16/float16 compute).
        logits, alphas = tf.cast(outputs["logits"], tf.float32), tf.cast(outputs["alphas"], tf.float32)
        token_losses = masked_token_cross_entropy(logits, targets, mask)
        cross_entropy_sum = tf.reduce_sum(token_losses)
        penalty_sum = tf.reduce_sum(doubly_stochastic_penalty(alphas, mask, self.penalty_target))
        num_tokens = tf.reduce_sum(tf.cast(mask, tf.float32))
        num_captions = tf.cast(tf.shape(targets)[0], tf.float32)
        num_tokens, num_captions = _sum_over_replicas([num_tokens, num_captions])
        cross_entropy = cross_entropy_sum / tf.maximum(num_tokens, 1.0)
        penalty = penalty_sum / num_captions
        loss = cross_entropy + self.penalty_weight * penalty
        if "locations" in outputs and training:
            loss += self._hard_attention_loss(outputs, alphas, token_losses, mask, num_tokens, num_captions)
        global_loss, global_cross_entropy, global_penalty = _sum_over_replicas([loss, cross_entropy, penalty])
        logs = {
            "loss": global_loss,
            "cross_entropy": global_cross_entropy,
            "penalty": global_penalty,
            "tokens": num_tokens,
        }
        return loss, logs

    def _hard_attention_loss(self, outputs, alphas, token_losses, mask, num_tokens, num_captions):
        """The REINFORCE and entropy terms (negated surrogate minus its log-likelihood part, which
        the cross-entropy already holds), and the baseline update."""
        caption_log_likelihood = -tf.reduce_sum(token_losses, axis=1)
        sampled = 1.0 - tf.cast(outputs["used_expectation"], tf.float32)
        log_p_locations = sampled * location_log_likelihood(alphas, outputs["locations"], mask)
        surrogate = reinforce_surrogate(caption_log_likelihood, log_p_locations, attention_entropy(alphas, mask),
                                        self.reward_baseline, self.reward_weight, self.entropy_weight)
        extra = -tf.reduce_sum(surrogate - caption_log_likelihood) / tf.maximum(num_tokens, 1.0)
        (log_likelihood_sum,) = _sum_over_replicas([tf.reduce_sum(caption_log_likelihood)])
        new_baseline = updated_baseline(self.reward_baseline, log_likelihood_sum / num_captions, self.baseline_decay)
        # Only samples update b (the paper's b tracks log p(y|s,a) of sampled locations).
        self.reward_baseline.assign(tf.where(sampled > 0, new_baseline, self.reward_baseline))
        return extra

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
            reward_weight=self.reward_weight,
            entropy_weight=self.entropy_weight,
            baseline_decay=self.baseline_decay,
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
