"""The check of ``patchify``, (B, C, H, W) -> (B, N, C·P·P), against ``F.unfold`` with
kernel = stride = P (Dosovitskiy et al. 2021: an image as a sequence of flattened patches)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.vit._shared import forbidden, randn


def _check_images(images: torch.Tensor, patch_size: int) -> None:
    if images.ndim != 4:
        raise ValueError("expected images (B, C, H, W)")
    if images.shape[-2] % patch_size or images.shape[-1] % patch_size:
        raise ValueError("the image size is not divisible by the patch size")


def _reference_patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    _check_images(images, patch_size)
    return F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)  # (B, N, C·P·P)


def _patchify_in_order(images: torch.Tensor, patch_size: int, order: tuple[int, ...]):
    """Patches by reshape + permute; ``order`` permutes (B, H/P, W/P, C, P_row, P_col)."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 1, 3, 5).permute(order)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def _patchify_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def images(*shape, dtype=torch.float32):
        return randn(generator, *shape, dtype=dtype)

    shapes = [((2, 3, 8, 8), 4, torch.float32), ((1, 1, 6, 9), 3, torch.float32),
              ((2, 4, 4, 6), 2, torch.float64), ((3, 3, 5, 5), 5, torch.float32)]
    if hidden:
        shapes += [((2, 3, 12, 8), 4, torch.float32), ((1, 2, 3, 2), 1, torch.float64),
                   ((2, 3, 32, 32), 8, torch.float32)]
    cases = [Case(f"images {shape} ({'non-square, ' if shape[2] != shape[3] else ''}"
                  f"{dtype.__repr__().removeprefix('torch.')}), patch size {p}",
                  {"images": images(*shape, dtype=dtype), "patch_size": p}, grad=["images"])
             for shape, p, dtype in shapes]
    cases.append(Case("a 7×8 image with patch size 4, which it must refuse",
                      {"images": images(1, 3, 7, 8), "patch_size": 4}, raises=ValueError))
    if hidden:
        cases.append(Case("a (C, H, W) image without a batch axis, which it must refuse",
                          {"images": images(3, 8, 8), "patch_size": 4}, raises=ValueError))
    return cases


patchify = Check(
    exercise="patchify",
    reference=_reference_patchify,
    cases=_patchify_cases,
    mistakes=[
        Mistake("each patch is flattened in the order (P, P, C); flatten it as (C, P, P), the "
                "order of F.unfold and of a Conv2d weight: permute to (B, H/P, W/P, C, P, P) "
                "before the last reshape.",
                lambda images, p: _patchify_in_order(images, p, (0, 1, 2, 4, 5, 3))),
        Mistake("the patches are in column-major order (down the first column first); number "
                "them row by row: the grid-row axis H/P comes before the grid-column axis W/P.",
                lambda images, p: _patchify_in_order(images, p, (0, 2, 1, 3, 4, 5))),
        Mistake("each patch is transposed (its columns flattened before its rows): keep the "
                "pixel-row axis before the pixel-column axis.",
                lambda images, p: _patchify_in_order(images, p, (0, 1, 2, 3, 5, 4))),
        Mistake("a single reshape keeps the memory order (C, H, W) and cuts rows of pixels, "
                "not patches: reshape to (B, C, H/P, P, W/P, P) and permute first.",
                lambda images, p: images.reshape(
                    images.shape[0], -1, images.shape[1] * p * p)),
    ],
    forbidden=forbidden(patches=True, allowed="Use reshape and permute."),
    tolerance=(0.0, 0.0),  # pure data movement: exactly equal
)
