"""Recording results: the gradebook, ``autograded/``, ``feedback/`` and the reports.

Only the coordinating process of ``python -m course_utils grade`` writes here, one
submission at a time, as each finishes: the gradebook entry, the autograded notebook (its
outputs made inert first: :mod:`inert`), the feedback HTML, and the two reports
(``OUTPUT/<assignment>.csv`` and ``.json``), rewritten whole after every submission so that a
batch stopped half-way keeps everything it graded (``--resume`` then grades only the rest).

The submission time stored in the gradebook is the instructor's: when the notebook reached
this machine (:func:`course.received_time`). A student's ``timestamp.txt`` is only a claim: it
is kept in the report beside that time, and flagged (``timestamp_mismatch``) when the two
disagree by more than the tolerance.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nbformat

from course_utils.tools.grading import inert
from course_utils.tools.grading import submission as submissions
from course_utils.tools.grading.safefile import read_regular


def _utc(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def claimed_time(folder: Path | None) -> float | None:
    """The time a student's ``timestamp.txt`` claims (read without trusting the file)."""
    if folder is None:
        return None
    try:
        text = read_regular(folder / "timestamp.txt", 200).decode("utf-8", "replace").strip()
    except OSError:
        return None
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(text[:100]).replace(tzinfo=datetime.timezone.utc).timestamp()
    except Exception:
        return None


def notebook_digest(path: Path | None) -> str | None:
    """sha256 of a submitted notebook (how ``--resume`` knows that it changed)."""
    if path is None:
        return None
    try:
        return hashlib.sha256(read_regular(path, 64 << 20)).hexdigest()
    except OSError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def result_from_report(assignment: str, student: str, entry: dict) -> submissions.Result:
    """A result as the JSON report holds it (for ``--resume``)."""
    result = submissions.Result(assignment, student, entry["status"], list(entry["reasons"]),
                                list(entry["details"]), seconds=dict(entry.get("seconds", {})))
    for name, cell in entry.get("cells", {}).items():
        result.cells[name] = submissions.CellResult(**cell)
    return result


class Recorder:
    """Writes results into the course (gradebook, autograded/, feedback/) and the reports."""

    def __init__(self, course: Path, output: Path, feedback: bool,
                 timestamp_tolerance: float = 600.0):
        self.course, self.output, self.feedback = course, output, feedback
        self.tolerance = timestamp_tolerance
        self.db_url = f"sqlite:///{course / 'gradebook.db'}"
        self.results: dict[str, dict[str, submissions.Result]] = {}
        self.meta: dict[str, dict[str, dict[str, Any]]] = {}  # submission facts, by student
        self.rows: dict[str, dict[str, dict[str, tuple[float | None, bool]]]] = {}
        self.feedback_errors: list[str] = []
        self._converter = None

    # --- what an earlier run recorded (--resume) ------------------------------------------

    def previous(self, assignment: str) -> dict[str, dict]:
        """The JSON report of the last run of ``assignment`` (empty when there is none)."""
        path = self.output / f"{assignment}.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return report if isinstance(report, dict) else {}

    def keep(self, assignment: str, student: str, entry: dict) -> None:
        """Take an earlier run's result of ``student`` as this run's (not graded again)."""
        self.results.setdefault(assignment, {})[student] = result_from_report(assignment,
                                                                              student, entry)
        self.meta.setdefault(assignment, {})[student] = {
            k: entry.get(k) for k in ("notebook_sha256", "received", "claimed")}
        self._refresh_row(assignment, student)

    # --- one result ---------------------------------------------------------------------------

    def record(self, result: submissions.Result, entry) -> None:
        import warnings

        with warnings.catch_warnings():  # SQLAlchemy's warnings about nbgrader's sessions
            warnings.simplefilter("ignore")
            self._record(result, entry)
        self.write_reports(result.assignment, final=False)

    def _record(self, result: submissions.Result, entry) -> None:
        from nbgrader.api import Gradebook
        from nbgrader.preprocessors import SaveAutoGrades

        assignment, student = result.assignment, result.student
        self.results.setdefault(assignment, {})[student] = result
        received, claimed = entry.received, claimed_time(entry.folder)
        self.meta.setdefault(assignment, {})[student] = {
            "notebook_sha256": getattr(entry, "digest", None), "received": _utc(received),
            "claimed": _utc(claimed)}
        if claimed is not None and received is not None and \
                abs(claimed - received) > self.tolerance:
            result.flag("timestamp_mismatch",
                        f"timestamp.txt claims {_utc(claimed)}, but the submission was "
                        f"received at {_utc(received)}: the time received is recorded")
            if result.status == "graded":
                result.status = "flagged"
        autograded = self.course / "autograded" / student / assignment
        if autograded.exists():
            shutil.rmtree(autograded)
        with Gradebook(self.db_url) as gradebook:
            gradebook.update_or_create_student(student)
            when = {"timestamp": datetime.datetime.fromtimestamp(received, datetime.timezone.utc)
                    .replace(tzinfo=None)} if received is not None else {}
            gradebook.update_or_create_submission(assignment, student, **when)
        if result.notebook is not None:
            autograded.mkdir(parents=True)
            notebook = inert.notebook(nbformat.reads(result.notebook, as_version=4))
            resources = {"nbgrader": {"notebook": assignment, "assignment": assignment,
                                      "student": student, "db_url": self.db_url}}
            SaveAutoGrades().preprocess(notebook, resources)
            nbformat.write(notebook, autograded / f"{assignment}.ipynb")
        with Gradebook(self.db_url) as gradebook:
            for grade_id, cell in result.cells.items():
                try:
                    grade = gradebook.find_grade(grade_id, assignment, assignment, student)
                except Exception:
                    continue
                if cell.kind == "test" or result.status == "failed":
                    grade.auto_score = cell.score if cell.score is not None else 0.0
                    grade.needs_manual_grade = grade.manual_score is not None
            gradebook.db.commit()
        if self.feedback and result.notebook is not None:
            self.write_feedback(assignment, student)
        elif result.notebook is None:  # no stale feedback from an earlier run
            shutil.rmtree(self.course / "feedback" / student / assignment, ignore_errors=True)
        self._refresh_row(assignment, student)

    def write_feedback(self, assignment: str, student: str) -> None:
        """nbgrader's feedback HTML (``feedback/<student>/<assignment>/``), with HTML in the
        student's Markdown and outputs sanitised (``HTMLExporter.sanitize_html``)."""
        try:
            converter = self.converter()
            converter.coursedir.assignment_id = assignment
            converter.coursedir.student_id = student
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                converter.start()
        except Exception as error:
            self.feedback_errors.append(f"{student}: {type(error).__name__}: {error}")

    def converter(self):
        if self._converter is None:
            from nbgrader.converters import GenerateFeedback
            from nbgrader.coursedir import CourseDirectory
            from traitlets.config import Config
            from traitlets.config.loader import PyFileConfigLoader

            config = PyFileConfigLoader("nbgrader_config.py", path=str(self.course)).load_config()
            config.HTMLExporter.template_name = "feedback"
            config.HTMLExporter.sanitize_html = True
            config.Application.log_level = "ERROR"
            coursedir = CourseDirectory(config=config, root=str(self.course))
            self._converter = GenerateFeedback(coursedir=coursedir, config=config)
            self._converter.force = True
            self._converter.update_config(Config({"GenerateFeedback": {"force": True}}))
        return self._converter

    # --- the reports --------------------------------------------------------------------------

    def _refresh_row(self, assignment: str, student: str) -> None:
        """Read ``student``'s scores back from the gradebook (hand grades included)."""
        from nbgrader.api import Gradebook

        result = self.results[assignment][student]
        row: dict[str, tuple[float | None, bool]] = {}
        with Gradebook(self.db_url) as gradebook:
            for name in result.cells:
                try:
                    grade = gradebook.find_grade(name, assignment, assignment, student)
                    row[name] = (grade.score, bool(grade.needs_manual_grade))
                except Exception:
                    row[name] = (None, False)
        self.rows.setdefault(assignment, {})[student] = row

    def write_reports(self, assignment: str, final: bool = True) -> tuple[Path, Path]:
        """``OUTPUT/<assignment>.csv`` (scores from the gradebook, hand grades included) and
        ``OUTPUT/<assignment>.json`` (every decision, with its reasons). Written after each
        submission (``final=False``: from the rows read then) and at the end (every row read
        again)."""
        self.output.mkdir(parents=True, exist_ok=True)
        results = sorted(self.results.get(assignment, {}).values(), key=lambda r: r.student)
        if final:
            for result in results:
                self._refresh_row(assignment, result.student)
        csv_path = self.output / f"{assignment}.csv"
        json_path = self.output / f"{assignment}.json"
        cells = list(results[0].cells) if results else []
        for result in results:
            cells += [c for c in result.cells if c not in cells]
        maxima = {name: cell.max_score for result in results
                  for name, cell in result.cells.items()}
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["student", "status", "reasons"] +
                        [f"{c} ({maxima.get(c, 0):g})" for c in cells] +
                        ["autograded", "autograded max", "total", "total max",
                         "to grade by hand"])
        for result in results:
            row, auto, total, to_grade = [], 0.0, 0.0, []
            scores = self.rows.get(assignment, {}).get(result.student, {})
            for name in cells:
                score, pending = scores.get(name, (None, False))
                cell = result.cells.get(name)
                if pending:
                    to_grade.append(name)
                row.append("" if score is None or pending else f"{score:g}")
                total += float(score or 0) if not pending else 0.0
                if cell is not None and cell.kind == "test":
                    auto += float(score or 0)
            writer.writerow([result.student, result.status, " ".join(result.reasons)] + row +
                            [f"{auto:g}", f"{result.max_score:g}", f"{total:g}",
                             f"{sum(maxima.values()):g}", " ".join(to_grade)])
        _write_atomic(csv_path, text.getvalue())
        meta = self.meta.get(assignment, {})
        report = {result.student: {
            "status": result.status, "reasons": result.reasons, "details": result.details,
            "score": result.score, "max_score": result.max_score, "seconds": result.seconds,
            "cells": {name: asdict(cell) for name, cell in result.cells.items()},
            **meta.get(result.student, {}),
        } for result in results}
        _write_atomic(json_path, json.dumps(report, indent=1, sort_keys=True) + "\n")
        return csv_path, json_path
