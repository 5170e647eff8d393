"""`luigi.contrib.hadoop`: not supported; its tasks cannot be made."""

from __future__ import annotations

from ..task import Task
from . import unsupported_class

JobTask = unsupported_class("luigi.contrib.hadoop", "JobTask", Task)
BaseHadoopJobTask = unsupported_class("luigi.contrib.hadoop", "BaseHadoopJobTask", Task)
