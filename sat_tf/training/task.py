"""The captioning task: the one owner of the loss and of the training step.

As in TF Model Garden, the task alone builds the losses and runs a training step; both training
paths use it: the custom distributed loop (`Trainer`, through `replica_step`) and Keras'
`model.fit` (the task is a `keras.Model` wrapping the captioner, as keras-hub's tasks wrap a
backbone).

Loss scaling: each replica divides its summed losses by the *global* number of target tokens and
captions (the counts are all-reduced), so the sum of the replicas' gradients is exactly the
gradient of the global-batch loss. The step all-reduces gradients itself, clips their global norm
once, and divides by the replica count before `apply_gradients`, because the Keras optimizer sums
gradients across replicas again. With one replica (model.fit) the same code clips the same way.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sat_tf.models.captioner import Captioner
from sat_tf.models.hard_attention import (
    attention_entropy,
    caption_reward,
    leave_one_out_baseline,
    location_log_likelihood,
    reinforce_surrogate,
    updated_baseline,
)
from sat_tf.models.losses import doubly_stochastic_penalty, masked_token_cross_entropy


@keras.saving.register_keras_serializable(package="sat_tf")
class CaptioningTask(keras.Model):
    """Trains a `Captioner`: the paper's loss (equation 14) and one optimizer step.

    The loss is the cross-entropy per target token (averaged over all real tokens of the global
    batch) plus `penalty_weight` times the doubly stochastic penalty per caption (averaged over
    the global batch). With a hard-attention decoder, training maximises the paper's variational
    bound with its Monte-Carlo gradient (section 4.1): per caption, log p(y|s,a) plus lambda_r *
    (log p(y|s,a) - b) * log p(s|a) plus lambda_e * H[s], with b the moving average of log p(y|s,a);
    in minibatches where the decoder used the expectation instead of a sample, only the entropy
    term is added. The weights are the captioner's (`penalty_weight`, `reward_weight`, ...), and so
    are the REINFORCE term's reward and baseline (`hard_reward`, `hard_baseline`): with
    `location_samples` = k > 1 every caption is decoded k times with independent location samples
    (the cross-entropy then averages over the k copies).

    Batches are dicts with `tokens` (int32 [B, T+1]) and `images` or `features`
    (`Captioner.features_of`); with features, only the decoder is trained. A batch that mixes in
    captions without a photo also holds `has_photo` (bool [B]): those rows attend over the
    decoder's learned "no photo" annotation (`AttentionDecoder.without_photos`), so they train
    its language side only (multi-task training on paired and text-only captions).

    Args:
        captioner: the model to train.
        clip_norm: clip the global-batch gradient to this global norm (None: no clipping).
        **kwargs: standard `keras.Model` arguments.

    Example:
        >>> task = CaptioningTask(model, clip_norm=5.0)
        >>> task.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> task.fit(dataset, epochs=3)       # dataset of {"images" or "features", "tokens"}
        >>> model.save("model.keras")         # the captioner itself is what gets saved

    Reference:
        Xu et al., "Show, Attend and Tell", ICML 2015, equations (11)-(14).
    """

    def __init__(self, captioner: Captioner, clip_norm: float | None = 5.0, **kwargs):
        super().__init__(**kwargs)
        if clip_norm is not None and clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
        self.captioner = captioner
        self.clip_norm = clip_norm
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")

    def call(self, inputs, training=False):
        return self.captioner(inputs, training=training)

    # ----- losses ------------------------------------------------------------------------------
    def compute_caption_loss(self, batch: dict, training: bool = False):
        """Loss of this replica's share of the global batch, scaled so that summing over replicas
        gives the global loss. Returns (loss, logs) where logs hold global-batch values."""
        model = self.captioner
        features, tokens = model.features_of(batch, training=training), batch["tokens"]
        if "has_photo" in batch:  # captions without a photo (text-only sources) see the "no photo" annotation
            features = model.decoder.without_photos(features, batch["has_photo"])
        samples = model.location_samples if model.decoder.attention_mode == "hard" and training else 1
        if samples > 1:  # adjacent copies: row b * k + j is sample j of caption b
            features, tokens = tf.repeat(features, samples, axis=0), tf.repeat(tokens, samples, axis=0)
        outputs = model.decoder(features, tokens[:, :-1], training=training)
        targets = tokens[:, 1:]
        mask = tf.not_equal(targets, model.tokenizer.pad_id)
        # The loss is always float32, also under a mixed-precision policy (bfloat16/float16 compute).
        logits, alphas = tf.cast(outputs["logits"], tf.float32), tf.cast(outputs["alphas"], tf.float32)
        token_losses = masked_token_cross_entropy(logits, targets, mask)
        cross_entropy_sum = tf.reduce_sum(token_losses)
        penalty_sum = tf.reduce_sum(doubly_stochastic_penalty(alphas, mask, model.penalty_target))
        num_tokens = tf.reduce_sum(tf.cast(mask, tf.float32))
        num_captions = tf.cast(tf.shape(targets)[0], tf.float32)
        num_tokens, num_captions = sum_over_replicas([num_tokens, num_captions])
        cross_entropy = cross_entropy_sum / tf.maximum(num_tokens, 1.0)
        penalty = penalty_sum / num_captions
        loss = cross_entropy + model.penalty_weight * penalty
        if "locations" in outputs and training:
            loss += self._hard_attention_loss(outputs, alphas, token_losses, mask, num_tokens, num_captions)
        global_loss, global_cross_entropy, global_penalty = sum_over_replicas([loss, cross_entropy, penalty])
        logs = {
            "loss": global_loss,
            "cross_entropy": global_cross_entropy,
            "penalty": global_penalty,
            "tokens": num_tokens,
        }
        return loss, logs

    def _hard_attention_loss(self, outputs, alphas, token_losses, mask, num_tokens, num_captions):
        """The REINFORCE and entropy terms (negated surrogate minus its log-likelihood part, which
        the cross-entropy already holds), and the moving-average update (num_captions counts the
        location samples)."""
        model = self.captioner
        caption_log_likelihood = -tf.reduce_sum(token_losses, axis=1)
        reward = caption_reward(caption_log_likelihood, mask, model.hard_reward)
        sampled = 1.0 - tf.cast(outputs["used_expectation"], tf.float32)
        log_p_locations = sampled * location_log_likelihood(alphas, outputs["locations"], mask)
        if model.hard_baseline == "leave_one_out":
            baseline = tf.reshape(leave_one_out_baseline(tf.reshape(reward, [-1, model.location_samples])), [-1])
        else:
            baseline = model.reward_baseline
        surrogate = reinforce_surrogate(
            caption_log_likelihood,
            log_p_locations,
            attention_entropy(alphas, mask),
            baseline,
            model.reward_weight,
            model.entropy_weight,
            reward=reward,
        )
        extra = -tf.reduce_sum(surrogate - caption_log_likelihood) / tf.maximum(num_tokens, 1.0)
        (reward_sum,) = sum_over_replicas([tf.reduce_sum(reward)])
        new_baseline = updated_baseline(model.reward_baseline, reward_sum / num_captions, model.baseline_decay)
        # Only samples update b (the paper's b tracks the reward of sampled locations); with the
        # leave-one-out baseline it is kept for the logs.
        model.reward_baseline.assign(tf.where(sampled > 0, new_baseline, model.reward_baseline))
        return extra

    # ----- the step ----------------------------------------------------------------------------
    def replica_step(
        self,
        batch: dict,
        optimizer: keras.optimizers.Optimizer,
        encoder_optimizer: keras.optimizers.Optimizer | None = None,
    ) -> dict:
        """One optimizer step on this replica's share of a global batch (inside `strategy.run`,
        or directly with one replica). Returns the global-batch logs and the gradient norm.

        With `encoder_optimizer`, the encoder's trainable variables (fine-tuned top blocks) are
        updated by it (a smaller learning rate) and the rest by `optimizer`; the gradient is
        clipped as a whole first."""
        variables = self.captioner.trainable_variables_for(batch)
        # mixed_float16: the loss is scaled up before the gradient (float16 would underflow); the
        # LossScaleOptimizer unscales, and skips steps whose gradients overflowed.
        loss_scale = optimizer.dynamic_scale if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else None
        with tf.GradientTape() as tape:
            loss, logs = self.compute_caption_loss(batch, training=True)
            if loss_scale is not None:
                loss = optimizer.scale_loss(loss)
        gradients = dense_gradients(tape.gradient(loss, variables))
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if replicas > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        gradient_norm = tf.linalg.global_norm(gradients)
        if self.clip_norm is not None:  # clip(s * g, s * c) = s * clip(g, c): the same clip when scaled
            clip_norm = self.clip_norm if loss_scale is None else self.clip_norm * loss_scale
            gradients, _ = tf.clip_by_global_norm(gradients, clip_norm, use_norm=gradient_norm)
        if loss_scale is not None:
            gradient_norm = gradient_norm / loss_scale
        if replicas > 1:
            gradients = [g / replicas for g in gradients]
        if encoder_optimizer is None:
            optimizer.apply_gradients(zip(gradients, variables))
        else:
            encoder_ids = {id(v) for v in self.captioner.encoder.trainable_variables}
            pairs = list(zip(gradients, variables))
            optimizer.apply_gradients([(g, v) for g, v in pairs if id(v) not in encoder_ids])
            encoder_pairs = [(g, v) for g, v in pairs if id(v) in encoder_ids]
            if encoder_pairs:
                encoder_optimizer.apply_gradients(encoder_pairs)
        return {**logs, "gradient_norm": gradient_norm}

    # ----- model.fit ---------------------------------------------------------------------------
    def train_step(self, data):
        logs = self.replica_step(data, self.optimizer)
        return self._update_trackers(logs)

    def test_step(self, data):
        _, logs = self.compute_caption_loss(data, training=False)
        return self._update_trackers(logs)

    def _update_trackers(self, logs):
        self.loss_tracker.update_state(logs["loss"])
        self.cross_entropy_tracker.update_state(logs["cross_entropy"])
        self.penalty_tracker.update_state(logs["penalty"])
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self.loss_tracker, self.cross_entropy_tracker, self.penalty_tracker]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(captioner=keras.saving.serialize_keras_object(self.captioner), clip_norm=self.clip_norm)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["captioner"] = keras.saving.deserialize_keras_object(config["captioner"])
        return cls(**config)


def dense_gradients(gradients):
    """Embedding gradients arrive as IndexedSlices; Keras' Adam treats those slightly differently
    from dense tensors, so every training path densifies them to stay numerically identical."""
    return [tf.convert_to_tensor(g) if g is not None else None for g in gradients]


def sum_over_replicas(values):
    """All-reduces (sums) values across replicas; the identity outside a multi-replica context."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
