"""End-to-end on the example pipeline: date-range backfills, --max-tasks, and `status`
after an intermediate output was deleted."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.project import BATCHDEPS

REPO = Path(__file__).resolve().parent.parent
FIRST, LAST = dt.date(2026, 10, 24), dt.date(2026, 11, 22)  # 30 days
NO_INPUT = dt.date(2026, 11, 10)


class Example:
    """A copy of the example pipeline with sample logs, and a runner of `batchdeps`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(REPO / "pipelines", root / "pipelines",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "config.toml", root / "config.toml")
        self.env = {"BATCHDEPS_LOCK_DIR": str(root / "locks"), "PATH": "/usr/bin:/bin"}

    def sample(self, end: dt.date, days: int) -> None:
        subprocess.run([sys.executable, "-m", "pipelines.sample_data", "--lines", "20",
                        "--end", str(end), "--days", str(days)],
                       cwd=self.root, env=self.env, check=True, capture_output=True)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BATCHDEPS, *args, "--log-level", "WARNING"] if args[0] == "run"
                              else [BATCHDEPS, *args], cwd=self.root, env=self.env,
                              text=True, capture_output=True, timeout=300, check=False)

    def daily(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "data/daily").glob("*.json"))


@pytest.fixture
def example(tmp_path: Path) -> Example:
    return Example(tmp_path)


def days(first: dt.date, last: dt.date) -> list[str]:
    return [str(first + dt.timedelta(n)) for n in range((last - first).days + 1)]


def test_30_day_backfill_builds_every_day_but_the_one_without_input(example: Example) -> None:
    example.sample(LAST, 30)
    (example.root / f"data/raw/{NO_INPUT}.log").unlink()
    early = example.run("run", "DailyStats", "--day", f"{FIRST}..{FIRST + dt.timedelta(9)}")
    assert early.returncode == 0, early.stdout + early.stderr
    assert "requested: 10 task(s): 0 complete, 10 built, 0 failed, 0 blocked" in early.stdout

    span = f"{FIRST}..{LAST}"
    status = example.run("status", "DailyStats", "--day", span, "--format", "json")
    assert status.returncode == 3, status.stderr
    document = json.loads(status.stdout)
    states = {n["task_id"]: n["state"] for n in document["nodes"]}
    assert len(document["requested"]) == 30
    assert sum(states[t] == "complete" for t in document["requested"]) == 10
    assert states[f"DailyStats(day={NO_INPUT}, root=data, top=5)"] == "blocked"
    assert states[f"RawAccessLog(day={NO_INPUT}, root=data)"] == "external-missing"

    dry = example.run("run", "DailyStats", "--day", span, "--dry-run")
    assert dry.returncode == 3
    assert [line.split(maxsplit=1)[1].split("  (")[0] for line in dry.stdout.splitlines()
            if line.startswith("blocked ")] == [f"ParseLog(day={NO_INPUT}, root=data)",
                                                f"DailyStats(day={NO_INPUT}, root=data, top=5)"]
    assert "38 task(s) would run; 2 blocked; 1 external input(s) missing" in dry.stdout

    result = example.run("run", "DailyStats", "--day", span, "--workers", "2")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "requested: 30 task(s): 10 complete, 19 built, 0 failed, 1 blocked" in result.stdout
    assert f"data/raw/{NO_INPUT}.log" in result.stdout
    assert example.daily() == [d for d in days(FIRST, LAST) if d != str(NO_INPUT)]


def test_weekly_reports_over_a_range_share_their_daily_tasks(example: Example) -> None:
    example.sample(LAST, 9)
    result = example.run("run", "WeeklyReport", "--week-end",
                         f"{LAST - dt.timedelta(2)}..{LAST}")
    assert result.returncode == 0, result.stdout + result.stderr
    # 3 reports over 9 days: each day parsed and aggregated once, not once per report.
    assert "21 built" in result.stdout
    assert "requested: 3 task(s): 0 complete, 3 built" in result.stdout


def test_max_tasks_takes_the_oldest_missing_days_and_reverse_the_newest(
        example: Example) -> None:
    example.sample(LAST, 6)
    span = f"{LAST - dt.timedelta(5)}..{LAST}"
    assert example.run("run", "DailyStats", "--day", str(LAST - dt.timedelta(5))).returncode == 0
    first = example.run("run", "DailyStats", "--day", span, "--max-tasks", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert example.daily() == days(LAST - dt.timedelta(5), LAST - dt.timedelta(3))
    assert "3 more requested task(s) left" in first.stderr
    newest = example.run("run", "DailyStats", "--day", span, "--max-tasks", "1", "--reverse")
    assert newest.returncode == 0
    assert str(LAST) in example.daily() and str(LAST - dt.timedelta(1)) not in example.daily()
    status = example.run("status", "DailyStats", "--day", span, "--max-tasks", "1")
    assert status.returncode == 1
    assert sum("[missing]" in line for line in status.stdout.splitlines()
               if line.startswith("DailyStats")) == 1


def test_status_after_deleting_an_intermediate_shows_complete_upstream_missing(
        example: Example) -> None:
    example.sample(LAST, 7)
    assert example.run("run", "WeeklyReport").returncode == 0
    (example.root / "data/parsed/2026-11-18.csv").unlink()
    again = example.run("run", "WeeklyReport")
    assert again.returncode == 0 and "built" not in again.stdout  # Luigi's rule: complete
    status = example.run("status", "WeeklyReport")
    assert status.returncode == 0, status.stdout  # `run` would build nothing ...
    top = status.stdout.splitlines()[0]  # ... but the tree says what is wrong
    assert "[complete, upstream missing]" in top and "ParseLog(day=2026-11-18" in top
    assert "data/parsed/2026-11-18.csv missing" in status.stdout
    nodes = {n["task_id"]: n for n in json.loads(
        example.run("status", "WeeklyReport", "--format", "json").stdout)["nodes"]}
    parse = nodes["ParseLog(day=2026-11-18, root=data)"]
    assert parse["state"] == "missing" and parse["missing_outputs"] == [
        "data/parsed/2026-11-18.csv"]
    weekly = nodes["WeeklyReport(week_end=2026-11-22, days=7, root=data)"]
    assert weekly["label"] == "complete, upstream missing"
    assert weekly["upstream_missing"] == "ParseLog(day=2026-11-18, root=data)"

    rebuilt = example.run("run", "WeeklyReport", "--force-from",
                          "ParseLog(day=2026-11-18, root=data)")
    assert rebuilt.returncode == 0 and "3 built" in rebuilt.stdout
    assert example.run("status", "WeeklyReport").stdout.splitlines()[0].endswith("[complete]")


def test_status_shows_complete_upstream_newer_after_an_input_changes(example: Example) -> None:
    example.sample(LAST, 7)
    assert example.run("run", "WeeklyReport").returncode == 0
    raw = example.root / "data/raw/2026-11-20.log"
    later = (example.root / "data/reports/weekly-2026-11-22.md").stat().st_mtime + 60
    os.utime(raw, (later, later))
    lines = example.run("status", "WeeklyReport").stdout.splitlines()
    assert "[complete, upstream newer]" in lines[0]
    assert any("ParseLog(day=2026-11-20" in line and "upstream newer" in line for line in lines)
    assert any("ParseLog(day=2026-11-19" in line and line.endswith("[complete]")
               for line in lines)
