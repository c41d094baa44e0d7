"""One supervisor per record store: a lock the operating system drops when its holder dies.

Two supervisors driving the same batch would both send commands and both
journal them. ``flexctl run`` and ``flexctl resume`` take this lock (an
exclusive ``flock`` on ``<store>.lock``) before they touch a batch; the kernel
releases it when the process ends however it ends (SIGKILL, power loss of the
process), so a resume after a crash never waits for a stale lease.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flexctl.record.store import RecordError


class StoreBusy(RecordError):
    """Another live supervisor holds the store."""


@contextmanager
def supervisor_lock(db: Path) -> Iterator[None]:
    """Hold the store's supervisor lock for the block; StoreBusy if another process has it."""
    path = db.with_name(db.name + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise StoreBusy(
                f"{db}: another supervisor (pid {holder}) is running a batch from this store; "
                "only one may"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock
