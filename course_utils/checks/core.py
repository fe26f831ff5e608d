"""The checks framework: compare a student's implementation with a reference, data in, data out.

A check runs four steps for every case and every available device (the CPU, and CUDA when
present)::

    cases    = check.cases(generator, hidden)      # 1. inputs made from a seed        (trusted)
    actual   = check.run(student, case)            # 2. outputs of the student's code
    expected = check.run(check.reference, case)    # 3. outputs of the reference       (trusted)
    check.compare(case, actual, expected)          # 4. pass, or CheckFailure + hint   (trusted)

Only step 2 runs the student's code, and it exchanges nothing but tensors and numbers
(``Outputs``; the grader's ``exchange`` module carries them across a process boundary), so a
grader can run step 2 in a sandboxed process and steps 1, 3, 4 in a trusted one.

Where things are: ``case`` (Case, Mistake, Outputs), ``runners`` (steps 2 and 3 for
functions and modules), ``compare`` (step 4), ``stochastic`` (checks of random procedures),
this module (``Check`` and ``QualityCheck``, a graded threshold on a trained model).

Common mistakes are wrong implementations (``Mistake``): when the student's outputs match a
mistake's outputs on the failing case, the failure carries that mistake's hint.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from course_utils.checks.case import TOLERANCES, Case, Mistake, Outputs, devices
from course_utils.checks.compare import describe, first_difference
from course_utils.checks.failure import CheckFailure
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import run_function

__all__ = [
    "TOLERANCES", "Case", "Check", "Mistake", "Outputs", "QualityCheck", "at_least", "devices",
    "quiet", "run_function",
]


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
        if isinstance(self.reference, type) and isinstance(implementation, torch.nn.Module):
            raise CheckFailure(self.exercise, f"expected the class, got a built "
                                              f"{type(implementation).__name__}: pass the class "
                                              f"itself, checks.{self.exercise}"
                                              f"({self.exercise}); a trained model is graded by "
                                              f"the notebook's quality check")
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
            except Exception as theirs:
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
