"""The re-check's trusted half: each check call's cases made here, their public parts written
for the sandbox, the student's outputs judged here (steps 1 and 3 of ``recheck``)."""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_utils.tools.grading import exchange
from course_utils.tools.grading.plan import Call, Plan, resolve

#: Longest failure message kept from the student's side.
MAX_MESSAGE = 1500


@dataclass
class CallResult:
    call: str
    passed: bool
    message: str = ""  # why it failed


def fail(call: str, message: str) -> CallResult:
    return CallResult(call, False, message[:MAX_MESSAGE])


@contextlib.contextmanager
def silenced():
    """The checks print on success (one line) and warn: keep the grader's terminal clean."""
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def public(case: Any) -> dict[str, Any]:
    """What the sandbox may see of a case: everything but ``private``."""
    return {"name": case.name, "inputs": case.inputs, "keyword": list(case.keyword),
            "grad": list(case.grad), "raises": case.raises, "tolerance": case.tolerance}


class Reference:
    """The trusted half of an assignment's check calls: cases and expected outputs.

    ``folder`` receives the cases' public parts (``cases-<call>.json``), which the sandbox
    sees read-only at ``/opt/grading``. One Reference serves every submission a worker grades.
    """

    def __init__(self, plan: Plan, folder: Path):
        import torch

        self.plan, self.folder = plan, Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.checks: dict[str, Any] = {}
        self.cases: dict[str, list] = {}
        self._expected: dict[tuple[str, int], Any] = {}
        for call in plan.calls.values():
            check = resolve(call.target)
            self.checks[call.id] = check
            if call.kind == "check":
                cases = list(check.all_cases(call.seed, call.hidden_cases))
            elif call.kind == "quality":
                cases = check.cases(torch.Generator().manual_seed(call.seed), call.hidden_cases)
            else:
                continue
            self.cases[call.id] = cases
            exchange.write(self.folder, f"cases-{call.id}", [public(c) for c in cases])

    def expected(self, call_id: str, index: int) -> Any:
        key = (call_id, index)
        if key not in self._expected:
            with silenced():
                self._expected[key] = self.checks[call_id].run_reference(
                    self.cases[call_id][index])
        return self._expected[key]

    def judge(self, call: Call, answer: Any) -> CallResult:
        """Pass or fail ``call`` on what the sandbox answered (already decoded)."""
        from course_utils.checks.core import at_least
        from course_utils.checks.failure import CheckFailure

        if not isinstance(answer, dict):
            return fail(call.id, "the re-check's answer is malformed")
        if "failed" in answer:
            return fail(call.id, str(answer["failed"]))
        check = self.checks[call.id]
        try:
            if call.kind == "at_least":
                options = dict(call.options)
                value = answer.get("value")
                if type(value) not in (int, float):
                    return fail(call.id, "the re-check's answer is malformed")
                with silenced():
                    at_least(options["name"], value, options["minimum"], options.get("hint"),
                             options.get("unit", "%"))
                return CallResult(call.id, True)
            outcomes = answer.get("outcomes")
            if not isinstance(outcomes, list):
                return fail(call.id, "the re-check's answer is malformed")
            cases = self.cases[call.id]
            figures: dict[str, float] = {}
            for index, case in enumerate(cases):
                if index >= len(outcomes):
                    return fail(call.id, f"no outputs for the case '{case.name}'")
                outcome = outcomes[index]
                if not isinstance(outcome, dict):
                    return fail(call.id, "the re-check's answer is malformed")
                if "failed" in outcome:
                    return fail(call.id, str(outcome["failed"]))
                outputs = outcome.get("outputs")
                if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs):
                    return fail(call.id, "the re-check's answer is malformed")
                if call.kind == "check":
                    with silenced():
                        check.compare(case, outputs, self.expected(call.id, index))
                else:
                    try:
                        with silenced():
                            figures.update(check.score(case, outputs))
                    except Exception as error:  # outputs of the wrong shape or type
                        return fail(call.id, f"{check.exercise}: the model's outputs cannot be "
                                             f"scored ({type(error).__name__}: {error})")
            if call.kind == "quality":
                for name, minimum in check.thresholds.items():
                    with silenced():
                        at_least(name, figures.get(name, math.nan), minimum, check.hint,
                                 check.unit)
            return CallResult(call.id, True)
        except CheckFailure as failure:
            return fail(call.id, str(failure))
        except Exception as error:  # a value no check expected: fail, never crash
            return fail(call.id, f"the outputs cannot be compared ({type(error).__name__}: "
                                 f"{str(error)[:200]})")
