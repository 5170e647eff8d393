"""Machine-readable log lines (`--log-format json`): one JSON object per line.

Every line has `time`, `level`, `event`, `run_id`, `host` and `message`; lines about a task
add `task_id` and `attempt`, and whatever else the event knows (`status`, `error`,
`delay`, `log_path`). Lines that are not about an event have `"event": "log"`. Fields a
caller passes with `extra={...}` are kept (values JSON cannot hold become strings).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from ..procinfo import hostname
from .events import Event, RunFinished, RunStarted
from .summary import LogListener

_FIELDS = ("task_id", "attempt", "status", "error", "delay", "log_path", "holder",
           "exit_code", "counts", "elapsed", "tasks_to_run", "workers")


#: What every LogRecord carries; any other attribute came from a caller's `extra={...}`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; `run_id` fills in for records that carry none."""

    def __init__(self, run_id: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.host = hostname()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "event": getattr(record, "event", "log"),
            "run_id": getattr(record, "run_id", None) or self.run_id or None,
            "host": self.host,
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for name, value in record.__dict__.items():  # a caller's extra={...} fields
            if name not in _RECORD_ATTRIBUTES and name not in line and value is not None:
                line[name] = value
        line["message"] = record.getMessage()
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class JsonLogListener(LogListener):
    """The per-task lines of LogListener, plus a line when the run starts and ends."""

    listens_to = None  # every event: the run's start and end too

    def __init__(self, formatter: JsonFormatter | None = None) -> None:
        super().__init__()
        self.formatter = formatter

    def on_event(self, event: Event) -> None:
        log = logging.getLogger("batchdeps")
        if isinstance(event, RunStarted):
            if self.formatter is not None:
                self.formatter.run_id = event.run_id
            runs = sum(1 for step in event.plan.steps if step.kind == "run")
            log.info("run started: %d task(s) to run", runs,
                     extra={"event": "run_started", "run_id": event.run_id,
                            "tasks_to_run": runs, "workers": event.workers})
        elif isinstance(event, RunFinished):
            result = event.result
            log.info("run finished: exit %d", result.exit_code,
                     extra={"event": "run_finished", "run_id": event.run_id,
                            "exit_code": int(result.exit_code), "counts": result.counts(),
                            "error": str(result.stopped_by) if result.stopped_by else None,
                            "elapsed": round(result.elapsed, 3)})
        else:
            super().on_event(event)


def json_handler_formatter() -> JsonFormatter | None:
    """The JsonFormatter on the `batchdeps` logger's handler, if JSON logging is set up."""
    for handler in logging.getLogger("batchdeps").handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return handler.formatter
    return None


def log_error_line(message: str, exit_code: int) -> bool:
    """Log an error that ends the command as a JSON line; False when JSON logging is off."""
    if json_handler_formatter() is None:
        return False
    logging.getLogger("batchdeps").error(message, extra={"event": "error",
                                                         "exit_code": exit_code})
    return True
