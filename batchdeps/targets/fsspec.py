"""Files on any fsspec filesystem (memory://, gcs://, ...) that has no backend of its own."""

from __future__ import annotations

import contextlib
from typing import IO, Any

from ..errors import TargetCheckError, TargetError
from .base import FileTarget, Storage, _split_url, default_storage
from .staging import (
    TMP_DIR_NAME,
    PendingWrite,
    _AtomicFile,
    _check_mode,
    _tmp_suffix,
    current_staging,
)


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

    def modified(self) -> float | None:
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise TargetCheckError(
                f"cannot check {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        for key in ("mtime", "LastModified", "last_modified", "created"):
            value = info.get(key)
            if hasattr(value, "timestamp"):  # a datetime (S3's LastModified)
                return float(value.timestamp())
            if isinstance(value, (int, float)):
                return float(value)
        return None

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
