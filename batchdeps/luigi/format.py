"""Luigi's file formats for `LocalTarget(format=...)`: batchdeps' own (targets/formats.py).

Text and UTF8 read and write `str`, Nop `bytes`, Gzip and Bzip2 compress `bytes`; chains
go as Luigi's, data first: `UTF8 >> Gzip` is text, encoded, then compressed.
"""

from __future__ import annotations

import os
import re
from typing import IO, Any

from ..targets.formats import (
    UTF8,
    Bzip2,
    Bzip2Format,
    ChainFormat,
    Format,
    Gzip,
    GzipFormat,
    Nop,
    NopFormat,
    Text,
    TextFormat,
    get_default_format,
)

__all__ = ["UTF8", "Bzip2", "Bzip2Format", "ChainFormat", "Format", "Gzip", "GzipFormat",
           "MixedUnicodeBytes", "NewlineFormat", "Nop", "NopFormat", "SysNewLine", "Text", "TextFormat",
           "get_default_format"]

_NEWLINES = re.compile(b"\r\n|\r|\n")


class _Newlines:
    """Bytes whose line ends become `newline` as they pass (None: `os.linesep` when
    written, `\\n` when read)."""

    def __init__(self, stream: IO[bytes], newline: bytes | None, writing: bool) -> None:
        self._stream = stream
        self._newline = newline
        self._writing = writing

    def _end(self) -> bytes:
        if self._newline is not None:
            return self._newline
        return os.linesep.encode("ascii") if self._writing else b"\n"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def read(self, size: int = -1) -> bytes:
        return _NEWLINES.sub(self._end(), self._stream.read(size))

    def write(self, data: bytes) -> int:
        return self._stream.write(_NEWLINES.sub(self._end(), data))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self._stream.close()


class NewlineFormat(Format):
    """Bytes with their line ends made one kind (Luigi's `SysNewLine`): `\\r\\n`, `\\r` and
    `\\n` are written as `newline` (default `os.linesep`) and read as `\\n`."""

    input = "bytes"

    def __init__(self, newline: str | None = None) -> None:
        self.newline = newline.encode("ascii") if newline is not None else None

    def pipe_reader(self, input_pipe: IO[bytes]) -> IO[bytes]:
        return _Newlines(input_pipe, self.newline, writing=False)  # type: ignore[return-value]

    def pipe_writer(self, output_pipe: IO[bytes]) -> IO[bytes]:
        return _Newlines(output_pipe, self.newline, writing=True)  # type: ignore[return-value]


SysNewLine = NewlineFormat()
MixedUnicodeBytes = Nop
