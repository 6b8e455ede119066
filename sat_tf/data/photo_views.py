"""Photo views: a training photo as it might also have been taken (training augmentation).

Every training photo is small and soft (Flickr8k 224 px, COCO 256 px, JPEG quality 75-95), while
people caption phone photos: large, sharp, or compressed harder. A view re-takes a photo before
the image contract's resize, and training draws one view per caption each time it is read, so the
model learns one caption for all of them:

- `original`: the photo itself (always one of the views);
- `jpeg-Q`: re-encoded as JPEG at quality Q (1-95): blocking and lost detail, as a messenger sends it;
- `shrink-S`: shrunk to S px on its longer side (Pillow bilinear), then blown up by the contract:
  softer, as a small thumbnail;
- `sharpen-P`: an unsharp mask of strength P% (radius 2 px): crisper edges, as a phone's sharpening.

With a feature cache, each view has its own cache beside the photos' (`<cache>@<view>`),
extracted once like the first; the training pipeline then draws a view per row at read time.

Example:
    >>> views = parse_photo_views(["jpeg-30", "shrink-128"])   # + the original
    >>> pixels = views[1].apply(decode_image("photo.jpg"))
"""

from __future__ import annotations

import dataclasses
import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from sat_tf.data.feature_cache import FeatureCache
from sat_tf.data.images import load_image, resize_image
from sat_tf.errors import ConfigError

ORIGINAL = "original"
# kind -> (smallest, largest) accepted value
VIEW_KINDS = {"jpeg": (1, 95), "shrink": (4, 4096), "sharpen": (1, 500)}


@dataclasses.dataclass(frozen=True)
class PhotoView:
    """One way of re-taking a photo (see the module docstring); `name` is how configs spell it."""

    name: str = ORIGINAL

    def __post_init__(self):
        if self.name == ORIGINAL:
            return
        kind, _, value = self.name.partition("-")
        if kind not in VIEW_KINDS or not value.isdigit():
            raise ValueError(
                f"photo view {self.name!r}: expected 'original' or one of "
                f"{', '.join(k + '-N' for k in VIEW_KINDS)} (for example 'jpeg-30')"
            )
        low, high = VIEW_KINDS[kind]
        if not low <= int(value) <= high:
            raise ValueError(f"photo view {self.name!r}: {kind} takes {low} to {high}, got {value}")

    @property
    def kind(self) -> str:
        return self.name.partition("-")[0]

    @property
    def value(self) -> int:
        return int(self.name.partition("-")[2] or 0)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> the view of it (shapes differ for `shrink`)."""
        if self.name == ORIGINAL:
            return pixels
        image = Image.fromarray(pixels)
        if self.kind == "jpeg":
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=self.value)
            return load_image(buffer.getvalue())  # decoded by the image contract
        if self.kind == "shrink":
            scale = self.value / max(image.size)
            if scale >= 1:
                return pixels
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            return np.asarray(image.resize(size, Image.Resampling.BILINEAR))
        return np.asarray(image.filter(ImageFilter.UnsharpMask(radius=2, percent=self.value, threshold=0)))


def parse_photo_views(names: Sequence[str], field: str = "data.photo_views") -> list[PhotoView]:
    """The views a config names, the original first (added when missing), without repeats.

    Raises:
        ConfigError: a name that is not a view, naming `field`.
    """
    if isinstance(names, str):
        raise ConfigError(f"{field}: expected a list of view names, got the string {names!r}")
    views = [PhotoView()]
    for k, name in enumerate(names):
        try:
            view = PhotoView(str(name))
        except ValueError as exc:
            raise ConfigError(f"{field}[{k}]: {exc}") from None
        if view not in views:
            views.append(view)
    return views


class ViewedFeatures:
    """Feature caches of the same images, one per view: `gather` reads each row from a view drawn
    at random, so each epoch sees every image in a mix of views.

    Args:
        caches: one complete `FeatureCache` per view, over the same image list.
        seed: seeds the draws (reproducible runs).
    """

    def __init__(self, caches: Sequence[FeatureCache], seed: int = 0):
        if not caches:
            raise ValueError("ViewedFeatures needs at least one cache")
        shapes = {(len(c), tuple(c.feature_shape)) for c in caches}
        if len(shapes) != 1:
            raise ValueError(f"the views' caches differ in images or feature shape: {sorted(shapes)}")
        self.caches = list(caches)
        self.feature_shape = tuple(caches[0].feature_shape)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.caches[0])

    def gather(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        views = self._rng.integers(0, len(self.caches), size=len(indices))
        out = np.empty((len(indices), *self.feature_shape), np.float32)
        for view, cache in enumerate(self.caches):
            rows = np.flatnonzero(views == view)
            if len(rows):
                out[rows] = cache.gather(indices[rows])
        return out


class ViewedPhotos:
    """Photos (an image array or files) read through a view drawn at random per row.

    Args:
        photos: uint8 [N, H, W, 3] or a list of image file paths.
        views: the views to draw from (`parse_photo_views`).
        seed: seeds the draws.
    """

    def __init__(self, photos: np.ndarray | Sequence[str], views: Sequence[PhotoView], seed: int = 0):
        self.photos = photos
        self.views = list(views)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.photos)

    def load_batch(self, indices: np.ndarray, size: int) -> np.ndarray:
        """uint8 [B, size, size, 3]: each photo in a drawn view, through the image contract."""
        chosen = self._rng.integers(0, len(self.views), size=len(indices))
        batch = []
        for index, view in zip(np.asarray(indices), chosen):
            photo = self.photos[int(index)]
            pixels = photo if isinstance(photo, np.ndarray) else load_image(photo)
            batch.append(resize_image(self.views[view].apply(pixels), size))
        return np.stack(batch)
