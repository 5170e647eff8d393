"""Running one whole process and measuring it: wall time, exit code, peak memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field


@dataclass
class Sample:
    """One process run: seconds from spawn to exit, exit code, peak resident memory (MiB)."""

    seconds: float
    code: int
    peak_mib: float
    timed_out: bool = False
    cpu_seconds: float = 0.0  # user + system time of the process


def run_process(argv: list[str], cwd: str, env: dict[str, str], log_path: str,
                timeout: float | None = None) -> Sample:
    """Run `argv` to the end; its stdout and stderr go to `log_path` (as under cron)."""
    with open(log_path, "ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL)
        deadline = None if timeout is None else started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                process.returncode = -9
                return Sample(time.perf_counter() - started, -9, usage.ru_maxrss / 1024, True,
                              usage.ru_utime + usage.ru_stime)
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    return Sample(elapsed, code, usage.ru_maxrss / 1024, False, usage.ru_utime + usage.ru_stime)


@dataclass
class Series:
    """Repeated samples of one thing; figures are medians."""

    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    @property
    def ok(self) -> bool:
        return bool(self.samples) and all(s.code == 0 and not s.timed_out for s in self.samples)

    @property
    def median(self) -> float | None:
        good = [s.seconds for s in self.samples if s.code == 0 and not s.timed_out]
        return statistics.median(good) if good else None

    @property
    def cpu_median(self) -> float | None:
        good = [s.cpu_seconds for s in self.samples if s.code == 0 and not s.timed_out]
        return statistics.median(good) if good else None

    @property
    def peak_mib(self) -> float | None:
        return max((s.peak_mib for s in self.samples), default=None)

    def to_json(self) -> dict[str, object]:
        return {
            "median_s": self.median,
            "cpu_median_s": self.cpu_median,
            "peak_mib": self.peak_mib,
            "runs": [[round(s.seconds, 4), round(s.cpu_seconds, 4), s.code, round(s.peak_mib, 1)]
                     for s in self.samples],
            "note": self.note,
        }
