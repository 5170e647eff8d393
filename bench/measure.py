"""Running one whole process and measuring it: wall time, exit code, peak memory."""

from __future__ import annotations

import os
import signal
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
    system_seconds: float = 0.0  # of it, system time (the kernel's work for the process)


#: GNU time reports the child's own peak memory. The peak that wait4() reports for a
#: child of this process is at least this process's own peak: Linux carries the parent's
#: high-water mark into a forked child across exec.
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


#: Set, a measured process would write no .pyc cache: every start compiles every module
#: again, and the figures grow by the compile time.
SKEWING = ("PYTHONDONTWRITEBYTECODE",)


def child_env(*dropped_prefixes: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment (or `base`) for a measured child: without the variables
    in SKEWING, nor those starting with one of `dropped_prefixes` (the machine's own
    BATCHDEPS_ or LUIGI_ settings)."""
    return {k: v for k, v in (os.environ if base is None else base).items()
            if k not in SKEWING and not (dropped_prefixes and k.startswith(dropped_prefixes))}


def run_process(argv: list[str], cwd: str, env: dict[str, str], log_path: str,
                timeout: float | None = None) -> Sample:
    """Run `argv` to the end; its stdout and stderr go to `log_path` (as under cron).
    The variables in SKEWING are dropped from `env`, whoever built it."""
    env = child_env(base=env)
    rss_file = log_path + ".rss"
    if GNU_TIME:
        argv = [GNU_TIME, "-q", "-f", "%M", "-o", rss_file, *argv]
    with open(log_path, "ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = None if timeout is None else started + timeout
        timed_out = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                timed_out = True
                break
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
    code = -9 if timed_out else os.waitstatus_to_exitcode(status)
    process.returncode = code
    peak = usage.ru_maxrss / 1024
    if GNU_TIME:
        try:
            with open(rss_file) as handle:
                peak = int(handle.read().split()[-1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
    return Sample(elapsed, code, peak, timed_out, usage.ru_utime + usage.ru_stime,
                  usage.ru_stime)


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


def paired_ratio(numerator: Series, denominator: Series) -> float | None:
    """Median of run-by-run ratios. Runs with the same index ran back to back, so a slow
    phase of the shared disk lands on both sides of each ratio."""
    ratios = [a.seconds / b.seconds for a, b in zip(numerator.samples, denominator.samples)
              if a.code == 0 and b.code == 0 and not a.timed_out and b.seconds > 0]
    return statistics.median(ratios) if ratios else None


def series_from_json(data: dict[str, object] | None) -> Series | None:
    """A Series back from `Series.to_json()` output."""
    if data is None:
        return None
    series = Series(note=str(data.get("note", "")))
    for run in data["runs"]:  # type: ignore[attr-defined]
        seconds, cpu, code, peak = run
        series.add(Sample(seconds, code, peak, code == -9, cpu))
    return series
