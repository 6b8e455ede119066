"""The end-to-end captioner: encoder + attention decoder + tokenizer, trainable with `model.fit`."""

from __future__ import annotations

import keras
import tensorflow as tf

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.models.decoder import AttentionDecoder
from sat_tf.models.encoder import Encoder
from sat_tf.models.hard_attention import DEFAULT_REWARD_WEIGHTS, HARD_BASELINES, HARD_REWARDS
from sat_tf.models.losses import PENALTY_TARGETS
from sat_tf.models.rules import require_choice, require_location_samples

# Chosen by measurement (benchmarks/studies/penalty_sweep.py, README "Penalty weight"): on the synthetic
# demo (L = 64 regions, ~10-word captions) every weight tried (1e-4 ... 1, tau = 1 or T/L) lowered
# attention localization, without improving BLEU-4, so the penalty is available but off by default.
DEFAULT_PENALTY_WEIGHT = 0.0
# Hard attention's entropy weight: the authors' code (arctic-captions), 0.002. Its reward weights:
# `DEFAULT_REWARD_WEIGHTS`.
DEFAULT_ENTROPY_WEIGHT = 0.002


@keras.saving.register_keras_serializable(package="sat_tf")
class Captioner(keras.Model):
    """ "Show, Attend and Tell" captioner: encoder, attention decoder and tokenizer in one model.

    Batches are dicts with `tokens` (int32 [B, T+1], `<start>` ... `<end>` then `<pad>`) and either
    `images` ([B, H, W, 3], 0..255) or precomputed `features` ([B, L, D]). Calling the model runs
    the teacher-forced decoder; `sat_tf.inference.generate_captions` decodes new captions. The
    loss weights below are stored with the model and used by `sat_tf.training.CaptioningTask`,
    which owns the loss (the paper's equation 14) and the training step.

    Args:
        encoder: an `Encoder`.
        decoder: an `AttentionDecoder` whose vocabulary matches `tokenizer`.
        tokenizer: the `CaptionTokenizer`; stored inside the `.keras` file.
        penalty_weight: lambda of the doubly stochastic penalty.
        penalty_target: "one" (tau = 1, the paper) or "length" (tau = T/L).
        reward_weight: lambda_r of the REINFORCE term (hard attention only); None: the reward's
            default (`sat_tf.models.hard_attention.DEFAULT_REWARD_WEIGHTS`).
        entropy_weight: lambda_e of the attention-entropy bonus (hard attention only).
        baseline_decay: decay of the moving-average baseline b (0.9 in the paper).
        hard_reward: the REINFORCE term's reward, "log_likelihood" (log p(y|s,a), the paper's
            equation) or "mean_word_log_likelihood" (its per-word mean, the authors' code).
        hard_baseline: "moving_average" (b, the paper's) or "leave_one_out" (the mean reward of
            the caption's other location samples; needs `location_samples` >= 2).
        location_samples: k, location sequences sampled per training caption (hard attention);
            each costs a pass of the decoder.
        **kwargs: standard `keras.Model` arguments.

    Example:
        >>> model = Captioner(Encoder("small_cnn", 64), AttentionDecoder(tok.vocabulary_size), tok)
        >>> outputs = model({"images": images, "tokens": tokens})   # {"logits", "alphas"}
        >>> # or, from settings: build_captioner(ModelConfig(...), tok)

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
        reward_weight: float | None = None,
        entropy_weight: float = DEFAULT_ENTROPY_WEIGHT,
        baseline_decay: float = 0.9,
        hard_reward: str = "log_likelihood",
        hard_baseline: str = "moving_average",
        location_samples: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        require_choice("penalty_target", penalty_target, PENALTY_TARGETS)
        require_choice("hard_reward", hard_reward, HARD_REWARDS)
        require_choice("hard_baseline", hard_baseline, HARD_BASELINES)
        require_location_samples("location_samples", location_samples, hard_baseline)
        if decoder.vocabulary_size != tokenizer.vocabulary_size:
            raise ValueError(
                f"decoder vocabulary_size {decoder.vocabulary_size} != tokenizer's {tokenizer.vocabulary_size}"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.penalty_weight = float(penalty_weight)
        self.penalty_target = penalty_target
        self.reward_weight = float(DEFAULT_REWARD_WEIGHTS[hard_reward] if reward_weight is None else reward_weight)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.hard_reward = hard_reward
        self.hard_baseline = hard_baseline
        self.location_samples = int(location_samples)
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
            self.reward_baseline = self.add_weight(
                name="reward_baseline", shape=(), initializer="zeros", trainable=False, aggregation="only_first_replica"
            )
        self.built = True

    def members(self) -> list["Captioner"]:
        """The captioners that decode together: this one (an ensemble lists its models). A method,
        not a property: Keras' saving walks a layer's properties, and this one holds the layer."""
        return [self]

    @property
    def feature_grid(self) -> tuple[int, int]:
        return self.encoder.feature_grid()

    def encode(self, images, training=False) -> tf.Tensor:
        return self.encoder(images, training=training)

    def features_from_cache(self, cached, training=False) -> tf.Tensor:
        """Region features from what a feature cache holds (`Encoder.cache_input`): the features
        themselves, or activations below a fine-tuned top that this runs."""
        return self.encoder.features_from_cache(cached, training=training)

    def features_of(self, batch: dict, training=False) -> tf.Tensor:
        """Region features of a batch: from cached `features`, or encoded from `images`."""
        if "features" in batch:
            return self.features_from_cache(batch["features"], training=training)
        return self.encode(batch["images"], training=training)

    def call(self, inputs, training=False):
        """Teacher-forced pass: returns {"logits": [B, T, V], "alphas": [B, T, L]} (and, for hard
        attention, "locations" and "used_expectation"; see `AttentionDecoder.teacher_forcing`)."""
        features = self.features_of(inputs, training=training)
        return self.decoder(features, inputs["tokens"][:, :-1], training=training)

    def trainable_variables_for(self, batch: dict) -> list:
        """What a training step on `batch` updates: everything for images; from a feature cache,
        the decoder and the encoder's trainable top if it has one (the rest never runs)."""
        if "features" not in batch:
            return self.trainable_variables
        encoder_top = self.encoder.trainable_variables if self.encoder.cache_layer is not None else []
        return self.decoder.trainable_variables + encoder_top

    @classmethod
    def from_preset(cls, name: str) -> "Captioner":
        """A pretrained captioner shipped with the package (`sat_tf.models.preset.preset_names()`),
        or a folder written by `save_preset`.

        Example:
            >>> model = Captioner.from_preset("everyday_selftrained_lite0_448")
            >>> generate_captions(model, images=photos, sampler=BeamSampler(3)).best_texts
        """
        from sat_tf.models.preset import load_preset

        return load_preset(name)

    def train_step(self, data):
        raise TypeError(
            "a Captioner is trained through its task: task = sat_tf.training.CaptioningTask(model); "
            "task.compile(optimizer=...); task.fit(dataset)"
        )

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
            hard_reward=self.hard_reward,
            hard_baseline=self.hard_baseline,
            location_samples=self.location_samples,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "tokenizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
