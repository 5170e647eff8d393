"""Formats: how a target's bytes are read and written (text, compressed, as they are).

`FileTarget(path, format=Gzip)` opens through the format: `open("r")` reads the file
through `format.pipe_reader(binary stream)`, and `open("w")` writes through
`format.pipe_writer(binary stream)` into the target's atomic write, which is committed
(or staged, inside a run) only when the stream closes cleanly. Formats chain with `>>`,
first to last as the data goes when written: `UTF8 >> Gzip` is text, encoded, compressed.

A format of one's own is a `Format` subclass with `pipe_reader` and `pipe_writer` (the
names Luigi's formats use); `input`/`output` ("text" or "bytes") let a chain be checked.
Compression runs in this process (`gzip`, `bz2`, imported when first used), not through
a `gzip` program.
"""

from __future__ import annotations

import contextlib
import io
from typing import IO, Any


class Format:
    """Turns a binary stream into the stream a task reads or writes."""

    #: What a writer of this format is given ("text" or "bytes"); None: either.
    input: str | None = None
    #: What this format hands to the file, or to the next format of a chain.
    output: str | None = "bytes"

    def pipe_reader(self, input_pipe: IO[bytes]) -> IO[Any]:
        raise NotImplementedError

    def pipe_writer(self, output_pipe: IO[bytes]) -> IO[Any]:
        raise NotImplementedError

    def __rshift__(self, other: Format) -> ChainFormat:
        return ChainFormat(self, other)

    def __repr__(self) -> str:
        return type(self).__name__


class NopFormat(Format):
    """The bytes as they are: `open("r")` and `open("w")` give binary streams."""

    input = "bytes"

    def pipe_reader(self, input_pipe: IO[bytes]) -> IO[bytes]:
        return input_pipe

    def pipe_writer(self, output_pipe: IO[bytes]) -> IO[bytes]:
        return output_pipe


class _Text(io.TextIOWrapper):
    """A text stream that, when dropped without being closed, never closes (and so never
    commits) the write under it."""

    def __del__(self) -> None:
        pass


class TextFormat(Format):
    """Text in an encoding (default: the locale's, as `open()`), with universal newlines."""

    input = "text"

    def __init__(self, encoding: str | None = None, newline: str | None = None,
                 errors: str | None = None) -> None:
        self.encoding = encoding
        self.newline = newline
        self.errors = errors

    def _wrap(self, stream: IO[bytes]) -> IO[str]:
        return _Text(stream, encoding=self.encoding, errors=self.errors,  # type: ignore[arg-type]
                     newline=self.newline)

    def pipe_reader(self, input_pipe: IO[bytes]) -> IO[str]:
        return self._wrap(input_pipe)

    def pipe_writer(self, output_pipe: IO[bytes]) -> IO[str]:
        return self._wrap(output_pipe)

    def __repr__(self) -> str:
        return f"TextFormat(encoding={self.encoding!r})"


class GzipFormat(Format):
    """gzip-compressed bytes (`compression_level` 1-9, default 9 as `gzip.open`)."""

    input = "bytes"

    def __init__(self, compression_level: int | None = None) -> None:
        if compression_level is not None and not 0 <= int(compression_level) <= 9:
            raise ValueError(f"gzip compression_level must be 0 to 9, got {compression_level}")
        self.compression_level = compression_level

    def pipe_reader(self, input_pipe: IO[bytes]) -> IO[bytes]:
        import gzip

        return gzip.GzipFile(fileobj=input_pipe, mode="rb")  # type: ignore[return-value]

    def pipe_writer(self, output_pipe: IO[bytes]) -> IO[bytes]:
        import gzip

        level = 9 if self.compression_level is None else int(self.compression_level)
        # mtime 0 and no file name: the same content gives the same bytes.
        return gzip.GzipFile(fileobj=output_pipe, mode="wb", compresslevel=level,  # type: ignore[return-value]
                             mtime=0, filename="")


class Bzip2Format(Format):
    """bzip2-compressed bytes."""

    input = "bytes"

    def pipe_reader(self, input_pipe: IO[bytes]) -> IO[bytes]:
        import bz2

        return bz2.BZ2File(input_pipe, mode="rb")  # type: ignore[return-value]

    def pipe_writer(self, output_pipe: IO[bytes]) -> IO[bytes]:
        import bz2

        return bz2.BZ2File(output_pipe, mode="wb")  # type: ignore[return-value]


class ChainFormat(Format):
    """Formats one after the other, as data goes when written (`UTF8 >> Gzip`)."""

    def __init__(self, *formats: Format, check_consistency: bool = True) -> None:
        if not formats:
            raise TypeError("a chain of formats needs at least one format")
        self.formats = formats
        self.input = formats[0].input
        self.output = formats[-1].output
        if check_consistency:
            for first, then in zip(formats, formats[1:]):
                if then.input is not None and first.output is not None \
                        and first.output != then.input:
                    raise TypeError(f"cannot chain {first!r} >> {then!r}: {then!r} takes "
                                    f"{then.input}, {first!r} gives {first.output}")

    def pipe_reader(self, input_pipe: IO[bytes]) -> IO[Any]:
        stream: IO[Any] = input_pipe
        for fmt in reversed(self.formats):
            stream = fmt.pipe_reader(stream)
        return stream

    def pipe_writer(self, output_pipe: IO[bytes]) -> IO[Any]:
        stream: IO[Any] = output_pipe
        for fmt in reversed(self.formats):
            stream = fmt.pipe_writer(stream)
        return stream

    def __repr__(self) -> str:
        return " >> ".join(map(repr, self.formats))


Nop = NopFormat()
Text = TextFormat()
UTF8 = TextFormat(encoding="utf-8")
Gzip = GzipFormat()
Bzip2 = Bzip2Format()


def get_default_format() -> Format:
    """The format of a target opened as text: `Text`."""
    return Text


class FormattedFile:
    """A stream a format made over a target's file: closing it closes the format's stream,
    then the file under it. Over an atomic write (`writing`), a `with` block that raises,
    or a stream dropped unclosed, discards the write instead of committing it."""

    def __init__(self, stream: IO[Any], under: Any, writing: bool) -> None:
        self._stream = stream
        self._under = under
        self._writing = writing
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> Any:
        return iter(self._stream)

    def write(self, data: Any) -> int:
        return self._stream.write(data)  # type: ignore[no-any-return]

    def read(self, *args: Any) -> Any:
        return self._stream.read(*args)

    @property
    def closed(self) -> bool:
        return self._done

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._stream.close()  # flushes what the format holds (a gzip trailer) ...
        except BaseException:
            if self._writing:
                self._under.abort()
            raise
        self._under.close()  # ... then the file: committed, or staged inside a run

    def abort(self) -> None:
        """Drop the write: nothing becomes visible (a reader is just closed)."""
        if self._done:
            return
        self._done = True
        if self._writing:
            self._under.abort()  # first: the format's close below must not commit it
        with contextlib.suppress(Exception):  # writing into a dropped file may fail
            self._stream.close()
        self._under.close()

    def __enter__(self) -> FormattedFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self.abort()
