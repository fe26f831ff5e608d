"""The check of ``unpatchify``, (B, N, C·P·P) -> (B, C, H, W), against ``F.fold`` with
kernel = stride = P: the exact inverse of ``patchify``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.vit._shared import forbidden, randn


def _reference_unpatchify(patches: torch.Tensor, patch_size: int, height: int,
                          width: int) -> torch.Tensor:
    if patches.ndim != 3 or patches.shape[-1] % (patch_size * patch_size):
        raise ValueError("expected patches (B, N, C·P·P)")
    if height % patch_size or width % patch_size or \
            patches.shape[1] != (height // patch_size) * (width // patch_size):
        raise ValueError("N does not match the image size")
    return F.fold(patches.transpose(1, 2), (height, width), patch_size, stride=patch_size)


def _unpatchify_in_order(patches, patch_size, height, width, order):
    """The inverse of ``_patchify_in_order`` with the same ``order``."""
    b, _, d = patches.shape
    p = patch_size
    c = d // (p * p)
    grid = (b, height // p, width // p, c, p, p)  # (B, H/P, W/P, C, P, P) in patchify's order
    x = patches.reshape(tuple(grid[i] for i in order))
    x = x.permute([order.index(i) for i in range(6)])  # (B, H/P, W/P, C, P, P)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, height, width)


def _unpatchify_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    shapes = [((2, 3, 8, 8), 4, torch.float32), ((1, 1, 6, 9), 3, torch.float32),
              ((2, 4, 4, 6), 2, torch.float64)]
    if hidden:
        shapes += [((3, 3, 5, 5), 5, torch.float32), ((2, 3, 12, 8), 4, torch.float32),
                   ((1, 2, 3, 2), 1, torch.float64)]
    cases = []
    for shape, p, dtype in shapes:
        images = randn(generator, *shape, dtype=dtype)
        patches = F.unfold(images, p, stride=p).transpose(1, 2).contiguous()
        cases.append(Case(f"the patches {tuple(patches.shape)} of images {shape}, patch size {p}",
                          {"patches": patches, "patch_size": p, "height": shape[2],
                           "width": shape[3]}, grad=["patches"]))
    patches = randn(generator, 2, 4, 12)
    cases.append(Case("4 patches of 3·2·2 values for a 4×6 image (6 patches), which it must "
                      "refuse", {"patches": patches, "patch_size": 2, "height": 4, "width": 6},
                      raises=ValueError))
    if hidden:
        cases.append(Case("patches of 10 values with patch size 2 (not C·2·2), which it must "
                          "refuse", {"patches": randn(generator, 1, 4, 10), "patch_size": 2,
                                     "height": 4, "width": 4}, raises=ValueError))
    return cases


unpatchify = Check(
    exercise="unpatchify",
    reference=_reference_unpatchify,
    cases=_unpatchify_cases,
    mistakes=[
        Mistake("it reads each patch as (P, P, C); patchify flattened it as (C, P, P).",
                lambda x, p, h, w: _unpatchify_in_order(x, p, h, w, (0, 1, 2, 4, 5, 3))),
        Mistake("it places the patches in column-major order; patch n sits in grid row "
                "n // (W/P), column n % (W/P).",
                lambda x, p, h, w: _unpatchify_in_order(x, p, h, w, (0, 2, 1, 3, 4, 5))),
        Mistake("a single reshape does not undo the permute of patchify: reshape to "
                "(B, H/P, W/P, C, P, P), permute to (B, C, H/P, P, W/P, P), then reshape.",
                lambda x, p, h, w: x.reshape(x.shape[0], -1, h, w)),
    ],
    forbidden=forbidden(patches=True, allowed="Use reshape and permute."),
    tolerance=(0.0, 0.0),
)
