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
    score_array, label_array = np.asarray(scores, np.float64), np.asarray(labels, bool)
    if score_array.shape != label_array.shape:
        raise ValueError(f"{score_array.shape[0] if score_array.ndim else 0} scores for {label_array.shape[0]} labels")
    positives, negatives = int(label_array.sum()), int((~label_array).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    order = np.argsort(score_array, kind="stable")
    ranks = np.empty(len(score_array), np.float64)
    ranks[order] = np.arange(1, len(score_array) + 1)
    for value in np.unique(score_array):  # ties share their mean rank
        tied = score_array == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[label_array].sum() - positives * (positives + 1) / 2) / (positives * negatives))
