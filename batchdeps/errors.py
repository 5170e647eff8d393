"""The exception tree of batchdeps; each class knows the exit code of `batchdeps run`.

    BatchdepsError                      1  root; anything batchdeps raises on purpose
    ├── UsageError                      2  bad command line
    │   └── UnknownTaskError            2  no task class of that name
    ├── ConfigError                     2  bad config file, key, value or ${ENV}
    ├── TaskDefinitionError             2  a Task class or instance is wrong
    │   ├── ParameterError              2  a parameter value cannot be parsed or is missing
    │   └── CycleError                  2  requires() forms a cycle
    ├── TargetError                     1  a target could not be used
    │   └── TargetCheckError            1  existence could not be decided (never "missing")
    ├── LockError                       1  the lock provider failed
    │   ├── LockServerUnavailable       1  the lock server cannot be reached
    │   ├── LockAuthError               1  the lock server refused the token
    │   └── LeaseLostError              1  a held lease expired or was taken over
    ├── LockWaitTimeout                 4  another holder kept a task past the wait
    ├── MissingInputError               3  an external input does not exist
    └── Interrupted                   130  SIGINT / SIGTERM

A failing `run()` is not an exception that unwinds a run: the runner records it as a
result (exit code 1 comes from the result, not from this tree).
"""

from __future__ import annotations


class BatchdepsError(Exception):
    """Root of every error batchdeps raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(BatchdepsError):
    """The command line is wrong."""

    exit_code = 2


class UnknownTaskError(UsageError):
    """No task class has the requested name."""


class ConfigError(BatchdepsError):
    """The config file, one of its keys or values, or an ${ENV} reference is wrong."""

    exit_code = 2


class TaskDefinitionError(BatchdepsError):
    """A Task class or instance is defined wrongly (requires/output/parameters)."""

    exit_code = 2


class ParameterError(TaskDefinitionError):
    """A parameter value is missing or cannot be parsed."""


class CycleError(TaskDefinitionError):
    """Tasks require each other in a cycle."""


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


class LockWaitTimeout(BatchdepsError):
    """A needed task was still held by another worker when the wait ran out."""

    exit_code = 4


class MissingInputError(BatchdepsError):
    """An external input does not exist."""

    exit_code = 3


class Interrupted(BatchdepsError):
    """The run was stopped by SIGINT or SIGTERM."""

    exit_code = 130
