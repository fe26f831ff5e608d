"""The check of ``to_chw_float``: a uint8 (H, W, 3) array -> a float32 (3, H, W) tensor in
[0, 1], against torchvision's ``to_tensor``."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden


def _reference_to_chw_float(image: np.ndarray) -> torch.Tensor:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected a (H, W, 3) array")
    return TF.to_tensor(image)


def _image(generator: torch.Generator, height: int, width: int, channels: int = 3) -> np.ndarray:
    """A random uint8 image (H, W, channels), as PIL and imageio give them."""
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
