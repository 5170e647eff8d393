"""Luigi's targets: `Target`, `LocalTarget(path=, format=, is_tmp=)` and its file system.

`LocalTarget` is batchdeps' local file target (writes atomic, committed with the task's
other outputs; formats, `temporary_path()`, `makedirs()` its own) with Luigi's
constructor, `fs`, `remove()`, `move()` and `copy()`.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from typing import Any

from ..targets import Target
from ..targets.local import LocalTarget as _BdLocalTarget
from .format import Format

__all__ = ["FileAlreadyExists", "FileSystemException", "FileSystemTarget", "LocalFileSystem",
           "LocalTarget", "MissingParentDirectory", "NotADirectory", "Target"]


class FileSystemException(Exception):
    """Luigi's base of file-system errors."""


class FileAlreadyExists(FileSystemException):
    """A move or copy would replace a file (with raise_if_exists=True)."""


class MissingParentDirectory(FileSystemException):
    """The folder a file would go in does not exist."""


class NotADirectory(FileSystemException):
    """A folder was expected."""


class FileSystemMixin:
    """Kept for the targets built on it: opening through a format, atomic writes,
    `temporary_path()` and `makedirs()` are every batchdeps file target's own now."""


class LocalFileSystem:
    """Luigi's LocalFileSystem: a few os and shutil calls under Luigi's names."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return [os.path.join(path, name) for name in os.listdir(path)]

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        if raise_if_exists and os.path.exists(path):
            raise FileAlreadyExists(path)
        if parents:
            os.makedirs(path, exist_ok=True)
        elif not os.path.isdir(path):
            os.mkdir(path)

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        if recursive and os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)

    def move(self, old_path: str, new_path: str, raise_if_exists: bool = False) -> None:
        if raise_if_exists and os.path.exists(new_path):
            raise FileAlreadyExists(new_path)
        parent = os.path.dirname(new_path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        os.replace(old_path, new_path)

    def rename_dont_move(self, path: str, dest: str) -> None:
        self.move(path, dest, raise_if_exists=True)

    def copy(self, old_path: str, new_path: str, raise_if_exists: bool = False) -> None:
        if raise_if_exists and os.path.exists(new_path):
            raise FileAlreadyExists(new_path)
        parent = os.path.dirname(new_path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        shutil.copy(old_path, new_path)


class LocalTarget(_BdLocalTarget):
    """A local file (Luigi's LocalTarget); `is_tmp=True` without a path makes a temporary one."""

    fs = LocalFileSystem()

    def __new__(cls, path: str | None = None, format: Format | None = None,
                is_tmp: bool = False, **kwargs: Any) -> Any:
        return object.__new__(cls)

    def __init__(self, path: str | None = None, format: Format | None = None,
                 is_tmp: bool = False, **kwargs: Any) -> None:
        if path is None:
            if not is_tmp:
                raise ValueError("path or is_tmp must be set")
            path = os.path.join(tempfile.gettempdir(),
                                f"luigi-tmp-{random.randrange(0, 10_000_000_000):010d}")
        if not isinstance(path, str):
            path = os.fspath(path)
        super().__init__(path, format=format)  # no format: open()'s own text or bytes
        self.is_tmp = is_tmp

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_local, (type(self), self.path, self.format, self.is_tmp))

    def makedirs(self) -> None:
        """Make the folder this file goes in."""
        parent = os.path.dirname(os.path.normpath(self.path))
        if parent:
            os.makedirs(parent, exist_ok=True)

    def remove(self) -> None:
        """Delete the file (or folder), and a write of it staged by the running task; as
        in Luigi, nothing there is an error."""
        if not self.exists():
            raise FileNotFoundError(f"cannot remove {self.path}: not there")
        super().remove()

    def move(self, new_path: str, raise_if_exists: bool = False) -> None:
        self.fs.move(self.path, new_path, raise_if_exists=raise_if_exists)

    def move_dir(self, new_path: str) -> None:
        self.move(new_path)

    def copy(self, new_path: str, raise_if_exists: bool = False) -> None:
        self.fs.copy(self.path, new_path, raise_if_exists=raise_if_exists)

    @property
    def fn(self) -> str:
        return self.path

    def __del__(self) -> None:
        if getattr(self, "is_tmp", False) and os.path.exists(self.path):
            try:
                self.remove()
            except OSError:
                pass


def _rebuild_local(cls: type[LocalTarget], path: str, fmt: Format, is_tmp: bool) -> LocalTarget:
    return cls(path, format=fmt, is_tmp=is_tmp)


FileSystemTarget = LocalTarget
