"""batchdeps: a target-file dependency-resolution batch runner.

    import batchdeps as bd

    class Clean(bd.Task):
        day = bd.DateParameter()
        def requires(self): return Raw(day=self.day)
        def output(self): return bd.FileTarget(f"data/clean/{self.day}.csv")
        def run(self): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The library's NullHandler is added by batchdeps.logs, which every module that logs uses.

# Names are imported on first use (PEP 562), so that `batchdeps --help` and the lock
# server do not pay for the task model, runner and config loader they do not need.
_EXPORTS = {
    "build": "api", "Config": "config", "load_config": "config", "BatchdepsError": "errors",
    "BoolParameter": "parameters", "DateParameter": "parameters",
    "DateTimeParameter": "parameters", "EnumParameter": "parameters",
    "FloatParameter": "parameters", "IntParameter": "parameters",
    "ListParameter": "parameters", "Parameter": "parameters", "Plan": "resolver",
    "resolve": "resolver", "BuildResult": "report.result", "Status": "report.result",
    "TaskResult": "report.result", "FileTarget": "targets", "Storage": "targets",
    "Target": "targets", "ExternalTask": "task", "Task": "task", "WrapperTask": "task",
    "DynamicRequirements": "dynamic", "Settings": "task", "namespace": "namespaces",
    "auto_namespace": "namespaces", "Event": "handlers", "inherits": "inherit",
    "requires": "inherit", "luigi_task_id": "taskid",
}

if TYPE_CHECKING:
    from .api import build
    from .config import Config, load_config
    from .dynamic import DynamicRequirements
    from .handlers import Event
    from .inherit import inherits, requires
    from .namespaces import auto_namespace, namespace
    from .errors import BatchdepsError
    from .parameters import (
        BoolParameter,
        DateParameter,
        DateTimeParameter,
        EnumParameter,
        FloatParameter,
        IntParameter,
        ListParameter,
        Parameter,
    )
    from .report.result import BuildResult, Status, TaskResult
    from .resolver import Plan, resolve
    from .targets import FileTarget, Storage, Target
    from .task import ExternalTask, Settings, Task, WrapperTask
    from .taskid import luigi_task_id


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'batchdeps' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__version__ = "0.1.0"

__all__ = [
    "BatchdepsError", "BoolParameter", "BuildResult", "Config", "DateParameter",
    "DynamicRequirements", "Event", "Settings", "auto_namespace", "inherits", "luigi_task_id",
    "namespace", "requires",
    "DateTimeParameter", "EnumParameter", "ExternalTask", "FileTarget", "FloatParameter",
    "IntParameter", "ListParameter", "Parameter", "Plan", "Status", "Storage", "Target",
    "Task", "TaskResult", "WrapperTask", "build", "load_config", "resolve",
]
