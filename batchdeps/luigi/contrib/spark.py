"""`luigi.contrib.spark`: not supported; its tasks cannot be made."""

from __future__ import annotations

from ..task import Task
from . import unsupported_class

SparkSubmitTask = unsupported_class("luigi.contrib.spark", "SparkSubmitTask", Task)
PySparkTask = unsupported_class("luigi.contrib.spark", "PySparkTask", Task)
