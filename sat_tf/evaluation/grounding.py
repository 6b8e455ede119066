"""Grounding: does a word's attention fall on the object the word names?

For each generated word that names an object category annotated in the photo (COCO instance
masks; man, woman, boy -> person, puppy -> dog through `sat_tf.data.coco_words`), with the word's
attention map alpha over the h x w region grid and the coverage c_i of each grid cell by the
category's masks (the share of the cell's pixels on the object; the photo is squashed to the
square encoder input, so cell (r, k) covers rows r*H/h.. and columns k*W/w..):

- mass = sum_i alpha_i c_i: the share of the word's attention on the object;
- share = mean_i c_i: the object's area share, which uniform attention would put on it;
- lift = mass / share;
- peak on object: the centre of the most attended cell lies on the object (the pointing game);
- spread: the perplexity exp(H(alpha)) of the map, in cells (1 = one cell, h*w = uniform).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from sat_tf.data.coco_words import coco_category


@dataclasses.dataclass
class ObjectMasks:
    """One photo's annotated objects: category name -> boolean mask [H, W] (their union)."""

    masks: dict[str, np.ndarray]


def cell_coverage(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[H, W] bool -> [h*w]: the share of each grid cell's pixels on the mask (row-major cells)."""
    rows, columns = grid
    height, width = mask.shape
    row_edges = np.linspace(0, height, rows + 1).round().astype(int)
    column_edges = np.linspace(0, width, columns + 1).round().astype(int)
    coverage = np.zeros([rows, columns])
    for r in range(rows):
        for k in range(columns):
            block = mask[row_edges[r] : row_edges[r + 1], column_edges[k] : column_edges[k + 1]]
            coverage[r, k] = block.mean() if block.size else 0.0
    return coverage.reshape(-1)


def cell_centres_on(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[h*w] bool: whether each cell's centre pixel lies on the mask."""
    rows, columns = grid
    height, width = mask.shape
    centre_rows = np.minimum(((np.arange(rows) + 0.5) * height / rows).astype(int), height - 1)
    centre_columns = np.minimum(((np.arange(columns) + 0.5) * width / columns).astype(int), width - 1)
    return mask[np.ix_(centre_rows, centre_columns)].reshape(-1)


def perplexity(alpha: np.ndarray) -> float:
    p = np.clip(np.asarray(alpha, np.float64), 1e-12, None)
    p = p / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def grounding_of_word(alpha: np.ndarray, mask: np.ndarray, grid: tuple[int, int]) -> dict:
    """The measures of one word's attention [h*w] against its object's mask [H, W]."""
    coverage = cell_coverage(mask, grid)
    mass, share = float(np.dot(alpha, coverage)), float(coverage.mean())
    return {
        "mass": mass,
        "share": share,
        "lift": mass / share if share > 0 else float("nan"),
        "peak_on_object": bool(cell_centres_on(mask, grid)[int(np.argmax(alpha))]),
        "perplexity": perplexity(alpha),
    }


def attention_grounding(
    captions: Sequence[Sequence[str]],
    alphas: Sequence[np.ndarray] | np.ndarray,
    objects: Sequence[ObjectMasks],
    grid: tuple[int, int],
) -> dict:
    """Grounding over a set of captions.

    Args:
        captions: per photo, the caption's words (word t was emitted with attention alphas[i][t]).
        alphas: per photo, float [T, h*w] attention of each decoding step.
        objects: per photo, its annotated object masks.
        grid: (h, w) of the attention grid.

    Returns:
        {"object_words": count, "mass", "share" (means), "lift" (mean mass / mean share),
        "mean_word_lift", "peak_on_object" (rate), "perplexity" (mean), "words": per word records}.
    """
    records = []
    for photo, (words, photo_alphas, photo_objects) in enumerate(zip(captions, alphas, objects)):
        for step, word in enumerate(words):
            category = coco_category(word)
            if category is None or category not in photo_objects.masks or step >= len(photo_alphas):
                continue
            measures = grounding_of_word(np.asarray(photo_alphas[step]), photo_objects.masks[category], grid)
            records.append({"photo": photo, "word": word, "category": category, **measures})
    if not records:
        return {"object_words": 0, "words": []}
    mean = lambda key: float(np.mean([r[key] for r in records]))  # noqa: E731
    return {
        "object_words": len(records),
        "mass": mean("mass"),
        "share": mean("share"),
        "lift": mean("mass") / mean("share"),
        "mean_word_lift": mean("lift"),
        "peak_on_object": mean("peak_on_object"),
        "perplexity": mean("perplexity"),
        "words": records,
    }


def coco_object_masks(instances_file: str, file_names: Sequence[str]) -> list[ObjectMasks]:
    """Each photo's category masks (union of its instances, crowd regions included) from a COCO
    instances JSON, for the photos named by file name."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # "loading annotations into memory..."
        coco = COCO(instances_file)
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    by_file = {image["file_name"]: image["id"] for image in coco.loadImgs(coco.getImgIds())}
    result = []
    for file_name in file_names:
        if file_name not in by_file:
            raise ValueError(f"{instances_file}: no image named {file_name}")
        masks: dict[str, np.ndarray] = {}
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=by_file[file_name])):
            mask = coco.annToMask(annotation).astype(bool)
            name = names[annotation["category_id"]]
            masks[name] = masks[name] | mask if name in masks else mask
        result.append(ObjectMasks(masks))
    return result
