"""Batched greedy decoding as a tf.function, built on the decoder's single-step API."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from sat_tf.inference.base import CaptionDecoderBase
from sat_tf.models.captioner import Captioner


@dataclasses.dataclass
class DecodedCaptions:
    """Decoding output for a batch of B images, T = steps decoded (<= max_length).

    tokens: int32 [B, T], `<pad>` after each caption's `<end>`.
    log_probs: float32 [B, T], log-probability of each emitted token (0 after `<end>`).
    alphas: float32 [B, T, L], attention of the step that emitted each token.
    lengths: int32 [B], tokens emitted including `<end>` (max_length if it never ended).
    texts: detokenized captions.
    """

    tokens: np.ndarray
    log_probs: np.ndarray
    alphas: np.ndarray
    lengths: np.ndarray
    texts: list[str]

    def words(self, index: int) -> list[str]:
        return self.texts[index].split()


class GreedyDecoder(CaptionDecoderBase):
    """Greedy decoding: at each step emit the most probable word, until `<end>` or `max_length`.

    Args:
        model: a trained `Captioner`.
        max_length: most words per caption (the `<end>` token included).
        jit_compile: compile the decoding loop with XLA (see `CaptionDecoderBase`).

    Example:
        >>> decoded = GreedyDecoder(model, max_length=20)(images=images)
        >>> decoded.texts[0], decoded.alphas.shape
    """

    def __init__(self, model: Captioner, max_length: int = 20, jit_compile: bool = True):
        super().__init__(model, max_length, jit_compile)
        self._decode_features = tf.function(self._decode, reduce_retracing=True, jit_compile=jit_compile)

    def _decode(self, features):
        decoder = self.model.decoder
        tokenizer = self.model.tokenizer
        batch = tf.shape(features)[0]
        constants = decoder.step_constants(features)
        state = decoder.initial_state(features)
        previous = tf.fill([batch], tokenizer.start_id)
        finished = tf.zeros([batch], tf.bool)
        arrays = [tf.TensorArray(dtype, size=self.max_length) for dtype in (tf.int32, tf.float32, tf.float32)]

        def body(t, state, previous, finished, tokens, log_probs, alphas):
            out = decoder.step(constants, state, previous)
            token = tf.argmax(out.log_probs, axis=-1, output_type=tf.int32)
            token_log_prob = tf.gather(out.log_probs, token, batch_dims=1)
            token = tf.where(finished, tokenizer.pad_id, token)
            token_log_prob = tf.where(finished, 0.0, token_log_prob)
            alpha = tf.where(finished[:, tf.newaxis], tf.zeros_like(out.alpha), out.alpha)
            finished = finished | tf.equal(token, tokenizer.end_id)
            return (t + 1, out.state, token, finished,
                    tokens.write(t, token), log_probs.write(t, token_log_prob), alphas.write(t, alpha))

        steps, _, _, _, tokens, log_probs, alphas = tf.while_loop(
            lambda t, _s, _p, finished, *_: (t < self.max_length) & ~tf.reduce_all(finished),
            body,
            (tf.constant(0), state, previous, finished, *arrays),
        )
        tokens = tf.transpose(tokens.stack()[:steps])
        log_probs = tf.transpose(log_probs.stack()[:steps])
        alphas = tf.transpose(alphas.stack()[:steps], [1, 0, 2])
        return tokens, log_probs, alphas

    def __call__(self, images=None, features=None) -> DecodedCaptions:
        """Decodes images [B, H, W, 3] (0..255) or precomputed features [B, L, D]."""
        tokens, log_probs, alphas = self._decode_features(self.region_features(images, features))
        tokens = tokens.numpy()
        is_end = tokens == self.model.tokenizer.end_id
        lengths = np.where(is_end.any(axis=1), is_end.argmax(axis=1) + 1, tokens.shape[1]).astype(np.int32)
        return DecodedCaptions(
            tokens=tokens,
            log_probs=log_probs.numpy(),
            alphas=alphas.numpy(),
            lengths=lengths,
            texts=self.model.tokenizer.decode(tokens),
        )


def caption_images(model: Captioner, images: np.ndarray, max_length: int = 20, batch_size: int = 64) -> DecodedCaptions:
    """Greedy captions for many images, decoded in batches."""
    decoder = GreedyDecoder(model, max_length)
    return concatenate_decoded([decoder(images=images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def concatenate_decoded(parts: list[DecodedCaptions]) -> DecodedCaptions:
    """Joins decoded batches, padding the step axis to the longest."""
    steps = max(p.tokens.shape[1] for p in parts)

    def pad(array):
        widths = [(0, 0), (0, steps - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
        return np.pad(array, widths)

    return DecodedCaptions(
        tokens=np.concatenate([pad(p.tokens) for p in parts]),
        log_probs=np.concatenate([pad(p.log_probs) for p in parts]),
        alphas=np.concatenate([pad(p.alphas) for p in parts]),
        lengths=np.concatenate([p.lengths for p in parts]),
        texts=[t for p in parts for t in p.texts],
    )
