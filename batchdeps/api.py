"""The Python entry point `bd.build()`, and how a run's collaborators are chosen."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .config import Config
from .locks.base import LockProvider
from .locks.local import LocalLockProvider
from .report.events import Listener
from .report.result import BuildResult
from .resolver import Plan, resolve
from .run.executors import Executor, ForkedExecutor, InlineExecutor
from .run.runner import OPTION_DEFAULTS, Runner, RunOptions
from .targets import default_storage
from .task import Task

LOCK_URL_ENV = "BATCHDEPS_LOCK_URL"
LOCK_TOKEN_ENV = "BATCHDEPS_LOCK_TOKEN"


def lock_url_for(config: Config, lock_url: str | None = None) -> str | None:
    """--lock-url, else `[lock] url`, else $BATCHDEPS_LOCK_URL, else None (local locks)."""
    return lock_url or config.lock.get("url") or os.environ.get(LOCK_URL_ENV) or None


def make_lock_provider(config: Config, lock_url: str | None = None,
                       run_id: str | None = None) -> LockProvider:
    """The lock server client when a URL is configured, else machine-local locks.

    `run_id` names this run in the lease's holder, so messages match the run's log.
    """
    url = lock_url_for(config, lock_url)
    if url:
        from .locks.client import HttpLockProvider

        return HttpLockProvider(  # type: ignore[no-any-return]
            url,
            token=os.environ.get(LOCK_TOKEN_ENV, ""),
            ttl=float(config.lock.get("ttl", 30)),
            run_id=run_id,
        )
    return LocalLockProvider(config.batchdeps.get("lock_dir"))


def make_executor(plan: Plan, workers: int, runner_options: RunOptions,
                  attempt_context: Any = None) -> Executor:
    """Inline for one worker; forked workers for several, or when a task has a timeout."""
    defaults = {**OPTION_DEFAULTS, **runner_options.task_defaults}
    needs_process = workers > 1 or any(
        (getattr(type(step.task), "timeout", None) or defaults.get("timeout"))
        for step in plan.steps
    )
    if needs_process:
        return ForkedExecutor(max(1, workers), attempt_context)
    return InlineExecutor(attempt_context)


def task_defaults_from(config: Config) -> dict[str, Any]:
    return {k: config.batchdeps[k] for k in OPTION_DEFAULTS if k in config.batchdeps}


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
    config: Config | None = None,
    locks: LockProvider | None = None,
    listeners: Iterable[Listener] = (),
    lock_url: str | None = None,
    wait_timeout: float | None = None,
    options: RunOptions | None = None,
    log_dir: str | None = None,
) -> BuildResult:
    """Build `tasks` and what they need; returns what happened per task.

    Args:
        tasks: one task or several.
        workers: parallel attempts (default: `[batchdeps] workers`, else 1).
        force: rebuild the given tasks even if complete (their upstream stays as is).
        config: a loaded Config (default: all defaults).
        locks: a lock provider (default: from config, else machine-local locks).
        listeners: objects with `on_event(event)`, told of every event of the run.
        lock_url: a lock server URL, over the config's.
        wait_timeout: seconds to wait for a task held elsewhere (default: as long as it takes).
        options: full RunOptions, when more control is needed.
        log_dir: capture each attempt's output into `<log_dir>/<family>/<params>/<n>.log`
            (default: `[batchdeps] log_dir`; neither: output is not captured). `[notify]`
            alerts in `config` are sent as by the command line.
    """
    config = config or Config()
    requested = [tasks] if isinstance(tasks, Task) else list(tasks)
    bind_task_defaults(config, requested)
    default_storage.configure(config.storage)
    plan = resolve(requested, force=force)
    options = options or RunOptions(
        wait_timeout=wait_timeout if wait_timeout is not None else config.lock.get("wait_timeout"),
        resources=dict(config.resources),
        task_defaults=task_defaults_from(config),
    )
    from .run.production import production_setup

    # History goes beside a config file the caller loaded (or to its state_dir); a bare
    # bd.build() in a script or a test writes no file it was not asked for.
    extras = production_setup(config, options, log_dir=log_dir,
                              lock_url=lock_url_for(config, lock_url) if locks is None else None,
                              local_history=bool(config.path or "state_dir" in config.batchdeps))
    provider = locks or make_lock_provider(config, lock_url, options.run_id)
    provider.start()
    try:
        executor = make_executor(plan, workers or config.workers, options, extras.attempt_context)
        return Runner(plan, provider, executor, [*extras.listeners, *listeners], options).run()
    finally:
        if locks is None:  # a provider the caller passed stays the caller's to close
            provider.close()
        extras.close()
