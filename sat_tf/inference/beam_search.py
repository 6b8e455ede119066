"""Batched, in-graph beam search over the decoder's single-step API."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from sat_tf.inference.base import CaptionDecoderBase
from sat_tf.inference.greedy import DecodedCaptions
from sat_tf.models.captioner import Captioner
from sat_tf.models.decoder import DecoderState

_NEG_INF = -1e9


@dataclasses.dataclass
class BeamSearchResult:
    """The k best captions per image, best first. B images, k beams, T steps.

    tokens: int32 [B, k, T] (`<pad>` after `<end>`); scores: float32 [B, k], the ranking score
    (sum of log-probs, divided by length**length_penalty when normalising); log_probs: float32
    [B, k], the plain sum of log-probs; alphas: float32 [B, k, T, L]; lengths: int32 [B, k]
    (tokens including `<end>`); texts: k-best captions per image.
    """

    tokens: np.ndarray
    scores: np.ndarray
    log_probs: np.ndarray
    token_log_probs: np.ndarray  # float32 [B, k, T], log-probability of each emitted token
    alphas: np.ndarray
    lengths: np.ndarray
    texts: list[list[str]]

    @property
    def best_texts(self) -> list[str]:
        return [beams[0] for beams in self.texts]

    def best(self) -> DecodedCaptions:
        """The best caption of each image, in the same form greedy decoding returns."""
        return DecodedCaptions(tokens=self.tokens[:, 0], log_probs=self.token_log_probs[:, 0],
                               alphas=self.alphas[:, 0], lengths=self.lengths[:, 0], texts=self.best_texts)


class BeamSearchDecoder(CaptionDecoderBase):
    """Beam search with beam size k.

    Finished beams (ended by `<end>`) stay in the beam with their score frozen and compete with
    unfinished ones; the search stops when every beam has finished or after `max_length` steps.
    With `length_penalty` > 0, final hypotheses are ranked by log p / length**length_penalty.

    Args:
        model: a trained `Captioner`.
        beam_size: k.
        max_length: most tokens per caption, `<end>` included.
        length_penalty: exponent of the length normalisation (0: rank by total log-probability).
        jit_compile: compile the search loop with XLA (see `CaptionDecoderBase`).

    Example:
        >>> result = BeamSearchDecoder(model, beam_size=3)(images=images)
        >>> result.best_texts[0], result.texts[0]   # best caption, and the 3-best list
    """

    def __init__(self, model: Captioner, beam_size: int = 3, max_length: int = 20, length_penalty: float = 0.0,
                 jit_compile: bool = True):
        super().__init__(model, max_length, jit_compile)
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self._search = tf.function(self._beam_search, reduce_retracing=True, jit_compile=jit_compile)

    def _beam_search(self, features):
        decoder, tokenizer, k = self.model.decoder, self.model.tokenizer, self.beam_size
        batch, regions = tf.shape(features)[0], tf.shape(features)[1]
        vocabulary = decoder.vocabulary_size
        # Per-image constants computed once, then repeated per beam (beams of one image are adjacent).
        constants = decoder.step_constants(features)
        constants = constants._replace(**{
            name: tf.repeat(getattr(constants, name), k, axis=0)
            for name in ("attention_keys", "context_gates", "context_outputs")
        })
        state = tf.nest.map_structure(lambda x: tf.repeat(x, k, axis=0), decoder.initial_state(features))
        # Only beam 0 is live at the start, so the first step does not pick k copies of one word.
        scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], _NEG_INF)], 0)[tf.newaxis], [batch, 1])
        previous = tf.fill([batch * k], tokenizer.start_id)
        finished = tf.zeros([batch, k], tf.bool)
        lengths = tf.zeros([batch, k], tf.int32)
        # Fixed-size buffers written at step t (not grown by concat), so shapes stay static for XLA.
        steps_total = self.max_length
        tokens = tf.zeros([batch, k, steps_total], tf.int32)
        token_log_probs = tf.zeros([batch, k, steps_total])
        alphas = tf.zeros([batch, k, steps_total, regions])
        # A finished beam has exactly one continuation, <pad>, at no cost.
        pad_only = tf.one_hot(tokenizer.pad_id, vocabulary, on_value=0.0, off_value=_NEG_INF)

        def body(t, state, previous, scores, finished, lengths, tokens, token_log_probs, alphas):
            carried = (previous, scores, finished, lengths, tokens, token_log_probs, alphas)
            outputs = step(t, state, *carried)
            # Gathers lose static shapes; restating them keeps the loop shape-invariant.
            return (t + 1, outputs[0], *(tf.ensure_shape(new, old.shape) for new, old in zip(outputs[1:], carried)))

        def step(t, state, previous, scores, finished, lengths, tokens, token_log_probs, alphas):
            out = decoder.step(constants, state, previous)
            log_probs = tf.reshape(out.log_probs, [batch, k, vocabulary])
            log_probs = tf.where(finished[:, :, tf.newaxis], pad_only, log_probs)
            candidates = tf.reshape(scores[:, :, tf.newaxis] + log_probs, [batch, k * vocabulary])
            scores, flat = tf.math.top_k(candidates, k=k)
            chosen_log_prob = tf.gather(tf.reshape(log_probs, [batch, k * vocabulary]), flat, batch_dims=1)
            parent, word = flat // vocabulary, flat % vocabulary  # [B, k]
            gather = lambda x: tf.gather(x, parent, batch_dims=1)  # noqa: E731
            was_finished = gather(finished)
            at_t = tf.one_hot(t, steps_total)  # [T]
            tokens = gather(tokens) + word[:, :, tf.newaxis] * tf.cast(at_t, tf.int32)
            token_log_probs = gather(token_log_probs) + chosen_log_prob[:, :, tf.newaxis] * at_t
            step_alpha = tf.where(was_finished[:, :, tf.newaxis], 0.0, gather(tf.reshape(out.alpha, [batch, k, -1])))
            alphas = gather(alphas) + step_alpha[:, :, tf.newaxis, :] * at_t[:, tf.newaxis]
            lengths = gather(lengths) + tf.cast(~was_finished, tf.int32)
            finished = was_finished | tf.equal(word, tokenizer.end_id)
            flat_parent = tf.reshape(parent + tf.range(batch)[:, tf.newaxis] * k, [-1])
            state = DecoderState(*(tf.ensure_shape(tf.gather(x, flat_parent), x.shape) for x in out.state))
            return state, tf.reshape(word, [-1]), scores, finished, lengths, tokens, token_log_probs, alphas

        steps, _, _, scores, _, lengths, tokens, token_log_probs, alphas = tf.while_loop(
            lambda t, _s, _p, _sc, finished, *_: (t < self.max_length) & ~tf.reduce_all(finished),
            body,
            (tf.constant(0), state, previous, scores, finished, lengths, tokens, token_log_probs, alphas),
            maximum_iterations=self.max_length,
        )
        tokens, token_log_probs, alphas = tokens[:, :, :steps], token_log_probs[:, :, :steps], alphas[:, :, :steps]
        log_probs = scores
        if self.length_penalty:
            scores = scores / tf.pow(tf.cast(tf.maximum(lengths, 1), tf.float32), self.length_penalty)
        order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
        reorder = lambda x: tf.gather(x, order, batch_dims=1)  # noqa: E731
        return (reorder(tokens), reorder(scores), reorder(log_probs), reorder(token_log_probs), reorder(alphas),
                reorder(lengths))

    def __call__(self, images=None, features=None) -> BeamSearchResult:
        """Decodes images [B, H, W, 3] (0..255) or precomputed features [B, L, D]."""
        tokens, scores, log_probs, token_log_probs, alphas, lengths = (
            x.numpy() for x in self._search(self.region_features(images, features)))
        batch, k, steps = tokens.shape
        texts = self.model.tokenizer.decode(tokens.reshape(batch * k, steps)) if steps else [""] * (batch * k)
        return BeamSearchResult(tokens=tokens, scores=scores, log_probs=log_probs, token_log_probs=token_log_probs,
                                alphas=alphas, lengths=lengths, texts=[texts[i * k:(i + 1) * k] for i in range(batch)])
