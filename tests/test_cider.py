"""CIDEr-D with fixed document frequencies against coco-caption's own scorer."""

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from sat_tf.data import synthetic
from sat_tf.evaluation.cider import CiderD

FLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k" / "Flickr8k.token.txt"


def _reference_scores(references: dict[str, list[str]], hypotheses: dict[str, str]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        _, scores = Cider().compute_score(references, {k: [v] for k, v in hypotheses.items()})
    return np.asarray(scores)


def _check_against_coco(references: dict[str, list[str]], hypotheses: dict[str, str]) -> None:
    ids = sorted(references)  # coco-caption scores in sorted id order
    cider = CiderD([[r.split() for r in references[i]] for i in ids])
    ours = cider.scores([hypotheses[i].split() for i in ids], [[r.split() for r in references[i]] for i in ids])
    np.testing.assert_allclose(ours, _reference_scores(references, hypotheses), rtol=0, atol=1e-6)


def test_generated_captions_score_as_coco_caption_scores_them():
    data = synthetic.generate(300, seed=4, captions_per_image=2)
    references = data.references()
    ids = sorted(references)
    # hypotheses: another image's caption, a truncated one, a one-word one, an exact copy, unseen words
    hypotheses = {}
    for k, image in enumerate(ids):
        other = references[ids[(k * 7 + 3) % len(ids)]][0].split()
        choice = k % 5
        hypotheses[image] = " ".join(
            [other, other[: 1 + k % 6], other[:1], references[image][0].split(), other[:3] + ["zebra", "quantum"]][
                choice
            ]
        )
    _check_against_coco(references, hypotheses)


@pytest.mark.skipif(not FLICKR.is_file(), reason="needs ../shared/data/flickr8k (real captions)")
def test_real_flickr8k_captions_score_as_coco_caption_scores_them():
    references: dict[str, list[str]] = {}
    for line in FLICKR.read_text(encoding="utf-8").splitlines()[:2000]:
        key, caption = line.split("\t")
        references.setdefault(key.split("#")[0], []).append(" ".join(caption.lower().replace(".", " ").split()))
    ids = sorted(references)[:300]
    references = {i: references[i] for i in ids}
    hypotheses = {image: references[ids[(k + 1) % len(ids)]][k % 5] for k, image in enumerate(ids)}
    _check_against_coco(references, hypotheses)


def test_a_caption_equal_to_its_references_beats_a_shuffled_one():
    references = [
        ["a dog runs on the grass".split(), "a dog is running on grass".split()],
        ["a man rides a red bike".split(), "a man on a bike".split()],
    ]
    cider = CiderD(references)
    exact = cider.score("a dog runs on the grass".split(), references[0])
    shuffled = cider.score("grass the on runs dog a".split(), references[0])
    other = cider.score("a man rides a red bike".split(), references[0])
    assert exact > shuffled > 0 and exact > other
    # token ids work as well as words
    as_ids = CiderD([[[1, 2, 3], [1, 2, 4]], [[5, 6, 7]]])
    assert as_ids.score([1, 2, 3], [[1, 2, 3], [1, 2, 4]]) > as_ids.score([3, 2, 1], [[1, 2, 3], [1, 2, 4]]) > 0
