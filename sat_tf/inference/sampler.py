"""The one decoding loop: k hypotheses per image advanced one word per step by a strategy.

Every decoding strategy (greedy, beam search, sampling) is this loop with a different `select`,
the rule that turns the step's log-probabilities into each hypothesis' parent and next word. The
loop runs in the graph over the single-step API that a `Captioner`'s decoder (or a
`CaptionerEnsemble`) exposes: `step_constants(features)`, `initial_state(features)`,
`repeat_constants(constants, k)` and `step(constants, state, previous_tokens)`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf

NEG_INF = -1e9


def repeated_ngram_words(tokens: tf.Tensor, step: tf.Tensor, n: int, vocabulary: int) -> tf.Tensor:
    """float32 [B, k, V]: 1 for each word that would complete, at position `step`, an n-gram the
    hypothesis already holds in tokens[..., :step] (its n-1 last words followed by that word).

    Works on the loop's fixed-size token buffer [B, k, T] (static T), so it compiles with XLA."""
    batch, k, length = tf.shape(tokens)[0], tf.shape(tokens)[1], tokens.shape[2]
    if length is None or length < n:
        return tf.zeros([batch, k, vocabulary])
    windows = tf.signal.frame(tokens, n, 1, axis=2)  # [B, k, W, n], W = T - n + 1
    starts = tf.range(length - n + 1)
    # the previous n-1 words (positions step-n+1 .. step-1), clipped; only meaningful when step >= n-1
    suffix = tf.gather(tokens, tf.clip_by_value(step - n + 1 + tf.range(n - 1), 0, length - 1), axis=2)
    matches = tf.reduce_all(tf.equal(windows[..., : n - 1], suffix[:, :, tf.newaxis, :]), axis=-1)
    matches &= (starts + n - 1 < step)[tf.newaxis, tf.newaxis, :] & (step >= n - 1)  # the whole n-gram is written
    hypothesis = tf.broadcast_to(tf.range(batch * k)[:, tf.newaxis], [batch * k, length - n + 1])
    indices = tf.stack([tf.reshape(hypothesis, [-1]), tf.reshape(windows[..., n - 1], [-1])], axis=1)
    banned = tf.scatter_nd(indices, tf.reshape(tf.cast(matches, tf.float32), [-1]), [batch * k, vocabulary])
    return tf.reshape(tf.minimum(banned, 1.0), [batch, k, vocabulary])


def repeated_once_only_words(tokens: tf.Tensor, once_only: tf.Tensor) -> tf.Tensor:
    """float32 [B, k, V]: 1 for each word of `once_only` (float32 [V], 1 for a word a caption says
    at most once) that the hypothesis already holds in its token buffer [B, k, T] (the buffer's
    unwritten positions hold `<pad>`, never a once-only word)."""
    batch, k, length = tf.shape(tokens)[0], tf.shape(tokens)[1], tf.shape(tokens)[2]
    vocabulary = tf.shape(once_only)[0]
    hypothesis = tf.broadcast_to(tf.range(batch * k)[:, tf.newaxis], [batch * k, length])
    indices = tf.stack([tf.reshape(hypothesis, [-1]), tf.reshape(tokens, [-1])], axis=1)
    seen = tf.scatter_nd(indices, tf.ones([batch * k * length]), [batch * k, vocabulary])
    return tf.reshape(tf.minimum(seen, 1.0) * once_only, [batch, k, vocabulary])


@dataclasses.dataclass(frozen=True)
class Sampler:
    """Base class of decoding strategies (keras-hub style: one loop, strategies as objects).

    A subclass sets `num_hypotheses` and implements `select`; it may override `initial_scores`
    (which hypotheses are live at step 0) and `final_order` (how the finished hypotheses are
    ranked). Samplers are immutable and compared by value, so a compiled decoding function can be
    cached per (model, sampler, batch shape).
    """

    @property
    def num_hypotheses(self) -> int:
        raise NotImplementedError

    @property
    def needs_constraint(self) -> bool:
        """Whether `run` must be given `constraint_words` (constrained decoding)."""
        return False

    def initial_scores(self, batch: tf.Tensor) -> tf.Tensor:
        """Scores [B, k] before the first word: every hypothesis live."""
        return tf.zeros([batch, self.num_hypotheses])

    def select(
        self,
        log_probs: tf.Tensor,
        scores: tf.Tensor,
        step: tf.Tensor,
        seed: tf.Tensor,
        constraint: tf.Tensor | None = None,
    ):
        """Chooses each hypothesis' continuation.

        Args:
            log_probs: float32 [B, k, V] of the step (forbidden words and finished hypotheses'
                non-`<pad>` words are already at a large negative value).
            scores: float32 [B, k], the hypotheses' scores so far.
            step: int32 scalar, the step index.
            seed: int32 [2], the call's seed (for random strategies).
            constraint: float32 [B, V], 1 for the words that satisfy the image's constraint
                (constrained strategies only; None for the others).

        Returns:
            (parent int32 [B, k], word int32 [B, k], new scores float32 [B, k]).
        """
        raise NotImplementedError

    def final_order(self, scores: tf.Tensor, lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(ranking scores [B, k], order [B, k] or None to keep the hypotheses' order)."""
        return scores, None

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "Sampler":
        return cls(**config)

    # ----- the loop ---------------------------------------------------------------------------
    def run(
        self,
        model,
        features,
        max_length: int,
        seed: tf.Tensor | None = None,
        forbidden_ids: Sequence[int] = (),
        constraint_words: tf.Tensor | None = None,
        no_repeat_ngram_size: int = 0,
        once_only_ids: Sequence[int] = (),
    ) -> dict[str, tf.Tensor]:
        """Decodes a batch in the graph (call it inside a `tf.function`, or eagerly).

        Args:
            model: a `Captioner` or `CaptionerEnsemble` (its `decoder` step API and `tokenizer`).
            features: region features [B, L, D] (a tuple of them for an ensemble).
            max_length: most tokens per caption, `<end>` included.
            seed: int32 [2] for random strategies (default [0, 0]).
            forbidden_ids: token ids never emitted (for example `<unk>`).
            constraint_words: float32 [B, V] for constrained strategies (`needs_constraint`): 1 for
                the words of which each caption should contain at least one.
            no_repeat_ngram_size: n > 0: no hypothesis emits an n-gram it already contains
                ("sitting on a park on a park" cannot happen with n = 3); 0: no blocking.
            once_only_ids: token ids a hypothesis emits at most once (the content words, for
                `DecodingConfig.no_repeat_content_words`: "a toilet and a toilet" cannot happen).

        Returns:
            {"tokens" int32 [B, k, T], "scores" [B, k], "log_probs" [B, k], "token_log_probs"
            [B, k, T], "alphas" [B, k, T, L], "lengths" int32 [B, k], "photo_states" [B, H]: the
            decoder's initial hidden state}; T <= max_length is the number of steps run (the loop
            stops early once every hypothesis has ended).
        """
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {no_repeat_ngram_size}")
        if self.needs_constraint and constraint_words is None:
            raise ValueError(f"{type(self).__name__} needs constraint_words")
        constraint = None if constraint_words is None else tf.cast(constraint_words, tf.float32)
        decoder, tokenizer, k = model.decoder, model.tokenizer, self.num_hypotheses
        seed = tf.zeros([2], tf.int32) if seed is None else tf.cast(seed, tf.int32)
        initial = decoder.initial_state(features)
        batch = tf.shape(tf.nest.flatten(initial)[0])[0]
        vocabulary = tokenizer.vocabulary_size
        # Per-image constants computed once, then repeated per hypothesis (an image's are adjacent).
        constants = decoder.repeat_constants(decoder.step_constants(features), k)
        state = tf.nest.map_structure(lambda x: tf.repeat(x, k, axis=0), initial)
        regions = decoder.num_regions(features)
        # A finished hypothesis has exactly one continuation, <pad>, at no cost.
        pad_only = tf.one_hot(tokenizer.pad_id, vocabulary, on_value=0.0, off_value=NEG_INF)
        forbidden = tf.zeros([vocabulary])
        if forbidden_ids:
            forbidden = tf.reduce_sum(tf.one_hot(list(forbidden_ids), vocabulary, on_value=NEG_INF), axis=0)
        once_only = None
        if once_only_ids:
            once_only = tf.reduce_sum(tf.one_hot(list(once_only_ids), vocabulary), axis=0)
        # Fixed-size buffers written at step t (not grown by concat), so shapes stay static for XLA.
        carried = (
            tf.fill([batch * k], tokenizer.start_id),  # previous word of each hypothesis
            self.initial_scores(batch),
            tf.zeros([batch, k], tf.bool),  # finished
            tf.zeros([batch, k], tf.int32),  # lengths
            tf.zeros([batch, k, max_length], tf.int32),  # tokens
            tf.zeros([batch, k, max_length]),  # token log-probs
            tf.zeros([batch, k, max_length, regions]),  # alphas
        )

        def step(t, state, previous, scores, finished, lengths, tokens, token_log_probs, alphas):
            out = decoder.step(constants, state, previous)
            log_probs = tf.reshape(tf.cast(out.log_probs, tf.float32), [batch, k, vocabulary])
            blocked = forbidden
            if no_repeat_ngram_size:
                blocked += NEG_INF * repeated_ngram_words(tokens, t, no_repeat_ngram_size, vocabulary)
            if once_only is not None:
                blocked += NEG_INF * repeated_once_only_words(tokens, once_only)
            allowed = tf.where(finished[:, :, tf.newaxis], pad_only, log_probs + blocked)
            parent, word, scores = self.select(allowed, scores, t, seed, constraint)
            gather = lambda x: tf.gather(x, parent, batch_dims=1)  # noqa: E731
            # Recorded per token: the model's own log-probability (0 for <pad> after <end>).
            model_log_probs = tf.where(finished[:, :, tf.newaxis], pad_only, log_probs)
            chosen_log_prob = tf.gather(gather(model_log_probs), word, batch_dims=2)
            was_finished = gather(finished)
            at_t = tf.one_hot(t, max_length)  # [T]
            tokens = gather(tokens) + word[:, :, tf.newaxis] * tf.cast(at_t, tf.int32)
            token_log_probs = gather(token_log_probs) + chosen_log_prob[:, :, tf.newaxis] * at_t
            alpha = tf.reshape(tf.cast(out.alpha, tf.float32), [batch, k, -1])
            step_alpha = tf.where(was_finished[:, :, tf.newaxis], 0.0, gather(alpha))
            alphas = gather(alphas) + step_alpha[:, :, tf.newaxis, :] * at_t[:, tf.newaxis]
            lengths = gather(lengths) + tf.cast(~was_finished, tf.int32)
            finished = was_finished | tf.equal(word, tokenizer.end_id)
            flat_parent = tf.reshape(parent + tf.range(batch)[:, tf.newaxis] * k, [-1])
            state = tf.nest.map_structure(lambda x: tf.gather(x, flat_parent), out.state)
            return state, tf.reshape(word, [-1]), scores, finished, lengths, tokens, token_log_probs, alphas

        def body(t, state, *carried):
            outputs = step(t, state, *carried)
            # Gathers lose static shapes; restating them keeps the loop shape-invariant.
            new_state = tf.nest.map_structure(lambda new, old: tf.ensure_shape(new, old.shape), outputs[0], state)
            return (t + 1, new_state, *(tf.ensure_shape(new, old.shape) for new, old in zip(outputs[1:], carried)))

        steps, _, _, scores, _, lengths, tokens, token_log_probs, alphas = tf.while_loop(
            lambda t, _state, _previous, _scores, finished, *_: (t < max_length) & ~tf.reduce_all(finished),
            body,
            (tf.constant(0), state, *carried),
            maximum_iterations=max_length,
        )
        tokens, token_log_probs, alphas = tokens[:, :, :steps], token_log_probs[:, :, :steps], alphas[:, :, :steps]
        log_probs = tf.reduce_sum(token_log_probs, axis=2)
        ranking, order = self.final_order(scores, lengths)
        outputs = {
            "tokens": tokens,
            "scores": ranking,
            "log_probs": log_probs,
            "token_log_probs": token_log_probs,
            "alphas": alphas,
            "lengths": lengths,
        }
        if order is not None:
            outputs = {key: tf.gather(value, order, batch_dims=1) for key, value in outputs.items()}
        # h0 (the first member's, for an ensemble): how the decoder sees the photo, for its novelty
        outputs["photo_states"] = tf.cast(tf.nest.flatten(initial)[0], tf.float32)
        return outputs
