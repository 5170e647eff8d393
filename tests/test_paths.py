"""Relative paths in messages carry what they resolved to: cron runs in another folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from batchdeps.paths import shown, shown_all


def test_relative_paths_show_their_absolute_path_and_others_stay_as_they_are() -> None:
    assert shown("data/x.csv") == f"data/x.csv ({os.path.abspath('data/x.csv')})"
    assert shown("/srv/etl/data/x.csv") == "/srv/etl/data/x.csv"
    assert shown("s3://bucket/raw/x.csv") == "s3://bucket/raw/x.csv"
    assert shown_all(["/a", "s3://b/c"]) == "/a, s3://b/c"


def test_cron_from_another_folder_names_the_folder_it_looked_in(project: Any,
                                                                  tmp_path: Path) -> None:
    elsewhere = tmp_path / "cron-home"
    elsewhere.mkdir()
    done = subprocess.run(
        project.command("run", "A", "--config", str(project.root / "config.toml")),
        cwd=elsewhere, env=project.env, text=True, capture_output=True, timeout=120)
    assert done.returncode == 3, done.stderr
    # in/source.txt exists beside config.toml, but relative paths are taken from the
    # current folder: the message says which file was looked for.
    assert f"in/source.txt ({elsewhere / 'in/source.txt'})" in done.stdout
