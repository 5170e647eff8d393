"""Prometheus metrics of runs and tasks: counted in plain dicts, rendered by prometheus_client.

The same `TaskMetrics` counts a run (the listener behind `batchdeps run --metrics-file`)
and the lock server (fed by the history rows every runner sends it). Labels are the task
family and the outcome only, never a parameter value or a path, so the number of series
stays bounded by the pipeline's code. prometheus_client is imported only when metrics are
rendered, never per event and never by `batchdeps --help`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .report.events import Event, RunFinished, TaskFinished

PREFIX = "batchdeps"
#: upper bounds of the task duration histogram, seconds (batch tasks: seconds to hours)
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0,
                    float("inf"))
#: exit code of a run -> its outcome label
RUN_OUTCOMES = {0: "ok", 1: "failed", 2: "usage", 3: "missing_input", 4: "lock_wait_timeout",
                130: "interrupted"}


def outcome_label(status: str) -> str:
    """A task status as a label value: `built elsewhere` -> `built_elsewhere`."""
    return str(status).replace(" ", "_")


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.counts[index] += 1
                break
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        running = 0
        out = []
        for bound, count in zip(DURATION_BUCKETS, self.counts):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class TaskMetrics:
    """Runs by outcome, tasks by family and outcome, and task durations (tasks that ran)."""

    def __init__(self) -> None:
        self.runs: dict[str, float] = {}
        self.tasks: dict[tuple[str, str], float] = {}
        self.durations: dict[tuple[str, str], _Histogram] = {}
        self.history_dropped = 0.0

    def task(self, family: str, status: str, duration: float, ran: bool) -> None:
        key = (family, outcome_label(status))
        self.tasks[key] = self.tasks.get(key, 0.0) + 1
        if ran:
            histogram = self.durations.get(key)
            if histogram is None:
                histogram = self.durations[key] = _Histogram()
            histogram.observe(max(0.0, duration))

    def run(self, exit_code: int) -> None:
        outcome = RUN_OUTCOMES.get(exit_code, "failed")
        self.runs[outcome] = self.runs.get(outcome, 0.0) + 1

    def families(self) -> Iterator[Any]:
        """The metric families (prometheus_client objects)."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        runs = CounterMetricFamily(f"{PREFIX}_runs", "Runs of batchdeps by outcome.",
                                   labels=["outcome"])
        for outcome, count in sorted(self.runs.items()):
            runs.add_metric([outcome], count)
        yield runs
        tasks = CounterMetricFamily(f"{PREFIX}_tasks", "Tasks that reached a final state, by "
                                    "family and outcome.", labels=["family", "outcome"])
        for (family, outcome), count in sorted(self.tasks.items()):
            tasks.add_metric([family, outcome], count)
        yield tasks
        durations = HistogramMetricFamily(
            f"{PREFIX}_task_duration_seconds", "Seconds tasks ran (all attempts), by family "
            "and outcome.", labels=["family", "outcome"])
        for (family, outcome), histogram in sorted(self.durations.items()):
            durations.add_metric([family, outcome], histogram.buckets(), histogram.total)
        yield durations
        dropped = CounterMetricFamily(
            f"{PREFIX}_history_dropped_rows", "History rows a runner dropped because the "
            "lock server did not take them in time.")
        dropped.add_metric([], self.history_dropped)
        yield dropped


class _Collector:
    """A prometheus_client collector over a function that yields metric families."""

    def __init__(self, families: Callable[[], Iterable[Any]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Any]:
        return self._families()


def exposition(families: Callable[[], Iterable[Any]]) -> bytes:
    """The text exposition format of `families` (prometheus_client's own renderer)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families))  # type: ignore[arg-type]
    return generate_latest(registry)  # type: ignore[no-any-return]


class RunMetrics:
    """The listener behind `--metrics-file`: counts one run, writes the file at its end.

    The file is written atomically (prometheus_client's `write_to_textfile`: a temporary
    file renamed over the old one), as node_exporter's textfile collector needs.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.metrics = TaskMetrics()
        self.finished_at: float | None = None
        self.exit_code: int | None = None
        self.history_dropped: Callable[[], float] | None = None

    listens_to = (TaskFinished, RunFinished)

    def on_event(self, event: Event) -> None:
        if isinstance(event, TaskFinished):
            self.metrics.task(event.family, event.status, event.duration, event.attempts > 0)
        elif isinstance(event, RunFinished):
            self.exit_code = event.result.exit_code
            self.metrics.run(self.exit_code)
            self.finished_at = self.clock()

    def _families(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        if self.history_dropped is not None:
            self.metrics.history_dropped = self.history_dropped()
        yield from self.metrics.families()
        if self.finished_at is not None and self.exit_code is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_run_exit_code",
                                    "Exit code of the run that wrote this file.",
                                    value=self.exit_code)
            yield GaugeMetricFamily(f"{PREFIX}_last_run_finished_timestamp_seconds",
                                    "When the run that wrote this file finished (Unix time).",
                                    value=self.finished_at)

    def close(self) -> None:
        """Write the file (also after an error that stopped the run before its end)."""
        import logging

        from prometheus_client import CollectorRegistry, write_to_textfile

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self._families))  # type: ignore[arg-type]
        try:
            write_to_textfile(self.path, registry)
        except OSError as exc:
            logging.getLogger("batchdeps").warning("cannot write the metrics file %s: %s",
                                                   self.path, exc)
