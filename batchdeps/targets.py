"""File targets on any fsspec filesystem, with honest existence checks and atomic writes.

Writes go to a temporary file and become visible only on a clean close. While the runner
runs a task it opens a *staging* scope: closed writes are then held back and committed
together after `run()` returned and the lease was re-checked, so a `run()` that raises
leaves no output at all, and a worker that lost its lease commits nothing.

Plain local paths use `os` directly (no fsspec import): that keeps start-up and the
per-target cost near the file system's own.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import secrets
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .errors import ConfigError, TargetCheckError, TargetError, TaskDefinitionError
from .procinfo import current_pid

TMP_DIR_NAME = ".batchdeps-tmp"
WRITE_BUFFER = 64 * 1024


class Target:
    """Something a task makes; subclasses say whether it exists and how to open it."""

    url: str

    def exists(self) -> bool:
        raise NotImplementedError

    def open(self, mode: str = "r") -> IO[Any]:
        raise NotImplementedError

    def cleanup_stale(self, fresh: bool = False) -> None:
        """Remove temporary files that a crashed writer of this target left behind.

        Called by the runner, holding the task's lock, before an attempt. `fresh` asks for
        a new look at the store; otherwise what was found when this run first looked may
        be used (stale files come from runs before this one).
        """

    def commit_tmp(self, tmp_path: str) -> None:
        """Move a finished temporary file into place, atomically."""
        raise NotImplementedError

    def discard_tmp(self, tmp_path: str) -> None:
        """Remove a temporary file that will not be committed."""
        raise NotImplementedError

    @classmethod
    def exists_many(cls, targets: list[Target]) -> list[bool]:
        """Existence of many targets of this class; subclasses may batch round trips."""
        return [target.exists() for target in targets]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.url == self.url  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.url)


# -- staging ---------------------------------------------------------------------------
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


class FileTarget(Target):
    """A file at `url`: a local path, `file://...`, `memory://...`, `s3://bucket/key`, ...

    `FileTarget(url)` gives a LocalTarget for local paths and an FsspecTarget otherwise.

    Args:
        url: where the file lives.
        storage: the Storage whose per-protocol options apply (default: the configured one).
        **storage_options: options for this target's filesystem, over the configured ones.
    """

    def __new__(cls, url: str, *, storage: Storage | None = None, **storage_options: Any) -> Any:
        if not isinstance(url, str) or not url:
            raise TypeError(f"FileTarget needs a non-empty URL string, got {url!r}")
        if cls is FileTarget:
            if url.startswith("s3://"):
                from .s3 import S3Target  # s3fs itself is imported only when used

                cls = S3Target
            else:
                local = "://" not in url or url.startswith("file://")
                cls = LocalTarget if local else FsspecTarget
        return super().__new__(cls)


# -- local files -----------------------------------------------------------------------
_made_dirs: set[str] = set()


class LocalTarget(FileTarget):
    """A file on the local disk, handled with `os` directly."""

    def __init__(self, url: str, *, storage: Storage | None = None, **storage_options: Any) -> None:
        path = url.removeprefix("file://")
        self.path = path  # relative paths stay relative: no getcwd() per target
        self.url = url

    def exists(self) -> bool:
        staging = current_staging()
        if staging is not None and staging.staged_path(self.url) is not None:
            return True
        try:
            os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise TargetCheckError(
                f"cannot check {self.url}: {exc.strerror or exc}"
            ) from exc
        return True

    def open(self, mode: str = "r") -> IO[Any]:
        _check_mode(mode)
        if "r" in mode:
            staging = current_staging()
            staged = staging.staged_path(self.url) if staging is not None else None
            try:
                return open(staged or self.path, mode)
            except OSError as exc:
                raise TargetError(f"cannot read {self.url}: {exc.strerror or exc}") from exc
        directory, base = os.path.split(self.path)
        tmp_dir = os.path.join(directory, TMP_DIR_NAME)
        if tmp_dir not in _made_dirs:
            try:
                os.makedirs(tmp_dir, exist_ok=True)
            except OSError as exc:
                raise TargetError(f"cannot write {self.url}: {exc.strerror or exc}") from exc
            _made_dirs.add(tmp_dir)
        tmp_path = os.path.join(tmp_dir, f"{base}.{_tmp_suffix()}")
        # An explicit buffer size spares open() its isatty() and block-size probes.
        try:
            handle = open(tmp_path, mode, buffering=WRITE_BUFFER)
        except FileNotFoundError:  # the folder was removed since we made it
            _made_dirs.discard(tmp_dir)
            os.makedirs(tmp_dir, exist_ok=True)
            handle = open(tmp_path, mode, buffering=WRITE_BUFFER)
        return _AtomicFile(handle, PendingWrite(self, tmp_path))  # type: ignore[return-value]

    def commit_tmp(self, tmp_path: str) -> None:
        try:
            os.replace(tmp_path, self.path)
        except OSError as exc:
            raise TargetError(f"cannot commit {self.url}: {exc.strerror or exc}") from exc

    def discard_tmp(self, tmp_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)

    def cleanup_stale(self, fresh: bool = False) -> None:
        directory, base = os.path.split(self.path)
        tmp_dir = os.path.join(directory, TMP_DIR_NAME)
        if fresh:
            entries = _stale_by_base(tmp_dir).get(base, [])
        else:  # one listing per folder per run, not one per task
            index = _stale_index.get(tmp_dir)
            if index is None:
                index = _stale_index[tmp_dir] = _stale_by_base(tmp_dir)
            entries = index.pop(base, [])
        for entry in entries:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(tmp_dir, entry))


#: temporary folder -> target name -> leftover temporary files, as first seen in this run
_stale_index: dict[str, dict[str, list[str]]] = {}


def forget_stale_files() -> None:
    """Start a new run: look at the temporary folders afresh."""
    _stale_index.clear()


def _stale_by_base(tmp_dir: str) -> dict[str, list[str]]:
    """The temporary files in `tmp_dir`, by the name of the target they were written for."""
    try:
        entries = os.listdir(tmp_dir)
    except OSError:
        return {}
    index: dict[str, list[str]] = {}
    for entry in entries:
        parts = entry.rsplit(".", 3)  # <name>.<pid>.<random>.<n>
        if len(parts) == 4:
            index.setdefault(parts[0], []).append(entry)
    return index


# -- any fsspec filesystem -------------------------------------------------------------
class FsspecTarget(FileTarget):
    """A file on an fsspec filesystem (memory://, s3://, ...)."""

    def __init__(self, url: str, *, storage: Storage | None = None, **storage_options: Any) -> None:
        self.url = url
        self._storage = storage or default_storage
        self._options = storage_options
        self.protocol, self.path = _split_url(url)

    @property
    def fs(self) -> Any:
        return self._storage.filesystem(self.protocol, self._options)

    def exists(self) -> bool:
        staging = current_staging()
        if staging is not None and staging.staged_path(self.url) is not None:
            return True
        fs = self.fs
        try:
            fs.invalidate_cache(self.path)
            fs.info(self.path)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise TargetCheckError(
                f"cannot check {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        return True

    def open(self, mode: str = "r") -> IO[Any]:
        _check_mode(mode)
        fs = self.fs
        if "r" in mode:
            staging = current_staging()
            staged = staging.staged_path(self.url) if staging is not None else None
            try:
                return fs.open(staged or self.path, mode)  # type: ignore[no-any-return]
            except FileNotFoundError as exc:
                raise TargetError(f"cannot read {self.url}: not found") from exc
        parent, base = self.path.rsplit("/", 1) if "/" in self.path else ("", self.path)
        tmp_path = f"{parent}/{TMP_DIR_NAME}/{base}.{_tmp_suffix()}"
        handle = fs.open(tmp_path, mode)
        return _AtomicFile(handle, PendingWrite(self, tmp_path))  # type: ignore[return-value]

    def commit_tmp(self, tmp_path: str) -> None:
        fs = self.fs
        try:
            fs.mv(tmp_path, self.path)
        except Exception as exc:
            raise TargetError(f"cannot commit {self.url}: {type(exc).__name__}: {exc}") from exc
        fs.invalidate_cache(self.path)

    def discard_tmp(self, tmp_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(tmp_path)


def _split_url(url: str) -> tuple[str, str]:
    protocol, sep, rest = url.partition("://")
    if not sep:
        return "file", url
    if protocol == "memory":
        return protocol, "/" + rest.lstrip("/")
    return protocol, rest


class Storage:
    """Storage options per protocol and the filesystem instances made from them."""

    def __init__(self, options: dict[str, dict[str, Any]] | None = None) -> None:
        self.options: dict[str, dict[str, Any]] = dict(options or {})
        self._filesystems: dict[tuple[int, str, tuple[tuple[str, Any], ...]], Any] = {}

    def configure(self, options: dict[str, dict[str, Any]]) -> None:
        self.options = dict(options)
        self._filesystems.clear()

    def filesystem(self, protocol: str, overrides: dict[str, Any]) -> Any:
        merged = {**self.options.get(protocol, {}), **overrides}
        # Per process: a forked worker cannot use its parent's event loop or connections.
        key = (os.getpid(), protocol, tuple(sorted((k, repr(v)) for k, v in merged.items())))
        fs = self._filesystems.get(key)
        if fs is None:
            import fsspec

            try:
                cls = fsspec.get_filesystem_class(protocol)
            except ValueError:
                raise TaskDefinitionError(
                    f"unknown storage protocol '{protocol}://' in a target URL (known: "
                    f"{', '.join(sorted(fsspec.available_protocols())[:12])}, ...)") from None
            except ImportError as exc:
                raise TargetError(f"cannot use storage '{protocol}': {exc}") from exc
            try:
                fs = cls(**merged)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"[storage.{protocol}]: options not accepted by the "
                                  f"'{protocol}' filesystem: {exc}") from exc
            self._filesystems[key] = fs
        return fs


#: The storage the CLI and `bd.build()` configure from `[storage.*]`; a test may make its own.
default_storage = Storage()


def check_exists(targets: list[Target]) -> list[bool]:
    """Existence of many targets, batched per target class."""
    by_class: dict[type[Target], list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(type(target), []).append(index)
    result = [False] * len(targets)
    for cls, indices in by_class.items():
        answers = cls.exists_many([targets[i] for i in indices])
        for index, answer in zip(indices, answers):
            result[index] = answer
    return result
