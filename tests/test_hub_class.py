"""A class on a real JupyterHub with nbgrader's exchange, end to end (deploy/hub/).

The test starts ``jupyterhub`` with the course's configuration (``deploy/hub``) on this
machine, with real Linux users: an instructor and two students. Everything goes through the
Hub and the single-user servers as a browser would: each user logs in with a password, gets
a token from the Hub's REST API, starts their server; the instructor releases 00_welcome with
formgrader; each student fetches it with nbgrader's Assignments API, edits it through the
contents API (one correctly, one with a wrong answer) and submits; the instructor collects
with formgrader and grades with ``python -m course_utils grade``, as their own user. The
scores must be right, and a student must reach neither the other's work nor the instructor's.

Needs root (to create users), bubblewrap, ``configurable-http-proxy`` (npm) and JupyterHub
(the ``hub`` extra), and an environment every user may run; skipped without them, except on
CI. It removes its users, their homes and its processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.tools.grading.nbgrader import make_course
from course_utils.tools.grading.sandbox import find_bwrap
from tests.notebook_code import ROOT

requests = pytest.importorskip("requests")

NAME = "00_welcome"
COURSE_ID = "multimodal"  # deploy/hub/jupyter/common/nbgrader_config.py


# --- what the test needs -------------------------------------------------------------------------


def missing_requirements() -> list[str]:
    missing = []
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        missing.append("root (to create the class's users)")
    if shutil.which("configurable-http-proxy") is None:
        missing.append("configurable-http-proxy (npm install -g configurable-http-proxy)")
    if not (Path(sys.prefix) / "bin" / "jupyterhub-singleuser").exists():
        missing.append("JupyterHub (the hub extra)")
    if find_bwrap() is None:
        missing.append("bubblewrap")
    return missing


def needs(missing: list[str]) -> None:
    if missing:
        if os.environ.get("CI"):
            pytest.fail("the hub test needs " + ", ".join(missing))
        pytest.skip("needs " + ", ".join(missing))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_user(user: str, *command: str, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``command`` as ``user`` (their groups, their HOME), the way their kernel would."""
    return subprocess.run(["runuser", "-u", user, "--", "env", f"HOME=/home/{user}",
                           f"PATH={Path(sys.executable).parent}:/usr/bin:/bin", *command],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --- the class's users ---------------------------------------------------------------------------


class Users:
    """Linux users made for this test, with random passwords; ``remove`` deletes them."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.passwords: dict[str, str] = {}

    def add(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "-K",
                        "HOME_MODE=0700", name], check=True, capture_output=True)
        self.passwords[name] = secrets.token_urlsafe(12)
        subprocess.run(["chpasswd"], input=f"{name}:{self.passwords[name]}", text=True,
                       check=True, capture_output=True)
        os.chmod(f"/home/{name}", 0o700)  # as deploy/hub asks (HOME_MODE 0700)
        return name

    def remove(self) -> None:
        for name in self.passwords:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", "--remove", name], capture_output=True)


class Hub:
    """``jupyterhub -f deploy/hub/jupyterhub_config.py`` in its own process group."""

    def __init__(self, folder: Path, instructors: list[str], students: list[str]):
        self.url = f"http://127.0.0.1:{free_port()}"
        state = folder / "state"
        state.mkdir(mode=0o700)
        config = state / "test_config.py"
        # The deployment's own configuration, with the ports this test may use.
        deployment = ROOT / "deploy" / "hub" / "jupyterhub_config.py"
        config.write_text(
            "c = get_config()  # noqa: F821\n"
            f"load_subconfig({str(deployment)!r})  # noqa: F821\n"
            f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{free_port()}'\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'\n")
        self.log = folder / "jupyterhub.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(config)],
                cwd=state, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, COURSE_ENV=sys.prefix,
                         COURSE_INSTRUCTORS=",".join(instructors),
                         COURSE_STUDENTS=",".join(students),
                         NBGRADER_EXCHANGE=str(folder / "exchange"),
                         COURSE_HUB_STATE=str(state), COURSE_HUB_URL=self.url))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("JupyterHub stopped:\n" + self.log.read_text()[-3000:])
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{self.url}/hub/api", timeout=5).ok:
                    return
            time.sleep(0.5)
        raise RuntimeError("JupyterHub did not answer:\n" + self.log.read_text()[-3000:])

    def close(self) -> None:
        """Stop the Hub (it stops the servers it spawned), then anything left of its group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Browser:
    """One user at the Hub: logs in with the password form, asks the Hub's REST API for a
    token and for their server, then talks to the server with that token."""

    def __init__(self, hub: Hub, name: str, password: str):
        self.hub, self.name = hub, name
        self.session = requests.Session()
        login = self.session.get(f"{hub.url}/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.text)
        form = {"username": name, "password": password}
        if xsrf:
            form["_xsrf"] = xsrf.group(1)
        answer = self.session.post(f"{hub.url}/hub/login?next=", data=form, timeout=60,
                                   allow_redirects=False)
        assert answer.status_code == 302, f"{name} could not log in: {answer.status_code}"
        hub_xsrf = self.session.cookies.get("_xsrf", path="/hub/") or form.get("_xsrf", "")
        token = self.session.post(f"{hub.url}/hub/api/users/{name}/tokens",
                                  json={"note": "the hub test", "expires_in": 3600},
                                  headers={"X-XSRFToken": hub_xsrf}, timeout=30)
        assert token.status_code == 201, token.text
        self.token = token.json()["token"]

    def hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.hub.url}/hub/api/{path}", timeout=60,
                                headers={"Authorization": f"token {self.token}"}, **kwargs)

    def start_server(self, timeout: float = 180) -> None:
        started = self.hub_api("POST", f"users/{self.name}/server")
        assert started.status_code in (201, 202), started.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.hub_api("GET", f"users/{self.name}").json()["servers"].get("", {})
            if server.get("ready"):
                return
            time.sleep(1)
        raise AssertionError(f"{self.name}'s server did not start:\n"
                             + self.hub.log.read_text()[-3000:])

    def server(self, method: str, path: str, of: str | None = None,
               **kwargs) -> requests.Response:
        """A request to ``/user/<of>/<path>`` (``of``: this user's own server by default)."""
        return requests.request(method, f"{self.hub.url}/user/{of or self.name}/{path}",
                                headers={"Authorization": f"token {self.token}"},
                                timeout=300, allow_redirects=False, **kwargs)


# --- the class -----------------------------------------------------------------------------------


def answers_of(notebook: nbformat.NotebookNode) -> dict[str, str]:
    return {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in notebook.cells
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")}


def complete(notebook: dict, answers: dict[str, str]) -> dict:
    """The student's edits: each answer cell's source replaced, as typing it in would."""
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return notebook


@pytest.fixture(scope="module")
def hub_class():
    """The whole class, from release to grades; yields what the assertions need."""
    needs(missing_requirements())
    folder = Path(tempfile.mkdtemp(prefix="course-hub-", dir="/tmp"))
    folder.chmod(0o755)
    exchange = folder / "exchange"
    exchange.mkdir()
    exchange.chmod(0o1777)  # as deploy/hub asks: everyone writes, nbgrader sets the rest
    users = Users("mfs" + secrets.token_hex(2))
    hub = None
    try:
        teacher, ada, bob = users.add("teacher"), users.add("ada"), users.add("bob")
        runs = as_user(teacher, sys.executable, "-c", "import course_utils, nbgrader")
        needs([] if runs.returncode == 0 else
              [f"an environment every user may run ({sys.executable}: {runs.stderr.strip()})"])
        course = make_course(Path(f"/home/{teacher}/course"), ROOT, [NAME])
        subprocess.run(["chown", "-R", f"{teacher}:{teacher}", str(course)], check=True)
        hub = Hub(folder, [teacher], [ada, bob])
        browsers = {name: Browser(hub, name, users.passwords[name]) for name in (teacher, ada, bob)}
        for browser in browsers.values():
            browser.start_server()

        # 1. The instructor releases the assignment with formgrader.
        released = browsers[teacher].server("POST", f"formgrader/api/assignment/{NAME}/release")
        assert released.ok and released.json()["success"], released.text

        # 2. Each student fetches, completes and submits it.
        solution = nbformat.read(ROOT / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)
        right = answers_of(solution)
        wrong = {**right, "to_chw_float": "def to_chw_float(image):\n    return image\n"}
        path = f"api/contents/{NAME}/{NAME}.ipynb"
        for student, answers in ((ada, right), (bob, wrong)):
            assignment = {"course_id": COURSE_ID, "assignment_id": NAME}
            fetched = browsers[student].server("POST", "assignments/fetch", data=assignment)
            assert fetched.ok, fetched.text
            notebook = browsers[student].server("GET", path).json()["content"]
            saved = browsers[student].server("PUT", path, json={
                "type": "notebook", "format": "json", "content": complete(notebook, answers)})
            assert saved.ok, saved.text
            submitted = browsers[student].server("POST", "assignments/submit", data=assignment)
            assert submitted.ok and "success\": false" not in submitted.text, submitted.text

        # 3. What one student can reach of the other's and the instructor's.
        reach = {
            "ada's server": browsers[bob].server("GET", "api/contents", of=ada).status_code,
            "the instructor's server": browsers[bob].server("GET", "api/contents",
                                                            of=teacher).status_code,
            "formgrader in their own server": browsers[bob].server(
                "GET", "formgrader/api/assignments").status_code,
            "the exchange's inbound": as_user(bob, "ls", str(exchange / COURSE_ID / "inbound")),
            "ada's home": as_user(bob, "cat", f"/home/{ada}/{NAME}/{NAME}.ipynb"),
            "the solutions": as_user(bob, "cat", f"{course}/solutions/{NAME}/{NAME}.ipynb"),
        }

        # 4. The instructor collects with formgrader and grades as their own user.
        collected = browsers[teacher].server("POST", f"formgrader/api/assignment/{NAME}/collect")
        assert collected.ok and collected.json()["success"], collected.text
        grading = as_user(teacher, sys.executable, "-m", "course_utils", "grade", "submitted",
                          "--assignment", NAME, "--no-progress", cwd=course, timeout=900)
        assert grading.returncode == 0, grading.stdout[-3000:] + grading.stderr[-3000:]
        report = json.loads((course / "grades" / f"{NAME}.json").read_text())
        yield {"report": report, "reach": reach, "students": (ada, bob), "course": course,
               "collected": sorted(p.name for p in (course / "submitted").iterdir())}
    finally:
        if hub is not None:
            hub.close()
        users.remove()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.notebook
def test_the_instructor_collects_both_submissions_through_the_exchange(hub_class):
    assert hub_class["collected"] == sorted(hub_class["students"])


@pytest.mark.notebook
def test_the_scores_are_right(hub_class):
    ada, bob = hub_class["students"]
    report = hub_class["report"]
    assert report[ada]["status"] == report[bob]["status"] == "graded"
    for test in ("test_to_chw_float", "test_rgb_to_grayscale"):
        assert report[ada]["cells"][test]["score"] == report[ada]["cells"][test]["max_score"] > 0
    assert report[bob]["cells"]["test_to_chw_float"]["score"] == 0
    assert report[bob]["cells"]["test_rgb_to_grayscale"]["score"] > 0


@pytest.mark.notebook
def test_a_student_reaches_neither_the_others_work_nor_the_instructors(hub_class):
    reach = hub_class["reach"]
    assert reach["ada's server"] in (403, 404), reach
    assert reach["the instructor's server"] in (403, 404), reach
    assert reach["formgrader in their own server"] == 404, reach
    for what in ("the exchange's inbound", "ada's home", "the solutions"):
        assert reach[what].returncode != 0 and "Permission denied" in reach[what].stderr, \
            (what, reach[what].stdout[:300], reach[what].stderr)
