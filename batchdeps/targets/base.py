"""The target model: `Target`, `FileTarget` with its protocol registry, storage options.

`FileTarget(url)` picks its class by the URL's protocol through a registry, so this module
imports no backend; each backend (local.py, fsspec.py, s3.py) implements the primitives.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import weakref
from collections.abc import Callable, Iterator
from typing import IO, Any

from ..errors import ConfigError, TargetError, TaskDefinitionError
from ..procinfo import current_pid
from .filesystem import FileSystem
from .formats import Format, FormattedFile
from .staging import AtomicFile, PendingWrite, current_staging
from .target import Target

__all__ = ["FileTarget", "Storage", "Target", "check_exists", "default_storage",
           "register_protocol", "target_class", "target_location"]


class FileTarget(Target):
    """A file at `url`: a local path, `file://...`, `memory://...`, `s3://bucket/key`, ...

    `FileTarget(url)` gives the class registered for the URL's protocol (`register_protocol`):
    LocalTarget for local paths, S3Target for s3://, FsspecTarget for any other.

    This class does what every backend shares (a write staged by the running attempt is
    seen by that attempt; writes go through a temporary file) and calls the backend's
    primitives for the rest: `_exists`, `_exists_many`, `_open_final`, `_open_staged`,
    `_open_tmp`, `commit_tmp`, `discard_tmp`.

    Args:
        url: where the file lives (a string or an `os.PathLike`; `path=` is the same).
        format: how its bytes are read and written (`targets.formats`: `Gzip`, `UTF8`,
            `Nop`, ...); `open("r")` / `open("w")` then go through it. None: `open()`'s
            own text or binary mode.
        storage: the Storage whose per-protocol options apply (default: the configured one).
        **storage_options: options for this target's filesystem, over the configured ones.
    """

    __slots__ = ()

    #: How the file's bytes are read and written; None: as `open()` gives them.
    format: Format | None = None

    def __new__(cls, url: Any = None, *, path: Any = None, format: Format | None = None,
                storage: Storage | None = None, **storage_options: Any) -> Any:
        # a plain string given as the URL (the usual call) needs none of the checks, and a
        # local path's class is the one `target_class` keeps for "file" (once it has one)
        if type(url) is str and url and path is None:
            if cls is not FileTarget:
                return super().__new__(cls)
            chosen = _classes.get("file") if "://" not in url else None
            return super().__new__(chosen or target_class(url))
        location = target_location(url, path)
        return super().__new__(target_class(location) if cls is FileTarget else cls)

    def __reduce__(self) -> tuple[Any, ...]:
        # A staged write travels from a forked worker to the runner with its target, so a
        # target pickles as what rebuilds it: class, URL, storage, options and format.
        return (_rebuild, (type(self), self.url, None, {}, self.format))

    def __str__(self) -> str:
        return self.url

    # -- what every backend shares -----------------------------------------------------------
    def exists(self) -> bool:
        if _staged_path(self.url) is not None:
            return True  # the attempt that wrote it sees its own write
        return self._exists()

    @classmethod
    def exists_many(cls, targets: list[Target]) -> list[bool]:
        staging = current_staging()
        if staging is None or not staging.pending:
            return cls._exists_many(targets)
        result = [True] * len(targets)
        rest = [i for i, target in enumerate(targets) if target.url not in staging]
        for index, answer in zip(rest, cls._exists_many([targets[i] for i in rest])):
            result[index] = answer
        return result

    def open(self, mode: str = "r") -> IO[Any]:
        """Open for reading ("r", "rb") or for an atomic write ("w", "wb").

        With a `format`, "r" and "w" ("b" and "t" make no difference, as in Luigi) give
        the format's streams; the write is just as atomic.
        """
        if self.format is not None:
            return self._open_formatted(mode)
        return self._open_plain(mode)

    def _open_plain(self, mode: str) -> IO[Any]:
        if mode not in ("r", "rb", "w", "wb"):
            if mode not in _SPELLINGS:
                raise ValueError(f"unsupported mode {mode!r}: use r, rb, w or wb")
            mode = _SPELLINGS[mode]
        if "r" in mode:
            staged = _staged_path(self.url)
            if staged is not None:
                return self._open_staged(staged, mode)
            return self._open_final(mode)
        handle, tmp_path = self._open_tmp(mode)
        return AtomicFile(handle, PendingWrite(self, tmp_path))  # type: ignore[return-value]

    def _open_formatted(self, mode: str) -> IO[Any]:
        assert self.format is not None
        kind = mode.replace("b", "").replace("t", "")
        if kind not in ("r", "w"):
            raise ValueError(f"unsupported mode {mode!r} with a format: use r or w")
        fmt = self.format
        raw = self._open_plain(kind + "b")  # the bytes underneath, through the usual paths
        try:
            stream = fmt.pipe_reader(raw) if kind == "r" else fmt.pipe_writer(raw)
        except BaseException:
            if kind == "w":
                raw.abort()  # type: ignore[attr-defined]
            else:
                raw.close()
            raise
        return FormattedFile(stream, raw, writing=kind == "w")  # type: ignore[return-value]

    # -- Luigi's helpers -------------------------------------------------------------------
    def remove(self) -> None:
        """Remove the file (or folder) now, and drop a write of it the running attempt
        staged. Not staged itself: it takes effect at once. Nothing there: nothing done."""
        staging = current_staging()
        if staging is not None:
            staging.drop(self.url)
        self._remove()

    def makedirs(self) -> None:
        """Make the folder the file goes in, and its parents (nothing on S3: no folders)."""

    @property
    def fs(self) -> FileSystem:
        """The storage this target lives on: `exists`, `remove`, `listdir`, `mkdir`, ...
        (targets/filesystem.py), over paths of the same kind as this target's."""
        raise NotImplementedError

    def _remove(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def temporary_path(self) -> Iterator[str]:
        """A local path at which to make this output, a file or a whole folder, which is
        moved into place as one when the block ends cleanly (as Luigi's `temporary_path`).

        Inside a task's `run()` it is committed with the task's other writes. A folder is
        the way to give a set of files all-or-nothing visibility on a local disk: it is
        committed with one rename. S3 has no folders to rename, so there it must be a file.

        Raises:
            TargetError: nothing was made at the path, or this storage cannot take it.
        """
        tmp_path = self._tmp_path()
        try:
            yield tmp_path
        except BaseException:
            self.discard_tmp(tmp_path)
            raise
        if not os.path.lexists(tmp_path):
            raise TargetError(f"cannot commit {self.url}: nothing was made at its temporary "
                              f"path {tmp_path}")
        if os.path.isdir(tmp_path) and not self.folder_commits:
            self.discard_tmp(tmp_path)
            raise TargetError(f"cannot commit {self.url}: a folder cannot be committed as one "
                              f"on this storage; write a file (or one target per file)")
        pending = PendingWrite(self, tmp_path)
        staging = current_staging()
        if staging is not None:
            staging.add(pending)
        else:
            pending.commit()

    def sibling(self, name: str) -> FileTarget:
        """The file `name` in this target's folder, on the same storage with the same options."""
        rebuild, (cls, _, storage, options, _format) = self.__reduce__()
        head, sep, _ = self.url.rpartition("/")
        return rebuild(cls, f"{head}{sep}{name}", storage, options)  # type: ignore[no-any-return]

    #: Whether a folder made at `temporary_path()` is committed as one (a rename).
    folder_commits = False

    # -- the backend's primitives --------------------------------------------------------------
    def _tmp_path(self) -> str:
        """A new local path for a temporary file or folder (not made yet)."""
        raise TargetError(f"cannot write {self.url}: temporary_path() needs a local disk or "
                          f"S3; use open('w')")

    def _exists(self) -> bool:
        """Whether the file exists in the store (True, False, or TargetCheckError)."""
        raise NotImplementedError

    @classmethod
    def _exists_many(cls, targets: list[Target]) -> list[bool]:
        """`_exists` of many targets of this class; a backend may batch round trips."""
        return [target._exists() for target in targets]  # type: ignore[attr-defined]

    def _open_final(self, mode: str) -> IO[Any]:
        """Open the committed file for reading."""
        raise NotImplementedError

    def _open_staged(self, tmp_path: str, mode: str) -> IO[Any]:
        """Open this attempt's staged temporary file for reading (a local file by default)."""
        return open(tmp_path, mode)

    def _open_tmp(self, mode: str) -> tuple[IO[Any], str]:
        """A new temporary file for a write: the open handle and its path."""
        raise NotImplementedError


#: The other ways of writing the modes `open()` takes, as Python's `open()` reads them.
_SPELLINGS = {"br": "rb", "bw": "wb", "rt": "r", "tr": "r", "wt": "w", "tw": "w"}


def _rebuild(cls: type[FileTarget], url: str, storage: Storage | None,
             options: dict[str, Any], format: Format | None = None) -> FileTarget:
    return cls(url, storage=storage, format=format, **options)  # type: ignore[no-any-return]


def target_location(url: Any, path: Any) -> str:
    """The one location given as `url` or as `path=` (Luigi's keyword), as a string."""
    if (url is None) == (path is None):
        raise TypeError("a file target needs its location, as the first argument or as "
                        f"path= (not both): got {url!r} and path={path!r}")
    location = url if path is None else path
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str) or not location:
        raise TypeError(f"FileTarget needs a non-empty URL string, got {location!r}")
    return location


def _staged_path(url: str) -> str | None:
    staging = current_staging()
    return staging.staged_path(url) if staging is not None else None


#: protocol -> "module:Class" of its target class, imported on first use (as fsspec's
#: known_implementations): s3fs is imported only by a run that has an s3:// target.
_PROTOCOLS: dict[str, str] = {
    "file": "batchdeps.targets.local:LocalTarget",
    "s3": "batchdeps.targets.s3:S3Target",
}
#: Any protocol not registered: a plain fsspec filesystem.
_FALLBACK = "batchdeps.targets.fsspec:FsspecTarget"
_classes: dict[str, type[FileTarget]] = {}


def register_protocol(protocol: str, spec: str) -> None:
    """Make `FileTarget("<protocol>://...")` an instance of the class `spec` names
    ("package.module:Class", imported when first needed)."""
    _PROTOCOLS[protocol] = spec
    _classes.pop(protocol, None)


def target_class(url: str) -> type[FileTarget]:
    """The FileTarget subclass for `url`'s protocol (a plain path is "file")."""
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    cls = _classes.get(protocol)
    if cls is None:
        import importlib

        module, _, name = _PROTOCOLS.get(protocol, _FALLBACK).partition(":")
        cls = _classes[protocol] = getattr(importlib.import_module(module), name)
    return cls


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
        # Unique across a fork: storages made in a worker after the fork are not its parent's.
        self._serial = (current_pid(), next(_storage_serials))
        _storages[self._serial] = self

    def __reduce__(self) -> tuple[Any, ...]:
        # A forked worker's Storage objects are its parent's, by serial number: the runner
        # gets its own instance back (with its open filesystems), not a copy. The default
        # storage is the receiver's default storage (configured the same, see storage_state).
        if self is default_storage:
            return (_default_storage, ())
        return (_storage_by_serial, (self._serial, self.options))

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


_storage_serials = itertools.count(1)
_storages: weakref.WeakValueDictionary[tuple[int, int], Storage] = weakref.WeakValueDictionary()


def _storage_by_serial(serial: tuple[int, int], options: dict[str, dict[str, Any]]) -> Storage:
    storage = _storages.get(serial)
    return storage if storage is not None else Storage(options)


#: The storage the CLI and `bd.build()` configure from `[storage.*]`; a test may make its own.
default_storage = Storage()


def _default_storage() -> Storage:
    return default_storage


def check_identities(targets: list[Target]) -> list[dict[str, Any] | None]:
    """`identity()` of many targets (None: missing), batched per target class as
    `check_exists`: on S3 the same one listing per prefix answers both."""
    return _per_class(targets, lambda cls, group: cls.identity_many(group))


def read_files(targets: list[Target]) -> list[bytes | None]:
    """The content of many small files (None: not there), batched per target class."""
    return _per_class(targets, lambda cls, group: cls.read_many(group))


def read_files_versioned(targets: list[Target]) -> list[tuple[bytes | None, str | None]]:
    """`read_files`, each with the version of what was read (`Target.read_many_versioned`)."""
    return _per_class(targets, lambda cls, group: cls.read_many_versioned(group))


def copy_keys(targets: list[Target], identities: list[dict[str, Any]],
              ) -> list[tuple[str, str, str] | None]:
    """`Target.copy_keys` of many present targets, batched per target class."""
    by_identity = dict(zip(map(id, targets), identities))
    return _per_class(targets, lambda cls, group: cls.copy_keys(
        group, [by_identity[id(t)] for t in group]))


def _per_class(targets: list[Target],
               ask: Callable[[type[Target], list[Target]], list[Any]]) -> list[Any]:
    by_class: dict[type[Target], list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(type(target), []).append(index)
    result: list[Any] = [None] * len(targets)
    for cls, indices in by_class.items():
        answers = ask(cls, [targets[i] for i in indices])
        for index, answer in zip(indices, answers):
            result[index] = answer
    return result


def check_exists(targets: list[Target]) -> list[bool]:
    """Existence of many targets, batched per target class."""
    if len(targets) == 1:  # one task's one output: the re-check under every lock
        return list(type(targets[0]).exists_many(targets))
    if targets and len(set(map(type, targets))) == 1:  # one class: no index lists
        return list(type(targets[0]).exists_many(targets))
    by_class: dict[type[Target], list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(type(target), []).append(index)
    result = [False] * len(targets)
    for cls, indices in by_class.items():
        answers = cls.exists_many([targets[i] for i in indices])
        for index, answer in zip(indices, answers):
            result[index] = answer
    return result
