"""The checks of notebook 00 accept its solution and reject the plausible wrong answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from course_utils.checks import CheckFailure
from course_utils.checks import welcome as checks
from tests.notebook_code import load_solution

solution = load_solution("00_welcome")


@pytest.mark.parametrize("name", ["to_chw_float", "rgb_to_grayscale"])
def test_accepts_the_solution(name):
    check = getattr(checks, name)
    check(solution[name])
    check(solution[name], seed=2026, hidden=True)


@pytest.mark.parametrize("name", ["to_chw_float", "rgb_to_grayscale"])
def test_rejects_each_known_mistake_with_its_hint(name):
    check = getattr(checks, name)
    assert len(check.mistakes) >= 3
    for mistake in check.mistakes:
        with pytest.raises(CheckFailure) as failure:
            check(mistake.implementation, hidden=True)
        assert mistake.hint in str(failure.value), mistake.hint


to_chw = solution["to_chw_float"]
gray = solution["rgb_to_grayscale"]

WRONG = {
    "to_chw_float": {
        "calls torchvision": (lambda image: TF.to_tensor(image), "builds from scratch"),
        "returns NumPy": (lambda image: to_chw(image).numpy(), "should be a torch.Tensor"),
        "wrong device": (lambda image: to_chw(image).to("meta"), "is on meta"),
        "accepts bad shapes": (lambda image: torch.from_numpy(np.atleast_3d(image)).permute(
            2, 0, 1).float() / 255, "expected it to raise ValueError"),
        "keeps the alpha channel": (
            lambda image: torch.from_numpy(np.atleast_3d(image)).permute(2, 0, 1).float() / 255
            if image.ndim == 3 else to_chw(image), "expected it to raise ValueError"),
    },
    "rgb_to_grayscale": {
        "calls torchvision": (lambda x: TF.rgb_to_grayscale(x), "builds from scratch"),
        "detached": (lambda x: gray(x).detach(), "no gradient reached `x`"),
        "always float32": (lambda x: gray(x).float(), "dtype torch.float32"),
        "wrong device": (lambda x: gray(x).to("meta"), "is on meta"),
        "no ValueError": (lambda x: (x[..., :3, :, :] * 0.3).sum(-3, keepdim=True)
                          if x.ndim >= 3 else x, "wrong values"),
    },
}


@pytest.mark.parametrize("name, wrong", [(n, w) for n in WRONG for w in WRONG[n]])
def test_rejects_other_wrong_answers(name, wrong):
    implementation, reason = WRONG[name][wrong]
    with pytest.raises(CheckFailure, match=reason):
        getattr(checks, name)(implementation, hidden=True)
