"""What the grader re-checks outside the kernel: the check calls of an assignment.

The plan is read from the instructor's notebook (hidden tests included), never from a
submission. It lists, in notebook order, the steps the re-check runner replays in its fresh
sandboxed process:

- ``cell``: a locked read-only code cell (the set-up cell, ``helpers_*`` cells, locked training
  cells), run from the instructor's source;
- ``solution``: an exercise cell, run from the student's submission;
- ``test``: a test cell, whose check calls are answered as data.

Unmarked cells (explanations' code, "try it" cells, pictures) are not replayed. The rules a
notebook must follow for this to work are in ``docs/instructors.md`` ("Rules for notebook
authors"); :func:`build` reports every cell that breaks them.

A test cell may hold only calls of checks imported in a locked cell::

    checks.conv2d(conv2d)                                  # a Check: the student's function
    checks.cnn_accuracy(model, seed=2026, hidden=True)     # a QualityCheck: the trained model
    checks.at_least("held-out accuracy", accuracy, 0.95)   # a number the locked cells compute

with literal keyword arguments, plus comments and the ``### BEGIN/END HIDDEN TESTS`` markers.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"


@dataclass(frozen=True)
class Call:
    """One check call of a test cell."""

    id: str  # "test_conv2d.1": the cell's grade_id and the call's position in it
    cell: str
    hidden: bool  # inside the hidden-tests block
    target: str  # dotted name of the check, e.g. "course_utils.checks.welcome.to_chw_float"
    kind: str  # "check", "quality" or "at_least"
    argument: str  # the expression whose value is checked (evaluated in the runner)
    seed: int = 0
    hidden_cases: bool = False
    options: tuple[tuple[str, Any], ...] = ()  # at_least: name, minimum, hint, unit
    source: str = ""

    @property
    def label(self) -> str:
        name = self.target.rsplit(".", 1)[-1]
        return f"{name} ({'hidden' if self.hidden else 'visible'} tests)"


@dataclass
class Step:
    kind: str  # "cell", "solution" or "test"
    grade_id: str
    source: str = ""  # the instructor's source ("cell" steps)
    calls: list[Call] = field(default_factory=list)


@dataclass
class Plan:
    assignment: str
    steps: list[Step]
    points: dict[str, float]  # grade_id -> points, for every autograded test cell
    problems: list[str]

    @property
    def calls(self) -> dict[str, Call]:
        return {call.id: call for step in self.steps for call in step.calls}

    def test_calls(self, grade_id: str) -> list[Call]:
        return [c for s in self.steps if s.kind == "test" and s.grade_id == grade_id
                for c in s.calls]


def nbgrader_info(cell: Any) -> dict:
    info = cell.get("metadata", {}).get("nbgrader", {})
    return info if isinstance(info, dict) else {}


def hidden_lines(source: str) -> set[int]:
    """1-based numbers of the lines inside ``### BEGIN/END HIDDEN TESTS`` blocks."""
    hidden, inside = set(), False
    for number, line in enumerate(source.split("\n"), start=1):
        if BEGIN_HIDDEN in line:
            inside = True
        elif END_HIDDEN in line:
            inside = False
        elif inside:
            hidden.add(number)
    return hidden


def imports(sources: list[str]) -> dict[str, str]:
    """Names bound by the import statements of ``sources``: name -> dotted target."""
    names: dict[str, str] = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        names[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name != "*":
                        names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def resolve(target: str) -> Any:
    """The object a dotted name refers to, e.g. ``course_utils.checks.diffusion.q_sample``.

    Walked one name at a time: an attribute wins over a submodule of the same name (a check
    package re-exports ``q_sample``, the check, from its file ``q_sample.py``); a submodule is
    imported only when no attribute has that name.
    """
    parts = target.split(".")
    value: Any = importlib.import_module(parts[0])
    for depth, name in enumerate(parts[1:], start=2):
        try:
            value = getattr(value, name)
        except AttributeError:
            try:
                value = importlib.import_module(".".join(parts[:depth]))
            except ImportError:
                raise ImportError(f"cannot import {target}") from None
    return value


def classify(value: Any) -> str | None:
    from course_utils.checks.core import Check, QualityCheck, at_least

    if isinstance(value, Check):
        return "check"
    if isinstance(value, QualityCheck):
        return "quality"
    if value is at_least:
        return "at_least"
    return None


def literal(node: ast.AST, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{what} must be a literal") from None


def parse_test_cell(grade_id: str, source: str, names: dict[str, str]) -> tuple[list[Call],
                                                                                list[str]]:
    """The check calls of one test cell, and the rules it breaks."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return [], [f"test cell {grade_id}: syntax error: {error}"]
    hidden = hidden_lines(source)
    calls, problems = [], []
    for node in tree.body:
        where = f"test cell {grade_id}, line {node.lineno}"
        text = ast.get_source_segment(source, node) or ""
        if isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(
                node.value, ast.Constant) and isinstance(node.value.value, str)):
            continue
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            problems.append(f"{where}: `{text[:60]}` is not a check call")
            continue
        call = node.value
        name = dotted(call.func)
        head = name.split(".")[0] if name else None
        if head not in names:
            problems.append(f"{where}: `{text[:60]}` does not call a check imported in a "
                            "locked cell")
            continue
        target = names[head] + name[len(head):]
        try:
            kind = classify(resolve(target))
        except (ImportError, AttributeError) as error:
            problems.append(f"{where}: cannot find {target}: {error}")
            continue
        if kind is None:
            problems.append(f"{where}: {target} is not a Check, a QualityCheck or at_least")
            continue
        try:
            keywords = {k.arg: k.value for k in call.keywords}
            if None in keywords:
                raise ValueError("**kwargs are not allowed")
            if kind == "at_least":
                if len(call.args) < 3:
                    raise ValueError("at_least needs (name, value, minimum)")
                options = {"name": literal(call.args[0], "the name"),
                           "minimum": literal(call.args[2], "the minimum")}
                if len(call.args) > 3:
                    options["hint"] = literal(call.args[3], "the hint")
                for key in ("hint", "unit"):
                    if key in keywords:
                        options[key] = literal(keywords.pop(key), key)
                argument_node, seed, hidden_cases = call.args[1], 0, False
                if set(keywords) or len(call.args) > 4:
                    raise ValueError("unexpected arguments")
            else:
                if len(call.args) != 1:
                    raise ValueError("a check takes one positional argument")
                argument_node, options = call.args[0], {}
                seed = literal(keywords.pop("seed"), "seed") if "seed" in keywords else 0
                hidden_cases = bool(literal(keywords.pop("hidden"), "hidden")) \
                    if "hidden" in keywords else False
                if keywords or type(seed) is not int:
                    raise ValueError("only seed=<int> and hidden=<bool> may follow")
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        argument = ast.get_source_segment(source, argument_node) or ""
        calls.append(Call(
            id=f"{grade_id}.{len(calls)}", cell=grade_id,
            hidden=any(n in hidden for n in range(node.lineno, node.end_lineno + 1)),
            target=target, kind=kind, argument=argument, seed=seed, hidden_cases=hidden_cases,
            options=tuple(sorted(options.items())), source=text))
    if not calls and not problems:
        problems.append(f"test cell {grade_id}: no check call")
    return calls, problems


class _Bound(ast.NodeVisitor):
    """Names a cell binds at its top level (not inside functions, classes or lambdas)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.names.add(node.id)

    def visit_FunctionDef(self, node) -> None:
        self.names.add(node.name)

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Lambda(self, node) -> None:
        pass

    def visit_Import(self, node) -> None:
        for alias in node.names:
            self.names.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import


def bound_names(sources: list[str]) -> set[str]:
    found = _Bound()
    for source in sources:
        try:
            found.visit(ast.parse(source))
        except SyntaxError:
            continue
    return found.names


def free_names(expression: str) -> set[str]:
    """Names an expression reads (minus those its lambdas and comprehensions bind)."""
    tree = ast.parse(expression, mode="eval")
    inner = {a.arg for n in ast.walk(tree) if isinstance(n, ast.Lambda) for a in n.args.args}
    inner |= {t.id for n in ast.walk(tree) if isinstance(n, ast.comprehension)
              for t in ast.walk(n.target) if isinstance(t, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)} - inner


def build(notebook: nbformat.NotebookNode | Path | str, assignment: str = "") -> Plan:
    """The re-check plan of an instructor notebook (a path or a notebook)."""
    if not isinstance(notebook, nbformat.NotebookNode):
        path = Path(notebook)
        assignment = assignment or path.stem
        notebook = nbformat.read(path, as_version=4)
    locked_sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"
                      and nbgrader_info(cell).get("locked") and not nbgrader_info(cell).get(
                          "grade") and not nbgrader_info(cell).get("solution")]
    names = imports(locked_sources)
    steps: list[Step] = []
    points: dict[str, float] = {}
    problems: list[str] = []
    for cell in notebook.cells:
        info = nbgrader_info(cell)
        grade_id = info.get("grade_id")
        if cell.cell_type != "code" or not grade_id:
            continue
        if info.get("grade") and info.get("solution"):
            problems.append(f"cell {grade_id}: autograded answer cells (solution and graded) "
                            "are not supported; write a test cell")
        elif info.get("grade"):
            calls, found = parse_test_cell(grade_id, cell.source, names)
            problems += found
            points[grade_id] = float(info.get("points", 0))
            steps.append(Step("test", grade_id, calls=calls))
        elif info.get("solution"):
            steps.append(Step("solution", grade_id))
        elif info.get("locked"):
            steps.append(Step("cell", grade_id, source=cell.source))
    if not points:
        problems.append("the notebook has no autograded test cell")
    import builtins

    defined = set(dir(builtins))
    for step in steps:  # what each test may use: what the cells before it, in the plan, bind
        if step.kind == "test":
            for call in step.calls:
                missing = sorted(free_names(call.argument) - defined)
                if missing:
                    problems.append(
                        f"test cell {step.grade_id}: `{call.argument}` uses "
                        f"{', '.join(missing)}, which no set-up, read-only or exercise cell "
                        "before it defines (the re-check runs only those cells: make the "
                        "cell that defines it read-only)")
        else:
            source = step.source if step.kind == "cell" else next(
                (c.source for c in notebook.cells
                 if nbgrader_info(c).get("grade_id") == step.grade_id), "")
            defined |= bound_names([source])
    return Plan(assignment, steps, points, list(dict.fromkeys(problems)))
