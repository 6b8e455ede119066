"""Caption vocabulary and tokenizer built on tensorflow-text."""

from __future__ import annotations

import collections
import json
import os
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from sat_tf.utils.atomic import write_json_atomic
from sat_tf_edge.text import END_ID, PAD_ID, START_ID, UNKNOWN_ID, caption_text

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS = (PAD, START, END, UNK)
# Everything that is not a letter, digit, apostrophe or whitespace separates words and is dropped,
# the usual caption preprocessing (Karpathy's splits, coco-caption's PTB tokenizer drops punctuation too).
_PUNCTUATION = r"[^\p{L}\p{N}'\s]+"


@keras.saving.register_keras_serializable(package="sat_tf")
class CaptionTokenizer(keras.layers.Layer):
    """Maps caption strings to token ids and back.

    Normalisation (tensorflow-text): Unicode case folding (lower-casing), punctuation replaced by
    spaces, whitespace splitting. Ids 0..3 are always `<pad>`, `<start>`, `<end>`, `<unk>`; words not
    in the vocabulary map to `<unk>`. The vocabulary is part of `get_config`, so a `Captioner` that
    holds the tokenizer stores it inside its `.keras` file.

    Args:
        vocabulary: words in id order. The four special tokens are prepended if missing.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> tok = CaptionTokenizer.from_corpus(["A red circle.", "a blue square"])
        >>> ids = tok.tokenize(["a red square!"])          # ragged [[1, 4, 6, 8, 2]]
        >>> tok.detokenize(ids).numpy()                    # [b'a red square']
    """

    def __init__(self, vocabulary: Sequence[str], **kwargs):
        super().__init__(trainable=False, **kwargs)
        words = [w for w in vocabulary if w not in SPECIAL_TOKENS]
        if len(set(words)) != len(words):
            raise ValueError("CaptionTokenizer: the vocabulary contains duplicate words")
        self.vocabulary = list(SPECIAL_TOKENS) + words
        self._words = tf.constant(self.vocabulary)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(self._words, tf.range(len(self.vocabulary), dtype=tf.int32)),
            default_value=self.unk_id,
        )
        self._splitter = tf_text.WhitespaceTokenizer()

    pad_id, start_id, end_id, unk_id = PAD_ID, START_ID, END_ID, UNKNOWN_ID

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    @classmethod
    def from_corpus(
        cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None, **kwargs
    ) -> "CaptionTokenizer":
        """Builds the vocabulary from captions.

        Args:
            captions: caption strings.
            min_count: words seen fewer times become `<unk>`.
            max_size: cap on the vocabulary size, special tokens included; the most frequent words
                are kept (ties broken alphabetically, so the result is deterministic).
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_size}")
        counts: collections.Counter = collections.Counter()
        captions = list(captions)
        for start in range(0, len(captions), 4096):
            words = split_words(captions[start : start + 4096])
            counts.update(w.decode("utf-8") for w in words.flat_values.numpy())
        ranked = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS), key=lambda w: (-counts[w], w)
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        return cls(ranked, **kwargs)

    def tokenize(self, captions) -> tf.RaggedTensor:
        """Strings [B] -> ragged int32 ids [B, None], wrapped in `<start>` ... `<end>`."""
        ids = self._table.lookup(split_words(captions))
        batch = ids.nrows()
        start = tf.fill([batch, 1], self.start_id)
        end = tf.fill([batch, 1], self.end_id)
        return tf.concat([tf.RaggedTensor.from_tensor(start), ids, tf.RaggedTensor.from_tensor(end)], axis=1)

    def call(self, captions):
        return self.tokenize(captions)

    def detokenize(self, ids) -> tf.Tensor:
        """Ids [B, T] (dense or ragged) -> clean sentences [B].

        Everything from the first `<end>` on is dropped, as are `<pad>` and `<start>`.
        """
        ids = tf.convert_to_tensor(ids) if not isinstance(ids, tf.RaggedTensor) else ids.to_tensor(self.pad_id)
        ids = tf.cast(ids, tf.int32)
        before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, self.end_id), tf.int32), axis=1), 0)
        keep = before_end & (ids != self.pad_id) & (ids != self.start_id)
        words = tf.ragged.boolean_mask(tf.gather(self._words, ids), keep)
        return tf.strings.reduce_join(words, axis=1, separator=" ")

    def decode(self, ids) -> list[str]:
        """Like `detokenize`, as Python strings (`sat_tf_edge.text.caption_text`, the detokeniser
        the edge runtime uses too); plain Python, so decoding a caption on the host costs
        microseconds instead of a round of eager TensorFlow ops."""
        return [
            caption_text(row, self.vocabulary, self.pad_id, self.start_id, self.end_id)
            for row in np.asarray(ids).tolist()
        ]

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("trainable", None)
        config["vocabulary"] = self.vocabulary
        return config

    def save_vocabulary(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as a JSON list, atomically."""
        write_json_atomic(path, {"vocabulary": self.vocabulary})

    @classmethod
    def load_vocabulary(cls, path: str | os.PathLike) -> "CaptionTokenizer":
        try:
            with open(path, encoding="utf-8") as f:
                payload = json.load(f)
            vocabulary = payload["vocabulary"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a sat_tf vocabulary file ({exc})") from exc
        if not isinstance(vocabulary, list) or not all(isinstance(w, str) for w in vocabulary):
            raise ValueError(f"{path}: field 'vocabulary' must be a list of strings")
        return cls(vocabulary)


def normalize_captions(captions) -> tf.Tensor:
    """Lower-cases (Unicode case folding) and replaces punctuation by spaces."""
    text = tf_text.case_fold_utf8(tf.convert_to_tensor(captions, dtype=tf.string))
    return tf.strings.regex_replace(text, _PUNCTUATION, " ")


def split_words(captions) -> tf.RaggedTensor:
    """Normalised words of each caption, ragged [B, None] strings."""
    return tf_text.WhitespaceTokenizer().tokenize(normalize_captions(captions))


def pad_token_ids(ragged_ids: tf.RaggedTensor, length: int | None = None) -> np.ndarray:
    """Ragged ids -> dense int32 numpy array padded with `<pad>` (id 0)."""
    shape = None if length is None else [None, length]
    return ragged_ids.to_tensor(CaptionTokenizer.pad_id, shape=shape).numpy().astype(np.int32)
