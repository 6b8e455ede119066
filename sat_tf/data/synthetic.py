"""A synthetic, grounded captioning dataset: coloured shapes at grid positions.

Every image holds 1-3 shapes in distinct cells of a grid; its caption names them in reading order
with their spatial relation ("a red circle above a blue square to the left of a green triangle").
The bounding box of every named object is recorded, so where the model attends can be scored.
Deterministic from a seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sat_tf.data.records import CaptionRecord, group_references

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 210),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")


@dataclasses.dataclass(frozen=True)
class SyntheticObject:
    colour: str
    shape: str
    row: int
    column: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, exclusive end

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.shape}"


def naming_phrases() -> set[str]:
    """Every phrase that names a generated object: a colour followed by a shape."""
    return {f"{colour} {shape}" for colour in COLOURS for shape in SHAPES}


@dataclasses.dataclass
class SyntheticDataset:
    """Images [N, S, S, 3] uint8, their objects, and caption records pointing at rows of `images`."""

    images: np.ndarray
    objects: list[list[SyntheticObject]]
    records: list[CaptionRecord]

    @property
    def image_ids(self) -> list[str]:
        """The id of each image, in the order of `images`."""
        ids = [""] * len(self.images)
        for record in self.records:
            assert record.image_index is not None  # generated records always index their image
            ids[record.image_index] = record.image_id
        return ids

    def references(self) -> dict[str, list[str]]:
        """image_id -> every caption of that image."""
        return group_references(self.records, [r.image_id for r in self.records])


def _relation(first: SyntheticObject, second: SyntheticObject, reverse: bool) -> str:
    if first.row == second.row:
        return "to the right of" if reverse else "to the left of"
    return "below" if reverse else "above"


def describe(objects: list[SyntheticObject], reverse: bool = False) -> str:
    """Caption for objects listed in reading order; `reverse` describes them from the last one."""
    ordered = list(reversed(objects)) if reverse else objects
    words = [f"a {ordered[0].phrase}"]
    for previous, current in zip(ordered, ordered[1:]):
        pair = (current, previous) if reverse else (previous, current)
        words.append(f"{_relation(*pair, reverse=reverse)} a {current.phrase}")
    return " ".join(words)


def _shape_mask(shape: str, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    centre = size / 2
    if shape == "circle":
        return (xs - centre) ** 2 + (ys - centre) ** 2 <= (size / 2) ** 2
    if shape == "square":
        return np.ones((size, size), bool)
    if shape == "triangle":  # apex up
        return np.abs(xs - centre) <= ys / 2
    raise ValueError(f"unknown shape '{shape}'")


def generate(
    num_images: int,
    seed: int = 0,
    image_size: int = 64,
    grid_size: int = 4,
    max_objects: int = 3,
    captions_per_image: int = 1,
    id_prefix: str = "synthetic",
) -> SyntheticDataset:
    """Generates a grounded dataset.

    Args:
        num_images: number of images.
        seed: random seed; the same seed gives the same dataset.
        image_size: image side in pixels.
        grid_size: objects sit in the cells of a grid_size x grid_size grid.
        max_objects: 1..max_objects shapes per image, in distinct cells.
        captions_per_image: 1 (reading order) or 2 (adds the reverse description).

    Example:
        >>> data = generate(100, seed=1)
        >>> data.records[0].caption   # e.g. 'a red circle above a blue square'
    """
    if not 1 <= max_objects <= grid_size * grid_size:
        raise ValueError(f"max_objects must be in 1..{grid_size * grid_size}, got {max_objects}")
    if captions_per_image not in (1, 2):
        raise ValueError(f"captions_per_image must be 1 or 2, got {captions_per_image}")
    rng = np.random.default_rng(seed)
    cell = image_size // grid_size
    images = np.zeros((num_images, image_size, image_size, 3), np.uint8)
    all_objects: list[list[SyntheticObject]] = []
    records: list[CaptionRecord] = []
    colour_names = list(COLOURS)
    for index in range(num_images):
        image = images[index]
        image[:] = rng.integers(0, 40, size=3, dtype=np.uint8)  # dark background of random tint
        count = int(rng.integers(1, max_objects + 1))
        cells = sorted(rng.choice(grid_size * grid_size, size=count, replace=False))  # reading order
        objects = []
        for cell_index in cells:
            row, column = divmod(int(cell_index), grid_size)
            size = int(rng.integers(int(cell * 0.6), int(cell * 0.85) + 1))
            x0 = column * cell + int(rng.integers(0, cell - size + 1))
            y0 = row * cell + int(rng.integers(0, cell - size + 1))
            colour = colour_names[int(rng.integers(len(colour_names)))]
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            mask = _shape_mask(shape, size)
            image[y0 : y0 + size, x0 : x0 + size][mask] = COLOURS[colour]
            objects.append(SyntheticObject(colour, shape, row, column, (x0, y0, x0 + size, y0 + size)))
        all_objects.append(objects)
        image_id = f"{id_prefix}-{seed}-{index:06d}"
        for variant in range(captions_per_image):
            caption = describe(objects, reverse=variant == 1)
            records.append(CaptionRecord(image_id, caption, image_index=index, source=f"{image_id}#{variant}"))
    noise = rng.integers(-12, 13, size=images.shape)
    images = np.clip(images.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return SyntheticDataset(images, all_objects, records)
