"""What the checks of the three heads of notebook 05 (``ITMHead``, ``MLMHead``, ``VQAHead``)
share: input validation, and a check built from a reference and wrong ``forward``s."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.runners import run_module
from course_utils.checks.vilt._tokens import module_case


def check_last_dim(x: torch.Tensor, dim: int, what: str) -> None:
    """Raise ValueError unless ``x`` has at least 2 dimensions and its last one is ``dim``."""
    if x.ndim < 2 or x.shape[-1] != dim:
        raise ValueError(f"expected {what} with last dimension {dim}, got {tuple(x.shape)}")


def _variant(reference: type[nn.Module], forward: Callable) -> type[nn.Module]:
    """A wrong head: the reference's parameters, another ``forward(head, x)``."""
    return type(f"Wrong{reference.__name__.removeprefix('Reference')}", (reference,),
                {"forward": forward})


def _head_cases(reference: type[nn.Module], args: Callable[[int], dict], text: bool):
    def cases(generator: torch.Generator, hidden: bool) -> list[Case]:
        sizes = [(8, 4, torch.float32), (5, 1, torch.float32), (6, 3, torch.float64)]
        if hidden:
            sizes += [(16, 7, torch.float32), (3, 2, torch.float64)]
        made = []
        for dim, batch, dtype in sizes:
            shape = (batch, 5, dim) if text else (batch, dim)
            where = f"text features {shape}" if text else f"[CLS] features {shape}"
            x = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
            made.append(module_case(f"width {dim}, {where}, {str(dtype)[6:]}", generator,
                                    reference, args(dim), {"x": x}, dtype))
        x = torch.randn((2, 3, 4) if text else (2, 4), generator=generator)
        made.append(module_case("features of the wrong width (4 for dim 6), which it must "
                                "refuse", generator, reference, args(6), {"x": x},
                                torch.float32, raises=ValueError))
        return made

    return cases


def head_check(reference: type[nn.Module], args: Callable[[int], dict], text: bool,
               mistakes: Sequence[tuple[str, Callable]]) -> Check:
    """The check of a head, built with ``args(width)`` and run on [CLS] (or, ``text``, on
    every text position's) features. Each mistake is a hint and a wrong ``forward(head, x)``
    on the reference's parameters."""
    return Check(exercise=reference.__name__.removeprefix("Reference"), reference=reference,
                 cases=_head_cases(reference, args, text), run=run_module,
                 mistakes=[Mistake(hint, _variant(reference, forward))
                           for hint, forward in mistakes])
