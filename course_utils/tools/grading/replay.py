"""Which cells of a submission the re-check replays, and in what order.

The plan (``plan.py``) lists the instructor's cells: the locked cells (replayed from the
instructor's source), the exercise cells (the student's source) and the test cells (whose
check calls are answered). A student often writes code of their own outside the exercise
cells: a constant, a helper function, an import. The kernel ran it, so the re-check must run
it too, or the student's exercise fails there for want of it.

:func:`steps` walks the submission's code cells in the submission's order and keeps

1. every cell of the plan (locked, exercise and test cells);
2. every other code cell (the student's own, or a released "try it", picture or
   experiment cell) that binds a name which a kept cell reads, repeated until nothing more
   is needed: the helper of an exercise, the helper of that helper, and nothing else
   (wherever they stand: a function reads its globals when it is called).

So the re-check costs what it did (pictures, experiments and demonstrations that no graded
code reads are not replayed), and it runs only code the kernel ran, in the sandbox: replaying
more cells gives a submission no way to raise its score, since every output is still judged
in the trusted process.
"""

from __future__ import annotations

import symtable
from dataclasses import replace

from course_utils.tools.grading.plan import Plan, Step, free_names, nbgrader_info


def python_source(source: str) -> str | None:
    """A cell as plain Python (IPython's magics and shell escapes translated); None when it
    is not valid Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        code = TransformerManager().transform_cell(source)
        compile(code, "<cell>", "exec")
    except (SyntaxError, ValueError, TypeError):
        return None
    return code


def names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds at its top level, names it reads from the notebook's namespace)."""
    code = python_source(source)
    if code is None:
        return set(), set()
    table = symtable.symtable(code, "<cell>", "exec")
    bound = {s.get_name() for s in table.get_symbols()
             if s.is_assigned() or s.is_imported() or s.is_namespace()}
    read = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    todo = list(table.get_children())
    while todo:  # functions and classes: the globals they read
        child = todo.pop()
        todo.extend(child.get_children())
        read |= {s.get_name() for s in child.get_symbols()
                 if s.is_referenced() and s.is_global() and not s.is_declared_global()}
        read |= {s.get_name() for s in child.get_symbols() if s.is_declared_global()}
    return bound, read - bound


def steps(plan: Plan, notebook) -> list[Step]:
    """The steps the re-check runs for ``notebook`` (restored by ``sanitize.restore``)."""
    planned = {s.grade_id: s for s in plan.steps}
    cells: list[tuple[Step, bool]] = []  # (step, planned?)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        grade_id = nbgrader_info(cell).get("grade_id")
        step = planned.get(grade_id)
        if step is None:
            cells.append((Step("student", f"cell {index}", source=cell.source), False))
        elif step.kind == "solution":
            cells.append((replace(step, source=cell.source), True))
        else:
            cells.append((step, True))
    info = [_reads_and_binds(step) for step, _ in cells]
    kept = [is_planned for _, is_planned in cells]
    needed = set().union(*(info[i][0] for i, keep in enumerate(kept) if keep))
    changed = True
    while changed:  # a function reads its globals when called: position does not matter
        changed = False
        for position in range(len(cells)):
            if not kept[position] and info[position][1] & needed:
                kept[position] = changed = True
                needed |= info[position][0]
    return [step for (step, _), keep in zip(cells, kept, strict=True) if keep]


def _reads_and_binds(step: Step) -> tuple[set[str], set[str]]:
    if step.kind == "test":
        read = set().union(*(free_names(c.argument) for c in step.calls)) if step.calls \
            else set()
        return read, set()
    bound, read = names(step.source)
    return read, bound
