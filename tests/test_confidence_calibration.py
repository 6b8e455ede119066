"""The learned confidence: its signals against hand-computed values, the calibration's arithmetic and
file format, and the fit (signal selection, threshold promise) against brute force."""

import json
import math

import numpy as np
import pytest

from sat_tf.evaluation.calibration import (
    fit_calibration,
    fit_photo_novelty,
    good_captions,
    not_sure_threshold,
)
from sat_tf.evaluation.ranking import auroc
from sat_tf_edge.calibration import (
    SIGNALS,
    CalibrationError,
    ConfidenceCalibration,
    PhotoNovelty,
    beam_agreement,
    caption_signals,
)

END = 2


def _one_caption_batch():
    """One photo, k = 2: best = [5, 6, 7, <end>], second = [6, 9, <end>, <pad>]."""
    tokens = np.array([[[5, 6, 7, END], [6, 9, END, 0]]])
    lengths = np.array([[4, 3]])
    token_log_probs = np.log([[0.5, 0.25, 0.5, 0.8]])
    candidate_log_probs = np.array([[token_log_probs.sum(), np.log(0.5 * 0.5 * 0.5)]])
    alphas = np.zeros((1, 4, 4))
    alphas[0, 0] = 0.25  # uniform: entropy 1 (normalised)
    alphas[0, 1:, 0] = 1.0  # one-hot: entropy 0
    return tokens, lengths, token_log_probs, candidate_log_probs, alphas


def test_caption_signals_equal_hand_computed_values():
    tokens, lengths, token_log_probs, candidate_log_probs, alphas = _one_caption_batch()
    novelty = PhotoNovelty(center=[1.0, 0.0, 0.0], directions=[[1.0, 0.0, 0.0]], scales=[2.0])
    states = np.array([[5.0, 3.0, 4.0]])  # coordinate (5-1)/2 = 2 -> 4; residual (0, 3, 4) -> 25 / 3
    signals = caption_signals(
        token_log_probs, lengths[:, 0], tokens, lengths, candidate_log_probs, alphas, states, novelty, END
    )
    assert set(signals) == set(SIGNALS)
    best_mean = math.log(0.5 * 0.25 * 0.5 * 0.8) / 4
    assert signals["mean_log_prob"][0] == pytest.approx(best_mean)
    assert signals["min_log_prob"][0] == pytest.approx(math.log(0.25))
    assert signals["length"][0] == 4
    assert signals["beam_margin"][0] == pytest.approx(best_mean - math.log(0.125) / 3)
    assert signals["beam_agreement"][0] == pytest.approx(1 / 3)  # of words 5, 6, 7 the second has 6
    assert signals["attention_entropy"][0] == pytest.approx(1 / 4)  # (1 + 0 + 0 + 0) / 4 steps
    assert signals["photo_distance"][0] == pytest.approx(4.0)
    assert signals["photo_residual"][0] == pytest.approx(25 / 3)


def test_greedy_captions_have_no_beam_signals_and_a_calibration_reads_them_as_the_mean():
    tokens, lengths, token_log_probs, _, alphas = _one_caption_batch()
    signals = caption_signals(
        token_log_probs, lengths[:, 0], tokens[:, :1], lengths[:, :1], token_log_probs.sum(-1)[:, None], alphas,
        np.zeros((1, 3)), None, END,
    )  # fmt: skip
    assert np.isnan(signals["beam_margin"][0]) and np.isnan(signals["beam_agreement"][0])
    assert np.isnan(signals["photo_distance"][0])
    calibration = ConfidenceCalibration(("mean_log_prob", "beam_margin"), [-1.0, 0.3], [0.5, 0.2], [2.0, 5.0], 0.1)
    expected = 1 / (1 + math.exp(-(0.1 + 2.0 * (signals["mean_log_prob"][0] + 1.0) / 0.5)))
    assert calibration.confidence(signals)[0] == pytest.approx(expected)


def test_beam_agreement_counts_words_not_end_and_ignores_padding():
    tokens = np.array([[[4, 4, END, 0], [4, END, 0, 0], [7, 8, 9, END]], [[5, END, 0, 0], [0, 5, 0, 0], [5, 0, 0, 0]]])
    lengths = np.array([[3, 2, 4], [2, 1, 1]])
    # photo 1: both 4s found in the second (1.0), none in the third (0.0); photo 2: the second's
    # only token is <pad> (id 0), so 5 is not found; the third has 5 (1.0)
    np.testing.assert_allclose(beam_agreement(tokens, lengths, END), [0.5, 0.5])


def test_a_calibration_round_trips_through_json_and_names_bad_fields():
    novelty = fit_photo_novelty(np.random.default_rng(0).normal(size=(40, 5)), components=2)
    calibration = ConfidenceCalibration(
        ("mean_log_prob", "photo_distance"), [-1.0, 1.0], [0.5, 2.0], [1.5, -0.7], -0.2, novelty, 0.6, "a promise"
    )
    again = ConfidenceCalibration.from_json(json.loads(json.dumps(calibration.to_json())))
    signals = {"mean_log_prob": np.array([-0.4, -2.0]), "photo_distance": np.array([0.1, 9.0])}
    np.testing.assert_allclose(again.confidence(signals), calibration.confidence(signals), rtol=1e-6)
    assert again.not_sure_below == 0.6 and again.promise == "a promise"
    values = calibration.to_json()
    with pytest.raises(CalibrationError, match="model.json: missing field\\(s\\) bias"):
        ConfidenceCalibration.from_json({k: v for k, v in values.items() if k != "bias"}, "model.json")
    with pytest.raises(CalibrationError, match="unknown signal\\(s\\) brightness"):
        ConfidenceCalibration.from_json({**values, "signals": ["mean_log_prob", "brightness"]})
    with pytest.raises(CalibrationError, match="weights: 2 finite numbers"):
        ConfidenceCalibration.from_json({**values, "weights": [1.0]})
    with pytest.raises(CalibrationError, match="novelty: a photo signal is used"):
        ConfidenceCalibration.from_json({**values, "novelty": None})


def test_photo_novelty_recovers_the_training_photos_spread():
    rng = np.random.default_rng(1)
    scales = np.array([5.0, 2.0, 0.5, 0.1])
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    states = (rng.normal(size=(4000, 4)) * scales) @ rotation.T + 3.0
    novelty = fit_photo_novelty(states, components=2)
    np.testing.assert_allclose(novelty.scales, scales[:2], rtol=0.05)
    np.testing.assert_allclose(np.abs(novelty.directions @ rotation[:, :2]), np.eye(2), atol=0.02)
    signals = novelty.signals(states)
    assert signals["photo_distance"].mean() == pytest.approx(1.0, rel=0.05)  # standardized: E[z^2] = 1
    assert signals["photo_residual"].mean() == pytest.approx((0.5**2 + 0.1**2) / 4, rel=0.05)
    far = novelty.signals(states[:1] + 40 * rotation[:, 0])
    assert far["photo_distance"][0] > 20


def _study(seed=0, n=600):
    """A table where one signal decides the label (plus noise) and two signals are noise, in two dev sets."""
    rng = np.random.default_rng(seed)
    informative = rng.normal(size=n)
    table = {
        "mean_log_prob": informative + 0.3 * rng.normal(size=n),
        "length": rng.normal(size=n),
        "attention_entropy": rng.normal(size=n),
    }
    groups = np.array(["a"] * (n // 2) + ["b"] * (n - n // 2))
    return table, good_captions(informative, groups), groups


def test_the_fit_chooses_the_informative_signal_and_keeps_its_promise_out_of_fold():
    table, good, groups = _study()
    fitted = fit_calibration(table, good, groups, None, candidates=("length", "attention_entropy", "mean_log_prob"))
    assert fitted.selection[0]["signal"] == "mean_log_prob"
    assert fitted.calibration.signals[0] == "mean_log_prob" and fitted.calibration.weights[0] > 0
    assert min(fitted.out_of_fold_auroc.values()) > 0.85
    shown = fitted.out_of_fold >= fitted.calibration.not_sure_below
    for group in ("a", "b"):
        rows = groups == group
        assert good[rows & shown].mean() >= 0.7 - 0.05  # per set, up to the set weighting
    assert good[shown].mean() >= 0.7
    assert set(fitted.signal_auroc) == {"length", "attention_entropy", "mean_log_prob"}
    assert fitted.signal_auroc["mean_log_prob"]["a"] == pytest.approx(
        auroc(table["mean_log_prob"][groups == "a"], good[groups == "a"])
    )


def test_the_not_sure_threshold_is_the_lowest_that_keeps_the_promise_by_brute_force():
    rng = np.random.default_rng(3)
    confidence = rng.random(200)
    good = rng.random(200) < confidence  # higher confidence, more often good
    groups = np.array(["only"] * 200)
    threshold = not_sure_threshold(confidence, good, groups, 0.8)
    keeps = [t for t in np.unique(confidence) if good[confidence >= t].mean() >= 0.8]
    assert threshold == min(keeps)
    assert not_sure_threshold(confidence, np.zeros(200, bool), groups, 0.8) == 1.0


def test_good_captions_split_each_dev_set_at_its_own_median():
    cider = np.array([0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0])
    groups = np.array(["flickr"] * 4 + ["coco"] * 4)
    assert good_captions(cider, groups).tolist() == [False, False, True, True, False, False, True, True]
