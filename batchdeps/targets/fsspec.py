"""Files on any fsspec filesystem (memory://, gcs://, ...) that has no backend of its own."""

from __future__ import annotations

import contextlib
from typing import IO, Any

from ..errors import TargetCheckError, TargetError
from .base import FileTarget, Storage, _rebuild, _split_url, default_storage, target_location
from .filesystem import FsspecFileSystem
from .formats import Format
from .journal import OLD_SUFFIX
from .staging import TMP_DIR_NAME, _tmp_suffix


class FsspecTarget(FileTarget):
    """A file on an fsspec filesystem (memory://, gcs://, ...)."""

    def __init__(self, url: Any = None, *, path: Any = None, format: Format | None = None,
                 storage: Storage | None = None, **storage_options: Any) -> None:
        self.url = url = target_location(url, path)
        self.format = format
        self._storage = storage or default_storage
        self._options = storage_options
        self.protocol, self.path = _split_url(url)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.url, self._storage, self._options, self.format))

    @property
    def filesystem(self) -> Any:
        """The fsspec filesystem of this target (its storage options applied)."""
        return self._storage.filesystem(self.protocol, self._options)

    @property
    def fs(self) -> FsspecFileSystem:
        return FsspecFileSystem(self.filesystem, self.protocol)

    def _remove(self) -> None:
        fs = self.filesystem
        try:
            fs.invalidate_cache(self.path)
            fs.rm(self.path, recursive=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise TargetError(f"cannot remove {self.url}: {type(exc).__name__}: {exc}") from exc

    def makedirs(self) -> None:
        parent = self.path.rstrip("/").rpartition("/")[0]
        if parent:
            try:
                self.filesystem.makedirs(parent, exist_ok=True)
            except Exception as exc:
                raise TargetError(f"cannot make the folder of {self.url}: {exc}") from exc

    def _exists(self) -> bool:
        fs = self.filesystem
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
        info = self._info()
        return None if info is None else _stamp(info)

    def identity(self) -> dict[str, Any] | None:
        info = self._info()
        if info is None:
            return None
        return {"mtime": _stamp(info), "size": info.get("size")}

    def _info(self) -> dict[str, Any] | None:
        fs = self.filesystem
        try:
            fs.invalidate_cache(self.path)
            return fs.info(self.path)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise TargetCheckError(
                f"cannot check {self.url}: {type(exc).__name__}: {exc}"
            ) from exc

    def _open_final(self, mode: str) -> IO[Any]:
        return self._open_staged(self.path, mode)

    def _open_staged(self, tmp_path: str, mode: str) -> IO[Any]:
        try:
            return self.filesystem.open(tmp_path, mode)  # type: ignore[no-any-return]
        except FileNotFoundError as exc:
            raise TargetError(f"cannot read {self.url}: not found") from exc

    def _open_tmp(self, mode: str) -> tuple[IO[Any], str]:
        parent, base = self.path.rsplit("/", 1) if "/" in self.path else ("", self.path)
        tmp_path = f"{parent}/{TMP_DIR_NAME}/{base}.{_tmp_suffix()}"
        return self.filesystem.open(tmp_path, mode), tmp_path

    def commit_tmp(self, tmp_path: str) -> None:
        fs = self.filesystem
        try:
            fs.mv(tmp_path, self.path)
        except Exception as exc:
            raise TargetError(f"cannot commit {self.url}: {type(exc).__name__}: {exc}") from exc
        fs.invalidate_cache(self.path)

    def discard_tmp(self, tmp_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.rm(tmp_path)

    def keep_previous(self, tmp_path: str, hide: bool) -> str | None:
        fs = self.filesystem
        backup = tmp_path + OLD_SUFFIX
        try:
            (fs.mv if hide else fs.copy)(self.path, backup)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise TargetError(f"cannot commit {self.url}: cannot keep the file it replaces: "
                              f"{type(exc).__name__}: {exc}") from exc
        return backup

    def undo_commit(self, backup: str | None) -> None:
        fs = self.filesystem
        if backup is not None:
            fs.mv(backup, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(self.path)
        fs.invalidate_cache(self.path)

    def drop_backup(self, backup: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.rm(backup)


def _stamp(info: dict[str, Any]) -> float | None:
    """The modification time in an fsspec `info()` answer (seconds), None if it has none."""
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if hasattr(value, "timestamp"):  # a datetime (S3's LastModified)
            return float(value.timestamp())
        if isinstance(value, (int, float)):
            return float(value)
    return None
