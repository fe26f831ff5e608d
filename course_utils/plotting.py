"""The pictures the notebooks share: image grids, patch grids, heat maps, attention, losses.

Plain matplotlib. Every function draws one figure and returns it (``plt.show()`` is left to
the notebook, where the inline backend shows the figure at the end of the cell anyway).
Images may be float tensors ``(C, H, W)`` / ``(B, C, H, W)`` in [0, 1] or uint8 arrays
``(H, W, 3)`` / ``(B, H, W, 3)``; one-channel images are drawn in grey.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def as_hwc(image) -> np.ndarray:
    """One image as a float array (H, W, C) or (H, W) in [0, 1], ready for ``imshow``."""
    if torch.is_tensor(image):
        array = image.detach().float().cpu().numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    else:
        array = np.asarray(image)
        array = array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"expected one image (C, H, W) or (H, W, C), got shape {array.shape}")
    return np.clip(array, 0.0, 1.0)


def _grid(n: int, ncols: int, size: float, rows_extra: float = 0.0):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + rows_extra) * nrows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def show_images(images, titles: Sequence[str] | None = None, ncols: int = 8,
                size: float = 1.6, title: str | None = None, cmap: str = "gray"):
    """A grid of images with optional titles (long titles wrap at about 22 characters)."""
    images = list(images)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles")
    wrap = 22
    lines = max((len(t) // wrap + 1 for t in titles), default=0) if titles else 0
    fig, axes = _grid(len(images), ncols, size, rows_extra=0.18 * lines)
    for i, (ax, image) in enumerate(zip(axes, images, strict=False)):
        ax.imshow(as_hwc(image), cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
        if titles:
            words, text, line = titles[i].split(), [], ""
            for word in words:
                if line and len(line) + len(word) + 1 > wrap:
                    text.append(line)
                    line = word
                else:
                    line = f"{line} {word}".strip()
            text.append(line)
            ax.set_title("\n".join(text), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_feature_maps(maps: torch.Tensor, ncols: int = 8, size: float = 1.2,
                      title: str | None = None, cmap: str = "magma"):
    """The channels of one feature map ``(C, H, W)``, each scaled to its own range."""
    if maps.ndim != 3:
        raise ValueError(f"expected one feature map (C, H, W), got shape {tuple(maps.shape)}")
    fig, axes = _grid(maps.shape[0], ncols, size)
    for c, ax in zip(range(maps.shape[0]), axes, strict=False):
        ax.imshow(maps[c].detach().float().cpu().numpy(), cmap=cmap, interpolation="nearest")
        ax.set_title(f"channel {c}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_patch_grid(image, patch_size: int, title: str | None = None):
    """An image with its ``patch_size`` grid drawn on it, beside the row-major patch sequence."""
    array = as_hwc(image)
    height, width = array.shape[:2]
    if height % patch_size or width % patch_size:
        raise ValueError(f"image {height}×{width} is not divisible into {patch_size}-px patches")
    rows, cols = height // patch_size, width // patch_size
    fig = plt.figure(figsize=(9, 3.2))
    left = fig.add_axes((0.02, 0.1, 0.3, 0.8))
    left.imshow(array, cmap="gray", interpolation="nearest")
    for k in range(1, rows):
        left.axhline(k * patch_size - 0.5, color="white", lw=1)
    for k in range(1, cols):
        left.axvline(k * patch_size - 0.5, color="white", lw=1)
    for r in range(rows):
        for c in range(cols):
            left.text(c * patch_size + 1, r * patch_size + 2.5, str(r * cols + c), color="white",
                      fontsize=7)
    left.set_title(f"{rows}×{cols} patches of {patch_size}×{patch_size}")
    left.axis("off")
    n = rows * cols
    for i in range(n):
        r, c = divmod(i, cols)
        ax = fig.add_axes((0.36 + 0.62 * i / n, 0.42, 0.62 / n * 0.9, 0.3))
        ax.imshow(array[r * patch_size:(r + 1) * patch_size, c * patch_size:(c + 1) * patch_size],
                  cmap="gray", interpolation="nearest")
        ax.axis("off")
        if n <= 32 or i % 4 == 0:
            ax.set_title(str(i), fontsize=6)
    fig.text(0.36, 0.25, "the same patches as a sequence of tokens →", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def show_heatmap(matrix, row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, title: str | None = None,
                 cmap: str = "viridis", annotate: bool | None = None, vmin=None, vmax=None,
                 xlabel: str | None = None, ylabel: str | None = None, size: float = 5.0):
    """A matrix as a heat map (similarities, attention, confusion), labelled and annotated."""
    values = matrix.detach().float().cpu().numpy() if torch.is_tensor(matrix) else np.asarray(
        matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {values.shape}")
    rows, cols = values.shape
    fig, ax = plt.subplots(figsize=(size * max(1.0, cols / max(rows, 1)) ** 0.5,
                                    size * max(1.0, rows / max(cols, 1)) ** 0.5))
    shown = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    if row_labels is not None:
        ax.set_yticks(range(rows), row_labels, fontsize=8)
    if col_labels is not None:
        ax.set_xticks(range(cols), col_labels, fontsize=8, rotation=60, ha="right")
    if annotate if annotate is not None else rows * cols <= 100:
        for (r, c), v in np.ndenumerate(values):
            red, green, blue, _ = shown.cmap(shown.norm(v))  # the cell's colour
            bright = 0.2989 * red + 0.587 * green + 0.114 * blue > 0.5  # luma, as in 00
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if bright else "white")
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show_attention(images, attention, titles: Sequence[str] | None = None, ncols: int = 6,
                   size: float = 2.0, title: str | None = None, alpha: float = 0.6):
    """Attention over image patches drawn on the images.

    Args:
        images: ``(B, C, H, W)`` images.
        attention: ``(B, N)`` weights over the ``N = (H/P)·(W/P)`` patches in row-major order
            (for example [CLS]-to-patch attention, or one word's attention to the patches).
    """
    attention = torch.as_tensor(attention).detach().float().cpu()
    batch, n = attention.shape
    height, width = images.shape[-2:]
    patch = math.isqrt(height * width // n)  # P, from N = (H/P)·(W/P)
    if patch * patch * n != height * width or height % patch or width % patch:
        raise ValueError(f"{n} patches do not tile a {height}×{width} image")
    rows, cols = height // patch, width // patch
    fig, axes = _grid(batch, ncols, size)
    for b, ax in zip(range(batch), axes, strict=False):
        heat = attention[b].reshape(rows, cols).numpy()  # (H/P, W/P)
        ax.imshow(as_hwc(images[b]), interpolation="nearest")
        ax.imshow(heat / max(heat.max(), 1e-12), cmap="inferno", alpha=alpha,
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")
        if titles:
            ax.set_title(titles[b], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_losses(curves: Mapping[str, Sequence[float]] | Sequence[float], title: str = "loss",
                xlabel: str = "step", ylabel: str = "loss", smooth: int = 0, log: bool = False):
    """Training curves; ``smooth`` > 1 adds a moving average over that many steps."""
    if not isinstance(curves, Mapping):
        curves = {"training": curves}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        values = np.asarray(values, dtype=np.float64)
        line, = ax.plot(values, alpha=0.35 if smooth > 1 else 1.0, label=label)
        if smooth > 1 and len(values) >= smooth:
            kernel = np.ones(smooth) / smooth
            smoothed = np.convolve(values, kernel, mode="valid")
            ax.plot(np.arange(smooth - 1, len(values)), smoothed, color=line.get_color(),
                    label=f"{label} (mean of {smooth})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def show_four_tasks(scene_image, caption: str, question: str, answer: str,
                    other_images: Sequence, size: float = 2.6):
    """One scene through the lecture's four multimodal tasks, each labelled with the notebook
    that builds it: retrieval (a caption finds its image among others), visual question
    answering, captioning (image → text) and generation (text → image).

    Args:
        scene_image: the scene's picture; ``other_images``: the retrieval's distractors.
        caption, question, answer: the scene's caption and one question with its answer.
    """
    import textwrap

    fig = plt.figure(figsize=(4 * size, 1.35 * size))
    grid = fig.add_gridspec(2, 4 * len(other_images) + 4, height_ratios=(1, 0.35))
    wide = len(other_images) + 1
    tasks = [("Retrieval · notebook 04", f"query: “{caption}”", "→ finds its picture"),
             ("Question answering · notebook 05", f"“{question}”", f"→ “{answer}”"),
             ("Captioning · notebook 07", "picture →", f"“{caption}”"),
             ("Generation · notebook 06", f"“{caption}”", "→ a new picture")]

    def text(ax, title, above, below):
        ax.axis("off")
        ax.set_title(title, fontsize=9, fontweight="bold")
        ax.text(0.5, 0.5, "\n".join(textwrap.wrap(above, 30) + textwrap.wrap(below, 30)),
                ha="center", va="center", fontsize=7.5, transform=ax.transAxes)

    for column, (title, above, below) in enumerate(tasks):
        start = column * wide
        if column == 0:  # the caption's picture among distractors, the match framed
            for k, image in enumerate([scene_image, *other_images]):
                ax = fig.add_subplot(grid[0, start + k])
                ax.imshow(as_hwc(image), interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_color("tab:green" if k == 0 else "lightgray")
                    spine.set_linewidth(3 if k == 0 else 1)
        else:
            ax = fig.add_subplot(grid[0, start:start + wide])
            ax.imshow(as_hwc(scene_image), interpolation="nearest")
            ax.axis("off")
        text(fig.add_subplot(grid[1, start:start + wide]), title, above, below)
    fig.tight_layout()
    return fig
