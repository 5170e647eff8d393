"""`luigi.contrib.postgres`: not supported; its tasks and targets cannot be made."""

from __future__ import annotations

from ..target import Target
from ..task import Task
from . import unsupported_class

PostgresTarget = unsupported_class("luigi.contrib.postgres", "PostgresTarget", Target)
CopyToTable = unsupported_class("luigi.contrib.postgres", "CopyToTable", Task)
PostgresQuery = unsupported_class("luigi.contrib.postgres", "PostgresQuery", Task)
