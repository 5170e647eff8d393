"""One run's assembly: options, storage, plan, lock provider, executor, listeners, alerts.

    session = Session.from_config(config, workers=4)
    result = session.run([task])            # = session.execute(session.resolve([task]))

`bd.build()` and `batchdeps run` both come through here, so a user of the Python API gets
the same run as a user of the command line (the same alerts when the lock server is down,
the same task logs, the same checks of their settings); the command line only adds its
console output (`console=True`) and its signal handling (`handle_signals=True`).

Listeners are put together in one place, `Session.assemble_listeners()`, in the order in
which they hear each event:

    1. per-task log lines, text or JSON        console runs
    2. the progress line                       console runs, stderr a terminal
    3. task logs (captured output per attempt) a log folder is configured or given
    4. run history (local file, lock server)   `[history]` enabled (the default)
    4b. run metrics for a textfile collector   `metrics_file` (`--metrics-file`)
    5. the end-of-run summary                  console runs
    6. the `[notify]` alerter                  `[notify]` is configured
    6b. the tasks' event handlers (handlers.py) a handler is registered
    7. the caller's own (`listeners=`)

A listener that every run should have (metrics, ...) is added in `assemble_listeners()`,
from the config it needs; the runner never changes for it. One that holds something to
finish after the run (a file, a queue) also goes into `RunListeners.to_close`: `execute()`
closes those last, also after an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .. import logs
from ..config import Config
from ..errors import BatchdepsError, BrokenTaskError, ConfigError, ExitCode, UsageError
from ..locks.base import LockProvider
from ..report.events import Listener
from ..report.result import BuildResult
from ..resolver import Plan, resolve
from ..task import Task
from .executors import Executor, ExecutorRegistry, ExecutorSettings
from .runner import OPTION_DEFAULTS, Runner, RunOptions

if TYPE_CHECKING:
    from ..report.notify import Notifier

log = logs.get()

LOCK_URL_ENV = "BATCHDEPS_LOCK_URL"
LOCK_TOKEN_ENV = "BATCHDEPS_LOCK_TOKEN"


def lock_url_for(config: Config,
                 lock_url: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The lock server's replicas, in the order to try them: --lock-url (repeatable), else
    `[lock] url`, else $BATCHDEPS_LOCK_URL (comma-separated); empty: local locks.

    Raises ConfigError naming where a bad value came from (an empty list, a URL that is not
    http(s)://HOST:PORT, a replica named twice).
    """
    if lock_url:
        from ..locks.replicas import option_urls

        return option_urls(lock_url)
    configured = config.lock.get("url")
    from_env = "" if configured else os.environ.get(LOCK_URL_ENV, "").strip()
    if not configured and not from_env:
        return ()  # local locks: the lock server's protocol is not imported
    from ..locks.replicas import ENV_SEPARATOR, lock_urls

    if configured:
        return lock_urls(configured)  # checked when the config was read
    parts = [part.strip() for part in from_env.split(ENV_SEPARATOR)]
    try:
        return lock_urls(parts if len(parts) > 1 else parts[0])
    except ValueError as exc:
        raise ConfigError(f"${LOCK_URL_ENV} {exc}; value not shown") from None


def make_lock_provider(config: Config, lock_url: str | Sequence[str] | None = None,
                       run_id: str | None = None) -> LockProvider:
    """The lock server client when a URL is configured, else machine-local locks.

    `run_id` names this run in the lease's holder, so messages match the run's log.
    """
    url = lock_url_for(config, lock_url)
    if url:
        from ..locks.client import HttpLockProvider

        return HttpLockProvider(
            url,
            token=os.environ.get(LOCK_TOKEN_ENV, ""),
            ttl=float(config.lock.get("ttl", 30)),
            run_id=run_id,
        )
    from ..locks.local import LocalLockProvider

    return LocalLockProvider(config.batchdeps.get("lock_dir"))


def make_executor(plan: Plan, workers: int, options: RunOptions,
                  attempt_context: Any = None, *, kind: str | None = None,
                  address: str | None = None, shared_paths: Iterable[str] = (),
                  upload_pipelines: bool = False, task_logs: Any = None,
                  storage_options: dict[str, dict[str, Any]] | None = None,
                  registry: ExecutorRegistry | None = None) -> Executor:
    """The executor of kind `kind`, found through the registry.

    No kind: "dask" when a scheduler address is given; else "local" (forked workers) for
    several workers or when a task has a timeout, and "inline" otherwise.
    """
    settings = ExecutorSettings(
        workers=workers, plan=plan, attempt_context=attempt_context, task_logs=task_logs,
        run_id=options.run_id, kill_grace=options.kill_grace,
        task_defaults={**OPTION_DEFAULTS, **options.task_defaults}, address=address,
        shared_paths=list(shared_paths), upload_pipelines=upload_pipelines,
        storage_options=dict(storage_options or {}))
    if kind is None:
        if address:
            kind = "dask"
        else:
            kind = "local" if workers > 1 or settings.any_timeout() else "inline"
    elif address and kind != "dask":
        raise UsageError(f"--scheduler {address} needs --executor dask (not {kind})")
    return (registry or ExecutorRegistry()).load(kind).from_settings(settings)


def task_defaults_from(config: Config) -> dict[str, Any]:
    """Task option defaults (`retries`, `timeout`, ...) set in `[batchdeps]`."""
    return {k: config.batchdeps[k] for k in OPTION_DEFAULTS if k in config.batchdeps}


def default_log_dir(config: Config) -> str:
    """`logs/` beside the config file (else in the current folder)."""
    return os.path.join(config.root, "logs")


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class RunListeners:
    """A run's listeners in the order they hear events, the alerter among them (None when
    `[notify]` is not configured), and those to close when the run is over."""

    all: list[Listener] = field(default_factory=list)
    notifier: Notifier | None = None
    to_close: list[Closable] = field(default_factory=list)


@dataclass
class Session:
    """Everything one run needs, put together once; `run(tasks)` resolves and executes.

    Made by `from_config`, which checks the settings; every field has its final value.
    """

    config: Config
    workers: int = 1
    force: bool = False
    #: also rebuild everything the requested tasks depend on (never external tasks)
    force_upstream: bool = False
    #: family names or task ids: rebuild those and everything downstream of them
    force_from: list[str] = field(default_factory=list)
    lock_url: str | Sequence[str] | None = None
    #: a lock provider of the caller's (it stays open after the run); None: from config
    locks: LockProvider | None = None
    wait_timeout: float | None = None
    #: seconds to wait for missing external inputs (`--wait-for-inputs`; 0 or None: none)
    wait_for_inputs: float | None = None
    #: the longest delay between two looks at them (`--poll`)
    poll: float | None = None
    listeners: list[Listener] = field(default_factory=list)
    #: task log folder over `[batchdeps] log_dir` (`bd.build(log_dir=...)`)
    log_dir: str | None = None
    #: task log folder when neither the above nor `[batchdeps] log_dir` is set (None: off)
    default_log_dir: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    #: the command line's output: per-task lines, progress on a terminal, the summary
    console: bool = False
    #: SIGINT/SIGTERM stop the run cleanly (a second one at once): the command line
    handle_signals: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: RunOptions to start from (`bd.build(options=...)`); the session fills in the rest
    base_options: RunOptions | None = None
    #: record the run in the local history file (`[history]`); bd.build does so only for
    #: a config loaded from a file or with a state_dir
    local_history: bool = True
    #: write the run's Prometheus metrics to this file at the end (`--metrics-file`)
    metrics_file: str | None = None
    #: rebuild complete tasks that are stale by these triggers (staleness.py); None: from
    #: `[run] rerun_triggers`, else none
    rerun_triggers: frozenset[str] | None = None
    #: commit a build record with each task's outputs; None: `[run] record_builds`, else
    #: only when triggers are on
    record_builds: bool | None = None
    #: where attempts run: inline, local, dask, ... (None: `[executor] kind`, else chosen
    #: by the worker count, see `make_executor`)
    executor: str | None = None
    #: a Dask scheduler to run attempts on (None: `[executor] address`)
    scheduler: str | None = None
    #: send single-file pipeline modules to the Dask workers (`--upload-pipelines`)
    upload_pipelines: bool = False

    @classmethod
    def from_config(cls, config: Config | None = None, **overrides: Any) -> Session:
        """A session from `config` (default: all defaults) and the caller's overrides.

        `None` for an override means "not given": the config's value (or the default)
        applies. Raises UsageError for a worker count below 1.
        """
        config = config or Config()
        given = {name: value for name, value in overrides.items() if value is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"Session has no setting {', '.join(sorted(unknown))}")
        workers = given.pop("workers", config.workers)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be a whole number of 1 or more, got {workers!r}")
        if "wait_timeout" not in given and config.lock.get("wait_timeout") is not None:
            given["wait_timeout"] = config.lock["wait_timeout"]
        for name in ("wait_for_inputs", "poll"):
            if name not in given and config.run.get(name) is not None:
                given[name] = config.run[name]
        if given.get("poll") is not None and not given["poll"] > 0:
            raise UsageError(f"poll must be more than 0 seconds, got {given['poll']!r}")
        if "log_format" not in given:
            given["log_format"] = config.batchdeps.get("log_format") or "text"
        metrics_file = given.get("metrics_file")
        if metrics_file:
            folder = os.path.dirname(os.path.abspath(metrics_file))
            if os.path.isdir(metrics_file) or not os.path.isdir(folder) or not os.access(
                    folder, os.W_OK):
                raise UsageError(f"--metrics-file {metrics_file}: cannot write a file there "
                                 f"(the folder {folder} must exist and be writable)")
        if "log_level" not in given:
            given["log_level"] = config.batchdeps.get("log_level") or "INFO"
        asked = given.get("rerun_triggers", config.run.get("rerun_triggers"))
        if asked is None:  # the default run does not import staleness.py
            given["rerun_triggers"] = frozenset()
        else:
            from ..staleness import parse_triggers

            try:
                given["rerun_triggers"] = parse_triggers(asked)
            except ValueError as exc:
                raise UsageError(f"--rerun-triggers: {exc}") from None
        if "record_builds" not in given:
            given["record_builds"] = bool(config.run.get("record_builds", False))
        executor_config = config.executor
        given.setdefault("executor", executor_config.get("kind"))
        given.setdefault("scheduler", executor_config.get("address"))
        if given["executor"] is None:
            given.pop("executor")
        if given["scheduler"] is None:
            given.pop("scheduler")
        given["listeners"] = list(given.get("listeners", ()))
        given["force_from"] = list(given.get("force_from", ()))
        options = given.get("base_options")
        if options is not None and "run_id" not in given:
            given["run_id"] = options.run_id
        return cls(config=config, workers=workers, **given)

    # -- the run ---------------------------------------------------------------------------
    def run(self, tasks: Task | Iterable[Task]) -> BuildResult:
        """Build `tasks` and what they need; what happened per task."""
        return self.execute(self.resolve(tasks))

    def resolve(self, tasks: Task | Iterable[Task]) -> Plan:
        """The plan for `tasks`, with storage configured for the completeness checks."""
        from ..targets import default_storage

        requested = [tasks] if isinstance(tasks, Task) else list(tasks)
        default_storage.configure(self.config.storage)
        try:
            return resolve(requested, force=self.force, force_upstream=self.force_upstream,
                           force_from=self.force_from, rerun_triggers=self.rerun_triggers or ())
        except BrokenTaskError as exc:  # Luigi's BROKEN_TASK, then the definition error
            from ..handlers import Event, handlers

            handlers.fire(exc.task, Event.BROKEN_TASK, exc.task, exc.exception)
            raise

    def execute(self, plan: Plan) -> BuildResult:
        """Run `plan` to the end.

        An error that stops the run midway (storage or lock server gone) reaches every
        listener in the result of `RunFinished` (the summary, the alert), then is raised.
        An error before anything ran (the lock server cannot be reached) is alerted too.
        """
        task_logs = self._task_logs()
        if task_logs is not None:
            # The command line's process is batchdeps' own: fds 1 and 2 may stay on the task
            # log's scratch file from one inline attempt to the next. A program that calls
            # bd.build() gets them back after every attempt.
            task_logs.hold_fds = self.console
        options = self._options(task_logs)
        listeners = self.assemble_listeners(task_logs)
        try:
            return self._execute(plan, options, listeners, task_logs)
        finally:
            if task_logs is not None:  # fds 1 and 2 back before anything else is printed
                task_logs.release()
            for closable in listeners.to_close:
                try:
                    closable.close()
                except Exception:  # a listener never changes the run
                    log.exception("closing %r failed", closable)

    def _execute(self, plan: Plan, options: RunOptions, listeners: RunListeners,
                 task_logs: Any) -> BuildResult:
        if self.locks is None and lock_url_for(self.config, self.lock_url):
            from ..locks.protocol import check_lock_keys  # ids the server would refuse: exit 2

            check_lock_keys(step.task.task_id for step in plan.steps)
            options.check_keys = check_lock_keys  # and those of tasks a run() yields
        provider = self.locks if self.locks is not None else make_lock_provider(
            self.config, self.lock_url, self.run_id)
        try:
            try:
                provider.start()
                executor = make_executor(
                    plan, self.workers, options,
                    task_logs.attempt_context if task_logs else None, kind=self.executor,
                    address=self.scheduler,
                    shared_paths=self.config.executor.get("shared_paths", ()),
                    upload_pipelines=self.upload_pipelines, task_logs=task_logs,
                    storage_options=dict(self.config.storage))
            except BatchdepsError as exc:
                if listeners.notifier is not None:
                    listeners.notifier.notify_error(exc, self.run_id,
                                                    [t.task_id for t in plan.requested])
                raise
            runner = Runner(plan, provider, executor, listeners.all, options)
            with self._signals(runner, executor):
                return runner.run()
        finally:
            if self.locks is None:  # a provider the caller passed stays the caller's to close
                provider.close()

    # -- assembly --------------------------------------------------------------------------
    def _options(self, task_logs: Any) -> RunOptions:
        settings = self.config.batchdeps
        values: dict[str, Any] = {
            "run_id": self.run_id,
            "workers": self.workers,
            "log_path_for": task_logs.path_for if task_logs is not None else None,
            "record_builds": bool(self.record_builds or self.rerun_triggers or (
                self.base_options is not None and self.base_options.record_builds)),
        }
        if "kill_grace" in settings:
            values["kill_grace"] = float(settings["kill_grace"])
        if self.wait_for_inputs:
            values["wait_for_inputs"] = float(self.wait_for_inputs)
        if self.poll is not None:
            values["poll"] = float(self.poll)
        if self.base_options is not None:
            if self.base_options.log_path_for is not None:
                values["log_path_for"] = self.base_options.log_path_for
            return dataclasses.replace(self.base_options, **values)
        return RunOptions(wait_timeout=self.wait_timeout, resources=dict(self.config.resources),
                          task_defaults=task_defaults_from(self.config), **values)

    def _task_logs(self) -> Any:
        """TaskLogs when a log folder is configured (else None); a folder that cannot be
        written is an error when it was asked for, a warning when it is the default."""
        from ..history.listener import retention_seconds
        from ..report.tasklogs import task_logs_from

        level = logging.getLevelName(self.log_level.upper())
        task_logs = task_logs_from(self.config, default_dir=self.default_log_dir,
                                   level=level if isinstance(level, int) else logging.INFO,
                                   run_id=self.run_id, log_dir=self.log_dir,
                                   retention=retention_seconds(self.config))
        if task_logs is None or _writable(task_logs.log_dir):
            return task_logs
        where = task_logs.log_dir
        if self.log_dir or "log_dir" in self.config.batchdeps:
            raise ConfigError(f"{self.config.where()}: [batchdeps] log_dir {where}: cannot "
                              "create or write that folder; fix it or set task_logs = \"off\"")
        log.warning("task logs are off: cannot write %s; set [batchdeps] log_dir", where)
        return None

    def assemble_listeners(self, task_logs: Any = None) -> RunListeners:
        """Every listener of the run, in the order they hear events (see the module doc)."""
        from ..report.notify import notifier_from

        assembled = RunListeners()
        listeners = assembled.all
        if self.console:
            listeners.append(self._log_lines())
            from ..report.progress import progress_for

            progress = progress_for(self.config, self.log_format, log)
            if progress is not None:
                listeners.append(progress)
        if task_logs is not None:
            listeners.append(task_logs)
        from ..history.listener import history_listener

        history = history_listener(
            self.config, lock_url_for(self.config, self.lock_url) if self.locks is None else None,
            local=self.local_history)
        if history is not None:
            listeners.append(history)
            assembled.to_close.append(history)
        if self.metrics_file:
            from ..metrics import RunMetrics

            metrics = RunMetrics(self.metrics_file)
            remote = history.remote if history is not None else None
            if remote is not None:
                metrics.history_dropped = lambda: float(remote.dropped)
            listeners.append(metrics)
            assembled.to_close.append(metrics)  # after the history: its drops are final
        if self.console:
            from ..report.summary import SummaryListener

            listeners.append(SummaryListener())
        assembled.notifier = notifier_from(self.config)
        if assembled.notifier is not None:
            listeners.append(assembled.notifier)
        from ..handlers import listener_for

        handler_listener = listener_for()
        if handler_listener is not None:
            listeners.append(handler_listener)
        listeners.extend(self.listeners)
        return assembled

    def _log_lines(self) -> Listener:
        if self.log_format == "json":
            from ..report.jsonlog import JsonLogListener, json_handler_formatter

            formatter = json_handler_formatter()
            if formatter is not None:
                formatter.run_id = self.run_id  # also on lines before the run starts
            return JsonLogListener(formatter)
        from ..report.summary import LogListener

        return LogListener()

    def _signals(self, runner: Runner,
                 executor: Executor) -> contextlib.AbstractContextManager[Any]:
        if not self.handle_signals:
            return contextlib.nullcontext()
        return _stop_on_signals(runner, executor)


@contextlib.contextmanager
def _stop_on_signals(runner: Runner, executor: Executor) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop the runner cleanly. Second: stop at once."""
    count = 0

    def handle(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        if count > 1:
            with contextlib.suppress(Exception):  # stopping at once matters more
                executor.kill_all()
            with contextlib.suppress(Exception):
                log.error("stopped at once (second signal)")
            os._exit(ExitCode.INTERRUPTED)
        log.warning("%s: stopping (running tasks are terminated, locks released); again to "
                    "stop now", signal.Signals(signum).name)
        runner.stop()
        if executor.inline and executor.running:
            raise KeyboardInterrupt  # the attempt runs in this thread: unwind it

    previous = {signum: signal.signal(signum, handle)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
