"""Does attention look at the object a phrase names? Scored against boxes (the demo's generated
shapes; `sat_tf.evaluation.grounding` scores real photos against instance masks)."""

from __future__ import annotations

from typing import Collection, Protocol, Sequence

import numpy as np


class NamedObject(Protocol):
    """An object in an image: the phrase that names it ("red circle") and its box."""

    phrase: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, exclusive end


def region_overlaps_box(region: int, grid: tuple[int, int], image_size: int, box) -> bool:
    """Whether region `region` (row-major index in a `grid` over the image) overlaps `box`."""
    rows, columns = grid
    row, column = divmod(int(region), columns)
    cell_h, cell_w = image_size / rows, image_size / columns
    x0, y0, x1, y1 = box
    overlap_x = min((column + 1) * cell_w, x1) - max(column * cell_w, x0)
    overlap_y = min((row + 1) * cell_h, y1) - max(row * cell_h, y0)
    return overlap_x > 0 and overlap_y > 0


def attention_localization(
    captions: list[list[str]],
    alphas: np.ndarray,
    objects: Sequence[Sequence[NamedObject]],
    grid: tuple[int, int],
    image_size: int,
    naming_phrases: Collection[str],
) -> dict[str, float]:
    """Scores where attention peaks while an object phrase ("red circle") is generated.

    A phrase counts as localised when the highest-attention region at one of its word steps
    overlaps the named object's box; a word when the region at its own step does. A phrase that
    names no object in the image (a wrong caption) counts as not localised.

    Args:
        captions: generated words per image (without `<end>`); word j was emitted at step j.
        alphas: [N, T, L] attention at each step.
        objects: the objects of each image.
        grid: (rows, columns) of the region grid, L = rows * columns.
        image_size: image side in pixels.
        naming_phrases: every phrase that names an object (for the demo's shapes, each colour
            followed by each shape); where a caption holds one, it is scored.

    Returns:
        {"phrase_accuracy", "word_accuracy", "num_phrases", "num_words"}.
    """
    phrase_hits = word_hits = num_phrases = num_words = 0
    lengths = sorted({len(phrase.split()) for phrase in naming_phrases})
    for words, image_alphas, image_objects in zip(captions, alphas, objects):
        for j, length in ((j, n) for j in range(len(words)) for n in lengths if j + n <= len(words)):
            phrase = " ".join(words[j : j + length])
            if phrase not in naming_phrases:
                continue
            named = [o for o in image_objects if o.phrase == phrase]
            hits = []
            for step in range(j, j + length):
                region = int(np.argmax(image_alphas[step]))
                hits.append(any(region_overlaps_box(region, grid, image_size, o.box) for o in named))
            num_phrases += 1
            num_words += length
            phrase_hits += any(hits)
            word_hits += sum(hits)
    return {
        "phrase_accuracy": phrase_hits / num_phrases if num_phrases else 0.0,
        "word_accuracy": word_hits / num_words if num_words else 0.0,
        "num_phrases": num_phrases,
        "num_words": num_words,
    }
