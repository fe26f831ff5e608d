"""The check of ``rgb_to_grayscale``: (..., 3, H, W) -> (..., 1, H, W) luma, against
torchvision's ``rgb_to_grayscale``."""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden

#: ITU-R 601 luma weights, as torchvision rounds them.
LUMA = (0.2989, 0.587, 0.114)


def _reference_rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError("expected (..., 3, H, W)")
    return TF.rgb_to_grayscale(x)


def _weighted(x: torch.Tensor, weights) -> torch.Tensor:
    """Σ_c weights[c]·x[..., c, :, :], keeping the channel axis: (..., 1, H, W)."""
    w = torch.tensor(weights, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * w).sum(dim=-3, keepdim=True)


def _rgb_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def rgb(*shape, dtype=torch.float32):
        return torch.rand(shape, generator=generator, dtype=dtype)

    cases = [
        Case("one image (3, 5, 4)", {"x": rgb(3, 5, 4)}, grad=["x"]),
        Case("a batch (2, 3, 6, 6)", {"x": rgb(2, 3, 6, 6)}, grad=["x"]),
        Case("a batch in float64 (2, 3, 3, 7)", {"x": rgb(2, 3, 3, 7, dtype=torch.float64)},
             grad=["x"]),
        Case("a batch of 4 channels (2, 4, 5, 5), which it must refuse",
             {"x": rgb(2, 4, 5, 5)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("two batch dimensions (2, 3, 3, 4, 5)", {"x": rgb(2, 3, 3, 4, 5)}, grad=["x"]),
            Case("a 1×1 image (1, 3, 1, 1)", {"x": rgb(1, 3, 1, 1)}, grad=["x"]),
            Case("a (H, W) matrix, which it must refuse", {"x": rgb(5, 5)}, raises=ValueError),
        ]
    return cases


rgb_to_grayscale = Check(
    exercise="rgb_to_grayscale",
    reference=_reference_rgb_to_grayscale,
    cases=_rgb_cases,
    mistakes=[
        Mistake("that is the plain mean of R, G and B; luma weighs green most: "
                "0.2989·R + 0.587·G + 0.114·B.",
                lambda x: x.mean(dim=-3, keepdim=True)),
        Mistake("the weights are in reverse order (B, G, R): channel 0 is red.",
                lambda x: _weighted(x, LUMA[::-1])),
        Mistake("use the weights exactly as torchvision rounds them: 0.2989, 0.587, 0.114.",
                lambda x: _weighted(x, (0.299, 0.587, 0.114))),
        Mistake("keep the channel axis: the result is (..., 1, H, W) (keepdim=True).",
                lambda x: _weighted(x, LUMA).squeeze(-3)),
    ],
    forbidden=Forbidden(
        attributes=["torchvision.transforms.functional.rgb_to_grayscale",
                    "torchvision.transforms.functional.to_grayscale"],
        allowed="Weight the three channels yourself.",
    ),
)
