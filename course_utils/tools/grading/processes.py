"""Who runs a jail's processes, and what they use: leased user ids, process trees, memory, disk.

When grading runs as root, each submission's processes run as a user id leased for it alone
(``UidLease``, from a range that is nobody's account), so that all of them can be found
(``user_processes``) and killed (``kill_user``) however they daemonise. The watchdog measures
them with ``descendants``, ``resident_bytes`` and ``folder_bytes``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

#: The grading users: uids nobody has, one leased to each jail while it runs (root only).
UID_BASE = 1_660_000_000
UID_COUNT = 4096
_LEASES = Path(tempfile.gettempdir()) / "course-utils-grading-uids"


class UidLease:
    """A user id that no other jail on this machine holds (a file lock per uid)."""

    def __init__(self) -> None:
        _LEASES.mkdir(mode=0o700, exist_ok=True)
        start = (os.getpid() * 7919) % UID_COUNT
        for offset in range(UID_COUNT):
            uid = UID_BASE + (start + offset) % UID_COUNT
            handle = open(_LEASES / f"{uid}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self.uid, self._handle = uid, handle
            kill_user(uid)  # leftovers of a run that crashed
            return
        raise RuntimeError("no free grading user id")

    def release(self) -> None:
        if self._handle is not None:
            kill_user(self.uid)
            self._handle.close()
            self._handle = None


def _status(pid: str) -> tuple[int, bool] | None:
    """(real uid, is a zombie) of a process, from /proc/PID/status (no lock, never blocks)."""
    uid, zombie = None, False
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"State:"):
                    zombie = line.split()[1] in (b"Z", b"X")
                elif line.startswith(b"Uid:"):
                    uid = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        return None
    return (uid, zombie) if uid is not None else None


def user_processes(uid: int) -> list[int]:
    """Live processes whose real user is ``uid`` (zombies hold nothing but a pid: left out)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            status = _status(pid)
            if status is not None and status[0] == uid and not status[1]:
                found.append(int(pid))
    return found


def descendants(root: int) -> list[int]:
    """Live processes below ``root`` (its children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if fields[0] in (b"Z", b"X"):
                continue
            ppid = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_user(uid: int, seconds: float = 20.0) -> bool:
    """SIGKILL every process of ``uid`` until none is left (a fork bomb keeps forking);
    False if some are still alive after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pids = user_processes(uid)
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    return not user_processes(uid)


def resident_bytes(pids: Iterable[int]) -> int:
    """Memory the processes hold, not counting files (shared libraries): their proportional
    share of anonymous and shared memory, so that pages shared after a fork count once."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle.read().splitlines()
                              if b":" in line)
            total += sum(int(fields[key].split()[0]) * 1024 for key in (b"Pss_Anon", b"Pss_Shmem")
                         if key in fields)
        except (OSError, ValueError, IndexError):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/statm", "rb") as handle:
                    total += int(handle.read().split()[1]) * page
    return total


def folder_bytes(folders: Iterable[Path], max_entries: int = 50_000) -> int:
    """Bytes in ``folders`` (not following links); huge when there are too many entries."""
    total, entries = 0, 0
    todo = [str(f) for f in folders]
    while todo:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as scan:
            for entry in scan:
                entries += 1
                if entries > max_entries:
                    return 1 << 62
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total
