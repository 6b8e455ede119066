"""The public decoding entry point: batching, compiled-function caching, detokenization.

    candidates = generate_captions(model, images=images, sampler=BeamSampler(3))
    captions = candidates.best()          # one DecodedCaptions, best candidate per image

Compiled functions are cached per (model, sampler, settings); TensorFlow then keeps one trace
per batch shape. So validation that captions the same images every epoch compiles once.
"""

from __future__ import annotations

import weakref
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from sat_tf.inference.constrained_beam_sampler import ConstrainedBeamSampler
from sat_tf.inference.ensemble import CaptionerEnsemble
from sat_tf.inference.greedy_sampler import GreedySampler
from sat_tf.inference.results import CaptionCandidates
from sat_tf.inference.sampler import Sampler
from sat_tf.inference.tag_guidance import TagGuidance, plan_guidance
from sat_tf.models.imagenet_tagger import Tag
from sat_tf_edge.text import content_word_ids

# model -> {(sampler, max_length, forbidden ids, jit_compile) or "encode": tf.function}
_COMPILED: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def compiled_decoder(
    model,
    sampler: Sampler,
    max_length: int,
    forbidden_ids: tuple[int, ...] = (),
    jit_compile: bool = True,
    no_repeat_ngram_size: int = 0,
    once_only_ids: tuple[int, ...] = (),
) -> Callable:
    """The cached `tf.function` features, seed -> `sampler.run(...)` outputs for `model`.

    XLA (`jit_compile`) matters on CPU: a step is a few small ops, so without it per-op dispatch
    dominates; with it, each new batch shape compiles once (seconds).
    """
    # Python attributes read while tracing (hard attention's test-time mode) are part of the key.
    settings = (tuple(forbidden_ids), jit_compile, no_repeat_ngram_size, tuple(once_only_ids))
    key = (sampler, max_length, *settings, _traced_settings(model))
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:

        def decode(features, seed, constraint_words=None):
            return sampler.run(
                model, features, max_length, seed, forbidden_ids, constraint_words, no_repeat_ngram_size, once_only_ids
            )

        functions[key] = tf.function(decode, reduce_retracing=True, jit_compile=jit_compile)
    return functions[key]


def _traced_settings(model) -> tuple:
    return tuple(getattr(m.decoder, "hard_inference", None) for m in model.members())


def _compiled(model, name: str) -> Callable:
    """`model.<name>(x, training=False)` as a tf.function, cached per model."""
    functions = _COMPILED.setdefault(model, {})
    if name not in functions:
        method = getattr(model, name)
        functions[name] = tf.function(lambda x: method(x, training=False), reduce_retracing=True)
    return functions[name]


def forbidden_token_ids(model, forbid_unknown: bool) -> tuple[int, ...]:
    """Token ids decoding must not emit: `<unk>` when asked (it says nothing about the image)."""
    return (model.tokenizer.unk_id,) if forbid_unknown else ()


def region_features(model, images=None, features=None):
    """Features for decoding from images [B, H, W, 3] (0..255) or from what a feature cache holds
    (region features, or a fine-tuned encoder's frozen-part activations)."""
    if (images is None) == (features is None):
        raise ValueError("pass exactly one of images= or features=")
    if features is None:
        return _compiled(model, "encode")(tf.convert_to_tensor(images))
    if isinstance(model, CaptionerEnsemble):
        features = model.member_features(features)
    else:
        features = tf.convert_to_tensor(features, tf.float32)
    return _compiled(model, "features_from_cache")(features)


def photo_states(model, images, batch_size: int = 64) -> np.ndarray:
    """float32 [N, H]: the decoder's initial hidden state h0 of each image (the first member's for
    an ensemble), without decoding: how the decoder sees each photo (the calibrated confidence's
    novelty is measured on it)."""
    first = model.members()[0]
    parts = []
    for start in range(0, len(images), batch_size):
        features = region_features(first, images=images[start : start + batch_size])
        parts.append(first.decoder.initial_state(features).hidden.numpy())
    return np.concatenate(parts).astype(np.float32)


def generate_captions(
    model,
    images=None,
    features=None,
    sampler: Sampler | None = None,
    max_length: int = 20,
    batch_size: int = 64,
    forbid_unknown: bool = False,
    seed: int = 0,
    jit_compile: bool = True,
    constraint_words: np.ndarray | None = None,
    no_repeat_ngram_size: int = 0,
    no_repeat_content_words: bool = False,
    guidance: TagGuidance | None = None,
    tags: Sequence[Sequence[Tag]] | None = None,
) -> CaptionCandidates:
    """Captions images (or precomputed region features), in batches, with any decoding strategy.

    Args:
        model: a trained `Captioner` or a `CaptionerEnsemble`.
        images: [N, H, W, 3] pixels in 0..255 (any size: the encoder resizes), or
        features: [N, L, D] region features (a per-member list for an ensemble).
        sampler: `GreedySampler()` (default), `BeamSampler(k, length_penalty)` or
            `RandomSampler(num_samples, temperature, top_k)`.
        max_length: most tokens per caption, `<end>` included.
        batch_size: images decoded per compiled call.
        forbid_unknown: never emit `<unk>`.
        seed: seed of random strategies; batch i uses (seed, i), so results do not depend on
            anything but the seed and the batch size.
        jit_compile: compile the decoding loop with XLA.
        constraint_words: [N, V], for a constrained sampler (`ConstrainedBeamSampler`): 1 for the
            words of which each image's caption should contain at least one.
        no_repeat_ngram_size: n > 0: no caption repeats an n-gram (see `Sampler.run`).
        no_repeat_content_words: no caption says a content word twice (every word but
            `sat_tf_edge.text.FUNCTION_WORDS`: "a plate of food on a plate" cannot happen).
        guidance, tags: tag guidance (`sat_tf.inference.tag_guidance`) with each image's tags: a
            batch's captions the guidance picks are decoded again with their tag words required
            (a `ConstrainedBeamSampler` of the sampler's beam), and `guided` says which.

    Returns:
        `CaptionCandidates` with k candidates per image (`.best()` for one caption per image).
    """
    sampler = sampler or GreedySampler()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if (images is None) == (features is None):
        raise ValueError("pass exactly one of images= or features=")
    per_member = isinstance(features, (list, tuple))  # an ensemble's features, one array per member
    count = len(images) if images is not None else len(features[0] if per_member else features)
    if count == 0:
        raise ValueError("no images to caption")
    if sampler.needs_constraint:
        vocabulary = model.tokenizer.vocabulary_size
        if constraint_words is None or np.shape(constraint_words) != (count, vocabulary):
            raise ValueError(
                f"{type(sampler).__name__} needs constraint_words of shape [{count}, {vocabulary}], "
                f"got {None if constraint_words is None else np.shape(constraint_words)}"
            )
    if guidance is not None and (tags is None or len(tags) != count):
        raise ValueError(f"tag guidance needs the tags of each of the {count} images")
    blocking = (
        forbidden_token_ids(model, forbid_unknown),
        jit_compile,
        no_repeat_ngram_size,
        content_word_ids(model.tokenizer.vocabulary) if no_repeat_content_words else (),
    )
    decode = compiled_decoder(model, sampler, max_length, *blocking)
    constrained = None if guidance is None else compiled_decoder(model, _constrained(sampler), max_length, *blocking)
    parts = []
    for index, start in enumerate(range(0, count, batch_size)):
        window = slice(start, start + batch_size)
        if images is not None:
            batch_features = region_features(model, images=images[window])
        else:
            batch_features = region_features(
                model, features=[f[window] for f in features] if per_member else features[window]
            )
        constraint = (
            {}
            if not sampler.needs_constraint
            else {"constraint_words": tf.constant(np.asarray(constraint_words)[window], tf.float32)}
        )
        batch_seed = tf.constant([seed, index], tf.int32)
        part = _to_candidates(
            model, {k: v.numpy() for k, v in decode(batch_features, batch_seed, **constraint).items()}
        )
        if guidance is not None and tags is not None and constrained is not None:
            part = _guided(model, part, batch_features, tags[window], guidance, constrained, batch_seed)
        parts.append(part)
    return parts[0] if len(parts) == 1 else CaptionCandidates.concatenate(parts)


def _constrained(sampler: Sampler) -> ConstrainedBeamSampler:
    """The constrained beam of the same width and length penalty as `sampler`."""
    return ConstrainedBeamSampler(sampler.num_hypotheses, getattr(sampler, "length_penalty", 0.0))


def _guided(model, free: CaptionCandidates, features, tags, guidance: TagGuidance, decode, seed) -> CaptionCandidates:
    """A batch's free captions with those the guidance picks replaced by constrained ones."""
    plan = plan_guidance(guidance, free.best_texts, tags, model.tokenizer.vocabulary)
    free.guided = np.zeros(len(free.texts), bool)
    if not plan.rows:
        return free
    # Padded to a power of two (repeating the last row) so the compiled loop sees few batch shapes.
    padded = plan.rows + [plan.rows[-1]] * ((1 << (len(plan.rows) - 1).bit_length()) - len(plan.rows))
    subset = tf.nest.map_structure(lambda f: tf.gather(f, padded), features)
    words = np.concatenate([plan.words, np.repeat(plan.words[-1:], len(padded) - len(plan.rows), axis=0)])
    outputs = decode(subset, seed, constraint_words=tf.constant(words, tf.float32))
    k = len(free.texts[0])
    constrained = _to_candidates(model, {key: value.numpy() for key, value in outputs.items()}).first(k, len(plan.rows))
    constrained.texts = plan.texts(constrained.texts)
    merged = free.with_rows(plan.rows, constrained)
    merged.guided = np.isin(np.arange(len(free.texts)), plan.rows)
    return merged


def _to_candidates(model, outputs: dict[str, np.ndarray]) -> CaptionCandidates:
    tokens = outputs["tokens"]
    batch, k, steps = tokens.shape
    texts = model.tokenizer.decode(tokens.reshape(batch * k, steps)) if steps else [""] * (batch * k)
    return CaptionCandidates(
        tokens=tokens,
        scores=outputs["scores"],
        log_probs=outputs["log_probs"],
        token_log_probs=outputs["token_log_probs"],
        alphas=outputs["alphas"],
        lengths=outputs["lengths"],
        texts=[texts[i * k : (i + 1) * k] for i in range(batch)],
        photo_states=outputs.get("photo_states"),
    )
