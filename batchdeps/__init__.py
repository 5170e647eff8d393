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
    "Plan": "resolver",
    "resolve": "resolver", "BuildResult": "report.result", "Status": "report.result",
    "TaskResult": "report.result", "FileTarget": "targets", "Storage": "targets",
    "Target": "targets", "ExternalTask": "task", "Task": "task", "WrapperTask": "task",
    "DynamicRequirements": "dynamic", "Settings": "task", "namespace": "namespaces",
    "auto_namespace": "namespaces", "Event": "handlers", "inherits": "inherit",
    "requires": "inherit", "luigi_task_id": "taskid",
    "date_interval": None, "ParameterTypeWarning": "parameters", "FrozenDict": "parameters",
    "LocalTarget": "targets",
}
#: Every parameter type batchdeps.parameters defines (batchdeps.parameters.PARAMETER_TYPES is
#: this tuple; tests/test_parameters_types.py checks each name is a parameter class there).
_PARAMETER_TYPES = (
    "BoolParameter", "ChoiceListParameter", "ChoiceParameter", "DateHourParameter",
    "DateIntervalParameter", "DateMinuteParameter", "DateParameter", "DateSecondParameter",
    "DateTimeParameter", "DictParameter", "EnumListParameter", "EnumParameter",
    "FloatParameter", "IntParameter", "ListParameter", "MonthParameter",
    "NumericalParameter", "OptionalBoolParameter", "OptionalChoiceParameter",
    "OptionalDictParameter", "OptionalFloatParameter", "OptionalIntParameter",
    "OptionalListParameter", "OptionalNumericalParameter", "OptionalParameter",
    "OptionalPathParameter", "OptionalStrParameter", "OptionalTupleParameter", "Parameter",
    "PathParameter", "StrParameter", "TaskParameter", "TimeDeltaParameter",
    "TupleParameter", "YearParameter",
)
_EXPORTS.update(dict.fromkeys(_PARAMETER_TYPES, "parameters"))

if TYPE_CHECKING:
    from .api import build
    from .config import Config, load_config
    from .dynamic import DynamicRequirements
    from .handlers import Event
    from .inherit import inherits, requires
    from .namespaces import auto_namespace, namespace
    from .errors import BatchdepsError
    from . import date_interval
    from .parameters import (
        BoolParameter,
        ChoiceListParameter,
        ChoiceParameter,
        DateHourParameter,
        DateIntervalParameter,
        DateMinuteParameter,
        DateParameter,
        DateSecondParameter,
        DateTimeParameter,
        DictParameter,
        EnumListParameter,
        EnumParameter,
        FloatParameter,
        FrozenDict,
        IntParameter,
        ListParameter,
        MonthParameter,
        NumericalParameter,
        OptionalBoolParameter,
        OptionalChoiceParameter,
        OptionalDictParameter,
        OptionalFloatParameter,
        OptionalIntParameter,
        OptionalListParameter,
        OptionalNumericalParameter,
        OptionalParameter,
        OptionalPathParameter,
        OptionalStrParameter,
        OptionalTupleParameter,
        Parameter,
        ParameterTypeWarning,
        PathParameter,
        StrParameter,
        TaskParameter,
        TimeDeltaParameter,
        TupleParameter,
        YearParameter,
    )
    from .report.result import BuildResult, Status, TaskResult
    from .resolver import Plan, resolve
    from .targets import FileTarget, LocalTarget, Storage, Target
    from .task import ExternalTask, Settings, Task, WrapperTask
    from .taskid import luigi_task_id


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'batchdeps' has no attribute {name!r}")
    import importlib

    module = _EXPORTS[name]
    if module is None:  # a submodule: bd.date_interval
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__version__ = "0.1.0"

__all__ = [
    "BatchdepsError", "BuildResult", "Config", "DynamicRequirements", "Event",
    "ExternalTask", "FileTarget", "FrozenDict", "LocalTarget", "ParameterTypeWarning", "Plan",
    "Settings", "Status", "Storage", "Target", "Task", "TaskResult", "WrapperTask",
    "auto_namespace", "build", "date_interval", "inherits", "load_config", "luigi_task_id",
    "namespace", "requires", "resolve", *_PARAMETER_TYPES,
]
