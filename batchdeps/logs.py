"""The package's loggers, and the one NullHandler a library adds.

Without a handler of its own, Python's last-resort handler would print batchdeps' warnings
in programs that did not ask for them; the command line sets up its own handlers. Kept out
of the package's `__init__` so that `batchdeps --help` does not import `logging`.
"""

from __future__ import annotations

import logging

logging.getLogger("batchdeps").addHandler(logging.NullHandler())


def get(name: str = "batchdeps") -> logging.Logger:
    """The logger `name` (under `batchdeps`, whose NullHandler is in place)."""
    return logging.getLogger(name)


class TextFormatter(logging.Formatter):
    """A formatter whose date and time (to the second) is made once per second.

    A run of quick tasks writes two lines per task, hundreds within one second; the time
    part was a fifth of each line's cost.
    """

    _cached: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is None:  # logging's default format carries milliseconds: not cached
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, super().formatTime(record, datefmt))
        return cached[1]


def emit(logger: logging.Logger, level: int, msg: str, *args: object,
         extra: dict[str, object] | None = None) -> None:
    """Log a record of batchdeps' own without logging's walk up the stack for the caller
    (no format of batchdeps shows the caller's file or line)."""
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, "(batchdeps)", 0, msg, args, None,
                                        extra=extra))
