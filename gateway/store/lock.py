"""The data-folder lock: a data folder belongs to one gateway process.

The lifespan (and ``make up``, before it builds or starts anything) takes an exclusive,
non-blocking ``flock`` on ``<data_dir>/.lock``: a second gateway *process* on the same
folder fails to start with :class:`DataDirInUseError` instead of removing the first one's
half-written files and re-running its ``running`` jobs. The lock is re-entrant within a
process (``make up`` holds it across the app's lifespan; tests may run apps one after
another) and the kernel drops it when the process dies, so a killed gateway leaves no
stale lock behind. The file itself stays (deleting a lock file races with its next user);
it holds the owner's PID for the error message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from pathlib import Path

from ultramn.errors import UserInputError

#: Name of the lock file inside the data folder.
LOCK_NAME = ".lock"


class DataDirInUseError(UserInputError):
    """Another gateway process holds the data folder."""


_registry_lock = threading.Lock()
#: resolved lock path -> (file descriptor, holders in this process)
_held: dict[Path, tuple[int, int]] = {}


class DataDirLock:
    """The exclusive lock on one data folder (``acquire`` / ``release``, or ``with``)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = (data_dir / LOCK_NAME).resolve()
        self._acquired = False

    def acquire(self) -> DataDirLock:
        """Take the lock (or share this process's hold on it); :class:`DataDirInUseError` when another process has it."""
        if self._acquired:
            return self
        with _registry_lock:
            if self.path in _held:
                fd, count = _held[self.path]
                _held[self.path] = (fd, count + 1)
                self._acquired = True
                return self
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise DataDirInUseError(
                    f"data folder {self.data_dir} is in use by another gateway{f' (pid {owner})' if owner else ''}; "
                    "stop it, or give this one its own folder with ULTRAMN_DATA_DIR"
                ) from None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _held[self.path] = (fd, 1)
            self._acquired = True
        return self

    def release(self) -> None:
        """Drop this holder; the lock is freed when the process's last holder releases it."""
        if not self._acquired:
            return
        self._acquired = False
        with _registry_lock:
            fd, count = _held[self.path]
            if count > 1:
                _held[self.path] = (fd, count - 1)
                return
            del _held[self.path]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor of the open file releases the flock

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
