"""Caption confidence and the AUROC that measures it."""

import itertools

import numpy as np
import pytest

from sat_tf.evaluation.ranking import auroc
from sat_tf.inference.results import caption_confidence


def _pairwise_auroc(scores, labels):
    pairs = [(p, n) for p, n in itertools.product(range(len(scores)), repeat=2) if labels[p] and not labels[n]]
    return sum(1.0 if scores[p] > scores[n] else 0.5 if scores[p] == scores[n] else 0.0 for p, n in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_counting_pairs(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=30).astype(float)  # many ties
    labels = rng.random(30) < 0.4
    assert auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores, labels))


def test_auroc_extremes_and_errors():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc([0.1, 0.2], [True, True])


def test_confidence_is_the_geometric_mean_token_probability():
    # two tokens of probability 0.5 and 0.125: geometric mean 0.25
    np.testing.assert_allclose(caption_confidence(np.log([0.5 * 0.125, 0.9]), np.array([2, 1])), [0.25, 0.9])


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_captions_are_marked_not_sure_below_the_models_own_threshold(
    trained_tiny_model, tiny_data, tmp_path, threshold
):
    from PIL import Image

    from sat_tf.inference.decoding_config import DecodingConfig
    from sat_tf.workflows.caption import caption_files

    paths = []
    for k, image in enumerate(tiny_data[0].images[:3]):
        paths.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(image).save(paths[-1])
    decoding = DecodingConfig(beam_size=2, max_length=12, not_sure_below=threshold)
    records = caption_files(trained_tiny_model, paths, decoding).records()
    assert all(0.0 < r["confidence"] < 1.0 for r in records)
    assert [r["not_sure"] for r in records] == [threshold == 1.0] * 3


def test_the_not_sure_threshold_is_a_share():
    from sat_tf.errors import ConfigError
    from sat_tf.inference.decoding_config import DecodingConfig

    with pytest.raises(ConfigError, match="decoding.not_sure_below"):
        DecodingConfig(not_sure_below=1.5)
