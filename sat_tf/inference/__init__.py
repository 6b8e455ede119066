"""Inference layer: decoding and attention plots (imports data and models)."""

from sat_tf.inference.greedy import DecodedCaptions, GreedyDecoder, caption_images

__all__ = ["DecodedCaptions", "GreedyDecoder", "caption_images"]
