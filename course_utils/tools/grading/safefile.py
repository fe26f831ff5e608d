"""Reading and copying files that a submission could have written, without trusting them.

Every file the trusted grader opens in a folder a student's code can write (the jail's
folders, the re-check's exchange folder, the submission's own folder) goes through
:func:`read_regular`: it is opened without following links and without blocking (a FIFO, a
socket or a device in place of the file cannot stall the grader), it must be a regular file,
and it is read only up to a size budget. :func:`copy_regular` copies such a file the same way.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeFile(OSError):
    """The path is missing, a link, not a regular file, or larger than allowed."""


def _open(path: Path | str) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        failure = UnsafeFile(f"cannot open {Path(path).name}: {error.strerror}")
        failure.errno = error.errno  # ENOENT: there is no such file
        raise failure from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{Path(path).name} is not a regular file")
    return fd, info


def read_regular(path: Path | str, max_bytes: int, *, tail: bool = False) -> bytes:
    """The bytes of the regular file ``path`` (never a link, a FIFO or a device).

    A file larger than ``max_bytes`` raises :class:`UnsafeFile`, unless ``tail``: then its last
    ``max_bytes`` bytes are returned.
    """
    fd, info = _open(path)
    try:
        size = info.st_size
        if size > max_bytes:
            if not tail:
                raise UnsafeFile(f"{Path(path).name} is larger than the budget of {max_bytes} "
                                 "bytes")
            os.lseek(fd, size - max_bytes, os.SEEK_SET)
            size = max_bytes
        chunks, left = [], size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def copy_regular(source: Path | str, target: Path | str, max_bytes: int) -> int:
    """Copy the regular file ``source`` to the new file ``target``; return its size.

    ``source`` is opened as in :func:`read_regular`; ``target`` must not exist (it is created
    without following a link left in its place).
    """
    fd, info = _open(source)
    try:
        if info.st_size > max_bytes:
            raise UnsafeFile(f"{Path(source).name} is larger than the budget of {max_bytes} "
                             "bytes")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        copied = 0
        with os.fdopen(out, "wb") as handle:
            while copied < info.st_size:
                chunk = os.read(fd, min(info.st_size - copied, 1 << 24))
                if not chunk:
                    break
                handle.write(chunk)
                copied += len(chunk)
        return copied
    finally:
        os.close(fd)
