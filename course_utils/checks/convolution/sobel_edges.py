"""The check of ``sobel_edges``: the gradient magnitude √(Gx² + Gy²) with replicate padding
(Sobel & Feldman 1968), against the same filter built from ``F.conv2d``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.convolution._conv_ops import forbidden, full_precision, gaussian
from course_utils.checks.core import Check

#: Sobel & Feldman (1968): the horizontal derivative, smoothed vertically by (1, 2, 1).
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _sobel(gray: torch.Tensor, kernel_x=SOBEL_X, pad: str | None = "replicate",
           combine: str = "l2", which: str = "xy") -> torch.Tensor:
    """The Sobel filter and its common variants (the reference uses the defaults)."""
    kx = torch.tensor(kernel_x, dtype=gray.dtype, device=gray.device)  # (3, 3)
    weight = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    if pad is not None:
        gray = F.pad(gray, (1, 1, 1, 1), mode=pad)  # (B, 1, H + 2, W + 2)
    with full_precision():
        gradients = F.conv2d(gray, weight)  # (B, 2, H, W)
    gradients = gradients[:, {"xy": [0, 1], "x": [0], "y": [1]}[which]]
    if combine == "l1":
        return gradients.abs().sum(dim=1, keepdim=True)
    squared = (gradients ** 2).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    return squared if combine == "squared" else squared.sqrt()


def _reference_sobel_edges(gray):
    if gray.ndim != 4 or gray.shape[1] != 1:
        raise ValueError("expected gray (B, 1, H, W)")
    return _sobel(gray)


def _sobel_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    step = torch.zeros(1, 1, 6, 7)
    step[..., 3:] = 1.0  # a vertical edge between columns 2 and 3
    cases = [
        Case("random (1, 1, 6, 7)", {"gray": gaussian(g, 1, 1, 6, 7)}, grad=["gray"]),
        Case("random (2, 1, 5, 5), float64",
             {"gray": gaussian(g, 2, 1, 5, 5, dtype=torch.float64)}, grad=["gray"]),
        Case("a vertical edge: columns 0–2 black, 3–6 white, (1, 1, 6, 7)",
             {"gray": step}),
        Case("an RGB image (1, 3, 5, 5), which it must refuse", {"gray": gaussian(g, 1, 3, 5, 5)},
             raises=ValueError),
    ]
    if hidden:
        square = torch.zeros(2, 1, 9, 8)
        square[:, :, 2:6, 3:7] = 1.0
        cases += [
            Case("random (3, 1, 16, 9)", {"gray": gaussian(g, 3, 1, 16, 9)}, grad=["gray"]),
            Case("a bright square on black (2, 1, 9, 8)", {"gray": square}),
            Case("a horizontal ramp (1, 1, 4, 6), float64",
                 {"gray": torch.arange(6, dtype=torch.float64).expand(1, 1, 4, 6).clone()}),
            Case("random (1, 1, 32, 32)", {"gray": gaussian(g, 1, 1, 32, 32).sigmoid()},
                 grad=["gray"]),
            Case("a (B, H, W) tensor without the channel axis, which it must refuse",
                 {"gray": gaussian(g, 2, 5, 5)}, raises=ValueError),
        ]
    return cases


sobel_edges = Check(
    exercise="sobel_edges",
    reference=_reference_sobel_edges,
    cases=_sobel_cases,
    mistakes=[
        Mistake("the border is zero-padded, so the image's edge shows up as an edge: pad by "
                "replicating the border pixels, F.pad(gray, (1, 1, 1, 1), mode='replicate'), "
                "then convolve without padding.", lambda g: _sobel(g, pad="constant")),
        Mistake("replicate the border pixels (mode='replicate'), do not mirror them "
                "(mode='reflect').", lambda g: _sobel(g, pad="reflect")),
        Mistake("the output is smaller than the image: pad by one pixel on every side "
                "first, so that the edge map is (B, 1, H, W).", lambda g: _sobel(g, pad=None)),
        Mistake("that is the squared magnitude: take the square root, √(Gx² + Gy²).",
                lambda g: _sobel(g, combine="squared")),
        Mistake("that is |Gx| + |Gy|; the gradient magnitude is √(Gx² + Gy²).",
                lambda g: _sobel(g, combine="l1")),
        Mistake("only the horizontal derivative Gx is there: add the vertical one, Gy, whose "
                "kernel is Gx's transposed.", lambda g: _sobel(g, which="x")),
        Mistake("only the vertical derivative Gy is there: add the horizontal one, Gx.",
                lambda g: _sobel(g, which="y")),
        Mistake("that is the Prewitt kernel (rows 1, 1, 1): Sobel weighs the middle row "
                "twice, (1, 2, 1).",
                lambda g: _sobel(g, kernel_x=((-1.0, 0.0, 1.0),) * 3)),
        Mistake("the kernels are divided by 8; use Sobel's integers, (−1, 0, 1), (−2, 0, 2), "
                "(−1, 0, 1).", lambda g: _sobel(g) / 8),
    ],
    forbidden=forbidden("Use your conv2d from exercise 3 (and F.pad for the border)."),
)
