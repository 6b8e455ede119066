"""Grounding measures on constructed maps and masks, against hand-computed values."""

import json

import numpy as np
import pytest

from sat_tf.evaluation.grounding import (
    ObjectMasks,
    attention_grounding,
    cell_coverage,
    coco_object_masks,
    grounding_of_word,
)


def _top_left_mask():
    mask = np.zeros([4, 4], bool)
    mask[:2, :2] = True  # exactly grid cell 0 of a 2 x 2 grid
    return mask


def test_one_word_on_its_object():
    measures = grounding_of_word(np.array([0.5, 0.25, 0.25, 0.0]), _top_left_mask(), (2, 2))
    assert measures["mass"] == pytest.approx(0.5)  # attention on cell 0, fully covered
    assert measures["share"] == pytest.approx(0.25)  # the object fills one cell of four
    assert measures["lift"] == pytest.approx(2.0)
    assert measures["peak_on_object"] is True
    # exp(-(0.5 ln 0.5 + 2 x 0.25 ln 0.25)) = 2^1.5
    assert measures["perplexity"] == pytest.approx(2**1.5)
    uniform = grounding_of_word(np.full(4, 0.25), _top_left_mask(), (2, 2))
    assert uniform["lift"] == pytest.approx(1.0) and uniform["perplexity"] == pytest.approx(4.0)
    away = grounding_of_word(np.array([0.0, 0.0, 0.1, 0.9]), _top_left_mask(), (2, 2))
    assert away["mass"] == 0.0 and away["peak_on_object"] is False


def test_partial_cells_count_their_share_of_pixels():
    mask = np.zeros([4, 6], bool)
    mask[:, 0] = True  # the first column: a third of each left cell of a 2 x 2 grid (3 columns wide)
    np.testing.assert_allclose(cell_coverage(mask, (2, 2)), [1 / 3, 0, 1 / 3, 0])


def test_only_words_naming_an_annotated_object_count():
    person, dog = np.zeros([4, 4], bool), np.zeros([4, 4], bool)
    person[:2, :2], dog[2:, 2:] = True, True
    alphas = np.array([[0.25] * 4, [1.0, 0, 0, 0], [0.25] * 4, [0, 0, 0, 1.0], [0, 1.0, 0, 0]])
    result = attention_grounding(
        [["a", "man", "and", "puppy", "cat"]], [alphas], [ObjectMasks({"person": person, "dog": dog})], (2, 2)
    )
    assert [(w["word"], w["category"]) for w in result["words"]] == [("man", "person"), ("puppy", "dog")]
    assert result["object_words"] == 2  # "cat" names no annotated object
    assert result["mass"] == pytest.approx(1.0) and result["share"] == pytest.approx(0.25)
    assert result["lift"] == pytest.approx(4.0) and result["peak_on_object"] == 1.0
    assert result["perplexity"] == pytest.approx(1.0, abs=1e-6)
    assert attention_grounding([["a", "cat"]], [alphas[:2]], [ObjectMasks({})], (2, 2))["object_words"] == 0


def test_coco_instances_become_category_masks(tmp_path):
    instances = {
        "images": [{"id": 7, "file_name": "x.jpg", "height": 4, "width": 4}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "area": 4,
                "bbox": [0, 0, 2, 2],
                "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]],
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "area": 4,
                "bbox": [2, 2, 2, 2],
                "segmentation": [[2, 2, 4, 2, 4, 4, 2, 4]],
            },
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    [objects] = coco_object_masks(str(path), ["x.jpg"])
    assert set(objects.masks) == {"person"}  # two instances, one union mask
    mask = objects.masks["person"]
    assert mask.shape == (4, 4) and mask[0, 0] and mask[3, 3] and not mask[0, 3]
    with pytest.raises(ValueError, match="no image named y.jpg"):
        coco_object_masks(str(path), ["y.jpg"])
