"""Staged writes: a write goes to a temporary file and becomes visible only when committed.

While the runner runs a task it opens a *staging* scope: closed writes are then held back and
committed together after `run()` returned and the lease was re-checked, so a `run()` that
raises leaves no output at all, and a worker that lost its lease commits nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import secrets
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from ..procinfo import current_pid

if TYPE_CHECKING:
    from .base import Target

TMP_DIR_NAME = ".batchdeps-tmp"
WRITE_BUFFER = 64 * 1024


class Staging:
    """Writes closed during one task attempt, committed or discarded together."""

    def __init__(self) -> None:
        self.pending: dict[str, PendingWrite] = {}

    def add(self, write: PendingWrite) -> None:
        previous = self.pending.pop(write.target.url, None)
        if previous is not None:
            previous.discard()
        self.pending[write.target.url] = write

    def staged_path(self, url: str) -> str | None:
        write = self.pending.get(url)
        return write.tmp_path if write is not None else None

    def commit(self) -> None:
        """Make every staged write visible; stop at the first failure."""
        writes = list(self.pending.values())
        self.pending.clear()
        for index, write in enumerate(writes):
            try:
                write.commit()
            except BaseException:
                for rest in writes[index + 1 :]:
                    rest.discard()
                raise

    def discard(self) -> None:
        """Remove every staged temporary file."""
        writes = list(self.pending.values())
        self.pending.clear()
        for write in writes:
            write.discard()


_staging: contextvars.ContextVar[Staging | None] = contextvars.ContextVar(
    "batchdeps_staging", default=None
)


#: Scopes open in this process. Threads that run() starts (a pool of uploads) do not inherit
#: context variables, so their writes would bypass staging and stay behind when run() raises.
_open_scopes: list[Staging] = []


@contextlib.contextmanager
def staging_scope() -> Iterator[Staging]:
    """Hold back commits of writes closed inside the block (the runner uses this)."""
    staging = Staging()
    token = _staging.set(staging)
    _open_scopes.append(staging)
    try:
        yield staging
    finally:
        _open_scopes.remove(staging)
        _staging.reset(token)


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


class PendingWrite:
    """A finished temporary file waiting to be moved into place by its target."""

    __slots__ = ("target", "tmp_path")

    def __init__(self, target: Target, tmp_path: str) -> None:
        self.target = target
        self.tmp_path = tmp_path

    def commit(self) -> None:
        self.target.commit_tmp(self.tmp_path)

    def discard(self) -> None:
        self.target.discard_tmp(self.tmp_path)


class _AtomicFile:
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
        staging = current_staging()
        if staging is not None:
            staging.add(self._pending)
        else:
            self._pending.commit()

    def abort(self) -> None:
        """Drop the write: nothing becomes visible."""
        if self._finished:
            return
        self._finished = True
        try:
            self._handle.close()
        finally:
            self._pending.discard()

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # An unclosed writer must never publish: an abandoned write is dropped.
        with contextlib.suppress(Exception):
            self.abort()


_counter = itertools.count()
_PROCESS_TAG = ""


def _tmp_suffix() -> str:
    global _PROCESS_TAG
    pid = current_pid()
    if not _PROCESS_TAG.startswith(f"{pid}."):
        _PROCESS_TAG = f"{pid}.{secrets.token_hex(3)}"
    return f"{_PROCESS_TAG}.{next(_counter)}"


def _check_mode(mode: str) -> None:
    if mode not in ("r", "rb", "w", "wb"):
        raise ValueError(f"unsupported mode {mode!r}: use r, rb, w or wb")
