"""Machine-local locks: one flock()ed file per task id in a folder shared by all runs.

The kernel drops a flock when its process dies, so a crashed run never leaves a task
locked. Lock files are removed on release; a taker re-checks after flock() that the file
it locked is still the one at the path (the usual unlink race).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile

from ..errors import LeaseLostError, LockError
from .base import Lease

LOCK_DIR_ENV = "BATCHDEPS_LOCK_DIR"


def default_lock_dir() -> str:
    """$BATCHDEPS_LOCK_DIR, else a per-user folder in the system temp dir."""
    return os.environ.get(LOCK_DIR_ENV) or os.path.join(
        tempfile.gettempdir(), f"batchdeps-locks-{os.getuid()}"
    )


class LocalLockProvider:
    """Task leases as flock()ed files; resource slots as a small set of such files."""

    def __init__(self, lock_dir: str | None = None) -> None:
        self.lock_dir = lock_dir or default_lock_dir()
        self._held: set[Lease] = set()
        self._me = f"{socket.gethostname()}:{os.getpid()}"

    def start(self) -> None:
        try:
            os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise LockError(f"cannot create lock folder {self.lock_dir}: {exc.strerror}") from exc

    def _path(self, key: str) -> str:
        digest = hashlib.sha1(key.encode()).hexdigest()[:24]
        return os.path.join(self.lock_dir, digest + ".lock")

    def _try_lock(self, path: str, key: str) -> Lease | None:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise LockError(f"cannot open lock file {path}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                status = os.fstat(fd)
                same = status.st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                # Only a file a crashed holder left behind has text to clear. Truncating a
                # fresh, empty one would cost a disk write per task: ext4 flushes a
                # truncated file's data when it is closed (auto_da_alloc).
                if status.st_size:
                    os.ftruncate(fd, 0)
                os.write(fd, f"{self._me} {key}\n".encode())
                lease = Lease(key=key, handle=(fd, path))
                self._held.add(lease)
                return lease
            os.close(fd)  # the holder released and removed it between open and flock

    def try_acquire(self, key: str) -> Lease | None:
        return self._try_lock(self._path(key), key)

    def try_acquire_resource(self, name: str, slots: int) -> Lease | None:
        for slot in range(slots):
            key = f"resource:{name}:{slot}"
            lease = self._try_lock(self._path(key), key)
            if lease is not None:
                return lease
        return None

    def holder(self, key: str) -> str:
        try:
            with open(self._path(key)) as handle:
                text = handle.read().strip()
        except OSError:
            return ""
        return f"process {text.split(' ', 1)[0]}" if text else ""

    def check(self, lease: Lease) -> None:
        if lease not in self._held:
            raise LeaseLostError(f"lock for {lease.key} is no longer held")

    def release(self, lease: Lease) -> None:
        if lease not in self._held:
            return
        self._held.discard(lease)
        fd, path = lease.handle
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.close(fd)

    def close(self) -> None:
        for lease in list(self._held):
            self.release(lease)
