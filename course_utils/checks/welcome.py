"""Checks of notebook 00_welcome: images as tensors.

References: torchvision's ``to_tensor`` and ``rgb_to_grayscale``.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden

# --- to_chw_float: uint8 (H, W, 3) array -> float32 (3, H, W) tensor in [0, 1] ---------------


def _reference_to_chw_float(image: np.ndarray) -> torch.Tensor:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected a (H, W, 3) array")
    return TF.to_tensor(image)


def _image(generator: torch.Generator, height: int, width: int, channels: int = 3) -> np.ndarray:
    pixels = torch.randint(0, 256, (height, width, channels), generator=generator)
    return pixels.to(torch.uint8).numpy()


def _to_chw_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    sizes = [(4, 4), (5, 7), (1, 1)] + ([(32, 17), (2, 64)] if hidden else [])
    cases = [Case(f"a {h}×{w} RGB image", {"image": _image(generator, h, w)}) for h, w in sizes]
    extreme = np.zeros((3, 2, 3), dtype=np.uint8)
    extreme[1] = 255
    cases.append(Case("an image with pixel values 0 and 255", {"image": extreme}))
    cases.append(Case("a (H, W) grayscale array, which it must refuse",
                      {"image": _image(generator, 4, 5)[..., 0]}, raises=ValueError))
    if hidden:
        cases.append(Case("a (H, W, 4) RGBA array, which it must refuse",
                          {"image": _image(generator, 3, 3, channels=4)}, raises=ValueError))
    return cases


to_chw_float = Check(
    exercise="to_chw_float",
    reference=_reference_to_chw_float,
    cases=_to_chw_cases,
    mistakes=[
        Mistake("values must lie in [0, 1]: divide the uint8 values by 255.",
                lambda image: torch.from_numpy(image).permute(2, 0, 1).float()),
        Mistake("`image / 255` on a NumPy array makes float64; the result must be float32.",
                lambda image: torch.from_numpy(image / 255).permute(2, 0, 1)),
        Mistake("reshape(3, H, W) keeps the memory order (H, W, C) and scrambles the pixels; "
                "move the channel axis with permute(2, 0, 1).",
                lambda image: torch.from_numpy(image).float().reshape(
                    3, image.shape[0], image.shape[1]) / 255),
        Mistake("height and width are swapped: (H, W, C) -> (C, H, W) is permute(2, 0, 1), "
                "not permute(2, 1, 0).",
                lambda image: torch.from_numpy(image).permute(2, 1, 0).float() / 255),
    ],
    forbidden=Forbidden(
        attributes=["torchvision.transforms.functional.to_tensor"],
        allowed="Use torch.from_numpy, permute and a division.",
    ),
)


# --- rgb_to_grayscale: (..., 3, H, W) -> (..., 1, H, W) --------------------------------------

#: ITU-R 601 luma weights, as torchvision rounds them.
LUMA = (0.2989, 0.587, 0.114)


def _reference_rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError("expected (..., 3, H, W)")
    return TF.rgb_to_grayscale(x)


def _weighted(x: torch.Tensor, weights) -> torch.Tensor:
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
