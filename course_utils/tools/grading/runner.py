"""The re-check runner: the student's side of every check call, in a fresh sandboxed process.

Started by ``recheck.py`` inside the submission's jail as
``python -s /opt/course/course_utils/tools/grading/runner.py EXCHANGE``. It reads
``EXCHANGE/program.json`` and replays, in notebook order, the instructor's locked cells, the
student's exercise cells and the student's own cells they need (``replay.py``) in an IPython
shell; at each test cell it answers the cell's
check calls: for every case (read from ``/opt/grading/cases-<call>.json``, inputs only) it
runs the student's step of the check (``Check.run_student``, forbidden functions refused) and
writes the outputs, as data, to ``EXCHANGE/result-<call>.json``. Nothing is compared here:
the trusted grader compares the outputs with the reference, in its own process.

Progress lines in ``EXCHANGE/progress.txt`` (``begin K``, ``call ID``, ``end K``, ``done``)
let the grader time each step from outside and, when a step hangs or kills the process,
restart the runner after it.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    # Our own modules first: nothing the student's cells do can change what is bound here.
    script_folder = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != script_folder]
    folder = sys.argv[1]
    with open(os.path.join(folder, "program.json"), encoding="utf-8") as handle:
        program = json.load(handle)
    progress = open(os.path.join(folder, "progress.txt"), "a", buffering=1, encoding="utf-8")

    def mark(text: str) -> None:
        progress.write(f"{text} {time.monotonic():.3f}\n")
        progress.flush()

    mark("start -")
    from traitlets.config import Config

    from course_utils.checks.case import Case
    from course_utils.checks.core import Check, QualityCheck
    from course_utils.checks.failure import CheckFailure
    from course_utils.tools.grading import exchange
    from course_utils.tools.grading.plan import resolve

    run_check, run_quality = Check.run_student, QualityCheck.run_student
    write, read = exchange.write, exchange.read
    data = program["data"]
    targets = {call["target"] for step in program["steps"] for call in step.get("calls", [])}
    checks = {}
    for target in targets:
        try:
            checks[target] = resolve(target)
        except Exception as error:
            checks[target] = error

    from IPython.core.interactiveshell import InteractiveShell

    config = Config()
    config.HistoryManager.enabled = False
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    sys.path.insert(0, "")  # like the kernel: the submission's folder is importable

    skip, skip_calls = set(program.get("skip", [])), set(program.get("skip_calls", []))

    def answer(call: dict) -> None:
        name = f"result-{call['id']}"
        check = checks[call["target"]]
        if isinstance(check, Exception):
            write(folder, name, {"failed": f"cannot import the check: {check}"}, strict=False)
            return
        try:
            value = eval(compile(call["argument"], "<test cell>", "eval"), shell.user_ns)
        except BaseException as error:
            write(folder, name, {"failed": f"`{call['argument']}` raised "
                                           f"{type(error).__name__}: {error}"}, strict=False)
            return
        if call["kind"] == "at_least":
            try:
                number = float(value)
            except BaseException as error:
                write(folder, name, {"failed": f"`{call['argument']}` is not a number "
                                               f"({type(error).__name__}: {error})"}, strict=False)
                return
            write(folder, name, {"value": number}, strict=False)
            return
        cases = read(data, f"cases-{call['id']}", max_bytes=1 << 34)
        outcomes = []
        for fields in cases:
            case = Case(**fields)
            try:
                if call["kind"] == "check":
                    outputs = run_check(check, value, case)
                else:
                    outputs = run_quality(check, value, case)
                if not isinstance(outputs, dict):
                    raise TypeError(f"the check's run returned {type(outputs).__name__}")
                outcomes.append({"outputs": outputs})
            except CheckFailure as failure:
                outcomes.append({"failed": str(failure)})
                break
            except BaseException as error:
                outcomes.append({"failed": f"{type(error).__name__}: {error}"})
                break
        write(folder, name, {"outcomes": outcomes}, strict=False)

    for index, step in enumerate(program["steps"]):
        if index in skip:
            continue
        mark(f"begin {index}")
        if step["kind"] in ("cell", "solution", "student"):
            if step.get("source", "").strip():
                shell.run_cell(step["source"], store_history=False)
        else:
            for call in step["calls"]:
                if call["id"] in skip_calls:
                    continue
                mark(f"call {call['id']}")
                try:
                    answer(call)
                except BaseException as error:
                    write(folder, f"result-{call['id']}",
                          {"failed": f"{type(error).__name__}: {error}"}, strict=False)
        mark(f"end {index}")
    mark("done -")
    progress.close()
    sys.stdout.flush()
    os._exit(0)  # never wait for threads or atexit handlers the student's code left behind


if __name__ == "__main__":
    main()
