"""Fitting the learned confidence (`sat_tf_edge.calibration.ConfidenceCalibration`) on dev photos.

Each dev caption is labelled good when its CIDEr-D against its photo's human captions is above the
median of its dev set. A logistic regression (scikit-learn, needed only here, at calibration time)
is fitted on standardized signals; the signals are chosen by forward selection on cross-validated
AUROC (folds stratified by dev set and label, the mean of the sets' AUROCs), so a signal joins only
when captions it has not seen are ranked better. The "not sure" threshold is the lowest confidence
at which the captions shown without the flag keep a promised share of good captions, measured on
the out-of-fold confidences.

Example:
    >>> novelty = fit_photo_novelty(training_photo_states)
    >>> table = candidates.confidence_signals(novelty, end_id)   # per dev caption
    >>> fitted = fit_calibration(table, good, groups, novelty)
    >>> fitted.calibration.to_json()                             # what a preset or run folder keeps
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from sat_tf.data.sources import CaptionData
from sat_tf.errors import ConfigError
from sat_tf.evaluation.cider import CiderD
from sat_tf.evaluation.ranking import auroc
from sat_tf_edge.calibration import SIGNALS, ConfidenceCalibration, PhotoNovelty

PROMISED_SHARE_GOOD = 0.7  # of captions shown without "not sure", at least this share is good


def caption_words(caption: str) -> list[str]:
    """Lower-cased alphanumeric words, as the per-photo CIDEr-D compares them."""
    return "".join(c if c.isalnum() or c.isspace() else " " for c in caption.lower()).split()


def per_photo_cider(texts: Sequence[str], captions: CaptionData) -> np.ndarray:
    """float [N]: each caption's CIDEr-D against its photo's human captions (document frequencies
    from the split), in the order of `captions.image_ids`."""
    references = captions.references()
    reference_words = [[caption_words(r) for r in references[i]] for i in captions.image_ids]
    return CiderD(reference_words).scores([caption_words(t) for t in texts], reference_words)


def good_captions(per_photo_cider: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """bool [N]: a caption's CIDEr-D is above the median of its own dev set (`groups`)."""
    good = np.zeros(len(per_photo_cider), bool)
    for group in np.unique(groups):
        rows = groups == group
        good[rows] = per_photo_cider[rows] > np.median(per_photo_cider[rows])
    return good


def fit_photo_novelty(photo_states: np.ndarray, components: int = 16) -> PhotoNovelty:
    """The training photos' h0 as a Gaussian in its top `components` principal directions."""
    states = np.asarray(photo_states, np.float64)
    if len(states) <= components:
        raise ValueError(f"{len(states)} training photos: need more than {components} for the novelty statistics")
    center = states.mean(axis=0)
    _, singular, directions = np.linalg.svd(states - center, full_matrices=False)
    scales = singular[:components] / np.sqrt(len(states) - 1)
    return PhotoNovelty(center, directions[:components], np.maximum(scales, 1e-6))


def _folds(groups: np.ndarray, good: np.ndarray, count: int, seed: int) -> np.ndarray:
    """int [N]: a fold per caption, stratified by dev set and label."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(good), int)
    for group in np.unique(groups):
        for label in (False, True):
            rows = np.flatnonzero((groups == group) & (good == label))
            fold[rng.permutation(rows)] = np.arange(len(rows)) % count
    return fold


def _matrix(table: dict[str, np.ndarray], signals: Sequence[str]) -> np.ndarray:
    return np.stack([np.asarray(table[name], np.float64) for name in signals], -1)


def _standardize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    means = np.nanmean(values, axis=0)
    scales = np.nanstd(values, axis=0)
    scales = np.where(np.isfinite(scales) & (scales > 0), scales, 1.0)
    means = np.where(np.isfinite(means), means, 0.0)
    return np.nan_to_num((values - means) / scales, nan=0.0), means, scales


def _logistic(values: np.ndarray, good: np.ndarray, weights: np.ndarray, strength: float):
    try:
        from sklearn.linear_model import LogisticRegression  # calibration time only
    except ImportError:
        raise ConfigError("fitting a calibration needs scikit-learn: pip install 'sat_tf[calibrate]'") from None

    standardized, means, scales = _standardize(values)
    model = LogisticRegression(C=strength, max_iter=1000).fit(standardized, good, sample_weight=weights)
    return means, scales, model.coef_[0], float(model.intercept_[0])


def _set_weights(groups: np.ndarray) -> np.ndarray:
    """Each dev set weighs the same in the fit, however many photos it has."""
    counts = {group: np.sum(groups == group) for group in np.unique(groups)}
    return np.array([len(groups) / (len(counts) * counts[g]) for g in groups])


def out_of_fold_confidence(
    table: dict[str, np.ndarray], good, groups, signals: Sequence[str], folds: np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """float [N]: each caption's confidence from a calibration fitted without its fold."""
    values, weights = _matrix(table, signals), _set_weights(groups)
    confidence = np.empty(len(good))
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        means, scales, coef, bias = _logistic(values[train], good[train], weights[train], strength)
        standardized = np.nan_to_num((values[test] - means) / scales, nan=0.0)
        confidence[test] = 1.0 / (1.0 + np.exp(-(bias + standardized @ coef)))
    return confidence


def auroc_per_set(scores: np.ndarray, good: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    return {str(g): auroc(scores[groups == g], good[groups == g]) for g in np.unique(groups)}


def not_sure_threshold(confidence: np.ndarray, good: np.ndarray, groups: np.ndarray, share_good: float) -> float:
    """The lowest threshold at which the captions at or above it are at least `share_good` good,
    counted over all dev sets with each set weighing the same; 1.0 when no threshold keeps the promise."""
    weights = _set_weights(groups)
    for threshold in np.unique(confidence):
        shown = confidence >= threshold
        if np.sum(weights * (shown & good)) >= share_good * np.sum(weights * shown):
            return float(threshold)
    return 1.0


def flag_rates(confidence, good, groups, threshold: float) -> dict[str, dict[str, float]]:
    """Per dev set: the share of good and of other captions flagged "not sure"."""
    rates = {}
    for group in np.unique(groups):
        rows = groups == group
        flagged = confidence[rows] < threshold
        rates[str(group)] = {
            "not_sure_on_good": float(flagged[good[rows]].mean()),
            "not_sure_on_rest": float(flagged[~good[rows]].mean()),
        }
    return rates


@dataclasses.dataclass
class FittedCalibration:
    """A calibration with how it was chosen: each signal's own AUROC per set, the forward
    selection's steps, and the chosen signals' out-of-fold AUROC and "not sure" rates. The
    calibration is None when the chosen signals are not all `SIGNALS` (a study's extra ones)."""

    calibration: ConfidenceCalibration | None
    signal_auroc: dict[str, dict[str, float]]
    selection: list[dict]
    out_of_fold: np.ndarray
    out_of_fold_auroc: dict[str, float]
    flag_rates: dict[str, dict[str, float]]


def _mean_auroc(scores, good, groups) -> float:
    return float(np.mean(list(auroc_per_set(scores, good, groups).values())))


def fit_calibration(
    table: dict[str, np.ndarray],
    good: np.ndarray,
    groups: np.ndarray,
    novelty: PhotoNovelty | None,
    candidates: Sequence[str] = SIGNALS,
    folds: int = 5,
    share_good: float = PROMISED_SHARE_GOOD,
    seed: int = 0,
) -> FittedCalibration:
    """Chooses signals by forward selection on cross-validated AUROC, fits the calibration on every
    caption, and sets its "not sure" threshold from the out-of-fold confidences.

    Args:
        table: signal name -> float [N] (`CaptionCandidates.confidence_signals`).
        good: bool [N], `good_captions`.
        groups: [N] the dev set of each caption.
        novelty: the training photos' statistics the photo signals were measured with.
        candidates: the signals selection may use (those all NaN are left out); `table` may hold
            others for a study (then no shippable calibration is built).
        folds: cross-validation folds.
        share_good: the promise of the threshold (see `not_sure_threshold`).
    """
    good, groups = np.asarray(good, bool), np.asarray(groups)
    usable = [name for name in candidates if np.any(np.isfinite(np.asarray(table[name], np.float64)))]
    fold = _folds(groups, good, folds, seed)
    signal_auroc = {}
    for name in usable:
        values = np.nan_to_num(np.asarray(table[name], np.float64), nan=np.nanmean(table[name]))
        signal_auroc[name] = auroc_per_set(values, good, groups)
    chosen: list[str] = []
    selection: list[dict] = []
    best_score, out_of_fold = 0.5, np.full(len(good), 0.5)
    while True:
        trials = {}  # name -> (mean AUROC, out-of-fold confidences) with that signal added
        for name in usable:
            if name not in chosen:
                confidence = out_of_fold_confidence(table, good, groups, chosen + [name], fold)
                trials[name] = (_mean_auroc(confidence, good, groups), confidence)
        if not trials:
            break
        name, (score, confidence) = max(trials.items(), key=lambda item: item[1][0])
        if chosen and score <= best_score + 1e-3:  # stop when no signal adds a thousandth of AUROC
            break
        chosen.append(name)
        best_score, out_of_fold = score, confidence
        selection.append({"signal": name, "mean_auroc": score})
    threshold = not_sure_threshold(out_of_fold, good, groups, share_good)
    means, scales, coef, bias = _logistic(_matrix(table, chosen), good, _set_weights(groups), 1.0)
    promise = (
        f"of captions shown without 'not sure', at least {share_good:.0%} are better than the median caption of "
        f"their dev set ({', '.join(map(str, np.unique(groups)))}; cross-validated)"
    )
    photo = {"photo_distance", "photo_residual"} & set(chosen)
    shippable = set(chosen) <= set(SIGNALS)  # a study may offer signals a device cannot measure
    calibration = (
        ConfidenceCalibration(tuple(chosen), means, scales, coef, bias, novelty if photo else None, threshold, promise)
        if shippable
        else None
    )
    return FittedCalibration(
        calibration,
        signal_auroc,
        selection,
        out_of_fold,
        auroc_per_set(out_of_fold, good, groups),
        flag_rates(out_of_fold, good, groups, threshold),
    )
