"""Luigi's `luigi.mock`: `MockTarget`, a file kept in memory, and `MockFileSystem`.

A MockTarget is a batchdeps target on fsspec's `memory://` file system (writes atomic,
committed with the task's other outputs, as every target's), with Luigi's constructor
and formats. Memory is per process: as in Luigi, use it with one worker.
"""

from __future__ import annotations

from typing import Any

from ..targets.fsspec import FsspecTarget
from .format import Format, get_default_format
from .target import FileSystemTarget

__all__ = ["MockFileSystem", "MockTarget"]


def _memory() -> Any:
    import fsspec

    return fsspec.filesystem("memory")


def _key(path: str) -> str:
    return "/" + path.lstrip("/")


class MockFileSystem:
    """fsspec's memory file system, with Luigi's MockFileSystem calls added."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_memory(), name)

    def get_all_data(self) -> dict[str, bytes]:
        """Every committed file's content by path (temporary files left out)."""
        return {path: f.getvalue() for path, f in _memory().store.items()
                if "/.batchdeps-tmp/" not in path}

    def get_data(self, fn: str) -> bytes:
        return self.get_all_data()[_key(fn)]

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        _memory().rm(_key(path), recursive=recursive)

    def clear(self) -> None:
        _memory().store.clear()
        _memory().pseudo_dirs[:] = [""]


class MockTarget(FsspecTarget, FileSystemTarget):  # batchdeps' methods first
    """A file in memory (Luigi's MockTarget): `MockTarget("name", format=...)`."""

    fs = MockFileSystem()

    def __new__(cls, fn: str, is_tmp: Any = None, mirror_on_stderr: bool = False,
                format: Format | None = None) -> Any:
        return object.__new__(cls)

    def __init__(self, fn: str, is_tmp: Any = None, mirror_on_stderr: bool = False,
                 format: Format | None = None) -> None:
        super().__init__("memory://" + _key(fn))
        self.fn = fn
        self.format = format if format is not None else get_default_format()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.fn, None, False, self.format))

    def remove(self) -> None:
        self.fs.remove(self.fn)

    def move(self, path: str, raise_if_exists: bool = False) -> None:
        _memory().mv(_key(self.fn), _key(path))
