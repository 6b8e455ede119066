"""Several trained captioners decoding as one: per-step log-probabilities averaged."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from sat_tf.models.captioner import Captioner
from sat_tf.models.decoder import StepOutput


class _EnsembleDecoder:
    """The single-step decoding API over several decoders; each keeps its own state and attention.

    Constants and states are tuples with one entry per member. A step's log-probabilities are
    log_softmax(mean_m log p_m), the normalised geometric mean of the members' distributions
    (for greedy decoding the same choice as averaging log-probabilities); its attention is the
    first member's.
    """

    def __init__(self, decoders: Sequence):
        self.decoders = tuple(decoders)

    def step_constants(self, features):
        return tuple(d.step_constants(f) for d, f in zip(self.decoders, features))

    def initial_state(self, features):
        return tuple(d.initial_state(f) for d, f in zip(self.decoders, features))

    def repeat_constants(self, constants, times: int):
        return tuple(d.repeat_constants(c, times) for d, c in zip(self.decoders, constants))

    def num_regions(self, features):
        return self.decoders[0].num_regions(features[0])

    def step(self, constants, state, previous_tokens) -> StepOutput:
        outputs = [d.step(c, s, previous_tokens) for d, c, s in zip(self.decoders, constants, state)]
        mean_log_probs = tf.add_n([tf.cast(o.log_probs, tf.float32) for o in outputs]) / len(outputs)
        # the state is a tuple of the members' states (the ensemble's own state type)
        states = tuple(o.state for o in outputs)
        return StepOutput(tf.nn.log_softmax(mean_log_probs, axis=-1), states, outputs[0].alpha)  # type: ignore[arg-type]


class CaptionerEnsemble:
    """Trained captioners with the same vocabulary, decoded together by any `Sampler`.

    Each member encodes the images with its own encoder (members may differ in backbone, feature
    layer, attention mode or training), so images must be given at a size every member accepts
    (each encoder resizes to its own input size). Precomputed features are shared by all members
    (members trained on the same feature cache), or given as one array per member.

    Args:
        models: the `Captioner`s; their tokenizers must hold the same vocabulary.

    Example:
        >>> ensemble = CaptionerEnsemble([keras.saving.load_model(p) for p in ("a.keras", "b.keras")])
        >>> generate_captions(ensemble, images=images, sampler=BeamSampler(3)).best_texts
    """

    def __init__(self, models: Sequence[Captioner]):
        models = list(models)
        if not models:
            raise ValueError("an ensemble needs at least one model")
        vocabulary = models[0].tokenizer.vocabulary
        for index, model in enumerate(models[1:], start=1):
            if model.tokenizer.vocabulary != vocabulary:
                raise ValueError(
                    f"ensemble member {index} has a different vocabulary from member 0; "
                    f"members must be trained with the same tokenizer"
                )
        self.models = models
        self.tokenizer = models[0].tokenizer
        self.decoder = _EnsembleDecoder([m.decoder for m in models])

    def __len__(self) -> int:
        return len(self.models)

    def members(self) -> list[Captioner]:
        """The captioners that decode together (a single `Captioner` lists itself)."""
        return self.models

    @property
    def encoder(self):
        """The first member's encoder (input size and region grid of the returned attention)."""
        return self.models[0].encoder

    @property
    def feature_grid(self) -> tuple[int, int]:
        return self.models[0].feature_grid

    def encode(self, images, training: bool = False) -> tuple[tf.Tensor, ...]:
        return tuple(m.encode(images, training=training) for m in self.models)

    def features_from_cache(self, features: Sequence[tf.Tensor], training: bool = False) -> tuple[tf.Tensor, ...]:
        """Each member's region features from its cached input (see `Captioner.features_from_cache`)."""
        return tuple(m.features_from_cache(f, training=training) for m, f in zip(self.models, features))

    def member_features(self, features) -> tuple[tf.Tensor, ...]:
        """One features tensor per member from a shared array or a per-member sequence."""
        if isinstance(features, (list, tuple)):
            if len(features) != len(self.models):
                raise ValueError(f"{len(features)} feature arrays for {len(self.models)} ensemble members")
            return tuple(tf.convert_to_tensor(f, tf.float32) for f in features)
        shared = tf.convert_to_tensor(features, tf.float32)
        return tuple(shared for _ in self.models)
