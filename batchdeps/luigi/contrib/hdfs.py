"""`luigi.contrib.hdfs`: not supported; its targets cannot be made (docs/from-luigi.md)."""

from __future__ import annotations

from ..target import Target
from . import unsupported_class

HdfsTarget = unsupported_class("luigi.contrib.hdfs", "HdfsTarget", Target)
HdfsClient = unsupported_class("luigi.contrib.hdfs", "HdfsClient")
HdfsFlagTarget = unsupported_class("luigi.contrib.hdfs", "HdfsFlagTarget", Target)
PlainFormat = unsupported_class("luigi.contrib.hdfs", "PlainFormat")
