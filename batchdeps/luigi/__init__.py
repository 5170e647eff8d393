"""Luigi's API on batchdeps: `import batchdeps.luigi as luigi` runs Luigi pipelines.

    import batchdeps.luigi as luigi

    class Hello(luigi.Task):
        name = luigi.Parameter(default="world")
        def output(self): return luigi.LocalTarget(f"out/{self.name}.txt")
        def run(self):
            with self.output().open("w") as f: f.write(f"Hello {self.name}\\n")

    luigi.build([Hello()], local_scheduler=True)

What maps to what, what differs on purpose and what is refused: docs/from-luigi.md.
Names are imported on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    # tasks
    "Task": "task", "ExternalTask": "task", "WrapperTask": "task", "Config": "task",
    "namespace": "task", "auto_namespace": "task",
    "Event": "event", "DynamicRequirements": "..dynamic",
    # targets
    "Target": "target", "LocalTarget": "target",
    # running
    "build": "interface", "run": "interface", "LuigiStatusCode": "interface",
    "LuigiRunResult": "interface",
}
_PARAMETERS = (
    "Parameter", "StrParameter", "OptionalParameter", "OptionalStrParameter",
    "IntParameter", "OptionalIntParameter", "FloatParameter", "OptionalFloatParameter",
    "BoolParameter", "OptionalBoolParameter", "DateParameter", "MonthParameter",
    "YearParameter", "DateHourParameter", "DateMinuteParameter", "DateSecondParameter",
    "DateIntervalParameter", "TimeDeltaParameter", "TaskParameter", "EnumParameter",
    "EnumListParameter", "DictParameter", "OptionalDictParameter", "ListParameter",
    "OptionalListParameter", "TupleParameter", "OptionalTupleParameter",
    "NumericalParameter", "OptionalNumericalParameter", "ChoiceParameter",
    "OptionalChoiceParameter", "ChoiceListParameter", "PathParameter",
    "OptionalPathParameter",
)
_EXPORTS.update({name: "parameter" for name in _PARAMETERS})
_SUBMODULES = {"util", "date_interval", "format", "contrib", "configuration", "parameter",
               "task", "target", "event", "interface", "cmdline_parser", "task_register",
               "local_target", "mock", "execution_summary", "freezing", "notifications",
               "worker"}
_ALIASES = {"execution_summary": "interface",
            "freezing": "parameter"}


def __getattr__(name: str) -> Any:
    import importlib

    module = _EXPORTS.get(name)
    if module is not None:
        if module.startswith(".."):
            value = getattr(importlib.import_module(module[1:], "batchdeps"), name)
        else:
            value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        value = importlib.import_module(f".{_ALIASES.get(name, name)}", __name__)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'batchdeps.luigi' has no attribute {name!r} (what it "
                         "provides, and what it does not: docs/from-luigi.md)")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])


__all__ = sorted([*_EXPORTS, "util", "date_interval", "format", "contrib", "configuration"])
