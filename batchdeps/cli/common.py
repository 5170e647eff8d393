"""What every command shares: one error handler, raw-option scanning, logging set-up.

Errors batchdeps raises on purpose become one clear paragraph and the exit code of their
class; a traceback is shown only with --debug.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import click

from ..errors import BatchdepsError, ExitCode


def echo_lines(lines: Iterable[str], per_write: int) -> None:
    """Print `lines` as they come, `per_write` of them to one `click.echo` (each echo is a
    write of its own; the output of a million tasks is never one string)."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= per_write:
            click.echo("\n".join(chunk))
            chunk.clear()
    if chunk:
        click.echo("\n".join(chunk))


def fail(exc: BaseException, debug: bool = False) -> NoReturn:
    """Print `exc` as one paragraph (a traceback only with `debug`) and exit with its code."""
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, BatchdepsError):
        message, code = f"batchdeps: error: {exc}", exc.exit_code
    else:
        message, code = (f"batchdeps: internal error: {type(exc).__name__}: {exc} "
                         "(run again with --debug for the traceback)"), ExitCode.FAILED
    if "batchdeps.report.jsonlog" in sys.modules:  # --log-format json: the error as a JSON line too
        from ..report.jsonlog import log_error_line

        if log_error_line(message, code):
            sys.exit(code)
    click.echo(message, err=True)
    sys.exit(code)


def scan(args: tuple[str, ...], name: str) -> str | None:
    """The value of option `name` in raw args (`--name V` or `--name=V`), if present."""
    for position, arg in enumerate(args):
        if arg == name and position + 1 < len(args):
            return args[position + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _own_stderr() -> Any:
    """A stream on a copy of fd 2, so batchdeps' own lines (a stop warning that lands while
    a task runs inline) stay on the terminal while the task's fd 2 goes to its log file."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1,
                         encoding=sys.stderr.encoding, errors="backslashreplace")
    except (AttributeError, OSError, ValueError):  # no real fd 2 (an embedding, a test runner)
        return sys.stderr


#: Text log lines: date, time and UTC offset (cron logs cross midnight and time zones).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S%z"


def text_formatter() -> Any:
    """The formatter of text log lines, for runs and the lock server alike."""
    from ..logs import TextFormatter

    return TextFormatter(TEXT_FORMAT, DATE_FORMAT)


def setup_logging(level: str, log_format: str = "text") -> None:
    import logging  # here, not at the top: `batchdeps --help` does not need it

    logging.logProcesses = False  # no getpid() system call per record; no format uses it
    handler = logging.StreamHandler(_own_stderr())
    if log_format == "json":
        from ..report.jsonlog import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(text_formatter())
    root = logging.getLogger("batchdeps")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_guarded(config: Any, own: dict[str, Any], body: Callable[[], int],
                interrupted: str = "batchdeps: interrupted") -> NoReturn:
    """What `run` and `watch` share around their work: logging set up from the options
    and config, SIGTERM taken as a Ctrl-C until a runner installs its own handlers, the one
    error handler; exits with the code `body` returns."""
    debug = bool(own["debug"])
    setup_logging((own["log_level"] or config.batchdeps.get("log_level") or "INFO").upper(),
                  own["log_format"] or config.batchdeps.get("log_format") or "text")
    # Before the runner takes over (resolution can take a while) nothing is locked or
    # written yet, and the exit code is still ExitCode.INTERRUPTED.
    import signal

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        code = body()
    except BatchdepsError as exc:
        fail(exc, debug)
    except KeyboardInterrupt:
        click.echo(interrupted, err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a clear message
        fail(exc, debug)
    sys.exit(code)
