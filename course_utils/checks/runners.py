"""Steps 2 and 3 of a check: running an implementation on a case, functions and modules alike.

Every exercise is run the same way, whoever wrote its check:

- a **function** exercise by ``run_function``: the case's inputs are its arguments, in order
  (``case.keyword`` ones by keyword);
- a **module** exercise by ``run_module``: the case's inputs are named ``init:NAME`` (the
  constructor's arguments), ``param:NAME`` (a parameter's values, loaded by name with
  ``load_parameters``) and ``forward:NAME`` (the forward's arguments, in order;
  ``case.keyword`` ones by keyword);
- a case that must raise (``case.raises``) gives ``{"raised": name}`` from ``expect_raise``.

Outputs are named ``output`` (or ``output[i]`` for a tuple) and ``grad[NAME]``: gradients are
taken by backpropagating one fixed random upstream gradient per output (``upstream_gradient``),
the same for every implementation, with respect to the inputs or parameters ``case.grad`` names.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from course_utils.checks.case import Case, Outputs

INIT, PARAM, FORWARD = "init:", "param:", "forward:"


def clone_inputs(case: Case, strip: str = "") -> dict[str, Any]:
    """Fresh copies of the case's tensors; those named in ``case.grad`` (after removing the
    prefix ``strip`` from their key) require grad."""
    inputs = {}
    for name, value in case.inputs.items():
        if torch.is_tensor(value):
            wanted = name.startswith(strip) and name[len(strip):] in case.grad
            value = value.detach().clone().requires_grad_(wanted and value.is_floating_point())
        elif isinstance(value, np.ndarray):
            value = value.copy()
        inputs[name] = value
    return inputs


def call(fn: Callable, case: Case, inputs: Mapping[str, Any]) -> Any:
    """Call ``fn`` with the case's positional and keyword arguments."""
    args = [v for k, v in inputs.items() if k not in case.keyword]
    kwargs = {k: v for k, v in inputs.items() if k in case.keyword}
    return fn(*args, **kwargs)


def upstream_gradient(key: str, like: torch.Tensor) -> torch.Tensor:
    """A fixed random upstream gradient for output ``key``: the same for every implementation."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{key}{tuple(like.shape)}".encode()))
    return torch.randn(like.shape, generator=generator, dtype=torch.float64).to(like)


def collect(result: Any) -> Outputs:
    """Name an implementation's return value: a tensor or number -> ``output``, a tuple ->
    ``output[i]``."""
    if isinstance(result, tuple | list):
        return {f"output[{i}]": value for i, value in enumerate(result)}
    return {"output": result}


def backpropagate(outputs: Outputs, inputs: Mapping[str, Any], case: Case,
                  device: torch.device | None = None) -> Outputs:
    """Backpropagate fixed upstream gradients; add ``grad[name]`` for each name in case.grad.

    ``inputs`` maps those names to the tensors (inputs or parameters) that gradients reach;
    ``grad[name]`` is None when no gradient reached one (a detached output) or it is None.
    Outputs on another device than ``device`` (by default the first input's) are left out:
    the comparison rejects them.
    """
    grads: Outputs = {f"grad[{name}]": None for name in case.grad}
    device = device or inputs[case.grad[0]].device
    terms = [
        (value * upstream_gradient(key, value)).sum()
        for key, value in outputs.items()
        if type(value) is torch.Tensor and value.is_floating_point() and value.requires_grad
        and value.device == device  # an output on the wrong device fails the comparison
    ]
    if terms:
        torch.stack(terms).sum().backward()
        for name in case.grad:
            target = inputs.get(name)
            grads[f"grad[{name}]"] = target.grad if target is not None else None
    return grads


def run_function(fn: Callable, case: Case) -> Outputs:
    """Outputs of a function-style exercise on ``case``: its return value and gradients."""
    inputs = clone_inputs(case)
    if case.raises is not None:
        return expect_raise(lambda: call(fn, case, inputs), case)
    outputs = collect(call(fn, case, inputs))
    if case.grad:
        outputs.update(backpropagate(outputs, inputs, case))
    return outputs


def expect_raise(fn: Callable[[], Any], case: Case) -> Outputs:
    """Call ``fn()`` on a case that must raise: ``{"raised": name}`` of the expected exception
    it raised, ``{"raised": None}`` when it returned normally. Any other exception propagates
    (the check reports it with the student's traceback)."""
    try:
        fn()
    except case.raises as error:
        return {"raised": type(error).__name__}
    return {"raised": None}


# --- module exercises ------------------------------------------------------------------------


class WrongParameters(Exception):
    """The student's module lacks a parameter the exercise names, has one it does not name, or
    has it in another shape.

    Deliberately not a ValueError: a case that expects a ValueError (bad input) must not pass
    because the parameters are misnamed.
    """


def load_parameters(module: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Copy ``weights`` (name -> tensor) into the module's parameters of those names.

    Raises:
        WrongParameters: a name is missing or unexpected, or a shape differs; the message says
            which, so that the student can rename (the docstring of each exercise names them).
    """
    kind = type(module).__name__
    own = dict(module.named_parameters())
    missing, unexpected = sorted(set(weights) - set(own)), sorted(set(own) - set(weights))
    if missing or unexpected:
        first = next((name for name in weights if name not in own), None)  # in module order
        raise WrongParameters(
            (f"{kind} has no parameter `{first}`: its" if first else f"{kind}'s")
            + " parameters must have the names the exercise's docstring gives, so "
            "that the check can load the same weights into yours and into the reference"
            + (f"; missing: {', '.join(missing[:6])}" if missing else "")
            + (f"; unexpected: {', '.join(unexpected[:6])}" if unexpected else ""))
    with torch.no_grad():
        for name, value in weights.items():
            if own[name].shape != value.shape:
                raise WrongParameters(f"{kind}.{name} has shape {tuple(own[name].shape)}, "
                                      f"expected {tuple(value.shape)}")
            own[name].copy_(value.detach())


def random_parameters(module: nn.Module, generator: torch.Generator,
                      dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Seeded random values for every parameter of ``module``, keyed ``param:NAME``.

    Scaled so that activations stay of order one and no parameter is negligible (a forgotten
    LayerNorm, bias or position embedding shows): LayerNorm gains around 1, Linear and
    convolution weights with unit-variance outputs, a logit scale between 2 and 4.
    """
    weights = {}
    for name, parameter in module.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
        if name == "logit_scale" or name.endswith(".logit_scale"):
            value = 2 + 2 * torch.rand((), generator=generator, dtype=torch.float64)
        elif "norm" in name and name.endswith("weight") and parameter.ndim == 1:
            value = 1 + 0.3 * noise  # LayerNorm gains
        elif name.endswith("bias"):
            value = 0.3 * noise
        elif name.endswith("projection"):  # (width, embed_dim)
            value = noise / math.sqrt(parameter.shape[0])
        elif parameter.ndim == 2 and "embedding" not in name:  # nn.Linear (out, in)
            value = noise / math.sqrt(parameter.shape[1])
        elif parameter.ndim == 4:  # a convolution (out, in, kh, kw)
            value = noise / math.sqrt(parameter[0].numel())
        else:  # token, position, type and [CLS] embeddings
            value = 0.7 * noise
        weights[PARAM + name] = value.to(dtype)
    return weights


def _device_dtype(module_inputs: Mapping[str, Any]) -> tuple[torch.device, torch.dtype]:
    """Where a module runs: the device and dtype of its first floating-point input or weight."""
    for value in module_inputs.values():
        if torch.is_tensor(value) and value.is_floating_point():
            return value.device, value.dtype
    return torch.device("cpu"), torch.float32


def run_module(implementation: Callable, case: Case) -> Outputs:
    """Outputs of a module exercise on ``case`` (``init:``, ``param:``, ``forward:`` inputs).

    1. build ``implementation(**init)``; it must be an ``nn.Module``;
    2. move it to the device and dtype of the forward's first floating-point input (or of
       the weights) and load the case's weights by name (``load_parameters``);
    3. run forward on the ``forward:`` inputs (positional in order; ``case.keyword`` by name);
    4. backpropagate fixed upstream gradients; ``grad[NAME]`` for each name in ``case.grad``,
       a forward input or a parameter.
    """
    inputs = clone_inputs(case, strip=FORWARD)
    init = {k[len(INIT):]: v for k, v in inputs.items() if k.startswith(INIT)}
    weights = {k[len(PARAM):]: v for k, v in inputs.items() if k.startswith(PARAM)}
    forward = {k[len(FORWARD):]: v for k, v in inputs.items() if k.startswith(FORWARD)}
    device, dtype = _device_dtype({**forward, **weights})

    def build_and_run():
        module = implementation(**init)
        if not isinstance(module, nn.Module):
            raise WrongParameters(f"{getattr(implementation, '__name__', 'it')}(...) made "
                                  f"a {type(module).__name__}, expected an nn.Module")
        module.to(device=device, dtype=dtype)
        load_parameters(module, weights)
        args = [v for k, v in forward.items() if k not in case.keyword]
        kwargs = {k: v for k, v in forward.items() if k in case.keyword}
        return module, module(*args, **kwargs)

    if case.raises is not None:
        return expect_raise(build_and_run, case)
    module, result = build_and_run()
    outputs = collect(result)
    if case.grad:
        params = dict(module.named_parameters())
        targets = {name: forward[name] if name in forward else params.get(name)
                   for name in case.grad}
        outputs.update(backpropagate(outputs, targets, case, device))
    return outputs
