"""Fixtures shared by every test file; the helpers themselves live in the `support` package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.project import CONFIG, DEMO_PIPELINE, Project

#: Fixtures of the lock-server tests (lock_server, lock_project), registered once for all.
pytest_plugins = ["support.lockutil"]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A project with the demo pipeline, its external input present, and local locks."""
    proj = Project(tmp_path)
    proj.write("config.toml", CONFIG)
    proj.write("pipelines/__init__.py", "")
    (tmp_path / "pipelines" / "demo.py").write_text(DEMO_PIPELINE)
    proj.write("in/source.txt", "raw\n")
    yield proj
