"""Luigi's file formats for `LocalTarget(format=...)`: Text, UTF8, Nop, Gzip, Bzip2.

A format wraps the binary file a target opens: Text and UTF8 read and write `str`
(newlines as written, as Luigi), Nop reads and writes `bytes`, Gzip and Bzip2 compress
`bytes`. `UTF8 >> Gzip` chains them as Luigi does: text, encoded, then compressed.
"""

from __future__ import annotations

import io
import locale
from typing import IO, Any

__all__ = ["Bzip2", "Format", "Gzip", "Nop", "Text", "UTF8", "get_default_format"]


class Format:
    """How the bytes of a file become what `open()` gives; in `a >> b`, `a` is what the
    task reads and writes, `b` is next to the file."""

    input = "bytes"   # what the file holds
    output = "bytes"  # what open() reads and writes

    def pipe_reader(self, handle: IO[bytes]) -> IO[Any]:
        return handle

    def pipe_writer(self, handle: IO[bytes]) -> IO[Any]:
        return handle

    def __rshift__(self, other: Format) -> Format:
        return ChainFormat(self, other)


class ChainFormat(Format):
    """Formats in turn: the first is what the task reads and writes, the last is next to
    the file (Luigi's order: `UTF8 >> Gzip`)."""

    def __init__(self, *formats: Format) -> None:
        self.formats = formats
        self.input = formats[-1].input
        self.output = formats[0].output

    def pipe_reader(self, handle: IO[bytes]) -> IO[Any]:
        for fmt in reversed(self.formats):
            handle = fmt.pipe_reader(handle)
        return handle

    def pipe_writer(self, handle: IO[bytes]) -> IO[Any]:
        for fmt in reversed(self.formats):
            handle = fmt.pipe_writer(handle)
        return handle


class NopFormat(Format):
    """Bytes as they are."""


class TextFormat(Format):
    """`str` in the given encoding (default: the locale's), newlines kept as written."""

    output = "unicode"

    def __init__(self, encoding: str | None = None) -> None:
        self.encoding = encoding

    def _encoding(self) -> str:
        return self.encoding or locale.getpreferredencoding(False)

    def pipe_reader(self, handle: IO[bytes]) -> IO[Any]:
        return _Text(handle, encoding=self._encoding(), newline="")

    def pipe_writer(self, handle: IO[bytes]) -> IO[Any]:
        return _Text(handle, encoding=self._encoding(), newline="")


class _Text(io.TextIOWrapper):
    """A text wrapper whose close() closes (so commits) the atomic file under it."""


class _Compressed(Format):
    module = ""

    def pipe_reader(self, handle: IO[bytes]) -> IO[Any]:
        import importlib

        return importlib.import_module(self.module).open(handle, "rb")  # type: ignore[no-any-return]

    def pipe_writer(self, handle: IO[bytes]) -> IO[Any]:
        return _ClosingCompressed(self.module, handle)


class _ClosingCompressed(io.RawIOBase):
    """A compressing writer that closes the file under it too (gzip.open would not)."""

    def __init__(self, module: str, handle: IO[bytes]) -> None:
        import importlib

        self._under = handle
        self._writer = importlib.import_module(module).open(handle, "wb")

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return int(self._writer.write(data))

    def close(self) -> None:
        if not self.closed:
            self._writer.close()
            self._under.close()
        super().close()

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None and hasattr(self._under, "__exit__"):
            self._writer.close()
            self._under.__exit__(*exc)  # an atomic file then throws its write away
            super().close()
            return
        self.close()


class GzipFormat(_Compressed):
    """gzip-compressed bytes."""

    module = "gzip"

    def __init__(self, compression_level: int | None = None) -> None:
        self.compression_level = compression_level


class Bzip2Format(_Compressed):
    """bzip2-compressed bytes."""

    module = "bz2"


Text = TextFormat()
UTF8 = TextFormat(encoding="utf8")
Nop = NopFormat()
Gzip = GzipFormat()
Bzip2 = Bzip2Format()
SysNewLine = Text
MixedUnicodeBytes = Nop


def get_default_format() -> Format:
    """Text in the locale's encoding (Luigi's default)."""
    return Text
