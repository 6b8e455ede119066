"""CIDEr-D with document frequencies computed once, for scoring many captions fast (rewards).

coco-caption's scorer (`pycocoevalcap.cider.Cider`) recomputes document frequencies from the
references of every call, so a batch of sampled captions would be scored against the n-gram
statistics of that batch alone. Self-critical training instead fixes them once, from the training
references, and scores each caption as a sparse tf-idf vector against its image's cached
reference vectors. The arithmetic is coco-caption's CIDEr-D, including its details: n = 1..4,
clipped n-gram weights, a Gaussian length penalty (sigma 6) on the difference of the two
captions' "lengths", which coco-caption counts as their number of bigrams, the mean over n and
over references, times 10.

Reference:
    Vedantam et al., "CIDEr: Consensus-based Image Description Evaluation", CVPR 2015.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Hashable, Iterable, Sequence

import numpy as np

Caption = Sequence[Hashable]  # words (or token ids) of one caption


@dataclasses.dataclass
class _Vector:
    """A caption's tf-idf vector, one sorted sparse part per n-gram order."""

    ids: list[np.ndarray]  # per n: sorted n-gram ids
    weights: list[np.ndarray]  # per n: tf-idf weight of each id
    norms: np.ndarray  # [N]
    length: int  # coco-caption's length: the number of bigrams


class CiderD:
    """CIDEr-D against fixed document frequencies.

    Args:
        references: the reference captions of every image of the corpus that defines document
            frequencies (for self-critical training: the training set), each caption a sequence
            of words or token ids.
        max_n: longest n-gram.
        sigma: width of the length penalty.

    Example:
        >>> cider = CiderD([["a dog runs".split(), "a brown dog".split()], ...])
        >>> cider.score("a dog".split(), [["a dog runs".split(), "a brown dog".split()]])
    """

    def __init__(self, references: Sequence[Sequence[Caption]], max_n: int = 4, sigma: float = 6.0):
        if not references:
            raise ValueError("CIDEr-D needs the references of at least one image")
        self.max_n, self.sigma = max_n, sigma
        self._ids: dict[tuple, int] = {}
        document_frequency: Counter = Counter()
        for captions in references:
            document_frequency.update({gram for caption in captions for gram in _ngrams(caption, max_n)})
        self._log_df = np.zeros(len(document_frequency))
        for gram, count in document_frequency.items():
            self._log_df[self._id(gram)] = math.log(count)
        self._log_documents = math.log(float(len(references)))

    def _id(self, gram: tuple) -> int:
        return self._ids.setdefault(gram, len(self._ids))

    def _idf(self, ids: np.ndarray) -> np.ndarray:
        """log(#documents) - log(df); n-grams never seen in the references have df 1 (log 0)."""
        known = ids < len(self._log_df)
        log_df = np.zeros(len(ids))
        log_df[known] = self._log_df[ids[known]]
        return self._log_documents - log_df

    def vector(self, caption: Caption) -> _Vector:
        counts = Counter(_ngrams(caption, self.max_n))
        ids, weights, norms = [], [], np.zeros(self.max_n)
        for n in range(1, self.max_n + 1):
            grams = [(self._ids.get(g, -1), c, g) for g, c in counts.items() if len(g) == n]
            # unseen n-grams get fresh ids so that identical ones still match each other
            order_ids = np.array([i if i >= 0 else self._id(g) for i, _, g in grams], np.int64)
            term_freq = np.array([c for _, c, _ in grams], np.float64)
            order = np.argsort(order_ids)
            order_ids, term_freq = order_ids[order], term_freq[order]
            weight = term_freq * self._idf(order_ids)
            ids.append(order_ids)
            weights.append(weight)
            norms[n - 1] = math.sqrt(float(np.sum(weight**2)))
        return _Vector(ids, weights, norms, sum(c for g, c in counts.items() if len(g) == 2))

    def _similarity(self, hypothesis: _Vector, reference: _Vector) -> float:
        penalty = math.exp(-((hypothesis.length - reference.length) ** 2) / (2 * self.sigma**2))
        total = 0.0
        for n in range(self.max_n):
            _, in_hyp, in_ref = np.intersect1d(
                hypothesis.ids[n], reference.ids[n], assume_unique=True, return_indices=True
            )
            value = float(
                np.sum(
                    np.minimum(hypothesis.weights[n][in_hyp], reference.weights[n][in_ref])
                    * reference.weights[n][in_ref]
                )
            )
            if hypothesis.norms[n] != 0 and reference.norms[n] != 0:
                value /= hypothesis.norms[n] * reference.norms[n]
            total += value * penalty
        return total

    def score(self, hypothesis: Caption, references: Sequence[Caption] | Sequence[_Vector]) -> float:
        """CIDEr-D of one caption against its image's references (captions or their vectors)."""
        vectors = [r if isinstance(r, _Vector) else self.vector(r) for r in references]
        hypothesis_vector = self.vector(hypothesis)
        return 10.0 * sum(self._similarity(hypothesis_vector, r) for r in vectors) / (self.max_n * len(vectors))

    def scores(
        self, hypotheses: Iterable[Caption], references: Sequence[Sequence[Caption] | Sequence[_Vector]]
    ) -> np.ndarray:
        """One score per hypothesis; `references[i]` are the references of hypothesis i."""
        return np.array([self.score(h, r) for h, r in zip(hypotheses, references)], np.float64)


def _ngrams(caption: Caption, max_n: int) -> list[tuple]:
    tokens = list(caption)
    return [tuple(tokens[i : i + n]) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1)]
