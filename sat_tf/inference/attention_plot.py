"""The paper's attention figure: the image, then one panel per word with its attention overlaid."""

from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.figure  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sat_tf.utils.atomic import atomic_path  # noqa: E402


def upsample_attention(alpha: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Attention over a grid [L] -> a smooth map of `size` (height, width), scaled to max 1."""
    alpha_map = np.asarray(alpha, np.float32).reshape(grid)
    resized = Image.fromarray(alpha_map, mode="F").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    values = np.clip(np.asarray(resized), 0, None)
    return values / max(float(values.max()), 1e-12)


def attention_figure(
    image: np.ndarray,
    words: Sequence[str],
    alphas: np.ndarray,
    grid: tuple[int, int],
    columns: int = 5,
    title: str | None = None,
) -> matplotlib.figure.Figure:
    """The attention figure for one caption (the caller closes it; see `plot_attention`).

    Args:
        image: RGB uint8 [H, W, 3].
        words: the caption's words; word j was generated with attention `alphas[j]`.
        alphas: [T, L] attention per step (T >= len(words)).
        grid: (rows, columns) of the region grid.
        columns: panels per row.
        title: figure title (defaults to the caption).
    """
    panels = len(words) + 1
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.7 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    axes.flat[0].imshow(image)
    axes.flat[0].set_title("input", fontsize=10)
    for j, word in enumerate(words):
        axis = axes.flat[j + 1]
        axis.imshow(image)
        axis.imshow(
            upsample_attention(alphas[j], grid, image.shape[:2]),
            cmap="gray",
            alpha=0.6,
            extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5),
        )
        axis.set_title(word, fontsize=11)
    figure.suptitle(title if title is not None else " ".join(words), fontsize=11)
    figure.tight_layout()
    return figure


def plot_attention(
    image: np.ndarray,
    words: Sequence[str],
    alphas: np.ndarray,
    grid: tuple[int, int],
    path: str | os.PathLike,
    columns: int = 5,
    title: str | None = None,
) -> None:
    """Writes `attention_figure(...)` to `path` (PNG), atomically."""
    figure = attention_figure(image, words, alphas, grid, columns, title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    plt.close(figure)


def attention_figure_array(
    image: np.ndarray,
    words: Sequence[str],
    alphas: np.ndarray,
    grid: tuple[int, int],
    columns: int = 5,
    title: str | None = None,
) -> np.ndarray:
    """`attention_figure(...)` rendered to an RGB uint8 array [H, W, 3] (for TensorBoard)."""
    figure = attention_figure(image, words, alphas, grid, columns, title)
    figure.set_dpi(80)
    figure.canvas.draw()
    rgba = figure.canvas.buffer_rgba()  # type: ignore[attr-defined]  # the Agg canvas has it
    pixels = np.asarray(rgba)[..., :3].copy()
    plt.close(figure)
    return pixels
