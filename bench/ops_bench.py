"""Speed of the operator's commands: status and graph over 10,000 tasks, a 365-day backfill.

    python bench/ops_bench.py              # 5 repetitions per figure
    python bench/ops_bench.py --reps 9 --json results.json

Each figure is the median wall time and CPU time (user + system) of the whole `batchdeps`
process, start-up included; `batchdeps --help` is measured beside them as the start-up
floor. The goals (issue 12): `status` and `graph --format json` over 10,000 tasks in under
1 s; a 365-day backfill of the example pipeline with 300 days complete plans in well under
a second. On a loaded machine wall time exceeds CPU time; CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from measure import Sample, child_env, run_process

BATCHDEPS = shutil.which("batchdeps", path=os.path.dirname(sys.executable)) or "batchdeps"
TREE = 10_000
DAYS, COMPLETE_DAYS = 365, 300
LAST_DAY = dt.date(2026, 11, 22)


def tree_project(root: Path, built: bool) -> None:
    """bench/dags as the pipeline; with `built`, every tree node's output exists."""
    (root / "pipelines").mkdir(parents=True)
    shutil.copy(HERE / "dags" / "bd_dags.py", root / "pipelines" / "bd_dags.py")
    (root / "pipelines" / "__init__.py").write_text("")
    (root / "config.toml").write_text('[batchdeps]\nmodules = ["pipelines"]\n')
    if built:
        (root / "t" / "tree").mkdir(parents=True)
        for n in range(TREE):
            (root / "t" / "tree" / f"{n}.txt").write_text(f"{n}\n")


def backfill_project(root: Path) -> str:
    """The example pipeline with 365 days of raw logs, the oldest 300 days parsed and
    aggregated; returns the range A..B of the 365 days."""
    shutil.copytree(REPO / "pipelines", root / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "config.toml", root / "config.toml")
    first = LAST_DAY - dt.timedelta(days=DAYS - 1)
    for folder in ("raw", "parsed", "daily"):
        (root / "data" / folder).mkdir(parents=True)
    for offset in range(DAYS):
        day = first + dt.timedelta(days=offset)
        (root / "data" / "raw" / f"{day}.log").write_text("")
        if offset < COMPLETE_DAYS:
            (root / "data" / "parsed" / f"{day}.csv").write_text("")
            (root / "data" / "daily" / f"{day}.json").write_text("{}")
    return f"{first}..{LAST_DAY}"


TOKEN = "ops-bench-token"


def start_lock_server(base: Path) -> tuple[subprocess.Popen[str], str]:
    """A lock server on a free port of 127.0.0.1 (token TOKEN): the process and its URL."""
    process = subprocess.Popen(
        [BATCHDEPS, "lock-server", "--host", "127.0.0.1", "--port", "0", "--db",
         str(base / "locks.db")], env={**child_env(), "BATCHDEPS_LOCK_TOKEN": TOKEN},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()  # "listening on URL (...)"
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"lock server did not start: {line!r}")
    return process, line.split()[2]


def measure(argv: list[str], cwd: Path, reps: int, expect: int, log: Path) -> dict[str, object]:
    env = {**child_env(), "BATCHDEPS_LOCK_DIR": str(cwd / "locks"),
           "BATCHDEPS_LOCK_TOKEN": TOKEN}
    env.pop("BATCHDEPS_CONFIG", None)
    samples: list[Sample] = []
    for _ in range(reps):
        sample = run_process([BATCHDEPS, *argv], str(cwd), env, str(log))
        if sample.code != expect:
            raise SystemExit(f"{' '.join(argv)}: exit {sample.code}, expected {expect} "
                             f"(see {log})")
        samples.append(sample)
    return {
        "wall_s": round(statistics.median(s.seconds for s in samples), 3),
        "cpu_s": round(statistics.median(s.cpu_seconds for s in samples), 3),
        "runs": [[round(s.seconds, 3), round(s.cpu_seconds, 3)] for s in samples],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per figure")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bd-ops-bench-") as tmp:
        base = Path(tmp)
        log = base / "commands.log"
        built, fresh, backfill = base / "built", base / "fresh", base / "backfill"
        tree_project(built, built=True)
        tree_project(fresh, built=False)
        span = backfill_project(backfill)
        tree = ["TreeNode", "--size", str(TREE), "--root", "t"]
        cases: list[tuple[str, list[str], Path, int]] = [
            ("start-up: batchdeps --help", ["--help"], built, 0),
            ("status --format json, 10,000 tasks complete", ["status", *tree, "--format",
                                                            "json"], built, 0),
            ("status (text tree), 10,000 tasks complete", ["status", *tree], built, 0),
            ("graph --format json, 10,000 tasks complete", ["graph", *tree, "--format",
                                                           "json"], built, 0),
            ("status --format json, 10,000 tasks missing", ["status", *tree, "--format",
                                                           "json"], fresh, 1),
            ("graph --format json, 10,000 tasks missing", ["graph", *tree, "--format",
                                                          "json"], fresh, 0),
            ("run --dry-run, 10,000 tasks missing", ["run", *tree, "--dry-run"], fresh, 1),
            ((f"backfill plan: run DailyStats --day <{DAYS} days> --dry-run "
              f"({COMPLETE_DAYS} complete)"), ["run", "DailyStats", "--day", span, "--dry-run"],
             backfill, 1),
            (f"backfill status: status DailyStats --day <{DAYS} days>",
             ["status", "DailyStats", "--day", span], backfill, 1),
            (f"backfill plan: run WeeklyReport --week-end <{DAYS} days> --dry-run",
             ["run", "WeeklyReport", "--week-end", span, "--dry-run"], backfill, 3),
        ]
        server = start_lock_server(base)
        cases.append(("status --format json, 10,000 tasks missing, lock server asked",
                      ["status", *tree, "--format", "json", "--lock-url", server[1]], fresh, 1))
        try:
            for label, command, cwd, expect in cases:
                results[label] = measure(command, cwd, args.reps, expect, log)
                figures = results[label]
                print(f"{figures['wall_s']:7.3f} s wall {figures['cpu_s']:7.3f} s cpu  {label}",
                      flush=True)
        finally:
            server[0].terminate()
            server[0].wait()
    print(f"(medians of {args.reps}; {os.cpu_count()} CPUs; load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
