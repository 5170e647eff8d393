"""Unit tests of batchdeps.report.result and batchdeps.report.summary: exit codes and the end summary."""

from __future__ import annotations

import io
import itertools
import os

import pytest

from batchdeps.errors import ExitCode
from batchdeps.report.events import RunFinished, TaskStarted
from batchdeps.report.result import BuildResult, Status, TaskResult
from batchdeps.report.summary import SummaryListener, format_summary

ALL_STATUSES = [
    Status.BUILT, Status.COMPLETE, Status.BUILT_ELSEWHERE, Status.FAILED,
    Status.UPSTREAM_FAILED, Status.MISSING_INPUT, Status.BLOCKED, Status.LOCK_TIMEOUT,
    Status.NOT_RUN,
]


def build_result(*results: TaskResult, requested: list[str] | None = None,
                 interrupted: bool = False, elapsed: float = 1.234) -> BuildResult:
    result = BuildResult("run-1", interrupted=interrupted, elapsed=elapsed)
    for item in results:
        result.tasks[item.task_id] = item
    result.requested = requested if requested is not None else [r.task_id for r in results]
    return result


def of(*statuses: str) -> BuildResult:
    return build_result(*(TaskResult(f"T(i={i})", s) for i, s in enumerate(statuses)))


# -- exit codes ------------------------------------------------------------------------
@pytest.mark.parametrize("statuses", [(), (Status.BUILT,), (Status.COMPLETE,),
                                      (Status.BUILT_ELSEWHERE, Status.BUILT, Status.COMPLETE)])
def test_exit_code_is_0_when_everything_is_complete(statuses: tuple[str, ...]) -> None:
    result = of(*statuses)
    assert result.exit_code == 0
    assert result.ok


@pytest.mark.parametrize(("statuses", "code"), [
    ((Status.FAILED,), 1),
    ((Status.UPSTREAM_FAILED,), 1),
    ((Status.MISSING_INPUT,), 3),
    ((Status.BLOCKED,), 3),
    ((Status.LOCK_TIMEOUT,), 4),
])
def test_exit_code_of_each_bad_outcome(statuses: tuple[str, ...], code: int) -> None:
    result = of(Status.BUILT, *statuses)
    assert result.exit_code == code
    assert not result.ok


@pytest.mark.parametrize("bad", list(itertools.combinations(
    [Status.FAILED, Status.MISSING_INPUT, Status.LOCK_TIMEOUT], 2)) + [
    (Status.FAILED, Status.MISSING_INPUT, Status.LOCK_TIMEOUT)])
def test_exit_code_precedence_failed_then_missing_then_lock_timeout(bad: tuple[str, ...]) -> None:
    expected = 1 if Status.FAILED in bad else 3 if Status.MISSING_INPUT in bad else 4
    assert of(Status.BUILT, *bad).exit_code == expected


@pytest.mark.parametrize("statuses", [(), (Status.FAILED, Status.MISSING_INPUT,
                                           Status.LOCK_TIMEOUT, Status.NOT_RUN)])
def test_interrupted_run_exits_130_over_everything(statuses: tuple[str, ...]) -> None:
    result = of(*statuses)
    result.interrupted = True
    assert result.exit_code == 130


def test_exit_codes_are_the_named_exit_codes() -> None:
    assert of(Status.BUILT).exit_code is ExitCode.OK
    assert of(Status.FAILED).exit_code is ExitCode.FAILED
    assert of(Status.MISSING_INPUT).exit_code is ExitCode.MISSING_INPUT
    assert of(Status.LOCK_TIMEOUT).exit_code is ExitCode.LOCK_WAIT_TIMEOUT
    interrupted = of()
    interrupted.interrupted = True
    assert interrupted.exit_code is ExitCode.INTERRUPTED


def test_requested_task_that_did_not_finish_well_is_exit_1() -> None:
    result = build_result(TaskResult("Top()", Status.NOT_RUN), TaskResult("Low()", Status.BUILT),
                          requested=["Top()"])
    assert result.exit_code == 1


def test_requested_ids_without_a_result_are_ignored() -> None:
    result = build_result(TaskResult("Low()", Status.BUILT), requested=["Top()"])
    assert result.exit_code == 0


def test_counts_and_by_status() -> None:
    result = of(Status.BUILT, Status.BUILT, Status.FAILED)
    assert result.counts() == {Status.BUILT: 2, Status.FAILED: 1}
    assert [r.task_id for r in result.by_status(Status.BUILT)] == ["T(i=0)", "T(i=1)"]
    assert result.by_status(Status.BLOCKED) == []


# -- summary text ----------------------------------------------------------------------
def test_summary_first_line_counts_every_outcome_in_fixed_order() -> None:
    result = of(*reversed(ALL_STATUSES), Status.BUILT)
    first = format_summary(result).splitlines()[0]
    assert first == (
        "batchdeps: 10 task(s): 2 built, 1 built elsewhere, 1 complete, 1 failed, "
        "1 upstream failed, 1 missing input, 1 blocked by missing input, "
        "1 lock wait timed out, 1 not run in 1.23 s (exit 1)"
    )


def test_summary_of_empty_run_says_nothing_to_do() -> None:
    assert format_summary(of()) == "batchdeps: 0 task(s): nothing to do in 1.23 s (exit 0)"


def test_summary_of_successful_run_is_one_line() -> None:
    result = build_result(TaskResult("T(i=0)", Status.BUILT),
                          TaskResult("T(i=1)", Status.COMPLETE), requested=["T(i=1)"])
    assert format_summary(result) == (
        "batchdeps: 2 task(s): 1 built, 1 complete in 1.23 s (exit 0)")


def test_summary_of_a_backfill_counts_the_requested_tasks() -> None:
    result = of(Status.COMPLETE, Status.BUILT, Status.BUILT_ELSEWHERE, Status.FAILED,
                Status.BLOCKED, Status.NOT_RUN)
    assert format_summary(result).splitlines()[1] == (
        "requested: 6 task(s): 1 complete, 2 built, 1 failed, 1 blocked, "
        "1 other (not run or still held)")


def test_summary_lists_failed_tasks_with_error_attempts_and_log() -> None:
    result = build_result(
        TaskResult("Clean(day=2026-11-24)", Status.FAILED, attempts=4,
                   error="RuntimeError: disk full", log_path="logs/clean.log"),
        TaskResult("Load()", Status.FAILED, attempts=1, error="KeyError: 'x'"),
        TaskResult("Report()", Status.UPSTREAM_FAILED), requested=["Report()"],
    )
    lines = format_summary(result).splitlines()
    assert lines[1:] == [
        "failed:",
        "  Clean(day=2026-11-24): RuntimeError: disk full [4 attempt(s), log logs/clean.log]",
        "  Load(): KeyError: 'x' [1 attempt(s)]",
    ]
    assert "(exit 1)" in lines[0]


def test_summary_lists_missing_inputs_with_their_paths() -> None:
    result = build_result(
        TaskResult("Raw(day=2026-11-24)", Status.MISSING_INPUT,
                   missing_paths=["data/raw/2026-11-24.csv", "s3://b/raw/x.csv"],
                   error="output data/raw/2026-11-24.csv missing"),
        TaskResult("Odd()", Status.MISSING_INPUT, error="never complete"),
        TaskResult("Clean(day=2026-11-24)", Status.BLOCKED),
        requested=["Clean(day=2026-11-24)"],
    )
    lines = format_summary(result).splitlines()
    assert "(exit 3)" in lines[0]
    assert lines[1:] == [
        "missing external inputs:",
        # a relative path with what it resolved to (cron runs in another folder)
        f"  Raw(day=2026-11-24): data/raw/2026-11-24.csv "
        f"({os.path.abspath('data/raw/2026-11-24.csv')}), s3://b/raw/x.csv",
        "  Odd(): never complete",
    ]


def test_summary_lists_lock_timeouts_with_holder_message() -> None:
    result = build_result(TaskResult("Big()", Status.LOCK_TIMEOUT,
                                     error="still held by host-b:42 after waiting 5 s"))
    assert format_summary(result).splitlines()[1:] == [
        "still held elsewhere:", "  Big(): still held by host-b:42 after waiting 5 s"]


def test_summary_lists_tasks_that_needed_retries_but_not_failed_ones_twice() -> None:
    result = build_result(TaskResult("Flaky()", Status.BUILT, attempts=3),
                          TaskResult("Once()", Status.BUILT, attempts=1),
                          TaskResult("Dead()", Status.FAILED, attempts=2, error="E: x"))
    text = format_summary(result)
    assert "needed retries:\n  Flaky(): 3 attempts" in text
    assert "Once()" not in text
    assert text.count("Dead()") == 1


def test_summary_of_interrupted_run_says_so() -> None:
    result = of(Status.BUILT, Status.NOT_RUN)
    result.interrupted = True
    text = format_summary(result)
    assert text.splitlines()[0].endswith("(exit 130)")
    assert text.splitlines()[-1] == "interrupted: running tasks stopped, locks released"


def test_summary_listener_prints_only_when_the_run_finishes() -> None:
    stream = io.StringIO()
    listener = SummaryListener(stream)
    listener.on_event(TaskStarted("run-1", "A()", "A", 1, "forced"))
    assert stream.getvalue() == ""
    result = of(Status.BUILT)
    listener.on_event(RunFinished("run-1", result))
    assert stream.getvalue() == format_summary(result) + "\n"
