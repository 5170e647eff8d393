"""batchdeps: a target-file dependency-resolution batch runner.

    import batchdeps as bd

    class Clean(bd.Task):
        day = bd.DateParameter()
        def requires(self): return Raw(day=self.day)
        def output(self): return bd.FileTarget(f"data/clean/{self.day}.csv")
        def run(self): ...
"""

from __future__ import annotations

from .api import build
from .config import Config, load_config
from .errors import BatchdepsError
from .parameters import (
    BoolParameter, DateParameter, DateTimeParameter, EnumParameter, FloatParameter,
    IntParameter, ListParameter, Parameter,
)
from .resolver import Plan, resolve
from .result import BuildResult, Status, TaskResult
from .targets import FileTarget, Storage, Target
from .task import ExternalTask, Task, WrapperTask

__version__ = "0.1.0"

__all__ = [
    "BatchdepsError", "BoolParameter", "BuildResult", "Config", "DateParameter",
    "DateTimeParameter", "EnumParameter", "ExternalTask", "FileTarget", "FloatParameter",
    "IntParameter", "ListParameter", "Parameter", "Plan", "Status", "Storage", "Target",
    "Task", "TaskResult", "WrapperTask", "build", "load_config", "resolve",
]
