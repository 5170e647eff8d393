"""The Python entry point `bd.build()`: a Session from the caller's settings, then its run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .config import Config
from .locks.base import LockProvider
from .report.events import Listener
from .report.result import BuildResult
from .run.runner import RunOptions
from .run.session import (  # noqa: F401 - where callers have found them
    Session,
    lock_url_for,
    make_executor,
    make_lock_provider,
    task_defaults_from,
)
from .task import Task


def bind_task_defaults(config: Config, requested: list[Task]) -> None:
    """Apply `[tasks.FAMILY]` defaults, as the command line does, to the task classes of the
    configured modules (when the config came from a file) and to every task class loaded.

    The defaults become visible to tasks constructed from now on; the requested tasks were
    constructed by the caller, with the caller's values, and stay as they are.
    """
    from .registry import TaskRegistry

    registry = TaskRegistry.from_modules(config.modules if config.path else [],
                                         roots=[config.root], source=config.where())
    pending: list[type[Task]] = [type(task) for task in requested] + Task.__subclasses__()
    seen: set[type[Task]] = set()
    while pending:  # every task class loaded so far: those requires() will build
        cls = pending.pop()
        if cls not in seen:
            seen.add(cls)
            registry.add(cls)
            pending.extend(cls.__subclasses__())
    registry.apply_defaults(config.tasks, label=config.where())


def build(
    tasks: Task | Iterable[Task],
    workers: int | None = None,
    *,
    force: bool = False,
    force_upstream: bool = False,
    force_from: Iterable[str] = (),
    config: Config | None = None,
    locks: LockProvider | None = None,
    listeners: Iterable[Listener] = (),
    lock_url: str | Sequence[str] | None = None,
    wait_timeout: float | None = None,
    options: RunOptions | None = None,
    log_dir: str | None = None,
    rerun_triggers: str | Iterable[str] | None = None,
    wait_for_inputs: float | None = None,
    poll: float | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
) -> BuildResult:
    """Build `tasks` and what they need; returns what happened per task.

    The run is assembled as by `batchdeps run` (`run.session.Session`): the same lock
    provider, task logs and `[notify]` alerts, without the console output.

    Args:
        tasks: one task or several.
        workers: parallel attempts, 1 or more (default: `[batchdeps] workers`, else 1).
        force: rebuild the given tasks even if complete (their upstream stays as is).
        force_upstream: rebuild the given tasks and everything they need, except external
            tasks (`--force-upstream`).
        force_from: family names or task ids; those tasks and everything downstream of
            them up to the given tasks are rebuilt (`--force-from`).
        config: a loaded Config (default: all defaults).
        locks: a lock provider (default: from config, else machine-local locks); one
            passed here stays open after the run.
        listeners: objects with `on_event(event)`, told of every event of the run.
        lock_url: a lock server URL, or a list of replicas tried in turn, over the
            config's.
        wait_timeout: seconds to wait for a task held elsewhere (default: as long as it takes).
        options: full RunOptions, when more control is needed.
        log_dir: capture each attempt's output into `<log_dir>/<family>/<params>/<n>.log`
            (default: `[batchdeps] log_dir`; neither: output is not captured).
        rerun_triggers: also rebuild complete tasks that are stale by these triggers
            ("version,params,upstream[,unrecorded]" or a list; default: `[run]
            rerun_triggers`, else none; see docs/staleness.md).
        wait_for_inputs: seconds to wait for missing external inputs while the rest is
            built (default: `[run] wait_for_inputs`, else no wait; docs/sensors.md).
        poll: the longest delay in seconds between two looks at them (default: `[run]
            poll`, else 60).
        executor: where attempts run: "inline", "local", "dask" or a registered kind
            (`--executor`; default: `[executor] kind`, else chosen by `workers`).
        scheduler: a Dask scheduler's address to run on (`--scheduler`, implies "dask";
            default: `[executor] address`; none: "dask" starts a LocalCluster).

    Raises:
        UsageError: `workers` below 1, an unknown rerun trigger or executor.
        BatchdepsError: an error that stopped the run (the lock server or storage cannot
            be reached); `[notify]` alerts about it as about a failed run.
    """
    config = config or Config()
    requested = [tasks] if isinstance(tasks, Task) else list(tasks)
    session = Session.from_config(
        config, workers=workers, force=force or None, force_upstream=force_upstream or None,
        force_from=list(force_from), locks=locks, listeners=list(listeners),
        lock_url=lock_url, wait_timeout=wait_timeout, base_options=options, log_dir=log_dir,
        rerun_triggers=rerun_triggers,
        wait_for_inputs=wait_for_inputs, poll=poll, executor=executor, scheduler=scheduler,
        # History goes beside a config file the caller loaded (or to its state_dir); a bare
        # bd.build() in a script or a test writes no file it was not asked for.
        local_history=bool(config.path or "state_dir" in config.batchdeps),
    )
    bind_task_defaults(config, requested)
    return session.run(requested)
