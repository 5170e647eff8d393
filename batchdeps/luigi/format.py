"""Luigi's file formats for `LocalTarget(format=...)`: batchdeps' own (targets/formats.py).

Text and UTF8 read and write `str`, Nop `bytes`, Gzip and Bzip2 compress `bytes`; chains
go as Luigi's, data first: `UTF8 >> Gzip` is text, encoded, then compressed.
"""

from __future__ import annotations

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
           "MixedUnicodeBytes", "Nop", "NopFormat", "SysNewLine", "Text", "TextFormat",
           "get_default_format"]

SysNewLine = Text
MixedUnicodeBytes = Nop
