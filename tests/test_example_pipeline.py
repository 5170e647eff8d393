"""The example pipeline, run the way the README's first command runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from support.project import BATCHDEPS

REPO = Path(__file__).resolve().parent.parent


def test_example_pipeline_builds_then_reruns_as_no_op(tmp_path: Path) -> None:
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    env = {"BATCHDEPS_LOCK_DIR": str(tmp_path / "locks"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "pipelines.sample_data", "--lines", "300"],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    first = subprocess.run([BATCHDEPS, "run", "WeeklyReport"], cwd=tmp_path, env=env,
                           text=True, capture_output=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "15 built" in first.stdout
    report = (tmp_path / "data/reports/weekly-2026-11-22.md").read_text()
    assert report.startswith("# Web traffic, 2026-11-16 to 2026-11-22")
    assert "Total requests: 2100" in report  # 7 days x 300 parsed lines; garbage skipped
    daily = json.loads((tmp_path / "data/daily/2026-11-22.json").read_text())
    assert daily["requests"] == 300
    assert sum(daily["statuses"].values()) == 300

    second = subprocess.run([BATCHDEPS, "run", "WeeklyReport"], cwd=tmp_path, env=env,
                            text=True, capture_output=True)
    assert second.returncode == 0
    assert "1 complete" in second.stdout and "built" not in second.stdout

    (tmp_path / "data/raw/2026-11-19.log").unlink()
    (tmp_path / "data/parsed/2026-11-19.csv").unlink()
    (tmp_path / "data/daily/2026-11-19.json").unlink()
    (tmp_path / "data/reports/weekly-2026-11-22.md").unlink()
    third = subprocess.run([BATCHDEPS, "run", "WeeklyReport"], cwd=tmp_path, env=env,
                           text=True, capture_output=True)
    assert third.returncode == 3
    assert "data/raw/2026-11-19.log" in third.stdout
