"""How the checks of notebook 05's random procedures (``mask_tokens``, ``make_itm_batch``) run
the student's code: many seeded draws, repeats, a call without a generator (``run_draws``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from course_utils.checks.case import Case, Outputs
from course_utils.checks.runners import clone_inputs, expect_raise


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _arguments(case: Case) -> dict[str, Any]:
    """Fresh copies of the procedure's arguments (``runners.clone_inputs``), in signature
    order, without the check's own ``seed`` and ``draws``; passed by position."""
    return {k: v for k, v in clone_inputs(case).items() if k not in ("seed", "draws")}


def _draws(fn: Callable, case: Case, device: torch.device, seed: int, draws: int,
           count: int) -> Outputs:
    """``draws`` calls of ``fn`` with one generator seeded ``seed``; the first call's values as
    ``output[i]``, all calls stacked as ``draws[i]`` (None when they cannot be stacked)."""
    generator = _generator(seed, device)
    results = []
    for _ in range(draws):
        result = fn(*_arguments(case).values(), generator=generator)
        results.append(tuple(result) if isinstance(result, tuple | list) else (result,))
    outputs: Outputs = {f"output[{i}]": value for i, value in enumerate(results[0])}
    for i in range(count):
        column = [r[i] if len(r) > i else None for r in results]
        stackable = all(type(v) is torch.Tensor and v.shape == column[0].shape
                        and v.device == column[0].device for v in column)
        outputs[f"draws[{i}]"] = torch.stack([v.detach() for v in column]) if stackable \
            else None
    return outputs


def _repeat(fn: Callable, case: Case, device: torch.device, seed: int, prefix: str) -> Outputs:
    result = fn(*_arguments(case).values(), generator=_generator(seed, device))
    result = tuple(result) if isinstance(result, tuple | list) else (result,)
    return {f"{prefix}[{i}]": v.detach() if torch.is_tensor(v) else v
            for i, v in enumerate(result)}


def same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are tensors of one shape and dtype with equal values."""
    return type(a) is torch.Tensor and type(b) is torch.Tensor and a.shape == b.shape and \
        a.dtype == b.dtype and bool((a.cpu() == b.cpu()).all())


def run_draws(watched: Sequence[str], count: int) -> Callable[[Callable, Case], Outputs]:
    """The run of a random procedure: on refused inputs, what it raised; otherwise ``count``
    outputs over the case's seeded draws, two repeats (the same seed, the next seed), a call
    without a generator, and the ``watched`` tensor arguments after a call (they must come back
    unchanged)."""

    def run(fn: Callable, case: Case) -> Outputs:
        if case.raises is not None:
            return expect_raise(lambda: fn(*_arguments(case).values()), case)
        device, seed = case.inputs[watched[0]].device, case.inputs["seed"]
        outputs = _draws(fn, case, device, seed, case.inputs["draws"], count)
        outputs.update(_repeat(fn, case, device, seed, "repeat"))
        outputs.update(_repeat(fn, case, device, seed + 1, "other seed"))
        no_generator = fn(*_arguments(case).values())
        outputs["no generator"] = tuple(no_generator) if isinstance(no_generator, tuple | list) \
            else no_generator
        after = _arguments(case)
        fn(*after.values())
        outputs.update({f"{name} after the call": after[name] for name in watched})
        return outputs

    return run


