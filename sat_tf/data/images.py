"""Reading image files robustly: any mode PIL reads becomes RGB uint8, bad files get clear errors."""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

# Refuse images whose declared size would need more than this many pixels (decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000


class ImageLoadError(ValueError):
    """An image file could not be read; the message names the file and the reason."""


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Converts grayscale, 16-bit, palette, RGBA, CMYK ... images to RGB uint8 [H, W, 3]."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit integer grayscale: scale the full range to 8 bits instead of clipping at 255.
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        gray = np.clip(pixels / peak * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        span = max(float(pixels.max() - pixels.min()), 1e-12)
        gray = ((pixels - pixels.min()) / span * 255.0).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Reads an image file as RGB uint8 [H, W, 3], resized to size x size when given.

    Raises:
        ImageLoadError: missing, unreadable, truncated, non-image or oversized files.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageLoadError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageLoadError(
                        f"{path}: image is {width}x{height}, over the {MAX_IMAGE_PIXELS:,}-pixel limit"
                    )
                image.load()
                pixels = to_rgb_array(image)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{path}: unreadable or truncated image ({exc})") from None
    if size is not None and pixels.shape[:2] != (size, size):
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))
    return pixels


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
