"""One description of a captioner's architecture and loss weights, and the one builder."""

from __future__ import annotations

import dataclasses

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.errors import ConfigError
from sat_tf.models.backbones import SMALL_CNN_NORMALIZATIONS
from sat_tf.models.captioner import DEFAULT_ENTROPY_WEIGHT, DEFAULT_PENALTY_WEIGHT, Captioner
from sat_tf.models.decoder import AttentionDecoder
from sat_tf.models.encoder import Encoder
from sat_tf.models.hard_attention import ATTENTION_MODES, HARD_BASELINES, HARD_INFERENCE_MODES, HARD_REWARDS
from sat_tf.models.losses import PENALTY_TARGETS
from sat_tf.models.rules import require_choice, require_location_samples

# The settings that decide an encoder's features: a feature cache records them, and a run that
# trains from the cache takes them from there.
ENCODER_FEATURE_SETTINGS = (
    "backbone",
    "weights",
    "feature_layer",
    "image_size",
    "append_coordinates",
    "cnn_filters",
    "cnn_normalization",
    "fine_tune_top_blocks",
)


@dataclasses.dataclass
class ModelConfig:
    """Architecture and loss weights of a `Captioner`; `build_captioner` turns it into a model.

    The defaults are the paper's decoder size (512/512/512, dropout 0.5) on a small CNN; the
    shipped recipes (`sat_tf/workflows/recipes/`) hold the measured settings for each dataset.

    Args:
        backbone: "small_cnn", "efficientnet_lite0/1/2" or a `keras.applications` name.
        weights: pretrained backbones: None, "imagenet" or a local weights file.
        feature_layer: EfficientNet-Lite "top" or "stride16"; else a layer name; None: last map.
        image_size: encoder input size in pixels (None: the backbone's default).
        fine_tune_top_blocks: unfreeze this many top blocks of a pretrained backbone (BatchNorm
            stays frozen); a feature cache then holds the activations entering them. For
            EfficientNet-Lite0, 1 = the 1x1 head, 2 = the last stage + head (cache 7x7x192),
            6 = the last two stages + head (cache 14x14x112).
        append_coordinates: append each region's (x, y) to its features.
        cnn_filters: small CNN block widths.
        cnn_normalization: small CNN normalisation, "batch", "group" or "none".
        embedding_dim, hidden_dim, attention_dim: decoder sizes (m, n and the attention MLP).
        dropout: dropout before the output projection.
        attention: "soft" or "hard" (stochastic, trained with REINFORCE).
        hard_inference: hard attention at test time: "expectation", "argmax" or "sample".
        penalty_weight, penalty_target: the doubly stochastic penalty (lambda, tau).
        reward_weight, entropy_weight: hard attention's REINFORCE and entropy weights (reward
            weight none: 0.01 for the log-likelihood reward, 0.1 for its per-word mean).
        hard_reward: hard attention's REINFORCE reward, "log_likelihood" (the paper's equation) or
            "mean_word_log_likelihood" (per-word mean, the authors' code).
        hard_baseline: hard attention's baseline, "moving_average" (the paper's) or
            "leave_one_out" (over location_samples samples per caption).
        location_samples: location sequences sampled per training caption (hard attention).
        text_only_context: learn a "no photo" annotation that stands in for the regions of a
            caption without a photo, so that text-only sources (`data.mix`) train the decoder.

    Example:
        >>> model = build_captioner(ModelConfig(hidden_dim=256), tokenizer)
    """

    backbone: str = "small_cnn"
    weights: str | None = None
    feature_layer: str | None = None
    image_size: int | None = None
    fine_tune_top_blocks: int = 0
    append_coordinates: bool = True
    cnn_filters: tuple[int, ...] = (16, 32, 64)
    cnn_normalization: str = "batch"
    embedding_dim: int = 512
    hidden_dim: int = 512
    attention_dim: int = 512
    dropout: float = 0.5
    attention: str = "soft"
    hard_inference: str = "expectation"
    penalty_weight: float = DEFAULT_PENALTY_WEIGHT
    penalty_target: str = "one"
    reward_weight: float | None = None
    entropy_weight: float = DEFAULT_ENTROPY_WEIGHT
    hard_reward: str = "log_likelihood"
    hard_baseline: str = "moving_average"
    location_samples: int = 1
    text_only_context: bool = False

    def __post_init__(self):
        # The layers' own rules (`sat_tf.models.rules`), checked here so that a config file's
        # mistake is reported by key before anything is built.
        self.cnn_filters = tuple(int(width) for width in self.cnn_filters)
        choices = {
            "attention": ATTENTION_MODES,
            "hard_inference": HARD_INFERENCE_MODES,
            "penalty_target": PENALTY_TARGETS,
            "cnn_normalization": SMALL_CNN_NORMALIZATIONS,
            "hard_reward": HARD_REWARDS,
            "hard_baseline": HARD_BASELINES,
        }
        try:
            for name, allowed in choices.items():
                require_choice(f"model.{name}", getattr(self, name), allowed)
            require_location_samples("model.location_samples", self.location_samples, self.hard_baseline)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for name in ("embedding_dim", "hidden_dim", "attention_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be positive; got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1); got {self.dropout}")

    def encoder_settings(self) -> dict:
        """The settings that decide the encoder's features (see `ENCODER_FEATURE_SETTINGS`)."""
        return {name: getattr(self, name) for name in ENCODER_FEATURE_SETTINGS}

    def build_encoder(self) -> Encoder:
        try:
            return Encoder(
                self.backbone,
                image_size=self.image_size,
                weights=self.weights,
                feature_layer=self.feature_layer,
                fine_tune_top_blocks=self.fine_tune_top_blocks,
                small_cnn_filters=self.cnn_filters,
                small_cnn_normalization=self.cnn_normalization,
                append_coordinates=self.append_coordinates,
            )
        except ValueError as exc:
            raise ConfigError(f"model: {exc}") from None

    def build_decoder(self, vocabulary_size: int) -> AttentionDecoder:
        return AttentionDecoder(
            vocabulary_size,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            attention_dim=self.attention_dim,
            dropout=self.dropout,
            attention_mode=self.attention,
            hard_inference=self.hard_inference,
            text_only_context=self.text_only_context,
        )


def build_captioner(config: ModelConfig, tokenizer: CaptionTokenizer, encoder: Encoder | None = None) -> Captioner:
    """The one way a captioner is assembled from settings (CLI, demo, benchmarks and tests).

    Args:
        config: architecture and loss weights.
        tokenizer: the vocabulary; the decoder's output size follows it.
        encoder: an already built encoder to use (for example one whose weights were just
            checked against a feature cache); None builds one from `config`.
    """
    return Captioner(
        encoder or config.build_encoder(),
        config.build_decoder(tokenizer.vocabulary_size),
        tokenizer,
        penalty_weight=config.penalty_weight,
        penalty_target=config.penalty_target,
        reward_weight=config.reward_weight,
        entropy_weight=config.entropy_weight,
        hard_reward=config.hard_reward,
        hard_baseline=config.hard_baseline,
        location_samples=config.location_samples,
    )
