"""Local files through `os` directly (no fsspec import): start-up and per-target cost stay
near the file system's own."""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any

from ..errors import TargetCheckError, TargetError
from .base import FileTarget, Storage
from .staging import (
    TMP_DIR_NAME,
    WRITE_BUFFER,
    PendingWrite,
    _AtomicFile,
    _check_mode,
    _tmp_suffix,
    current_staging,
)

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

    def modified(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise TargetCheckError(f"cannot check {self.url}: {exc.strerror or exc}") from exc

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
