"""The exception tree of batchdeps, and the exit codes of `batchdeps run`, named once.

    BatchdepsError                      1  root; anything batchdeps raises on purpose
    ├── UsageError                      2  bad command line
    │   └── UnknownTaskError            2  no task class of that name
    ├── ConfigError                     2  bad config file, key, value or ${ENV}
    ├── TaskDefinitionError             2  a Task class or instance is wrong
    │   ├── ParameterError              2  a parameter value cannot be parsed or is missing
    │   ├── CycleError                  2  requires() forms a cycle
    │   └── BrokenTaskError             2  requires()/output()/complete() raised
    ├── TargetError                     1  a target could not be used
    │   └── TargetCheckError            1  existence could not be decided (never "missing")
    ├── LockError                       1  the lock provider failed
    │   ├── LockServerUnavailable       1  the lock server cannot be reached
    │   ├── LockAuthError               1  the lock server refused the token
    │   └── LeaseLostError              1  a held lease expired or was taken over
    ├── ExecutorError                   1  the executor's cluster cannot be used
    └── DeliveryError                   1  one delivery of an alert failed (logged, retried)

Defined beside the code that raises them, in the same tree: `locks.protocol.ProtocolError`
(a LockError; the lock server answers 400 with it), `locks.store.LeaseNotHeld` (a
LockError; the store's "that lease is not yours any more") and `locks.store.StoreError`
(a UsageError, exit 2: the lock server's database is not a valid one).

What a run ends with is a result, not an exception: a failing `run()` (1), a missing
external input (3), a wait for a task held elsewhere that ran out (4) and an interrupted
run (130) are recorded per task by the runner, and `BuildResult.exit_code` turns them into
an `ExitCode`. An exception from this tree stops a run before or while it runs; the
command line prints it as one paragraph and exits with the class's `exit_code`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of `batchdeps run` (the contract's table); cron relies on them."""

    OK = 0                   # every requested task is complete
    FAILED = 1               # at least one task failed, or an error stopped the run
    USAGE = 2                # bad usage, config or task definition: nothing ran
    MISSING_INPUT = 3        # an external input is missing
    LOCK_WAIT_TIMEOUT = 4    # a needed task was still held elsewhere when the wait ran out
    INTERRUPTED = 130        # SIGINT / SIGTERM


class BatchdepsError(Exception):
    """Root of every error batchdeps raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(BatchdepsError):
    """The command line is wrong."""

    exit_code = ExitCode.USAGE


class UnknownTaskError(UsageError):
    """No task class has the requested name."""


class ConfigError(BatchdepsError):
    """The config file, one of its keys or values, or an ${ENV} reference is wrong."""

    exit_code = ExitCode.USAGE


class TaskDefinitionError(BatchdepsError):
    """A Task class or instance is defined wrongly (requires/output/parameters)."""

    exit_code = ExitCode.USAGE


class ParameterError(TaskDefinitionError):
    """A parameter value is missing or cannot be parsed."""


class CycleError(TaskDefinitionError):
    """Tasks require each other in a cycle."""


class BrokenTaskError(TaskDefinitionError):
    """A task's `requires()`, `output()` or `complete()` raised `exception` (the cause):
    the graph cannot be read whole. A run fires BROKEN_TASK handlers with it."""

    def __init__(self, message: str, task: object, exception: BaseException) -> None:
        super().__init__(message)
        self.task = task
        self.exception = exception

    def __reduce__(self) -> tuple[object, ...]:  # pickles (from a worker process) as itself
        return (type(self), (str(self), self.task, self.exception))


class TargetError(BatchdepsError):
    """A target could not be read, written or committed."""


class TargetCheckError(TargetError):
    """Whether a target exists could not be decided (credentials, endpoint down, ...)."""


class LockError(BatchdepsError):
    """The lock provider failed."""


class LockServerUnavailable(LockError):
    """The lock server cannot be reached."""


class LockAuthError(LockError):
    """The lock server refused the token."""


class LeaseLostError(LockError):
    """A lease this worker held has expired or been granted to another holder."""


class ExecutorError(BatchdepsError):
    """Where attempts run cannot be used (a Dask scheduler that cannot be reached)."""


class DeliveryError(BatchdepsError):
    """One delivery of an alert failed; `retry` says whether another attempt may help.

    Never leaves the notifier: a delivery that keeps failing is logged, and the run's exit
    code stays what the run made it.
    """

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry
