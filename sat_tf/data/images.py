"""Reading image files for training and inference, through the one image contract.

The contract (EXIF orientation, mode conversion, 16-bit scaling, alpha compositing, resize) is
written once in `sat_tf_edge.images` and shared with the edge runtime and the REST server; this
module adds sat_tf's error type and the dataset scan.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from sat_tf.errors import SatTfError
from sat_tf_edge.images import MAX_IMAGE_PIXELS, ImageDecodeError, decode_image, resize_image, to_rgb_array

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageLoadError",
    "ImageScan",
    "load_image",
    "resize_image",
    "scan_images",
    "to_rgb_array",
]


class ImageLoadError(SatTfError, ImageDecodeError):
    """An image file could not be read; the message names the file and the reason."""

    @classmethod
    def from_decode_error(cls, error: ImageDecodeError) -> "ImageLoadError":
        return cls(error.name, error.reason)


def load_image(path: str | os.PathLike | bytes, size: int | None = None) -> np.ndarray:
    """Reads an image file (or encoded bytes) as RGB uint8 [H, W, 3], resized to size x size when given.

    Raises:
        ImageLoadError: missing, unreadable, truncated, non-image or oversized files.
    """
    try:
        pixels = decode_image(path)
    except ImageDecodeError as exc:
        raise ImageLoadError.from_decode_error(exc) from None
    return pixels if size is None else resize_image(pixels, size)


@dataclasses.dataclass
class ImageScan:
    """Result of checking image files: the readable ones and why the others were skipped."""

    readable: list[str]
    skipped: dict[str, str]  # path -> reason


def scan_images(paths, skip_unreadable: bool = False) -> ImageScan:
    """Checks that every image opens; raises on the first bad one unless `skip_unreadable`."""
    readable, skipped = [], {}
    for path in dict.fromkeys(paths):
        try:
            load_image(path)
            readable.append(path)
        except ImageLoadError as exc:
            if not skip_unreadable:
                raise
            skipped[path] = str(exc)
    return ImageScan(readable, skipped)
