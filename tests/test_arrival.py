"""arrival.py: when an external input counts as arrived (ready_after, stable_for, complete())."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest

import batchdeps as bd
from batchdeps.arrival import Sightings, look, ready_time
from batchdeps.durations import format_duration, parse_duration
from batchdeps.errors import TaskDefinitionError
from batchdeps.report.events import WaitingForInput
from batchdeps.report.progress import ProgressListener
from batchdeps.resolver import resolve


def _vendor(path: Path, **attrs: Any) -> bd.ExternalTask:
    cls = type("Vendor", (bd.ExternalTask,), {
        "output": lambda self: bd.FileTarget(str(path)), **attrs})
    return cls()


def test_before_ready_after_an_input_that_is_there_is_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_text("yesterday's file at the same path")
    today_2am = dt.datetime.combine(dt.date.today(), dt.time(2, 0)).timestamp()
    task = _vendor(path, ready_after="02:00")
    before = look(task, wall=lambda: today_2am - 60)
    assert not before.arrived and before.not_before == pytest.approx(today_2am)
    assert "not expected before 02:00:00 (ready_after)" in before.reason
    assert look(task, wall=lambda: today_2am + 60).arrived
    # a datetime, a time object and a method per instance mean the same
    for value in (dt.datetime.fromtimestamp(today_2am), dt.time(2, 0)):
        assert ready_time(_vendor(path, ready_after=value), today_2am) == pytest.approx(today_2am)
    method = _vendor(path, ready_after=lambda self: dt.datetime.fromtimestamp(today_2am))
    assert ready_time(method, today_2am - 5) == pytest.approx(today_2am)


@pytest.mark.parametrize("value", ["2am", "25:00", 5, object()])
def test_bad_ready_after_is_a_definition_error_naming_the_task(tmp_path: Path, value: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=r"Vendor\(\): ready_after must be"):
        look(_vendor(tmp_path / "x", ready_after=value))


@pytest.mark.parametrize("value", [-1, "soon", "5x"])
def test_bad_stable_for_is_a_definition_error(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "x"
    path.write_text("x")
    with pytest.raises(TaskDefinitionError, match=r"Vendor\(\): stable_for"):
        look(_vendor(path, stable_for=value))


def test_stable_for_takes_an_old_file_at_once_and_a_fresh_one_once_unchanged(
        tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_text("done")
    old = time.time() - 120
    os.utime(path, (old, old))
    assert look(_vendor(path, stable_for=60)).arrived  # unchanged for 2 minutes already
    path.write_text("growing")
    fresh = look(_vendor(path, stable_for=60))
    assert not fresh.arrived and "still growing" in fresh.reason
    assert fresh.paths == (str(path),)
    # The writer's clock is ahead (mtime in the future): seeing it unchanged is enough.
    future = time.time() + 3600
    os.utime(path, (future, future))
    now = [0.0]
    seen = Sightings(clock=lambda: now[0])
    task = _vendor(path, stable_for="1m")
    assert not look(task, seen).arrived
    now[0] = 59.0
    assert not look(task, seen).arrived
    now[0] = 61.0
    assert look(task, seen).arrived
    with path.open("a") as out:  # it changed again: the count starts over
        out.write("more")
    os.utime(path, (future + 1, future + 1))
    assert not look(task, seen).arrived


def test_custom_complete_with_a_success_marker_still_waits_for_ready_after(
        tmp_path: Path) -> None:
    marker = tmp_path / "_SUCCESS"
    task = _vendor(tmp_path / "part-0.csv", complete=lambda self: marker.exists(),
                   ready_after=dt.datetime.now() - dt.timedelta(hours=1))
    assert not task.complete()
    marker.write_text("")
    assert task.complete()  # the data file need not be listed: the marker says it is done
    later = _vendor(tmp_path / "part-0.csv", complete=lambda self: True,
                    ready_after=dt.datetime.now() + dt.timedelta(hours=1))
    [step] = resolve([later]).steps
    assert "not expected before" in step.reason  # the guard applies around complete()


def test_durations_parse_and_print_back() -> None:
    assert [parse_duration(v) for v in ("30s", "5m", "6h", "1h30m", "90", 2)] == [
        30.0, 300.0, 21600.0, 5400.0, 90.0, 2.0]
    assert [format_duration(v) for v in (2.04, 90, 5400, 21600)] == ["2s", "1m30s",
                                                                        "1h30m", "6h"]
    for bad in ("5x", "m", "1m1h", "-3s", ""):
        with pytest.raises(ValueError, match="duration such as 30s"):
            parse_duration(bad)


def test_progress_line_shows_what_is_waited_for_and_since_when() -> None:
    progress = ProgressListener(stream=open(os.devnull, "w"), clock=lambda: 0.0)
    progress.total = 3
    since = dt.datetime(2026, 12, 7, 2, 0, 5).timestamp()
    progress.on_event(WaitingForInput("r", "Raw(day=2026-12-06)", "Raw", ("in/x",), since,
                                      since + 3600, "external input in/x missing"))
    assert "waiting for Raw(day=2026-12-06) since 02:00:05" in progress.line()
    assert "2 pending" in progress.line()


def test_status_names_why_an_input_that_is_there_is_not_taken_yet(tmp_path: Path) -> None:
    from batchdeps.survey.states import BLOCKED, EXTERNAL_MISSING, survey

    path = tmp_path / "drop.csv"
    path.write_text("yesterday's file at the same path")
    tomorrow = dt.datetime.combine(dt.date.today() + dt.timedelta(days=1), dt.time(2, 0))
    vendor = _vendor(path, ready_after=tomorrow)

    class Load(bd.Task):
        def requires(self) -> Any:
            return vendor

        def output(self) -> Any:
            return bd.FileTarget(str(tmp_path / "loaded.csv"))

    found = {node.task_id: node for node in survey([Load()]).nodes}
    assert found["Vendor()"].state == EXTERNAL_MISSING
    assert found["Vendor()"].reasons() == [
        f"not expected before {tomorrow:%Y-%m-%d %H:%M:%S} (ready_after)"]
    assert found["Load()"].state == BLOCKED
    assert f"blocked: not expected before {tomorrow:%Y-%m-%d %H:%M:%S} (ready_after)" in \
        found["Load()"].reasons()
