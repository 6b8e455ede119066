import numpy as np
import pytest

from sat_tf.data.synthetic import SyntheticObject, naming_phrases
from sat_tf.evaluation.bleu import corpus_bleu
from sat_tf.evaluation.localization import attention_localization, region_overlaps_box


def test_bleu_matches_hand_computation():
    refs = {"1": ["a red circle above a green square"]}
    scores = corpus_bleu(refs, {"1": "a red circle above a blue square"})
    # matched n-grams: 6/7, 4/6, 3/5, 2/4; equal lengths, so no brevity penalty
    p = [6 / 7, 4 / 6, 3 / 5, 2 / 4]
    expected = [100 * np.prod(p[:n]) ** (1 / n) for n in range(1, 5)]
    np.testing.assert_allclose([scores[f"BLEU-{n}"] for n in range(1, 5)], expected, rtol=1e-6)


def test_bleu_brevity_penalty_and_normalisation():
    scores = corpus_bleu({"1": ["a red circle above a green square"]}, {"1": "A red circle, above!"})
    np.testing.assert_allclose(scores["BLEU-4"], 100 * np.exp(1 - 7 / 4), rtol=1e-6)
    perfect = corpus_bleu({"1": ["x y z w", "other words here too"]}, {"1": "x y z w"})
    np.testing.assert_allclose(list(perfect.values()), [100.0] * 4, rtol=1e-6)
    with pytest.raises(ValueError, match="different images"):
        corpus_bleu({"1": ["a"]}, {"2": "a"})


def test_region_overlap():
    # 4x4 grid over 32 px: region 5 is row 1, column 1 = pixels [8, 16) x [8, 16)
    assert region_overlaps_box(5, (4, 4), 32, (10, 10, 12, 12))
    assert not region_overlaps_box(5, (4, 4), 32, (16, 8, 20, 12))  # touches the edge only


def test_localization_scores_peaks_on_named_objects():
    objects = [
        [
            SyntheticObject("red", "circle", 0, 0, (0, 0, 8, 8)),
            SyntheticObject("blue", "square", 3, 3, (24, 24, 32, 32)),
        ]
    ]
    words = [["a", "red", "circle", "above", "a", "blue", "square"]]
    alphas = np.zeros((1, 7, 16))
    alphas[0, :, 6] = 1.0  # nowhere useful by default
    alphas[0, 1, 0] = 1.0  # "red" on the red circle
    alphas[0, 6, 6] = 0.0
    alphas[0, 6, 15] = 1.0  # "square" on the blue square
    scores = attention_localization(words, alphas, objects, (4, 4), 32, naming_phrases())
    assert scores["num_phrases"] == 2 and scores["phrase_accuracy"] == 1.0
    assert scores["word_accuracy"] == 0.5
    wrong = attention_localization([["a", "green", "circle"]], alphas[:, :3], objects, (4, 4), 32, naming_phrases())
    assert wrong["num_phrases"] == 1 and wrong["phrase_accuracy"] == 0.0  # names no object in the image
