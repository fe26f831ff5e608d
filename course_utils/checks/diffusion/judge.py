"""The judge of the text-to-image quality check: which Shapes-world object best explains an
image, by template matching against the world's own renderer (no training, no notebook code).

It belongs to the data world (``course_utils.data``): it reaches below data's public API, to
``data.render.coverage`` and ``data.world.BACKGROUND_RGB``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

JUDGE_IMAGE_SIZE = 16
_STEP = 0.25  # template positions, in pixels
_MARGIN = 1.5  # centres from _MARGIN to size - _MARGIN pixels
_RADII = (2.3, 2.55, 2.8, 3.05, 3.3, 3.55)  # bounding-circle radii in pixels (large: 2.7-3.0)
_WINDOW = 1.0  # positions searched around the colour-weighted centroid, in pixels


@functools.lru_cache(maxsize=1)
def _templates() -> torch.Tensor:
    """Coverage maps (3 shapes, radii, y, x, H*W) of every shape at every template place,
    drawn by the Shapes world's own renderer (cached per process: ~3 s)."""
    from course_utils.data.render import coverage
    from course_utils.data.world import SHAPES

    size = JUDGE_IMAGE_SIZE
    positions = np.arange(_MARGIN, size - _MARGIN + 1e-9, _STEP)
    maps = np.zeros((len(SHAPES), len(_RADII), len(positions), len(positions), size * size))
    for s, shape in enumerate(SHAPES):
        for r, radius in enumerate(_RADII):
            for i, y in enumerate(positions):
                for j, x in enumerate(positions):
                    maps[s, r, i, j] = coverage(shape, x / size, y / size, radius / size,
                                                size).ravel()
    return torch.tensor(maps, dtype=torch.float32)


def judge_images(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Shapes-world class of each one-object image, by template matching.

    For every image, every template (a shape at a radius and a sub-pixel position near the
    image's colour-weighted centroid) is painted in each of the 5 colours on the world's
    background, and the template and colour with the smallest squared error win.

    Args:
        images: (N, 3, 16, 16) float images in [0, 1].

    Returns:
        classes (N,) long (colour_index * 3 + shape_index, as ``data.CLASSES``) and the
        fraction (N,) of the image's deviation from the background that the best object
        leaves unexplained (about 0.04 on real images).
    """
    from course_utils.data.world import BACKGROUND_RGB, COLOUR_RGB, COLOURS

    size = JUDGE_IMAGE_SIZE
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise ValueError(f"expected images of shape (N, 3, {size}, {size}), got "
                         f"{tuple(images.shape)}")
    images = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(images).all() or images.min() < -0.01 or images.max() > 1.01:
        raise ValueError("expected images with values in [0, 1] (map the model's [-1, 1] "
                         "with (x + 1) / 2 and clamp)")
    templates = _templates()  # (3, R, P, P, H*W)
    count, positions = len(images), templates.shape[2]
    background = torch.tensor(BACKGROUND_RGB, dtype=torch.float32)
    colours = torch.tensor([COLOUR_RGB[c] for c in COLOURS]) - background  # (5, 3)
    x = images.permute(0, 2, 3, 1).reshape(count, size * size, 3) - background  # (N, H*W, 3)
    energy = (x * x).sum(dim=(1, 2))  # (N,)
    projection = torch.einsum("npk,ck->ncp", x, colours)  # (N, 5, H*W)
    # where to look: the centroid of the pixels that differ from the background
    weight = (x.norm(dim=2) / colours.norm(dim=1).mean()).clamp(0, 1)  # (N, H*W)
    weight = torch.where(weight > 0.25, weight, torch.zeros_like(weight))
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    total = weight.sum(dim=1).clamp_min(1e-6)
    grid = weight.view(count, size, size)
    cx = (grid.sum(dim=1) * centres).sum(dim=1) / total  # (N,)
    cy = (grid.sum(dim=2) * centres).sum(dim=1) / total
    k = round(_WINDOW / _STEP)
    classes, unexplained = [], []
    squared = (colours * colours).sum(dim=1)  # (5,)
    for n in range(count):
        j = int(np.clip(round((float(cx[n]) - _MARGIN) / _STEP), k, positions - 1 - k))
        i = int(np.clip(round((float(cy[n]) - _MARGIN) / _STEP), k, positions - 1 - k))
        near = templates[:, :, i - k:i + k + 1, j - k:j + k + 1]  # (3, R, w, w, H*W)
        flat = near.reshape(-1, size * size)  # (M, H*W)
        # |x - m c|^2 = |x|^2 - 2 m.(x.c) + |m|^2 |c|^2, for every template m and colour c
        error = energy[n] - 2 * projection[n] @ flat.T \
            + squared[:, None] * (flat * flat).sum(dim=1)[None, :]  # (5, M)
        best = int(error.argmin())
        colour, template = divmod(best, flat.shape[0])
        shape = template // (flat.shape[0] // templates.shape[0])
        classes.append(colour * 3 + shape)
        unexplained.append(float(error.flatten()[best] / energy[n].clamp_min(1e-9)))
    return torch.tensor(classes), torch.tensor(unexplained)
