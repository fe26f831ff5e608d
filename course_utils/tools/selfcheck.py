"""``python -m course_utils check NOTEBOOK``: score a notebook as nbgrader would, without it.

1. Run the notebook top to bottom in a fresh kernel, in the notebook's folder, going on past
   errors, with a per-cell time limit (an interrupted cell fails, as in nbgrader).
2. Score every graded test cell by nbgrader's own rule (``nbgrader.utils.determine_grade``):
   its points when it ran without an error and wrote nothing to stderr, else 0.
3. List the written answers: a blank one scores 0; the others are graded by hand.
4. List every other code cell that raised an error (a lesson cell, a "try it" cell, an
   exercise cell): a notebook that does not run top to bottom is not ready to submit, even
   with every test passing, so the command then exits non-zero.

Only the notebook's own tests run (any ``### BEGIN HIDDEN TESTS`` block is removed first, as
nbgrader does for students): when you submit, hidden tests check the same exercises on other
inputs, so full marks here are necessary, not sufficient.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

#: Seconds a cell may run (nbgrader_config.py's ``Execute.timeout``).
CELL_TIMEOUT = 900.0


@dataclass
class Row:
    """One graded cell of the notebook."""

    grade_id: str
    kind: str  # "test" (autograded code) or "answer" (graded by hand)
    score: float | None  # None: graded by hand
    max_score: float
    note: str  # one line: what the test printed, or why it scored 0


@dataclass
class CellError:
    """An ungraded code cell that raised."""

    number: int  # 1-based, counting code cells as JupyterLab's "Run All" meets them
    first_line: str
    error: str  # "AttributeError: ..."


@dataclass
class Report:
    notebook: Path
    rows: list[Row]
    executed: nbformat.NotebookNode  # the notebook with its outputs
    errors: list[CellError] = field(default_factory=list)

    @property
    def tests(self) -> list[Row]:
        return [row for row in self.rows if row.kind == "test"]

    @property
    def score(self) -> float:
        return sum(row.score or 0 for row in self.tests)

    @property
    def max_score(self) -> float:
        return sum(row.max_score for row in self.tests)


def visible_tests_only(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` without its hidden tests (nbgrader's ClearHiddenTests, in place)."""
    from nbgrader.preprocessors import ClearHiddenTests

    return ClearHiddenTests().preprocess(notebook, {})[0]


def _failed(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("error", ename="NotRun", evalue=text,
                                  traceback=[f"NotRun: {text}"])


def execute(path: Path, cell_timeout: float = CELL_TIMEOUT) -> nbformat.NotebookNode:
    """Step 1: the notebook at ``path``, visible tests only, run in a fresh kernel.

    When the kernel dies (a crash, ``os._exit``) or stops answering, the cell it was running
    and every code cell after it get an error output, so their tests score 0.
    """
    from course_utils.tools.notebook_run import execute_cells, notebook_client
    from course_utils.tools.paths import nbgrader_env

    path = Path(path)
    notebook = visible_tests_only(nbformat.read(path, as_version=4))
    client = notebook_client(notebook, folder=path.parent.resolve(),
                             cell_timeout=int(cell_timeout), allow_errors=True)
    with tempfile.TemporaryFile() as kernel_log:  # the kernel's own chatter, not the cells'
        try:
            with client.setup_kernel(env=nbgrader_env(), stderr=kernel_log):
                failure = execute_cells(client, notebook)
        except Exception as error:
            failure = (0, error)
        if failure is not None:  # the kernel died, stopped answering or never started
            index, error = failure
            reason = f"{type(error).__name__}: {str(error).strip()[:300]}"
            for later, cell in enumerate(notebook.cells[index:], start=index):
                if cell.cell_type == "code":
                    where = "while this cell ran" if later == index else "before this cell"
                    cell.outputs.append(_failed(f"the kernel stopped {where} ({reason})"))
    return notebook


def _note(cell: nbformat.NotebookNode, score: float, max_score: float) -> str:
    """One line about a test cell's outcome: its error, or its last printed line."""
    for output in cell.outputs:
        if output.output_type == "error":
            ename, evalue = output.get("ename", "Error"), str(output.get("evalue", ""))
            first = evalue.strip().splitlines()[0] if evalue.strip() else ""
            if ename == "KeyboardInterrupt":
                return "interrupted: it ran past the per-cell time limit"
            if ename in ("CheckFailure", "NotRun"):
                return first
            return f"{ename}: {first}".rstrip(": ")
        if output.output_type == "stream" and output.name == "stderr":
            return "it wrote to stderr, which nbgrader scores 0: " + output.text.strip()[:80]
    printed = [line for output in cell.outputs if output.output_type == "stream"
               for line in output.text.splitlines() if line.strip()]
    if score == max_score:  # what the cell graded: its "✓" lines (figure, threshold, verdict)
        verdicts = [line.strip() for line in printed if line.strip().startswith("✓")]
        return "; ".join(verdicts) if verdicts else printed[-1].strip() if printed else "passed"
    return f"partial credit: {score:g} of {max_score:g}"


def score(notebook: nbformat.NotebookNode) -> list[Row]:
    """Steps 2 and 3: the graded cells of an executed notebook, scored as nbgrader does."""
    from nbgrader.utils import determine_grade

    from course_utils.tools.grading.plan import nbgrader_info

    rows = []
    for cell in notebook.cells:
        info = nbgrader_info(cell)
        if not (info.get("grade") and info.get("grade_id")):
            continue
        got, maximum = determine_grade(cell)
        if cell.cell_type == "code" and not info.get("solution"):
            rows.append(Row(info["grade_id"], "test", got, maximum, _note(cell, got, maximum)))
        else:
            note = "left blank: 0 points" if got == 0 else "graded by hand"
            rows.append(Row(info["grade_id"], "answer", got, maximum, note))
    return rows


def cell_errors(notebook: nbformat.NotebookNode) -> list[CellError]:
    """Step 4: the code cells, other than test cells, whose run ended in an error."""
    from course_utils.tools.grading.plan import nbgrader_info

    found, number = [], 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        info = nbgrader_info(cell)
        if info.get("grade") and not info.get("solution"):
            continue  # a test cell: scored above
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                lines = [line for line in cell.source.splitlines()
                         if line.strip() and not line.lstrip().startswith("#")]
                evalue = str(output.get("evalue", "")).strip().splitlines()
                found.append(CellError(number, (lines[0] if lines else "")[:70],
                                       f"{output.get('ename', 'Error')}: "
                                       f"{evalue[0][:200] if evalue else ''}".rstrip(": ")))
                break
    return found


def check(path: Path, cell_timeout: float = CELL_TIMEOUT) -> Report:
    """Run and score the notebook at ``path``."""
    executed = execute(Path(path), cell_timeout)
    return Report(Path(path), score(executed), executed, cell_errors(executed))


def first_failure(report: Report) -> str | None:
    """The whole message of the first failing test (its case and hint included), or None."""
    for row in report.tests:
        if row.score == row.max_score:
            continue
        cell = next(c for c in report.executed.cells
                    if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == row.grade_id)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors and errors[0].get("ename") == "CheckFailure":
            return str(errors[0].get("evalue", "")).strip()
        return row.note
    return None


def table(report: Report) -> str:
    """The report as plain text: one graded cell a line, then the first failure in full."""
    name = max([len(row.grade_id) for row in report.rows] + [len("cell")])
    lines = [f"Self-check of {report.notebook} (visible tests only)", "",
             f"  {'cell':<{name}}  points  result"]
    for row in report.rows:
        got = "-" if row.score is None else f"{row.score:g}"
        points = f"{got:>2} / {row.max_score:g}"
        lines.append(f"  {row.grade_id:<{name}}  {points:<6}  {row.note}")
    by_hand = sum(row.max_score for row in report.rows if row.kind == "answer")
    lines += ["", f"  autograded: {report.score:g} of {report.max_score:g} points"
                  + (f"; written answers ({by_hand:g} points) are graded by hand"
                     if by_hand else "")]
    if report.errors:
        shown = report.errors[:12]
        lines += ["", f"The notebook does not run top to bottom: {len(report.errors)} other "
                      f"cell(s) raised an error. Fix them before you submit (Kernel > Restart "
                      f"Kernel and Run All Cells shows them):"]
        lines += [f"  code cell {e.number} ({e.first_line}): {e.error}" for e in shown]
        if len(report.errors) > len(shown):
            lines.append(f"  ... and {len(report.errors) - len(shown)} more")
    failure = first_failure(report)
    if failure is not None:
        lines += ["", "The first failing test says:", *(f"  {line}" for line in
                                                        failure.splitlines()),
                  "", "Fix that exercise in the notebook, run its test cell, then check again."]
    else:
        lines += ["  Every visible test passes; when you submit, hidden tests check the same "
                  "exercises", "  on other inputs."]
    return "\n".join(lines)


def main(path: Path, cell_timeout: float = CELL_TIMEOUT) -> int:
    """Print the table; 0 when every autograded test passes and no other cell raised, 1
    otherwise, 2 without a notebook."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".ipynb":
        print(f"no notebook at {path}: give the path of an .ipynb file, e.g. "
              f"notebooks/00_welcome/00_welcome.ipynb")
        return 2
    print(f"Running {path} in a fresh kernel (this takes as long as Run All)...", flush=True)
    report = check(path, cell_timeout)
    print(table(report))
    passed = report.tests and report.score == report.max_score and not report.errors
    return 0 if passed else 1
