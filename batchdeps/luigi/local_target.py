"""Luigi's `luigi.local_target`: `LocalTarget` and `LocalFileSystem` (see target.py)."""

from __future__ import annotations

from .target import LocalFileSystem, LocalTarget

__all__ = ["LocalFileSystem", "LocalTarget"]
