"""How captions are decoded: the `decoding` section of a run's settings."""

from __future__ import annotations

import dataclasses

from sat_tf.errors import ConfigError
from sat_tf.inference.beam_sampler import BeamSampler
from sat_tf.inference.greedy_sampler import GreedySampler
from sat_tf.inference.results import NOT_SURE_BELOW
from sat_tf.inference.sampler import Sampler
from sat_tf.inference.tag_guidance import TagGuidance


@dataclasses.dataclass
class DecodingConfig:
    """How captions are decoded by `caption`, `evaluate` and validation.

    Args:
        beam_size: 1 is greedy decoding.
        length_penalty: beam search ranks by log p / length**length_penalty.
        max_length: most tokens per caption, `<end>` included.
        forbid_unknown: never emit `<unk>`.
        decode_batch_size: images decoded per compiled call.
        no_repeat_ngram_size: n > 0: no caption repeats an n-gram ("on a park on a park"); 0: off.
            3 by default: on Flickr8k dev it removes the 2.1% of captions that repeated a trigram
            and costs nothing (`benchmarks/quality/ngram_blocking.py`).
        no_repeat_content_words: no caption says a content word twice ("a toilet and a toilet";
            every word but `sat_tf_edge.text.FUNCTION_WORDS`, "a", "on", "two" and the like).
        tag_guidance: "off", "on" or "auto": make captions contain a word of the encoder's
            ImageNet tags (EfficientNet-Lite encoders; see `sat_tf.inference.tag_guidance`).
            `sat-tf caption` uses `caption_tag_guidance` unless told otherwise.
        caption_tag_guidance: the tag guidance `sat-tf caption` uses when not told: "auto" helps
            a model whose language lacks everyday words (trained on Flickr8k alone); a model that
            knows them (the everyday presets) stores "off", so the command line, the SavedModel
            server and the device (which have no tagger) give it one and the same caption.
        tag_probability: "on": tags at least this probable constrain the caption.
        tag_auto_probability: "auto": a tag at least this probable that the free caption does not
            name makes that caption constrained.
        not_sure_below: a caption whose confidence is below this is shown as "not sure" (by
            `sat-tf caption`, and by the page of a SavedModel exported with these settings). Each
            model's own: a preset stores the median confidence of its Flickr8k dev captions.
    """

    beam_size: int = 3
    length_penalty: float = 0.0
    max_length: int = 20
    forbid_unknown: bool = True
    decode_batch_size: int = 64
    no_repeat_ngram_size: int = 3
    no_repeat_content_words: bool = False
    tag_guidance: str = "off"
    caption_tag_guidance: str = "auto"
    tag_probability: float = 0.3
    tag_auto_probability: float = 0.5
    not_sure_below: float = NOT_SURE_BELOW

    def __post_init__(self):
        if self.beam_size < 1:
            raise ConfigError(f"decoding.beam_size must be >= 1; got {self.beam_size}")
        if self.max_length < 1:
            raise ConfigError(f"decoding.max_length must be >= 1; got {self.max_length}")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"decoding.no_repeat_ngram_size must be >= 0; got {self.no_repeat_ngram_size}")
        if not 0.0 <= self.not_sure_below <= 1.0:
            raise ConfigError(f"decoding.not_sure_below must be in [0, 1]; got {self.not_sure_below}")
        try:
            self.guidance()
            TagGuidance(self.caption_tag_guidance, self.tag_probability, self.tag_auto_probability)
        except ValueError as exc:
            raise ConfigError(f"decoding: {exc}") from None

    def edge_settings(self) -> dict:
        """The settings an export decodes with (the TFLite manifest's `decoding`) and its "not sure"
        threshold: all of these but tag guidance, which needs the encoder's ImageNet head."""
        return {
            "beam_size": self.beam_size,
            "length_penalty": self.length_penalty,
            "forbid_unknown": self.forbid_unknown,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "no_repeat_content_words": self.no_repeat_content_words,
            "not_sure_below": self.not_sure_below,
        }

    def guidance(self) -> TagGuidance:
        """The tag-guidance settings as `sat_tf.inference.tag_guidance.TagGuidance`."""
        return TagGuidance(self.tag_guidance, self.tag_probability, self.tag_auto_probability)

    def sampler(self) -> Sampler:
        """The decoding strategy: greedy for beam_size 1, else beam search."""
        return GreedySampler() if self.beam_size == 1 else BeamSampler(self.beam_size, self.length_penalty)
