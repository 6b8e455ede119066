"""How well a score ranks good results above bad ones."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count half), by the Mann-Whitney U statistic.

    Raises:
        ValueError: lengths differ, or one class is empty.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0] if scores.ndim else 0} scores for {labels.shape[0]} labels")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # ties share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
