"""The checks framework: compare a student's implementation with a reference, data in, data out.

A check runs four steps for every case and every available device (the CPU, and CUDA when
present)::

    cases    = check.cases(generator, hidden)      # 1. inputs made from a seed        (trusted)
    actual   = check.run(student, case)            # 2. outputs of the student's code
    expected = check.run(check.reference, case)    # 3. outputs of the reference       (trusted)
    check.compare(case, actual, expected)          # 4. pass, or CheckFailure + hint   (trusted)

Only step 2 runs the student's code, and it exchanges nothing but tensors and numbers
(``Outputs``, which ``pack``/``unpack`` turn into NumPy arrays and JSON), so a grader can run
step 2 in a sandboxed process and steps 1, 3, 4 in a trusted one.

Common mistakes are wrong implementations (``Mistake``): when the student's outputs match a
mistake's outputs on the failing case, the failure carries that mistake's hint.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from course_utils.checks.failure import CheckFailure
from course_utils.checks.forbid import Forbidden

#: A name -> value mapping of everything an implementation produced on a case: ``"output"``
#: (or ``"output[0]"``, ``"output[1]"``, ... for tuples), ``"grad[x]"`` for the gradient with
#: respect to input ``x``, and ``"raised"`` when it raised an expected exception.
Outputs = dict[str, Any]

#: (rtol, atol) per dtype, for comparisons of values computed in different orders.
TOLERANCES = {
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
    torch.float32: (1e-4, 1e-5),
    torch.float64: (1e-7, 1e-9),
}


@dataclass
class Case:
    """One input to an exercise.

    Args:
        name: what the case is, shown in failure messages ("batch 1, 7×5 image, stride 2").
        inputs: argument name -> value, in the exercise's signature order; tensors are cloned
            before every call, so an implementation can never change another's inputs.
        keyword: names passed by keyword (the others are passed by position, in order).
        grad: names of the inputs whose gradients are compared (backpropagating a fixed
            random upstream gradient through every floating-point output).
        raises: an exception type the call must raise (a bad shape -> ``ValueError``).
        tolerance: (rtol, atol) overriding the dtype's default.
        private: data the trusted side keeps to itself (e.g. the true labels of a quality
            check's held-out images); never passed to the student's code.
    """

    name: str
    inputs: dict[str, Any]
    keyword: Sequence[str] = ()
    grad: Sequence[str] = ()
    raises: type[BaseException] | None = None
    tolerance: tuple[float, float] | None = None
    private: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Case:
        """The same case with its tensors on ``device`` (named in the case's description)."""
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.inputs.items()}
        return replace(self, name=f"{self.name}, on {torch.device(device).type}", inputs=inputs)


@dataclass
class Mistake:
    """A common wrong answer, written as an implementation with the exercise's interface."""

    hint: str
    implementation: Callable


def devices() -> list[torch.device]:
    """The devices checks run on: the CPU, and CUDA when present (MPS lacks float64)."""
    found = [torch.device("cpu")]
    if torch.cuda.is_available():
        found.append(torch.device("cuda"))
    return found


# --- step 2 and 3: running an implementation on a case ------------------------------------


def clone_inputs(case: Case) -> dict[str, Any]:
    """Fresh copies of the case's tensors; those named in ``case.grad`` require grad."""
    inputs = {}
    for name, value in case.inputs.items():
        if torch.is_tensor(value):
            value = value.detach().clone().requires_grad_(name in case.grad)
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


def backpropagate(outputs: Outputs, inputs: Mapping[str, Any], case: Case) -> Outputs:
    """Backpropagate fixed upstream gradients; add ``grad[name]`` for each name in case.grad.

    ``grad[name]`` is None when no gradient reached that input (a detached output).
    """
    grads: Outputs = {f"grad[{name}]": None for name in case.grad}
    device = inputs[case.grad[0]].device
    terms = [
        (value * upstream_gradient(key, value)).sum()
        for key, value in outputs.items()
        if type(value) is torch.Tensor and value.is_floating_point() and value.requires_grad
        and value.device == device  # an output on the wrong device fails the comparison
    ]
    if terms:
        torch.stack(terms).sum().backward()
        for name in case.grad:
            grads[f"grad[{name}]"] = inputs[name].grad
    return grads


def run_function(fn: Callable, case: Case) -> Outputs:
    """Outputs of a function-style exercise on ``case``: its return value and gradients."""
    inputs = clone_inputs(case)
    if case.raises is not None:
        try:
            call(fn, case, inputs)
        except case.raises as error:
            return {"raised": type(error).__name__}
        return {"raised": None}
    outputs = collect(call(fn, case, inputs))
    if case.grad:
        outputs.update(backpropagate(outputs, inputs, case))
    return outputs


# --- step 4: comparing outputs ------------------------------------------------------------


def describe(value: Any) -> str:
    if torch.is_tensor(value):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}, dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"a NumPy array of shape {value.shape}, dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def difference(key: str, actual: Any, expected: Any,
               tolerance: tuple[float, float] | None = None) -> str | None:
    """Why ``actual`` is not ``expected`` (None when it is), in one or two lines."""
    what = "the output" if key == "output" else key
    if key.startswith("grad["):
        if expected is None:
            return None
        if actual is None:
            name = key[5:-1]
            return (f"no gradient reached `{name}`: the output is cut off from autograd "
                    "(.detach(), .item(), .numpy() or torch.tensor(...) on a tensor that "
                    "needs gradients)")
    if key == "raised":
        if actual == expected:
            return None
        return f"expected it to raise {expected} (with a message saying what is wrong), " \
               f"but it {'raised ' + actual if actual else 'returned normally'}"
    if torch.is_tensor(expected):
        return (tensor_structure_difference(what, actual, expected)
                or value_difference(what, actual.detach(), expected.detach(), tolerance))
    if isinstance(expected, bool) or expected is None:
        return None if actual is expected else f"{what} is {actual!r}, expected {expected!r}"
    if isinstance(expected, int | float):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return f"{what} should be a Python {type(expected).__name__}, got {describe(actual)}"
        if isinstance(expected, int) and not isinstance(actual, int):
            return f"{what} should be an int, got {describe(actual)}"
        rtol, atol = tolerance or TOLERANCES[torch.float64]
        ok = math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol)
        return None if ok else f"{what} is {actual!r}, expected {expected!r}"
    return None if actual == expected else f"{what} is {describe(actual)}, expected {expected!r}"


def tensor_structure_difference(what: str, actual: Any, expected: torch.Tensor) -> str | None:
    """Why ``actual`` cannot stand for the tensor ``expected`` (not a tensor, or another shape,
    dtype or device), None when it can; the values are not compared."""
    if type(actual) is not torch.Tensor:
        return f"{what} should be a torch.Tensor, got {describe(actual)}"
    if actual.shape != expected.shape:
        return f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"{what} has dtype {actual.dtype}, expected {expected.dtype}"
    if actual.device != expected.device:
        return f"{what} is on {actual.device}, expected {expected.device} (the input's device)"
    return None


def value_difference(what: str, actual: torch.Tensor, expected: torch.Tensor,
                     tolerance: tuple[float, float] | None = None) -> str | None:
    if not actual.is_floating_point():
        wrong = actual != expected
        if not wrong.any():
            return None
        index = tuple(int(i) for i in wrong.nonzero()[0])
        return (f"{what} differs at {int(wrong.sum())} of {wrong.numel()} positions; "
                f"first at {list(index)}: expected {expected[index].item()}, "
                f"got {actual[index].item()}")
    rtol, atol = tolerance or TOLERANCES.get(expected.dtype, TOLERANCES[torch.float32])
    finite = torch.isfinite(expected)
    if (torch.isnan(actual) & ~torch.isnan(expected)).any():
        return f"{what} contains NaN where the expected values are finite"
    if torch.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        return None
    error = (actual - expected).abs().to(torch.float64).nan_to_num(math.inf)
    error = torch.where(finite, error, (actual != expected).to(torch.float64) * math.inf)
    index = tuple(int(i) for i in np.unravel_index(int(error.argmax()), tuple(error.shape)))
    at = f" at {list(index)}" if index else ""
    return (f"{what} has the right shape but wrong values: the largest error is "
            f"{error.max().item():.3g}{at} (expected {expected[index].item():.6g}, "
            f"got {actual[index].item():.6g}; tolerance rtol={rtol:g}, atol={atol:g})")


def first_difference(actual: Outputs, expected: Outputs,
                     tolerance: tuple[float, float] | None = None) -> str | None:
    """The first problem found comparing ``actual`` with ``expected`` (None if they agree)."""
    forward = [k for k in expected if not k.startswith("grad[")]
    backward = [k for k in expected if k.startswith("grad[")]
    if forward == ["output"] and "output" not in actual:
        n = len([k for k in actual if not k.startswith("grad[")])
        return f"it returned a tuple or list of {n} values; expected a single value"
    if "output" in actual and "output" not in expected:
        n = len(forward)
        return f"it returned {describe(actual['output'])}; expected a tuple of {n} values"
    for key in forward + backward:
        if key not in actual:
            return f"{key} is missing from what it returned"
        problem = difference(key, actual[key], expected[key], tolerance)
        if problem:
            return problem
    return None


# --- the check ------------------------------------------------------------------------------


@dataclass
class Check:
    """The check of one exercise.

    Args:
        exercise: the exercise's name, as students see it (``"conv2d"``).
        reference: an implementation with the exercise's interface that is right by
            construction, usually a thin wrapper around the library function.
        cases: ``cases(generator, hidden) -> list[Case]``; ``hidden`` adds harder cases.
        run: ``run(implementation, case) -> Outputs``; ``run_function`` for functions, a
            custom one for modules (construct, load weights, forward, backward).
        mistakes: common wrong answers, recognised on the failing case to give a hint.
        forbidden: what the student's code may not call while it runs.
        tolerance: (rtol, atol) for every case; default by dtype (``TOLERANCES``).
    """

    exercise: str
    reference: Callable
    cases: Callable[[torch.Generator, bool], list[Case]]
    run: Callable[[Callable, Case], Outputs] = run_function
    mistakes: Sequence[Mistake] = ()
    forbidden: Forbidden = field(default_factory=Forbidden)
    tolerance: tuple[float, float] | None = None

    def __call__(self, implementation: Callable, *, seed: int = 0, hidden: bool = False) -> None:
        """Check ``implementation`` on every case and device; raise CheckFailure on the first
        problem. When it passes, prints one line saying what was checked
        ("✓ conv2d: 24 cases passed on cpu and cuda (values, gradients, input validation)")
        and writes nothing to stderr."""
        count, checked = 0, {"values"}
        with quiet():
            for case in self.all_cases(seed, hidden):
                expected = self.run_reference(case)
                actual = self.run_student(implementation, case)
                self.compare(case, actual, expected)
                count += 1
                checked.add("input validation" if case.raises else
                            "gradients" if case.grad else "values")
        where = " and ".join(device.type for device in devices())
        what = ", ".join(k for k in ("values", "gradients", "input validation") if k in checked)
        print(f"✓ {self.exercise}: {count} {'hidden ' if hidden else ''}cases passed on {where} "
              f"({what})")

    def all_cases(self, seed: int = 0, hidden: bool = False) -> Iterator[Case]:
        """Step 1: the cases, on every available device."""
        generator = torch.Generator().manual_seed(seed)
        cases = self.cases(generator, hidden)
        for device in devices():
            for case in cases:
                yield case if device.type == "cpu" else case.to(device)

    def run_reference(self, case: Case) -> Outputs:
        """Step 3 (trusted): what a right implementation gives."""
        return self.run(self.reference, case)

    def is_known_mistake(self, implementation: Callable) -> bool:
        return any(implementation is mistake.implementation for mistake in self.mistakes)

    def run_student(self, implementation: Callable, case: Case) -> Outputs:
        """Step 2: run the student's code on one case, forbidden functions refused."""
        if not callable(implementation):
            raise CheckFailure(self.exercise, f"expected a function or class, got "
                                              f"{describe(implementation)}")
        try:
            # The check's own reference is refused, so that it cannot be handed in. Its known
            # mistakes are the check's own code and may build on it (tests hand each one in,
            # as a student would, to prove that it fails with its hint).
            own = [] if self.is_known_mistake(implementation) else [
                (f"the check's own reference for {self.exercise}", self.reference)]
            with self.forbidden.active(extra_code=own):
                outputs = self.run(implementation, case)
        except NotImplementedError as error:
            if str(error):  # torch's own "not implemented for ..." errors carry a message
                raise CheckFailure(self.exercise, f"your code raised NotImplementedError: "
                                                  f"{error}", case.name) from error
            raise CheckFailure(
                self.exercise,
                "not implemented yet: replace `raise NotImplementedError()` in its cell with "
                "your code, run that cell, then run this test again",
            ) from error
        except Exception as error:
            if self.forbidden.violations:
                raise self.forbidden_failure(case) from None
            raise CheckFailure(
                self.exercise, f"your code raised {type(error).__name__}: {error}", case.name,
                self.error_hint(case, error)
            ) from error
        if self.forbidden.violations:
            raise self.forbidden_failure(case)
        return outputs

    def forbidden_failure(self, case: Case) -> CheckFailure:
        used = ", ".join(sorted(set(self.forbidden.violations)))
        return CheckFailure(
            self.exercise,
            f"it called {used}, which this exercise builds from scratch. "
            f"{self.forbidden.allowed}".strip(),
            case.name,
        )

    def compare(self, case: Case, actual: Outputs, expected: Outputs) -> None:
        """Step 4 (trusted): raise CheckFailure naming the case, the problem and a hint."""
        problem = first_difference(actual, expected, case.tolerance or self.tolerance)
        if problem:
            hint = self.hint(case, actual, expected)
            raise CheckFailure(self.exercise, problem, case.name, hint)

    def error_hint(self, case: Case, error: Exception) -> str | None:
        """The hint of the first mistake that raises the very error the student's code raised
        on ``case`` (a bias added with the wrong broadcast fails with torch's shape error)."""
        if case.raises is not None and isinstance(error, case.raises):
            return None
        for mistake in self.mistakes:
            try:
                with quiet():
                    self.run(mistake.implementation, case)
            except Exception as theirs:  # noqa: BLE001 (the mistake's own error)
                if type(theirs) is type(error) and str(theirs) == str(error):
                    return mistake.hint
        return None

    def hint(self, case: Case, actual: Outputs, expected: Outputs | None = None) -> str | None:
        """The hint of the first mistake whose outputs equal the student's on ``case``.

        A mistake that gives the right outputs on this case (a "stride ignored" mistake on a
        stride-1 case) says nothing about the student's error and is skipped.
        """
        if case.raises is not None:  # mistakes rarely validate inputs: no hint to give here
            return None
        tolerance = case.tolerance or self.tolerance
        right_forward = []  # mistakes right on the forward values: perhaps wrong gradients
        for mistake in self.mistakes:
            try:
                with quiet():
                    outputs = self.run(mistake.implementation, case)
            except Exception:  # a mistake that cannot run on this case gives no hint
                continue
            forward = {k: v for k, v in outputs.items() if not k.startswith("grad[")}
            if not forward or first_difference(actual, forward, tolerance) is not None:
                continue
            if expected is not None:
                right = {k: v for k, v in expected.items() if k in forward}
                if first_difference(forward, right, tolerance) is None:
                    right_forward.append((mistake, outputs))
                    continue
            return mistake.hint
        for mistake, outputs in right_forward:  # the same values; the same wrong gradients?
            if len(outputs) > len([k for k in outputs if not k.startswith("grad[")]) and \
                    first_difference(actual, outputs, tolerance) is None and \
                    first_difference(outputs, expected, tolerance) is not None:
                return mistake.hint
        return None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep warnings and stray stderr output off stderr while a check runs.

    nbgrader gives a test cell no points if it writes to stderr, so a deprecation warning
    in a student's (otherwise right) code must not cost them the cell. Warnings are dropped;
    anything printed to ``sys.stderr``, or logged by a handler on stderr, goes to stdout
    instead.
    """
    stderr = sys.stderr
    with warnings.catch_warnings(), contextlib.redirect_stderr(sys.stdout), \
            _logging_to(sys.stdout, stderr):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _logging_to(stream, stderr) -> Iterator[None]:
    """Point every logging handler that writes to ``stderr`` (the notebook's or the process's)
    at ``stream`` for the duration: a student's ``logging.warning`` is shown, not on stderr."""
    import logging

    errs = {id(stderr), id(sys.__stderr__)}
    loggers = [logging.getLogger()] + [logger for logger in
                                       list(logging.Logger.manager.loggerDict.values())
                                       if isinstance(logger, logging.Logger)]
    moved = []
    for handler in {id(h): h for lg in loggers for h in lg.handlers}.values():
        if isinstance(handler, logging.StreamHandler) and id(handler.stream) in errs:
            moved.append((handler, handler.stream))
            handler.stream = stream
    try:
        yield
    finally:
        for handler, original in moved:
            handler.stream = original


# --- data across processes ------------------------------------------------------------------


def pack(outputs: Outputs) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Outputs -> (JSON-able description, NumPy arrays): no pickles cross a process boundary."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        if type(value) is torch.Tensor:
            meta[key] = {"tensor": True, "dtype": str(value.dtype).removeprefix("torch."),
                         "device": str(value.device), "requires_grad": value.requires_grad}
            if value.dtype == torch.bfloat16:  # NumPy has no bfloat16: float32 is exact
                value = value.float()
            arrays[key] = np.array(value.detach().cpu().numpy())  # 0-d stays 0-d
        elif value is None or isinstance(value, bool | int | float | str):
            meta[key] = {"tensor": False, "value": value}
        else:
            meta[key] = {"tensor": False, "value": None, "type": type(value).__name__}
    return meta, arrays


def unpack(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Outputs:
    """The inverse of ``pack``: tensors back on their devices, with their dtypes."""
    outputs: Outputs = {}
    for key, info in meta.items():
        if info["tensor"]:
            dtype = getattr(torch, info["dtype"])
            tensor = torch.from_numpy(np.asarray(arrays[key])).to(dtype)
            device = info["device"] if torch.device(info["device"]).type == "cpu" or \
                torch.cuda.is_available() else "cpu"
            tensor = tensor.to(device)
            if info["requires_grad"] and tensor.is_floating_point():
                tensor.requires_grad_(True)
            outputs[key] = tensor
        elif "type" in info:
            outputs[key] = _Opaque(info["type"])
        else:
            outputs[key] = info["value"]
    return outputs


class _Opaque:
    """Stands in for a value of a type that cannot cross a process boundary."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


# --- thresholds on trained models -------------------------------------------------------------


@dataclass
class QualityCheck:
    """A graded threshold on a trained model, measured on held-out data the check makes itself.

    The notebook's own numbers are for people; the grade comes from here, data in, data out:
    the check generates held-out inputs from its seed (``cases``; the answers stay in
    ``case.private``), the student's trained model produces outputs (``run``, the only step
    that runs student code), and the trusted side scores them (``score``) against
    ``thresholds``. A model cannot be graded on a number it reports about itself.

    Args:
        exercise: what is graded ("SmallCNN held-out accuracy").
        cases: ``cases(generator, hidden) -> list[Case]``: held-out inputs, answers private.
        run: ``run(model, case) -> Outputs``, e.g. ``{"output": logits}``; it must move the
            inputs to the model's device itself.
        score: ``score(case, outputs) -> {name: value}``, every figure worth showing.
        thresholds: the minimum of each graded figure, by name (fractions for "%").
        hint: what usually goes wrong when a model falls short.
    """

    exercise: str
    cases: Callable[[torch.Generator, bool], list[Case]]
    run: Callable[[Any, Case], Outputs]
    score: Callable[[Case, Outputs], dict[str, float]]
    thresholds: dict[str, float]
    hint: str | None = None
    unit: str = "%"
    forbidden: Forbidden = field(default_factory=Forbidden)

    def __call__(self, model: Any, *, seed: int = 0, hidden: bool = False) -> None:
        """Score ``model``; raise CheckFailure if a graded figure is below its threshold.

        Returns None to the notebook (a number would read as partial credit to nbgrader);
        the figures are printed and reported with ``report_metric``: the ungraded ones first,
        then each graded one with its threshold and verdict, last.
        """
        from course_utils.metrics import report_metric

        figures: dict[str, float] = {}
        with quiet():
            for case in self.cases(torch.Generator().manual_seed(seed), hidden):
                outputs = self.run_student(model, case)
                try:
                    figures.update(self.score(case, outputs))
                except Exception as error:  # outputs of the wrong shape or type
                    raise CheckFailure(self.exercise, f"the model's outputs cannot be scored "
                                                      f"({type(error).__name__}: {error})",
                                       case.name) from None
        # the figures shown for context first; the graded ones last, so that the cell's last
        # lines are what it grades: each figure, its threshold and the verdict
        for name, value in figures.items():
            if name not in self.thresholds:
                report_metric(name, value, self.unit)
        for name in self.thresholds:
            if name in figures:
                report_metric(name, figures[name], self.unit)
        for name, minimum in self.thresholds.items():
            at_least(name, figures.get(name, math.nan), minimum, self.hint, self.unit)
        return None

    def run_student(self, model: Any, case: Case) -> Outputs:
        try:
            with torch.no_grad(), self.forbidden.active():
                outputs = self.run(model, case)
        except NotImplementedError as error:
            raise CheckFailure(self.exercise, "the model is not implemented yet") from error
        except Exception as error:
            if self.forbidden.violations:
                raise self.forbidden_failure(case) from None
            raise CheckFailure(self.exercise, f"your model raised {type(error).__name__}: "
                                              f"{error}", case.name) from error
        if self.forbidden.violations:  # refused, even though the model caught the error
            raise self.forbidden_failure(case)
        return outputs

    def forbidden_failure(self, case: Case) -> CheckFailure:
        used = ", ".join(sorted(set(self.forbidden.violations)))
        return CheckFailure(self.exercise, f"the model called {used}, which it must not use "
                                           f"here. {self.forbidden.allowed}".strip(), case.name)


def at_least(name: str, value: float, minimum: float, hint: str | None = None,
             unit: str = "%") -> None:
    """A graded test of a trained model's quality, e.g. held-out accuracy ≥ 95 %.

    Passes (printing one line) when ``value >= minimum``; raises a CheckFailure that names both
    numbers and, if given, a hint (what usually goes wrong) otherwise.
    """
    value, minimum = float(value), float(minimum)
    shown = (lambda v: f"{100 * v:.1f} %") if unit == "%" else (lambda v: f"{v:.4g} {unit}")
    if not math.isfinite(value) or value < minimum:
        raise CheckFailure(name, f"{shown(value)}, needs at least {shown(minimum)}", hint=hint)
    print(f"✓ {name}: {shown(value)} (at least {shown(minimum)}): passed")
