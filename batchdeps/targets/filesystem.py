"""A target's storage as Luigi's `target.fs` offers it: exists, remove, listdir, mkdir, ...

`LocalFileSystem` works on plain paths through `os`; `FsspecFileSystem` on the URLs of
one fsspec filesystem (`s3://bucket/key`, `memory://...`). Both answer `exists()`
honestly: a check that could not be made raises TargetCheckError, never "missing".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..errors import TargetCheckError, TargetError


class FileSystem(Protocol):
    """What `target.fs` answers (the calls Luigi's `FileSystem` has)."""

    def exists(self, path: str) -> bool: ...
    def isdir(self, path: str) -> bool: ...
    def listdir(self, path: str) -> Iterator[str]: ...
    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None: ...
    def remove(self, path: str, recursive: bool = True) -> None: ...
    def move(self, path: str, dest: str, raise_if_exists: bool = False) -> None: ...
    def copy(self, path: str, dest: str, raise_if_exists: bool = False) -> None: ...
    def rename_dont_move(self, path: str, dest: str) -> None: ...


def _copy_any(path: str, dest: str) -> None:
    """A folder copied whole (into an existing `dest` too), a file with its times."""
    if os.path.isdir(path):
        shutil.copytree(path, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(path, dest)


class LocalFileSystem:
    """Plain paths on this machine."""

    def exists(self, path: str) -> bool:
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise TargetCheckError(f"cannot check {path}: {exc.strerror or exc}") from exc
        return True

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def listdir(self, path: str) -> Iterator[str]:
        """Every file under the folder `path`, any depth, as paths starting with `path`."""
        for folder, _, files in os.walk(path):
            for name in sorted(files):
                yield os.path.join(folder, name)

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        if os.path.lexists(path):
            if raise_if_exists:
                raise TargetError(f"cannot make the folder {path}: it exists")
            if not os.path.isdir(path):
                raise TargetError(f"cannot make the folder {path}: a file is in the way")
            return
        try:
            if parents:
                os.makedirs(path, exist_ok=True)
            else:
                os.mkdir(path)
        except OSError as exc:
            raise TargetError(f"cannot make the folder {path}: {exc.strerror or exc}") from exc

    def remove(self, path: str, recursive: bool = True) -> None:
        """Remove the file, or the folder with what it holds (`recursive`)."""
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                if not recursive:
                    raise TargetError(f"cannot remove {path}: a folder (recursive=False)")
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError as exc:
            raise TargetError(f"cannot remove {path}: not there") from exc
        except OSError as exc:
            raise TargetError(f"cannot remove {path}: {exc.strerror or exc}") from exc

    def move(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        """Move a file or folder, making `dest`'s folder if needed (one rename on one disk)."""
        self._transfer("move", path, dest, raise_if_exists, shutil.move)

    def rename_dont_move(self, path: str, dest: str) -> None:
        """Rename `path` to `dest`, never into a folder `dest`; refused if `dest` exists."""
        self.move(path, dest, raise_if_exists=True)

    def copy(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        """Copy a file or folder, making `dest`'s folder if needed."""
        self._transfer("copy", path, dest, raise_if_exists, _copy_any)

    @staticmethod
    def _transfer(verb: str, path: str, dest: str, raise_if_exists: bool,
                  action: Callable[[str, str], object]) -> None:
        """`action(path, dest)` after making `dest`'s folder; refused if `dest` exists and
        `raise_if_exists`; an OSError becomes a TargetError naming both paths."""
        if raise_if_exists and os.path.lexists(dest):
            raise TargetError(f"cannot {verb} {path} to {dest}: {dest} exists")
        parent = os.path.dirname(dest)
        try:
            if parent:
                os.makedirs(parent, exist_ok=True)
            action(path, dest)
        except OSError as exc:
            raise TargetError(f"cannot {verb} {path} to {dest}: {exc.strerror or exc}") from exc


class FsspecFileSystem:
    """The URLs of one fsspec filesystem (`protocol://...`), as a target's `fs`."""

    def __init__(self, filesystem: Any, protocol: str) -> None:
        self.filesystem = filesystem
        self.protocol = protocol

    def _path(self, url: str) -> str:
        return str(self.filesystem._strip_protocol(url))

    def _url(self, path: str) -> str:
        return f"{self.protocol}://{path.lstrip('/')}"

    def _info(self, url: str) -> dict[str, Any] | None:
        path = self._path(url)
        try:
            self.filesystem.invalidate_cache(path)
            return self.filesystem.info(path)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise TargetCheckError(f"cannot check {url}: {type(exc).__name__}: {exc}") from exc

    def exists(self, path: str) -> bool:
        return self._info(path) is not None

    def isdir(self, path: str) -> bool:
        info = self._info(path)
        return info is not None and info.get("type") == "directory"

    def listdir(self, path: str) -> Iterator[str]:
        """Every file under `path`, any depth, as URLs."""
        try:
            found = self.filesystem.find(self._path(path))
        except Exception as exc:
            raise TargetCheckError(f"cannot list {path}: {type(exc).__name__}: {exc}") from exc
        for item in sorted(found):
            yield self._url(item)

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        if raise_if_exists and self.exists(path):
            raise TargetError(f"cannot make the folder {path}: it exists")
        try:
            self.filesystem.makedirs(self._path(path), exist_ok=True)
        except Exception as exc:
            raise TargetError(f"cannot make the folder {path}: {exc}") from exc

    def remove(self, path: str, recursive: bool = True) -> None:
        if not self.exists(path):
            raise TargetError(f"cannot remove {path}: not there")
        try:
            self.filesystem.rm(self._path(path), recursive=recursive)
        except Exception as exc:
            raise TargetError(f"cannot remove {path}: {exc}") from exc

    def move(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        if raise_if_exists and self.exists(dest):
            raise TargetError(f"cannot move {path} to {dest}: {dest} exists")
        try:
            self.filesystem.mv(self._path(path), self._path(dest), recursive=True)
        except Exception as exc:
            raise TargetError(f"cannot move {path} to {dest}: {exc}") from exc

    def rename_dont_move(self, path: str, dest: str) -> None:
        self.move(path, dest, raise_if_exists=True)

    def copy(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        if raise_if_exists and self.exists(dest):
            raise TargetError(f"cannot copy {path} to {dest}: {dest} exists")
        try:
            self.filesystem.copy(self._path(path), self._path(dest), recursive=True)
        except Exception as exc:
            raise TargetError(f"cannot copy {path} to {dest}: {exc}") from exc


#: The one local filesystem (it holds nothing).
LOCAL = LocalFileSystem()

