"""One writer per output directory at a time."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from pipelines import layout
from pipelines.errors import OutputLockedError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `OUT/_curate/lock` for the run; a lock left by a dead process is taken over."""
    lock = layout.lock_file(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = lock.read_text().split()
            except (OSError, ValueError):
                host, pid = "", "0"
            if host == socket.gethostname() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise OutputLockedError(
                f"{out} is being written by another run (process {pid} on {host}); "
                f"wait for it, or delete {lock} if that run is gone"
            ) from None
        break
    with os.fdopen(fd, "w") as f:
        f.write(me)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
