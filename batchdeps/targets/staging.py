"""Staged writes: a write goes to a temporary file and becomes visible only when committed.

While the runner runs a task it opens a *staging* scope: closed writes are then held back and
committed together after `run()` returned and the lease was re-checked, so a `run()` that
raises leaves no output at all, and a worker that lost its lease commits nothing.

Imports go one way: target.py (the interface) <- journal.py <- commit.py <- this module
<- base.py (the target model) <- the backends.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from .. import logs
from ..procinfo import current_pid
from .commit import commit_together
from .target import PendingWrite, Target

if TYPE_CHECKING:
    from typing_extensions import Self

log = logs.get("batchdeps.targets")

TMP_DIR_NAME = ".batchdeps-tmp"
WRITE_BUFFER = 64 * 1024


class Staging:
    """Writes closed during one task attempt, committed or discarded together.

    It travels from a forked worker to the runner as it is (PendingWrite keeps its target,
    and a target its storage options), so the runner commits each write where it belongs.
    """

    def __init__(self) -> None:
        self.pending: dict[str, PendingWrite] = {}

    def __contains__(self, url: object) -> bool:
        return url in self.pending

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, write: PendingWrite) -> None:
        previous = self.pending.pop(write.target.url, None)
        if previous is not None:
            previous.discard()
        self.pending[write.target.url] = write

    def drop(self, url: str) -> None:
        """Forget and remove the staged write of `url`, if there is one (`remove()`)."""
        write = self.pending.pop(url, None)
        if write is not None:
            write.discard()

    def staged_path(self, url: str) -> str | None:
        write = self.pending.get(url)
        return write.tmp_path if write is not None else None

    def commit(self, outputs: Sequence[Target] = ()) -> None:
        """Make every staged write visible; on a failure, nothing of this attempt stays.

        `outputs` are the task's declared outputs, in order (see commit.py for why).
        Raises TargetError when a write could not be committed.
        """
        writes = list(self.pending.values())
        self.pending.clear()
        commit_together(writes, outputs)

    def hand_over(self) -> None:
        """Stage every write where another machine can commit it (see `hand_over_tmp`);
        on a failure every write is discarded and the error raised."""
        done: dict[str, PendingWrite] = {}
        try:
            for url, write in self.pending.items():
                done[url] = write.hand_over()
        except BaseException:
            for url, write in self.pending.items():
                with contextlib.suppress(Exception):
                    (done.get(url) or write).discard()
            self.pending.clear()
            raise
        self.pending = done

    def discard(self) -> None:
        """Remove every staged temporary file (a failure to remove one is only logged)."""
        writes = list(self.pending.values())
        self.pending.clear()
        for write in writes:
            try:
                write.discard()
            except Exception as exc:  # noqa: BLE001 - never let cleanup hide the real error
                log.warning("could not remove temporary file %s: %s", write.tmp_path, exc)


_staging: contextvars.ContextVar[Staging | None] = contextvars.ContextVar(
    "batchdeps_staging", default=None
)


#: Scopes open in this process. Threads that run() starts (a pool of uploads) do not inherit
#: context variables, so their writes would bypass staging and stay behind when run() raises.
_open_scopes: list[Staging] = []


class staging_scope:  # noqa: N801 - used as the context manager function it replaced
    """Hold back commits of writes closed inside the block (the runner uses this).

    `staging` continues an attempt's scope (a `run()` resumed after a yield). A class, not
    a generator under `contextlib.contextmanager`: it is entered once per attempt, and the
    generator's frame and wrapper cost more than the two calls it makes.
    """

    __slots__ = ("staging", "_token")
    _token: contextvars.Token[Staging | None]

    def __init__(self, staging: Staging | None = None) -> None:
        self.staging = staging if staging is not None else Staging()

    def __enter__(self) -> Staging:
        staging = self.staging
        self._token = _staging.set(staging)
        _open_scopes.append(staging)
        return staging

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _open_scopes.remove(self.staging)
        _staging.reset(self._token)


def current_staging() -> Staging | None:
    """This context's scope; in a thread without one, the only scope open in this process.

    One attempt at a time runs in the runner's process and in each forked worker, so a
    thread a task started writes into that attempt's scope. With several scopes open at
    once (builds from several threads of one program) a thread is not guessed into one.
    """
    staging = _staging.get()
    if staging is None:
        scopes = _open_scopes[:]
        if len(scopes) == 1:
            return scopes[0]
    return staging


class AtomicFile:
    """Wraps a temporary file; on a clean close the write is staged or committed."""

    def __init__(self, handle: IO[Any], pending: PendingWrite) -> None:
        self._handle = handle
        self._pending = pending
        self._finished = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._handle)

    @property
    def closed(self) -> bool:
        return self._finished

    def write(self, data: Any) -> int:
        return self._handle.write(data)  # type: ignore[no-any-return]

    def writelines(self, lines: Iterable[Any]) -> None:
        self._handle.writelines(lines)

    def close(self) -> None:
        """Finish the write: staged for the runner, or moved into place at once."""
        if self._finished:
            return
        self._finished = True
        try:
            self._handle.close()
        except BaseException:
            self._pending.discard()
            raise
        pending, self._pending = self._pending, None  # type: ignore[assignment]
        staging = current_staging()  # the closed file no longer keeps its target alive
        if staging is not None:
            staging.add(pending)
        else:
            pending.commit()

    def abort(self) -> None:
        """Drop the write: nothing becomes visible."""
        if self._finished:
            return
        self._finished = True
        try:
            self._handle.close()
        finally:
            self._pending.discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # An unclosed writer must never publish: an abandoned write is dropped. (A closed
        # one, every write of a task that returned, has nothing to drop: no suppress
        # block made for it.)
        try:
            if self._finished:
                return
            self.abort()
        except Exception:  # noqa: BLE001, S110 - a finalizer never raises
            pass


_counter = itertools.count()
_PROCESS_TAG = ""
_TAG_PID = 0


def _tmp_suffix() -> str:
    """`<host>-<pid>.<random>.<n>`: unique, and says whose file it is (see `writer_is_dead`)."""
    global _PROCESS_TAG, _TAG_PID
    pid = current_pid()
    if pid != _TAG_PID:
        import secrets  # (here: a run with nothing to write never needs it)

        _PROCESS_TAG = f"{host_tag()}-{pid}.{secrets.token_hex(3)}"
        _TAG_PID = pid
    return f"{_PROCESS_TAG}.{next(_counter)}"


_HOST_TAG = ""


def host_tag() -> str:
    """A short, dot-free tag of this machine's name."""
    global _HOST_TAG
    if not _HOST_TAG:
        import hashlib  # (here: OpenSSL's library loads with it)

        _HOST_TAG = hashlib.sha1(os.uname().nodename.encode()).hexdigest()[:8]
    return _HOST_TAG


def writer_is_dead(writer: str, age: float) -> bool:
    """Whether the writer of a temporary file (`<host>-<pid>`) is provably gone.

    On this machine: its process no longer exists. Another machine's (or an older
    version's, with no host): the file is older than `STALE_AFTER` seconds.
    """
    host, _, pid = writer.rpartition("-")
    if host == host_tag() and pid.isdigit() and int(pid) > 0:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False  # exists, owned by someone else
        return False
    return age > STALE_AFTER


#: Seconds after which a temporary file of another machine's writer counts as abandoned.
STALE_AFTER = 24 * 3600.0
