"""Self-critical sequence training: REINFORCE on the CIDEr-D of captions sampled from the model.

For each image, k captions w^s are sampled from the model (the decoding loop's `RandomSampler`,
in the graph), scored on the host, and the gradient is -(r(w^s) - b) grad log p(w^s | I), with b
either the mean reward of the other k - 1 samples of the image ("leave_one_out", the default,
widely reported to work best) or the reward of the greedy caption ("greedy", Rennie et al.'s
self-critical baseline). Both baselines do not depend on the sample they are subtracted from, so
the estimate stays unbiased (tested against an exact gradient on a problem small enough to
enumerate every caption).

The task plugs into the same `Trainer` as cross-entropy training: its batches are one record per
image ({"features" or "images", "tokens", "image_index"}; the tokens are not used), and
`replica_step` (gradient, all-reduce, clipping) is `CaptioningTask`'s.

Reference:
    Rennie et al., "Self-critical Sequence Training for Image Captioning", CVPR 2017.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from sat_tf.errors import ConfigError
from sat_tf.evaluation.cider import CiderD
from sat_tf.inference.greedy_sampler import GreedySampler
from sat_tf.inference.random_sampler import RandomSampler
from sat_tf.models.captioner import Captioner
from sat_tf.models.hard_attention import leave_one_out_baseline
from sat_tf.training.task import CaptioningTask, sum_over_replicas

BASELINES = ("leave_one_out", "greedy", "none")
# rewards(image_index int [B], tokens int [B, k, T], lengths int [B, k]) -> float [B, k]
RewardFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class SelfCriticalConfig:
    """Self-critical sequence training (Rennie et al. 2017) on CIDEr-D, after cross-entropy.

    Args:
        init_from: the cross-entropy model to fine-tune (a `.keras` file or its run folder); set,
            `sat-tf train` runs self-critical training (one record per image, model selection on
            validation CIDEr) with the training section's optimizer settings.
        num_samples: captions sampled per image (k).
        baseline: "leave_one_out" (mean reward of the image's other samples), "greedy" (the
            greedy caption's reward) or "none".
        max_length: most tokens per sampled caption.
    """

    init_from: str | None = None
    num_samples: int = 5
    baseline: str = "leave_one_out"
    max_length: int = 16

    def __post_init__(self):
        if self.baseline not in ("leave_one_out", "greedy", "none"):
            raise ConfigError(f"scst.baseline must be leave_one_out, greedy or none; got '{self.baseline}'")
        if self.num_samples < 1 or (self.baseline == "leave_one_out" and self.num_samples < 2):
            raise ConfigError(f"scst.num_samples must be >= 2 with the leave-one-out baseline; got {self.num_samples}")


class CiderReward:
    """CIDEr-D of sampled token ids against each training image's reference token ids, with
    document frequencies from all training references (computed once).

    Args:
        references: image index -> its reference captions as token ids (no `<start>`/`<end>`).
        end_id: the `<end>` token; a sample is scored up to it.
    """

    def __init__(self, references: Mapping[int, Sequence[Sequence[int]]], end_id: int):
        self.end_id = end_id
        indices = sorted(references)
        self.cider = CiderD([references[i] for i in indices])
        self._vectors = {i: [self.cider.vector(r) for r in references[i]] for i in indices}

    def __call__(self, image_index: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        rewards = np.zeros(tokens.shape[:2], np.float32)
        for b, image in enumerate(image_index.tolist()):
            for k in range(tokens.shape[1]):
                words = tokens[b, k, : lengths[b, k]].tolist()
                if words and words[-1] == self.end_id:
                    words = words[:-1]
                rewards[b, k] = self.cider.score(words, self._vectors[image])
        return rewards

    @classmethod
    def from_token_ids(
        cls, tokens: np.ndarray, lengths: np.ndarray, image_index: np.ndarray, end_id: int
    ) -> "CiderReward":
        """From encoded training captions (`EncodedCaptions`: <start> ... <end> rows)."""
        references: dict[int, list[list[int]]] = {}
        for row, length, image in zip(tokens, lengths, image_index):
            references.setdefault(int(image), []).append(row[1 : int(length) - 1].tolist())
        return cls(references, end_id)


@keras.saving.register_keras_serializable(package="sat_tf")
class SelfCriticalTask(CaptioningTask):
    """Trains a `Captioner` with self-critical sequence training (see the module docstring).

    Args:
        captioner: the model, usually trained with cross-entropy first.
        reward: host function scoring sampled captions (for example `CiderReward`).
        num_samples: k, captions sampled per image.
        baseline: "leave_one_out", "greedy", or "none" (b = 0: plain REINFORCE, for comparison).
        max_length: most tokens per sampled caption.
        clip_norm: as `CaptioningTask`.
        seed: seed of the samples; draw i of the run uses (seed, i), so resumed runs draw alike.

    Example:
        >>> task = SelfCriticalTask(model, CiderReward.from_token_ids(c.tokens, c.lengths, c.image_index, 2))
        >>> Trainer(lambda: model, per_image_data, TrainConfig(learning_rate=5e-5), "runs/scst", task=task)
    """

    def __init__(
        self,
        captioner: Captioner,
        reward: RewardFunction | None = None,
        num_samples: int = 5,
        baseline: str = "leave_one_out",
        max_length: int = 16,
        clip_norm: float | None = 5.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(captioner, clip_norm=clip_norm, **kwargs)
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got '{baseline}'")
        if baseline == "leave_one_out" and num_samples < 2:
            raise ValueError("the leave-one-out baseline needs num_samples >= 2")
        self.reward: RewardFunction | None = reward
        self.baseline, self.max_length, self.seed = baseline, max_length, seed
        self.sampler = RandomSampler(num_samples=num_samples)
        # Checkpointed by the Trainer, so a resumed run draws the samples an uninterrupted one would.
        self.draws = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="scst_draws", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
        )

    def _reward(self) -> RewardFunction:
        if self.reward is None:
            raise ValueError("SelfCriticalTask needs a reward function (for example CiderReward) to train")
        return self.reward

    def _host_rewards(self, image_index, tokens, lengths) -> tf.Tensor:
        rewards = tf.numpy_function(
            lambda i, t, n: self._reward()(i, t, n).astype(np.float32),
            [image_index, tokens, lengths],
            tf.float32,
            stateful=False,
        )
        return tf.ensure_shape(rewards, [None, None])

    def compute_caption_loss(self, batch: dict, training: bool = False):
        """The surrogate -(r - b) log p(w^s), summed over tokens, averaged over the global number
        of samples; logs hold the mean sample reward and the mean baseline."""
        model = self.captioner
        features = model.features_of(batch, training=False)
        replica = tf.distribute.get_replica_context()
        replica_id = tf.cast(replica.replica_id_in_sync_group if replica is not None else 0, tf.int64)
        seed = tf.cast(tf.stack([tf.cast(self.seed, tf.int64), self.draws * 1024 + replica_id]), tf.int32)
        self.draws.assign_add(1)
        samples = self.sampler.run(model, features, self.max_length, seed)
        tokens, lengths = tf.stop_gradient(samples["tokens"]), tf.stop_gradient(samples["lengths"])
        rewards = self._host_rewards(batch["image_index"], tokens, lengths)
        if self.baseline == "greedy":
            greedy = GreedySampler().run(model, features, self.max_length)
            baseline = self._host_rewards(batch["image_index"], greedy["tokens"], greedy["lengths"])
        elif self.baseline == "leave_one_out":
            baseline = leave_one_out_baseline(rewards)
        else:
            baseline = tf.zeros_like(rewards)
        advantages = tf.stop_gradient(rewards - baseline)
        log_probs = self.sequence_log_probs(features, tokens, lengths)  # [B, k]
        (num_samples,) = sum_over_replicas([tf.cast(tf.size(rewards), tf.float32)])
        loss = -tf.reduce_sum(advantages * log_probs) / num_samples
        reward_sum, baseline_sum, loss_sum = sum_over_replicas([tf.reduce_sum(rewards), tf.reduce_sum(baseline), loss])
        tokens_count = tf.cast(tf.reduce_sum(lengths), tf.float32)
        logs = {
            "loss": loss_sum,
            "reward": reward_sum / num_samples,
            "baseline": baseline_sum / num_samples,
            "tokens": sum_over_replicas([tokens_count])[0],
        }
        return loss, logs

    def sequence_log_probs(self, features, tokens, lengths) -> tf.Tensor:
        """log p(w | I) [B, k] of captions tokens [B, k, T] (up to each one's length), by teacher
        forcing without dropout (the distribution the captions were sampled from)."""
        batch, k, steps = tf.shape(tokens)[0], tf.shape(tokens)[1], tf.shape(tokens)[2]
        flat = tf.reshape(tokens, [batch * k, steps])
        start = tf.fill([batch * k, 1], self.captioner.tokenizer.start_id)
        inputs = tf.concat([start, flat[:, :-1]], axis=1)
        repeated = tf.repeat(features, k, axis=0)
        logits = tf.cast(self.captioner.decoder(repeated, inputs, training=False)["logits"], tf.float32)
        token_log_probs = tf.gather(tf.nn.log_softmax(logits), flat, batch_dims=2)
        mask = tf.sequence_mask(tf.reshape(lengths, [-1]), steps, dtype=tf.float32)
        return tf.reshape(tf.reduce_sum(token_log_probs * mask, axis=1), [batch, k])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_samples=self.sampler.num_samples, baseline=self.baseline, max_length=self.max_length, seed=self.seed
        )
        return config
