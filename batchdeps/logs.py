"""The package's loggers, and the one NullHandler a library adds.

Without a handler of its own, Python's last-resort handler would print batchdeps' warnings
in programs that did not ask for them; the command line sets up its own handlers. Kept out
of the package's `__init__` so that `batchdeps --help` does not import `logging`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import time as _time

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
        return self.second_text(record.created)

    def second_text(self, created: float) -> str:
        """`created` as `datefmt` writes it, made once per second (`datefmt` is set)."""
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            text = super().formatTime(_Moment(created), self.datefmt)  # type: ignore[arg-type]
            cached = self._cached = (second, text)
        return cached[1]


def emit(logger: logging.Logger, level: int, msg: str, *args: object,
         extra: dict[str, object] | Callable[[], dict[str, object]] | None = None) -> None:
    """Log a record of batchdeps' own without logging's walk up the stack for the caller
    (no format of batchdeps shows the caller's file or line).

    Where the logger's only handler is a plain text stream handler of ours (the command
    line's), the line is formatted and written here, with no LogRecord: the same text
    the handler would write (`extra` fields do not show in text lines), for a third of
    the cost; anything else (JSON lines, filters, other handlers) goes through logging.
    `extra` may be a function that makes the fields: it is called only on logging's path.
    """
    if logger.isEnabledFor(level):
        write(logger, level, msg, *args, extra=extra)


def write(logger: logging.Logger, level: int, msg: str, *args: object,
          extra: dict[str, object] | Callable[[], dict[str, object]] | None = None) -> None:
    """`emit` for a caller that has just asked `logger.isEnabledFor(level)` itself."""
    handler = _plain_text_handler(logger, level)
    if handler is not None:
        try:
            formatter: TextFormatter = handler.formatter  # type: ignore[assignment]
            text = msg % args if args else msg
            line = (f"{formatter.second_text(_time())} {logging.getLevelName(level)} "
                    f"{text}{handler.terminator}")
            with handler.lock:  # type: ignore[union-attr]
                stream = handler.stream
                stream.write(line)
                stream.flush()  # what StreamHandler.flush() does, its lock held already
            return
        except Exception:  # noqa: BLE001 - logging's own path handles (and reports) it
            pass
    if callable(extra):
        extra = extra()
    logger.handle(logger.makeRecord(logger.name, level, "(batchdeps)", 0, msg, args, None,
                                    extra=extra))


def _plain_text_handler(logger: logging.Logger, level: int) -> logging.StreamHandler | None:
    """The one handler of `logger` when a line can skip logging's record (see `emit`)."""
    handlers = logger.handlers
    if len(handlers) != 1 or logger.propagate or logger.filters:
        return None
    handler = handlers[0]
    formatter = handler.formatter
    if type(handler) is not logging.StreamHandler or handler.filters or level < handler.level \
            or type(formatter) is not TextFormatter or formatter.datefmt is None \
            or formatter._fmt != PLAIN_TEXT_FORMAT:
        return None
    return handler


#: The text format `emit` writes itself: date and time, level name, message.
PLAIN_TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _Moment:
    """What `Formatter.formatTime` reads of a record."""

    __slots__ = ("created", "msecs")

    def __init__(self, created: float) -> None:
        self.created = created
        self.msecs = 0.0
