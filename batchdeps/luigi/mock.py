"""Luigi's `luigi.mock`: `MockTarget`, a file kept in memory, and `MockFileSystem`.

The files are the values of one dict by path, shared by the processes of a run: it lives
in a `multiprocessing` manager, started when the process first uses a mock file, so that
worker processes forked afterwards (`--workers 2`) read and write the same files, as in
Luigi. A write is seen when its file is closed. Mock files are outside batchdeps' storage:
their writes are not staged with the task's other outputs.
"""

from __future__ import annotations

import io
import sys
from typing import IO, Any

from .format import Format, get_default_format
from .target import FileAlreadyExists, FileSystem, FileSystemTarget

__all__ = ["MockFileSystem", "MockTarget"]


class MockFileSystem(FileSystem):
    """Luigi's MockFileSystem: paths are the dict's keys, a folder is a prefix of them."""

    _data: Any = None  # the shared dict, once made (one per process tree)

    def get_all_data(self) -> Any:
        """Every file's content by path (a dict shared with the run's worker processes)."""
        if MockFileSystem._data is None:
            import multiprocessing

            MockFileSystem._data = multiprocessing.Manager().dict()
        return MockFileSystem._data

    def get_data(self, fn: str) -> bytes:
        return self.get_all_data()[fn]  # type: ignore[no-any-return]

    def exists(self, path: str) -> bool:
        return path in self.get_all_data()

    def isdir(self, path: str) -> bool:
        folder = path.rstrip("/") + "/"
        return any(key.startswith(folder) for key in self.get_all_data().keys())

    def listdir(self, path: str) -> list[str]:
        return [key for key in self.get_all_data().keys() if key.startswith(path)]

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        """Nothing to make: a folder is a prefix of paths."""

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        data = self.get_all_data()
        folder = path.rstrip("/") + "/"
        for key in list(data.keys()):
            if key == path or recursive and key.startswith(folder):
                del data[key]

    def move(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        self._transfer(path, dest, raise_if_exists, keep=False)

    def copy(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        self._transfer(path, dest, raise_if_exists, keep=True)

    def _transfer(self, path: str, dest: str, raise_if_exists: bool, keep: bool) -> None:
        if raise_if_exists and dest in self.get_all_data():
            raise FileAlreadyExists(f"destination exists: {dest}")
        data = self.get_all_data()
        folder = path.rstrip("/") + "/"
        for key in list(data.keys()):
            if key == path or key.startswith(folder):
                data[dest + key[len(path):]] = data[key]
                if not keep:
                    del data[key]

    def clear(self) -> None:
        self.get_all_data().clear()


class _Written(io.BytesIO):
    """The bytes of a write, stored under the target's path when closed."""

    def __init__(self, target: MockTarget) -> None:
        super().__init__()
        self._target = target

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()
            self._target.fs.get_all_data()[self._target.path] = data
            if self._target.mirror_on_stderr:
                sys.stderr.write(f"{self._target.path}: {data.decode(errors='replace')}")
        super().close()


class MockTarget(FileSystemTarget):
    """A file in memory (Luigi's MockTarget): `MockTarget("name", format=...)`."""

    fs = MockFileSystem()

    def __init__(self, fn: str, is_tmp: Any = None, mirror_on_stderr: bool = False,
                 format: Format | None = None) -> None:
        super().__init__(fn)
        self.mirror_on_stderr = mirror_on_stderr
        self.format = format if format is not None else get_default_format()

    @property
    def fn(self) -> str:
        return self.path

    def open(self, mode: str = "r") -> IO[Any]:
        """Read ("r") or write ("w") through the target's format; "b" and "t" change
        nothing, as in Luigi."""
        if not isinstance(mode, str):
            raise TypeError(f"open() mode must be a string, got {mode!r}")
        kind = mode.replace("b", "").replace("t", "")
        if kind == "w":
            return self.format.pipe_writer(_Written(self))
        if kind == "r":
            return self.format.pipe_reader(io.BytesIO(self.fs.get_data(self.path)))
        raise ValueError(f"unsupported mode {mode!r}: use r or w")

    def move(self, path: str, raise_if_exists: bool = False) -> None:
        self.fs.move(self.path, path, raise_if_exists=raise_if_exists)
