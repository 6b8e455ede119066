"""The image contract: how every part of sat_tf turns an image file into encoder input.

One implementation, used by the training library (`sat_tf.data.images`), the TensorFlow-free
edge runtime and the REST server, so a model sees the same pixels wherever it runs:

1. decode with Pillow, refusing files over `MAX_IMAGE_PIXELS` (decompression bombs);
2. apply the EXIF orientation tag (a portrait phone photo is stored sideways with tag 6 or 8);
3. convert the mode to RGB uint8: 16-bit grayscale scaled by 255/65535, 32-bit and float
   grayscale by their range, grayscale/CMYK/YCbCr/LAB/HSV through Pillow's conversion, anything
   with transparency (RGBA, LA, PA, palette with a transparent index) composited over black;
4. resize to size x size with Pillow's bilinear filter (antialiased when shrinking).

A TF Serving client that sends image bytes straight to the SavedModel gets steps 1, 3 and 4 from
the graph (`decode_image_bytes`: within one grey level; up to three at the borders of an image
smaller than the input, which the two bilinear filters upscale slightly differently), but not
step 2: it must apply the EXIF orientation itself, as `sat-tf serve` does with
`oriented_image_bytes` before the graph sees the bytes.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_PIXELS = 64_000_000
ImageSource = Union[str, os.PathLike, bytes, bytearray]


class ImageDecodeError(ValueError):
    """An image could not be read: "<file or <bytes>>: not a readable image (<reason>)"."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: not a readable image ({reason})")
        self.name, self.reason = name, reason


def _name(source: ImageSource) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Converts any Pillow mode to RGB uint8 [H, W, 3] (step 3 of the contract)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        gray = np.asarray(image, dtype=np.float64) / 65535.0 * 255.0
        return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    if image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, span = float(pixels.min()), max(float(pixels.max() - pixels.min()), 1e-12)
        if image.mode == "I" and low >= 0 and pixels.max() <= 65535:
            low, span = 0.0, 65535.0  # 16-bit data that Pillow widened to 32 bits
        gray = np.clip((pixels - low) / span * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return np.asarray(
            Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB"), dtype=np.uint8
        )
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be an image file before anything is read (a folder, missing, empty), or
    None; cheap, so a command can check its inputs before it loads a model."""
    if os.path.isdir(path):
        return "a folder, not an image file"
    if not os.path.isfile(path):
        return "file not found"
    if os.path.getsize(path) == 0:
        return "the file is empty"
    return None


def decode_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Reads a file path or encoded bytes as oriented RGB uint8 [H, W, 3] (steps 1-3).

    Args:
        source: a file path or encoded bytes.
        max_pixels: largest width x height accepted, checked from the header before decoding.

    Raises:
        ImageDecodeError: missing, unreadable, truncated, non-image or oversized input.
    """
    name = _name(source)
    if not isinstance(source, (bytes, bytearray)):
        problem = file_problem(source)
        if problem is not None:
            raise ImageDecodeError(name, problem)
    elif not source:
        raise ImageDecodeError(name, "no bytes (empty image)")
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with _open_within_limit(stream, name, max_pixels) as image:
            image.load()
            return to_rgb_array(ImageOps.exif_transpose(image))
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(name, "not an image file in a format Pillow reads") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(name, f"unreadable or truncated: {exc}") from None


def _too_many_pixels(name: str, max_pixels: int, size: str = "") -> ImageDecodeError:
    return ImageDecodeError(name, f"{size + ' pixels is ' if size else ''}over the {max_pixels:,}-pixel limit")


def refuse_declared_oversize(header: bytes, max_pixels: int = MAX_IMAGE_PIXELS, name: str = "<bytes>") -> None:
    """Raises `ImageDecodeError` when the first bytes of an image already declare more than
    `max_pixels` (nothing is decoded: a server can refuse a decompression bomb from a few hundred
    bytes); does nothing when they do not tell (the full check then decides)."""
    try:
        with _open_within_limit(io.BytesIO(header), name, max_pixels):
            pass
    except ImageDecodeError as exc:
        if "pixel limit" in exc.reason:
            raise
    except Exception:  # noqa: BLE001 - a header cut short, not an image: left to the full check
        return


def _open_within_limit(stream, name: str, max_pixels: int) -> Image.Image:
    """Image.open (header only) refusing more than `max_pixels` before any pixel is decoded.

    Pillow's own decompression-bomb guard (a warning above ~89 MP, an error above ~179 MP) is set
    aside here, so the limit a caller hears about is always `max_pixels`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except Image.DecompressionBombError:
        raise _too_many_pixels(name, max_pixels) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise _too_many_pixels(name, max_pixels, f"{width}x{height}")
    return image


def resize_image(pixels: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> [size, size, 3] with Pillow's bilinear filter (step 4)."""
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))


def load_image(source: ImageSource, size: int | None = None) -> np.ndarray:
    """The whole contract: RGB uint8 [H, W, 3], or [size, size, 3] when `size` is given."""
    pixels = decode_image(source)
    return pixels if size is None else resize_image(pixels, size)


GRAPH_FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # what the SavedModel's tf.io.decode_image reads
# Modes the graph decodes as the contract does (not CMYK JPEG: libjpeg and Pillow invert it differently).
GRAPH_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I;16B", "I;16L")


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1, the identity, when absent)."""
    return int(image.getexif().get(0x0112, 1) or 1)


def graph_ready_bytes(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, size: int | None = None) -> bytes:
    """Checks encoded image bytes against the contract and returns bytes the SavedModel graph
    decodes to the contract's pixels.

    With `size` (the model's input size), the whole contract runs here and the result is its
    size x size pixels as a lossless PNG: the graph decodes them exactly and its resize to the same
    size leaves them, so a served model sees the very pixels the library and the edge runtime see
    (and decodes a small PNG instead of the photo). Without, the bytes are unchanged when upright
    (EXIF orientation 1 or absent) and in a format and mode the graph reads, else the upright
    image re-encoded losslessly as PNG (its mode kept where PNG can hold it, so the graph still
    applies the mode conversion and resize; CMYK and other modes as the contract's RGB).

    Raises:
        ImageDecodeError: the bytes are not a readable image within `max_pixels`.
    """
    pixels = decode_image(data, max_pixels)  # validates: bombs (from the header), truncation, non-images
    if size is not None:
        output = io.BytesIO()
        Image.fromarray(resize_image(pixels, size)).save(output, format="PNG", compress_level=1)
        return output.getvalue()
    with Image.open(io.BytesIO(data)) as image:
        if exif_orientation(image) == 1 and image.format in GRAPH_FORMATS and image.mode in GRAPH_MODES:
            return data
        upright = ImageOps.exif_transpose(image)
        if upright.mode not in GRAPH_MODES:
            upright = Image.fromarray(to_rgb_array(upright))  # CMYK, YCbCr, I, F ...
        output = io.BytesIO()
        upright.save(output, format="PNG")
        return output.getvalue()
