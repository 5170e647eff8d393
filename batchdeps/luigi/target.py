"""Luigi's targets: `Target`, `FileSystemTarget`, `FileSystem`, `LocalTarget(path=,
format=, is_tmp=)` and its file system.

`Target` and `FileSystemTarget` are abstract, as Luigi's: a subclass defines `exists()`
(and a file system target its `fs` and `open()`), and gets `exists()`, `remove()` and
`temporary_path()` through its `fs`. `LocalTarget` is batchdeps' local file target (writes
atomic, committed with the task's other outputs; formats, `temporary_path()`,
`makedirs()` its own) with Luigi's constructor, `fs`, `remove()`, `move()` and `copy()`.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from ..targets import Target as _BdTarget
from ..targets.local import LocalTarget as _BdLocalTarget
from .format import Format

__all__ = ["FileAlreadyExists", "FileSystem", "FileSystemException", "FileSystemTarget",
           "LocalFileSystem", "LocalTarget", "MissingParentDirectory", "NotADirectory",
           "Target"]


class Target(_BdTarget, metaclass=abc.ABCMeta):
    """Luigi's abstract Target: a subclass says whether it exists (`exists()`)."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the target is there."""


class FileSystemException(Exception):
    """Luigi's base of file-system errors."""


class FileAlreadyExists(FileSystemException):
    """A move or copy would replace a file (with raise_if_exists=True)."""


class MissingParentDirectory(FileSystemException):
    """The folder a file would go in does not exist."""


class NotADirectory(FileSystemException):
    """A folder was expected."""


class FileSystem(metaclass=abc.ABCMeta):
    """Luigi's abstract FileSystem, for `FileSystemTarget`s of one's own: `exists()` and
    `remove()` to define; `rename_dont_move()` is `move()` refusing to replace."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """Whether there is a file or folder at `path`."""

    @abc.abstractmethod
    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        """Delete `path` (a folder with what it holds, when `recursive`)."""

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        raise NotImplementedError(f"mkdir() is not defined by {type(self).__name__}")

    def isdir(self, path: str) -> bool:
        raise NotImplementedError(f"isdir() is not defined by {type(self).__name__}")

    def listdir(self, path: str) -> Any:
        raise NotImplementedError(f"listdir() is not defined by {type(self).__name__}")

    def move(self, path: str, dest: str) -> None:
        raise NotImplementedError(f"move() is not defined by {type(self).__name__}")

    def rename_dont_move(self, path: str, dest: str) -> None:
        if self.exists(dest):
            raise FileAlreadyExists(f"destination exists: {dest}")
        self.move(path, dest)

    def rename(self, *args: Any, **kwargs: Any) -> None:
        self.move(*args, **kwargs)

    def copy(self, path: str, dest: str) -> None:
        raise NotImplementedError(f"copy() is not defined by {type(self).__name__}")


class FileSystemTarget(Target):
    """Luigi's abstract FileSystemTarget: a path on a `FileSystem` of one's own (`fs`),
    opened as the subclass says (`open()`)."""

    def __init__(self, path: Any) -> None:
        self.path = os.fspath(path)
        self.url = self.path

    @property
    @abc.abstractmethod
    def fs(self) -> Any:
        """The FileSystem this target's path is on."""

    @abc.abstractmethod
    def open(self, mode: str = "r") -> IO[Any]:
        """Open the target for reading or writing."""

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def remove(self) -> None:
        self.fs.remove(self.path)

    @contextlib.contextmanager
    def temporary_path(self) -> Iterator[str]:
        """A path beside the target's (`PATH-luigi-tmp-NNNNNNNNNN`, a trailing slash
        kept), whose folder is made first, renamed to the target's path through
        `fs.rename_dont_move()` when the block ends cleanly (and not when it raises)."""
        bare = self.path.rstrip("/\\")
        slashes = self.path[len(bare):]
        tmp_path = f"{bare}-luigi-tmp-{random.randrange(0, 10_000_000_000):010d}{slashes}"
        parent = os.path.dirname(bare)
        if parent:
            self.fs.mkdir(parent, parents=True, raise_if_exists=False)
        yield tmp_path
        self.fs.rename_dont_move(tmp_path, self.path)

    def _touchz(self) -> None:
        with self.open("w"):
            pass


class LocalFileSystem(FileSystem):
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
            return
        parent = os.path.dirname(os.path.normpath(path))
        if parent and not os.path.isdir(parent):
            if os.path.exists(parent):
                raise NotADirectory(parent)
            raise MissingParentDirectory(parent)
        if not os.path.isdir(path):
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
        try:
            os.replace(old_path, new_path)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another file system: copied beside the destination, then renamed over it.
            beside = f"{new_path}-luigi-tmp-{random.randrange(0, 10_000_000_000):010d}"
            if os.path.isdir(old_path):
                shutil.copytree(old_path, beside)
            else:
                shutil.copy2(old_path, beside)
            os.replace(beside, new_path)
            self.remove(old_path)

    def rename_dont_move(self, path: str, dest: str) -> None:
        self.move(path, dest, raise_if_exists=True)

    def copy(self, old_path: str, new_path: str, raise_if_exists: bool = False) -> None:
        if raise_if_exists and os.path.exists(new_path):
            raise FileAlreadyExists(new_path)
        parent = os.path.dirname(new_path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        shutil.copy(old_path, new_path)


class LocalTarget(_BdLocalTarget, FileSystemTarget):  # batchdeps' methods first
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

