"""The sandbox around a submission's processes (course_utils.tools.grading.sandbox).

Each test starts a small jailed Python (no torch), so the file runs in seconds. Needs
bubblewrap (``apt-get install bubblewrap``): skipped without it, except on CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from course_utils.tools.grading import processes
from course_utils.tools.grading import sandbox as sandboxes
from course_utils.tools.grading.jail import Jail, Watchdog
from course_utils.tools.grading.sandbox import Limits, Sandbox, find_bwrap
from tests.notebook_code import ROOT

MiB = 1 << 20


@pytest.fixture(scope="module")
def sandbox():
    if find_bwrap() is None:
        if os.environ.get("CI"):
            pytest.fail("bubblewrap is missing: CI must `apt-get install -y bubblewrap`")
        pytest.skip("bubblewrap is not installed")
    return Sandbox.detect(forbidden=[ROOT / "solutions", ROOT / "nbgrader_config.py"])


def run(jail: Jail, code: str, timeout: float = 60, watch: bool = False, **kwargs):
    """Run ``code`` in a jailed Python; return (returncode, stdout, stderr)."""
    command = jail.command([jail.sandbox.python, "-c", code], **kwargs)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, **jail.popen_options())
    watchdog = Watchdog(jail, lambda: process.pid, time.monotonic() + timeout)
    if watch:
        watchdog.start()
    try:
        out, err = process.communicate(timeout=timeout + 30)
    finally:
        watchdog.stop()
        jail.cleanup(process.pid)
    return process.returncode, out, err


@pytest.fixture
def jail(sandbox, tmp_path):
    jail = Jail(sandbox, tmp_path / "jail", "00_welcome", Limits(memory=512 * MiB,
                                                                  disk=64 * MiB))
    yield jail
    jail.close()


def test_the_jail_sees_its_folder_and_python_but_not_the_course(jail, monkeypatch):
    code = f"""
import json, os, socket
import course_utils.tools.grading.exchange
def exists(p): return os.path.exists(p)
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1); net = "connected"
except OSError as error:
    net = type(error).__name__
print(json.dumps({{"uid": os.getuid(), "cwd": os.getcwd(), "env": sorted(os.environ),
    "course": [p for p in {[str(ROOT / n) for n in ('solutions', 'tests', 'course_utils',
                                                      'nbgrader_config.py', 'notebooks')]!r}
               if exists(p)], "net": net, "home": os.listdir(os.environ["HOME"]),
    "root": os.listdir({str(ROOT)!r}) if exists({str(ROOT)!r}) else [],
    "package": course_utils.__file__}}))
"""
    (jail.work / "mine.txt").write_text("the student's file")
    code_, out, err = run(jail, code)
    assert code_ == 0, err
    report = json.loads(out)
    assert report["cwd"] == "/home/student/00_welcome"
    assert report["course"] == [], "the repository is visible from the jail"
    assert set(report["root"]) <= {".venv"}  # at most the environment, when it lives there
    assert report["package"].startswith(sandboxes.PACKAGE_ROOT)
    assert report["net"] in ("ConnectionRefusedError", "OSError")  # its own, empty loopback
    assert not any(k.startswith(("NBGRADER", "GRADER", "CI", "PYTEST")) for k in report["env"])
    if os.geteuid() == 0:
        assert report["uid"] != 0


def test_no_process_of_the_grader_and_no_privilege_inside(jail):
    code = """
import os, subprocess
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print(open("/proc/self/status").read().split("NoNewPrivs:")[1].split()[0])
print(subprocess.run(["su", "-c", "id"], capture_output=True).returncode != 0)
"""
    code_, out, err = run(jail, code)
    assert code_ == 0, err
    pids, no_new_privs, su_fails = out.splitlines()
    assert max(json.loads(pids)) < 10  # a pid namespace of its own: only the jail's processes
    assert no_new_privs == "1" and su_fails == "True"


def test_memory_past_the_limit_raises_memory_error(jail):
    code = "x = bytearray(1 << 30)"  # 1 GiB > 512 MiB
    code_, out, err = run(jail, code)
    assert code_ != 0 and "MemoryError" in err


def test_a_fork_bomb_is_stopped_and_leaves_nothing_behind(jail):
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    begin = time.monotonic()
    run(jail, code, timeout=60, watch=True)
    assert jail.killed == "process_limit"
    assert time.monotonic() - begin < 50
    if jail.separate_user:
        assert processes.user_processes(jail.uid) == []


def test_the_deadline_and_the_disk_limit_are_enforced_from_outside(jail):
    run(jail, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "time.sleep(600)", timeout=2, watch=True)
    assert jail.killed == "timeout"
    jail.reset()
    run(jail, "import time\nwith open('big', 'wb') as f:\n"
              "    for _ in range(200):\n        f.write(b'x' * (1 << 20)); f.flush()\n"
              "time.sleep(600)", timeout=60, watch=True)
    assert jail.killed == "disk_limit"


def test_each_jail_has_its_own_user(sandbox, tmp_path):
    if not os.geteuid() == 0:
        pytest.skip("grading as a normal user runs jails as that user")
    first = Jail(sandbox, tmp_path / "a", "x", Limits())
    second = Jail(sandbox, tmp_path / "b", "x", Limits())
    try:
        assert first.uid != second.uid and 0 not in (first.uid, second.uid)
    finally:
        first.close()
        second.close()


def test_the_grade_command_refuses_to_run_without_a_sandbox(monkeypatch, tmp_path, capsys):
    from course_utils.tools import cli

    monkeypatch.setattr(sandboxes, "find_bwrap", lambda: None)
    code = cli.main(["grade", str(tmp_path), "--course", str(ROOT)])
    out = capsys.readouterr().out
    assert code == 2
    assert "No sandbox is available" in out and "--unsafe" in out
    assert "apt-get install bubblewrap" in out


def test_the_launcher_refuses_to_run_a_submission_as_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    launcher = ROOT / "course_utils" / "tools" / "grading" / "launch.py"
    result = subprocess.run([sys.executable, "-I", "-S", str(launcher), json.dumps(
        {"rlimits": {}, "uid": None}), "--", "/bin/true"], capture_output=True, text=True)
    assert result.returncode != 0 and "refusing" in result.stderr
