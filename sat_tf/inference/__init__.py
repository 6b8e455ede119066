"""Inference layer: decoding and attention plots (imports data and models)."""

from sat_tf.inference.beam_search import BeamSearchDecoder, BeamSearchResult
from sat_tf.inference.greedy import DecodedCaptions, GreedyDecoder, caption_images

__all__ = ["BeamSearchDecoder", "BeamSearchResult", "DecodedCaptions", "GreedyDecoder", "caption_images"]
