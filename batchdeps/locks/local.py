"""Machine-local locks: POSIX record locks on one file shared by every run on the machine.

A task's lease is a write lock on one byte of `<lock dir>/locks`, at an offset drawn from a
64-bit hash of its task id. Taking and giving it back are one fcntl() call each: no file is
created or removed per task. The kernel drops a process's record locks when it dies, so a
crashed run never leaves a task locked, and locks are not inherited by forked workers.

Record locks belong to a process, not to a file descriptor, and never conflict within one
process; an in-process table therefore keeps two holders in one process apart, and the
lock file stays open for the life of the process (closing any descriptor of it would drop
every lock the process holds on it).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import struct
import tempfile
import threading

from ..errors import LeaseLostError, LockError
from ..procinfo import current_pid, hostname
from .base import Lease

LOCK_DIR_ENV = "BATCHDEPS_LOCK_DIR"
LOCK_FILE_NAME = "locks"
_OFFSET_MASK = (1 << 62) - 1  # stays inside a signed 64-bit off_t
_FLOCK = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (Linux, 64-bit)


def default_lock_dir() -> str:
    """$BATCHDEPS_LOCK_DIR, else a per-user folder in the system temp dir."""
    return os.environ.get(LOCK_DIR_ENV) or os.path.join(
        tempfile.gettempdir(), f"batchdeps-locks-{os.getuid()}"
    )


def key_offset(key: str) -> int:
    """The byte of the lock file that stands for `key`."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _OFFSET_MASK


class _ProcessTable:
    """This process's open lock files and the bytes it holds in them."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.files: dict[str, int] = {}
        self.held: set[tuple[str, int]] = set()
        self.mutex = threading.Lock()


_table = _ProcessTable()


def _process_table() -> _ProcessTable:
    global _table
    if _table.pid != current_pid():  # a forked child holds none of its parent's locks
        _table = _ProcessTable()
    return _table


class LocalLockProvider:
    """Task leases and resource slots as record locks on one shared file."""

    def __init__(self, lock_dir: str | None = None) -> None:
        self.per_user = not lock_dir and not os.environ.get(LOCK_DIR_ENV)
        self.lock_dir = lock_dir or default_lock_dir()
        self.path = os.path.join(self.lock_dir, LOCK_FILE_NAME)
        self._held: set[Lease] = set()
        self._host = hostname()

    def start(self) -> None:
        try:
            os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
            self._check_folder()
            self._fd()
        except OSError as exc:
            raise LockError(f"cannot use lock folder {self.lock_dir}: {exc.strerror}") from exc

    def _check_folder(self) -> None:
        """Refuse a lock folder another user could take locks in, or swap for their own.

        The per-user folder in the shared temp dir must be this user's own directory (not a
        symlink) and writable by nobody else: someone who made it first, or may write in
        it, could hold every task's lock or replace the lock file. A folder named in config
        or $BATCHDEPS_LOCK_DIR may be shared on purpose; only writable-by-everyone is
        refused there.
        """
        info = os.lstat(self.lock_dir)
        problem = ""
        if not stat.S_ISDIR(info.st_mode):
            problem = "it is not a folder (a symlink?)"
        elif self.per_user and info.st_uid != os.getuid():
            problem = f"it belongs to user id {info.st_uid}, not to you ({os.getuid()})"
        elif self.per_user and info.st_mode & 0o022:
            problem = f"others may write in it (mode {stat.S_IMODE(info.st_mode):o})"
        elif info.st_mode & 0o002 and info.st_uid != os.getuid():
            problem = (f"everyone may write in it (mode {stat.S_IMODE(info.st_mode):o}) "
                       "and it is not yours")
        if problem:
            raise LockError(f"refusing the lock folder {self.lock_dir}: {problem}. Remove it "
                            f"(a new one is made with mode 700), or set {LOCK_DIR_ENV} or "
                            "[batchdeps] lock_dir to a folder of your own")

    def _fd(self) -> int:
        table = _process_table()
        with table.mutex:
            fd = table.files.get(self.path)
            if fd is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                table.files[self.path] = fd
        return fd

    def _try_lock(self, key: str) -> Lease | None:
        offset = key_offset(key)
        table = _process_table()
        slot = (self.path, offset)
        with table.mutex:
            if slot in table.held:
                return None
            table.held.add(slot)
            fd = table.files.get(self.path)  # open once per process (`_fd`)
        try:
            fcntl.lockf(fd if fd is not None else self._fd(), fcntl.LOCK_EX | fcntl.LOCK_NB,
                        1, offset)
        except OSError as exc:
            with table.mutex:
                table.held.discard(slot)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return None
            raise LockError(f"cannot lock {key} in {self.path}: {exc.strerror}") from exc
        lease = Lease(key=key, handle=offset)
        self._held.add(lease)
        return lease

    def try_acquire(self, key: str) -> Lease | None:
        return self._try_lock(key)

    def try_acquire_many(self, keys: list[str]) -> list[Lease | None]:
        return [self._try_lock(key) for key in keys]

    def acquire_ahead(self, keys: list[str]) -> None:
        pass  # a lock here is one fcntl call when it is wanted: nothing to win ahead

    def try_acquire_resource(self, name: str, slots: int) -> Lease | None:
        for slot in range(slots):
            lease = self._try_lock(f"resource:{name}:{slot}")
            if lease is not None:
                return lease
        return None

    def holder(self, key: str) -> str:
        """'process PID on HOST' of the process holding `key` ('' when free or unknown)."""
        offset = key_offset(key)
        if (self.path, offset) in _process_table().held:
            return f"process {os.getpid()} on {self._host} (this run)"
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        try:
            answer = fcntl.fcntl(self._fd(), fcntl.F_GETLK, query)
        except OSError:
            return ""
        lock_type, _, _, _, pid = struct.unpack(_FLOCK, answer)
        if lock_type == fcntl.F_UNLCK or pid <= 0:
            return ""
        return f"process {pid} on {self._host}"

    def check(self, lease: Lease) -> None:
        if lease not in self._held:
            raise LeaseLostError(f"lock for {lease.key} is no longer held")

    def release(self, lease: Lease) -> None:
        if lease not in self._held:
            return
        self._held.discard(lease)
        table = _process_table()
        fd = table.files.get(self.path)  # open while a lease of it is held (`_fd`)
        try:
            fcntl.lockf(fd if fd is not None else self._fd(), fcntl.LOCK_UN, 1, lease.handle)
        finally:
            with table.mutex:
                table.held.discard((self.path, lease.handle))

    def close(self) -> None:
        for lease in list(self._held):
            self.release(lease)
