"""One process at a time in a run folder: an OS file lock held for the life of a run.

``train_run`` holds ``<run folder>/.lock`` (``fcntl.flock``, exclusive) from before it reads the
folder until it returns or raises. The kernel releases a flock when its file is closed, so the
lock goes with the process however it ends (an exception, ``kill -9``, a crash): a lock file
left by a killed process is free again and the next run takes it over. The file holds the
holder's pid and command, so a second process is told which one to wait for; the pid is
information only, the flock is the lock.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["LOCK_FILE", "RunFolderBusy", "RunFolderLock", "hold_run_folder", "locking_run_folder"]

logger = logging.getLogger(__name__)
LOCK_FILE = ".lock"

Function = TypeVar("Function", bound=Callable[..., Any])


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder (its pid is in the message)."""


class RunFolderLock:
    """The exclusive lock of one run folder (a context manager; not re-entrant)."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self._created_folder = False

    def acquire(self) -> RunFolderLock:
        """Take the lock, or raise :class:`RunFolderBusy` naming the holder's pid."""
        self._created_folder = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the umask applies
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, command = _read_holder(fd)
                os.close(fd)
                raise RunFolderBusy(f"run folder {self.run_dir} is in use by process {pid} ({command}); wait for "
                                    "it to finish or stop it, or choose another run folder") from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file as we opened it (see release): take the new one
        previous, _ = _read_holder(fd)
        if previous not in ("unknown", str(os.getpid())):
            logger.info("taking over %s from process %s, which has ended", self.path, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv)[:500]}\n".encode(errors="backslashreplace"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go (closing the file releases the flock). A folder this lock created and in
        which nothing else was written is removed, so a run refused early leaves nothing behind."""
        if self._fd is None:
            return
        if self._created_folder and [p.name for p in self.run_dir.iterdir()] == [LOCK_FILE]:
            self.path.unlink()  # still holding the flock: a process that opened it meanwhile retries
            try:
                self.run_dir.rmdir()
            except OSError:  # something arrived meanwhile: it stays
                pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one unlinked by its previous holder)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> tuple[str, str]:
    """The pid and command recorded in a lock file (``unknown`` where it holds none)."""
    pid, _, command = os.pread(fd, 600, 0).decode(errors="replace").strip().partition(" ")
    return pid or "unknown", command or "command unknown"


def hold_run_folder(run_dir: str | os.PathLike[str]) -> RunFolderLock:
    """The lock of ``run_dir``, to use in a ``with`` block."""
    return RunFolderLock(run_dir)


def locking_run_folder(run_dir_of: Callable[..., str | os.PathLike[str]]) -> Callable[[Function], Function]:
    """Decorate a function so that it runs holding the lock of the run folder ``run_dir_of``
    returns for the same arguments (e.g. ``train_run``'s ``settings.run_dir``)."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with hold_run_folder(run_dir_of(*args, **kwargs)):
                return function(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate
