"""Assembles what a production run adds around the runner: task logs, progress, JSON lines, alerts.

The command line and `bd.build()` both call `production_setup`; the runner knows none of
these, it only emits events to the listeners and calls the attempt hook it is given.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from ..history.listener import HistoryListener, history_listener, retention_seconds
from ..report.events import Listener
from ..report.tasklogs import TaskLogs, task_logs_from


@dataclass
class ProductionSetup:
    """Listeners (in the order they hear events) and the per-attempt hook of one run."""

    listeners: list[Listener] = field(default_factory=list)
    task_logs: TaskLogs | None = None
    notifier: Any = None
    history: HistoryListener | None = None

    def close(self) -> None:
        """Finish what outlives the run's events (history not yet written), even after an
        error that stopped the run before its end was announced."""
        if self.history is not None:
            self.history.close()

    def alert_error(self, error: BaseException, run_id: str, requested: list[str]) -> None:
        """Alert about an error that stopped the run before it could finish (no result)."""
        if self.notifier is not None:
            self.notifier.notify_error(error, run_id, requested)

    @property
    def attempt_context(self) -> Any:
        return self.task_logs.attempt_context if self.task_logs is not None else None


def production_setup(config: Any, options: Any, *, log_format: str = "text",
                     log_level: str = "INFO", default_log_dir: str | None = None,
                     terminal: bool = False, summary: bool = False,
                     log_dir: str | None = None, lock_url: str | None = None,
                     local_history: bool = True) -> ProductionSetup:
    """Build the run's listeners and log capture from config, and fill in `options`.

    Args:
        config: the loaded Config.
        options: the run's RunOptions; `log_path_for` and `kill_grace` are set here.
        log_format: "text" or "json" (the batchdeps logger's handler is already set up).
        log_level: level of the task's own logging captured into its log file.
        default_log_dir: task log folder when `[batchdeps] log_dir` is not set (None: off).
        terminal: draw a progress line when stderr is a terminal (the command line).
        summary: print the end-of-run summary (the command line).
        log_dir: task log folder over `[batchdeps] log_dir` (`bd.build(log_dir=...)`).
        lock_url: the lock server the run uses (its history goes there too), or None.
        local_history: record the run in the local history file (`[history]`).
    """
    from ..report.notify import notifier_from

    setup = ProductionSetup()
    logger = logging.getLogger("batchdeps")
    if terminal or summary:
        if log_format == "json":
            from ..report.jsonlog import JsonLogListener, json_handler_formatter

            formatter = json_handler_formatter()
            if formatter is not None:
                formatter.run_id = options.run_id  # also on lines before the run starts
            setup.listeners.append(JsonLogListener(formatter))
        else:
            from ..report.summary import LogListener

            setup.listeners.append(LogListener())
    if terminal:
        from ..report.progress import progress_for

        progress = progress_for(config, log_format, logger)
        if progress is not None:
            setup.listeners.append(progress)
    level = logging.getLevelName(log_level.upper())
    task_logs = task_logs_from(config, default_dir=default_log_dir,
                               level=level if isinstance(level, int) else logging.INFO,
                               run_id=options.run_id, log_dir=log_dir,
                               retention=retention_seconds(config))
    if task_logs is not None and not _writable(task_logs.log_dir):
        where = task_logs.log_dir
        if log_dir or "log_dir" in config.batchdeps:
            from ..errors import ConfigError

            raise ConfigError(f"{config.where()}: [batchdeps] log_dir {where}: cannot create "
                              "or write that folder; fix it or set task_logs = \"off\"")
        logger.warning("task logs are off: cannot write %s; set [batchdeps] log_dir", where)
        task_logs = None
    if task_logs is not None:
        options.log_path_for = task_logs.path_for
        setup.task_logs = task_logs
        setup.listeners.append(task_logs)
    history = history_listener(config, lock_url, local=local_history)
    if history is not None:
        setup.history = history
        setup.listeners.append(history)
    if "kill_grace" in config.batchdeps:
        options.kill_grace = float(config.batchdeps["kill_grace"])
    if summary:
        from ..report.summary import SummaryListener

        setup.listeners.append(SummaryListener())
    notifier = notifier_from(config)
    if notifier is not None:
        setup.notifier = notifier
        setup.listeners.append(notifier)
    return setup


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def default_log_dir(config: Any) -> str:
    """`logs/` beside the config file (else in the current folder)."""
    return os.path.join(config.root, "logs")
