"""Luigi's `luigi.worker`: a `Worker` that tasks are added to, then run in one batchdeps build.

    with luigi.worker.Worker(worker_processes=2) as w:
        w.add(Report(day=...))
        w.run()          # True when no task failed, as luigi.build() answers

There is no scheduler process to hand the tasks to: `add()` checks what it is given and
keeps it, `run()` builds everything added (with batchdeps' runner, its locks and its
summary). `luigi.build()` goes through a Worker too, as in Luigi: `LuigiRunResult.worker`
is that Worker. The keyword arguments are `[worker]` keys of luigi.cfg, read as batchdeps
reads that section (docs/from-luigi.md, "luigi.cfg"): `timeout` (seconds per attempt, 0
for none) is honoured, the keys that tune a keep-alive worker are ignored, and any other
is an error naming it.
"""

from __future__ import annotations

from typing import Any

from ..errors import BrokenTaskError, TaskDefinitionError, UsageError

__all__ = ["TaskException", "Worker"]


class TaskException(TaskDefinitionError):
    """What `Worker.add()` was given is not a task that can be built (Luigi's name)."""




class Worker:
    """Luigi's Worker: `add()` tasks, then `run()` them; a context manager."""

    def __init__(self, scheduler: Any = None, worker_id: str | None = None,
                 worker_processes: int = 1, assistant: bool = False, **kwargs: Any) -> None:
        from ..luigi_files import LUIGI_IGNORED, luigi_key

        if scheduler is not None:
            raise UsageError("Worker(scheduler=...): batchdeps has no scheduler; leave it out "
                             "(several machines: `batchdeps lock-server` and lock_url=)")
        if assistant:
            raise UsageError("Worker(assistant=True): there is no central scheduler to assist")
        self.worker_processes = _whole(worker_processes, "worker_processes", least=1)
        self._id = worker_id or ""
        self.options: dict[str, Any] = {}
        for given, value in kwargs.items():
            key = luigi_key(given)
            if key in LUIGI_IGNORED["worker"]:
                continue
            if key != "timeout":
                raise UsageError(f"Worker({given}=...): batchdeps cannot honour this [worker] "
                                 "key (see docs/from-luigi.md, \"luigi.cfg\")")
            seconds = _seconds(value, given)
            if seconds:  # 0: no limit, as in Luigi
                self.options["timeout"] = seconds
        self._added: list[Any] = []
        self._workers: int | None = self.worker_processes
        self._lock_url: Any = None
        self.result: Any = None  # the LuigiRunResult of the last run()

    @classmethod
    def _for_build(cls, workers: int | None, lock_url: Any) -> Worker:
        """`luigi.build()`'s Worker: `workers` None takes the config's (`[core] workers`)."""
        worker = cls()
        worker._workers, worker._lock_url = workers, lock_url
        return worker

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Nothing runs between calls of `run()`: there is nothing to stop."""

    def add(self, task: Any, multiprocess: bool = False, processes: int = 0) -> bool:
        """Keep `task` for the next `run()`; True, as Luigi's when it could be scheduled.

        Raises TaskException for what is not a task, or a task whose class's `__init__`
        did not call the base class's (it has no task id).
        """
        from .task import Task

        if not isinstance(task, Task):
            raise TaskException(f"Worker.add({task!r}): not a task (a luigi.Task instance "
                                "is needed)")
        if "task_id" not in vars(task):
            raise TaskException(f"Worker.add(): {type(task).__name__} was made without its "
                                "base class's __init__ (call super().__init__(...) in "
                                "__init__)")
        self._added.append(task)
        return True

    def run(self) -> bool:
        """Build the tasks added since the last run; True when none failed."""
        from .interface import LuigiRunResult, run_tasks

        tasks, self._added = self._added, []
        try:
            result = run_tasks(tasks, workers=self._workers, options=self.options,
                               lock_url=self._lock_url)
        except BrokenTaskError as exc:
            # Luigi's answer when a requires(), output() or complete() raised: scheduling
            # failed (False), after the BROKEN_TASK handlers; nothing ran (batchdeps does not
            # start over a graph it could not read whole), and the command line exits 2.
            import sys

            from ..report.result import BuildResult

            print(f"luigi (batchdeps): error: {exc}", file=sys.stderr, flush=True)
            result = BuildResult(run_id="", requested=[task.task_id for task in tasks],
                                 stopped_by=exc)
        self.result = LuigiRunResult(result, worker=self)
        return bool(self.result.scheduling_succeeded)

    def __repr__(self) -> str:
        named = f", id={self._id}" if self._id else ""
        return f"Worker(worker_processes={self.worker_processes}{named})"


def _whole(value: Any, name: str, least: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = least - 1
    if number < least or isinstance(value, float) and value != number:
        raise UsageError(f"Worker({name}={value!r}): a whole number of {least} or more is needed")
    return number


def _seconds(value: Any, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds < 0:
        raise UsageError(f"Worker({name}={value!r}): a number of seconds (0: none) is needed")
    return seconds
