"""A million tasks: build time, growth per 10x, peak memory, `status` and `--dry-run`.

    python bench/million.py                          # 10^4, 10^5, 10^6 on /dev/shm (~10 min)
    python bench/million.py --sizes 10000,100000     # smaller, for a quick look
    python bench/million.py --dir /dev/shm --reps 2  # repetitions at sizes below 10^6

Each size is a generated 10-ary tree (`TreeNode` of bench/dags/bd_dags.py) built from
nothing by `batchdeps run` as a whole process, with default settings: run history, task
logs and per-task log lines on (all of them on the same tmpfs as the outputs, so that the
disk's swings stay out of the figures). The floor (bench/floor.py: N atomic file writes in
plain Python) runs right after each build, for the file system's own growth. On the
largest size it also times `run --dry-run` over the unbuilt tree (a full resolution) and
`status` over the built one (every output looked at). Load averages are printed before and
after each process; the results go to bench/results/million.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import Sample, child_env, run_process

BIN = Path(sys.executable).parent

#: the goals of issue 22 for this benchmark
GROWTH_GOAL = 11.0  # each 10x of tasks at most 11x of time
BYTES_GOAL = 1024  # peak resident memory per task at the largest size
ANSWER_GOAL = 60.0  # seconds for `status` and `--dry-run` on the largest size


def load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


class Workspace:
    """A folder on `base` with the benchmark DAGs and a config naming them; the history
    file and the task logs are made in it (the defaults: the current folder)."""

    def __init__(self, base: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="batchdeps-million-", dir=base))
        for source in (HERE / "dags").glob("*.py"):
            shutil.copy(source, self.path / source.name)
        (self.path / "config.toml").write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
        self.env = child_env("BATCHDEPS_", "LUIGI_")
        self.env["PYTHONPATH"] = str(self.path)
        self.env["BATCHDEPS_LOCK_DIR"] = str(self.path / "locks")  # not the machine's (run.py)
        self.log = str(self.path / "processes.log")

    def command(self, *args: str) -> list[str]:
        script = BIN / "batchdeps"
        return ([str(script)] if script.exists() else [sys.executable, "-m", "batchdeps.cli"]
                ) + list(args)

    def run(self, argv: list[str], label: str, expect: tuple[int, ...] = (0,)) -> Sample:
        before = load()
        sample = run_process(argv, str(self.path), self.env, self.log)
        print(f"  {label}: {sample.seconds:.2f} s wall, {sample.cpu_seconds:.2f} s CPU "
              f"({sample.system_seconds:.2f} s of it system), "
              f"peak {sample.peak_mib:,.0f} MiB, exit {sample.code} (load {before} -> "
              f"{load()})", flush=True)
        if sample.code not in expect:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                tail = handle.read().splitlines()[-15:]
            raise SystemExit(f"{label}: exit {sample.code}\n" + "\n".join(tail))
        return sample

    def close(self, keep: bool) -> None:
        if not keep:
            shutil.rmtree(self.path, ignore_errors=True)


def tree_args(size: int, root: Path) -> list[str]:
    return ["TreeNode", "--size", str(size), "--root", str(root)]


def measure_size(space: Workspace, size: int, reps: int, answers: bool) -> dict[str, object]:
    builds: list[Sample] = []
    floors: list[Sample] = []
    extra: dict[str, object] = {}
    for rep in range(reps):
        root = space.path / f"data-{size}-{rep}"
        if answers and rep == 0:
            dry = space.run(space.command("run", *tree_args(size, root), "--dry-run"),
                            f"--dry-run, unbuilt tree of {size:,}", expect=(1,))
            extra["dry_run_s"] = dry.seconds
            extra["dry_run_peak_mib"] = dry.peak_mib
        os.sync()
        builds.append(space.run(space.command("run", *tree_args(size, root)),
                                f"build, tree of {size:,}"))
        files = sum(1 for _ in os.scandir(root / "tree"))
        if files != size:
            raise SystemExit(f"tree of {size:,}: {files} files written")
        if answers and rep == 0:
            status = space.run(space.command("status", *tree_args(size, root)),
                               f"status, built tree of {size:,}")
            extra["status_s"] = status.seconds
            extra["status_peak_mib"] = status.peak_mib
        shutil.rmtree(root, ignore_errors=True)
        floor_root = space.path / f"floor-{size}-{rep}"
        os.sync()
        floors.append(space.run([sys.executable, str(HERE / "floor.py"), "write", str(size),
                                 str(floor_root)], f"floor, {size:,} files"))
        shutil.rmtree(floor_root, ignore_errors=True)
    wall = statistics.median(s.seconds for s in builds)
    peak = max(s.peak_mib for s in builds)
    return {
        "size": size, "reps": reps,
        "wall_s": wall,
        "cpu_s": statistics.median(s.cpu_seconds for s in builds),
        "system_s": statistics.median(s.system_seconds for s in builds),
        "peak_mib": peak,
        "bytes_per_task": peak * 1024 * 1024 / size,
        "floor_s": statistics.median(s.seconds for s in floors),
        "runs": [[round(s.seconds, 3), round(s.cpu_seconds, 3), round(s.peak_mib, 1),
                  round(s.system_seconds, 3)]
                 for s in builds],
        "floor_runs": [round(s.seconds, 3) for s in floors],
        **extra,
    }


def render(rows: list[dict[str, object]]) -> str:
    lines = ["| tasks | build (wall) | CPU | growth per 10x | floor | floor growth | "
             "peak RSS | per task | per task over a one-task run |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    previous: dict[str, object] | None = None
    for row in rows:
        growth = floor_growth = "–"
        if previous is not None:
            factor = float(row["size"]) / float(previous["size"])  # type: ignore[arg-type]
            per10 = lambda a, b: (a / b) ** (1 / __import__("math").log10(factor))
            grown = per10(row["wall_s"], previous["wall_s"])  # type: ignore[arg-type]
            mark = "✓" if grown <= GROWTH_GOAL else "✗"
            growth = f"{grown:.1f}x {mark}"
            floor_growth = f"{per10(row['floor_s'], previous['floor_s']):.1f}x"  # type: ignore[arg-type]
        lines.append(
            f"| {row['size']:,} | {row['wall_s']:.2f} s | {row['cpu_s']:.2f} s | {growth} | "
            f"{row['floor_s']:.2f} s | {floor_growth} | {row['peak_mib']:,.0f} MiB | "
            f"{row['bytes_per_task']:,.0f} B | {row['bytes_per_task_over_base']:,.0f} B |")
        previous = row
    last = rows[-1]
    if "status_s" in last:
        lines.append("")
        lines.append(f"On {last['size']:,} tasks: `run --dry-run` over the unbuilt tree "
                     f"{last['dry_run_s']:.1f} s (peak {last['dry_run_peak_mib']:,.0f} MiB), "
                     f"`status` over the built tree {last['status_s']:.1f} s (peak "
                     f"{last['status_peak_mib']:,.0f} MiB); goal under {ANSWER_GOAL:.0f} s each.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where the workspace goes (default /dev/shm, a tmpfs)")
    parser.add_argument("--reps", type=int, default=3,
                        help="builds per size below 10^6 (one at 10^6 and above)")
    parser.add_argument("--json", default=str(HERE / "results" / "million.json"))
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    space = Workspace(args.dir)
    rows = []
    print(f"load before: {load()}", flush=True)
    try:
        warm = space.run(space.command("run", "Leaf", "--n", "0", "--root",
                                       str(space.path / "w")), "warm-up (bytecode)")
        for size in sizes:
            reps = 1 if size >= 1_000_000 else args.reps
            row = measure_size(space, size, reps, answers=size == max(sizes))
            # what the tasks add over a one-task run (interpreter, imports, config)
            row["bytes_per_task_over_base"] = (row["peak_mib"] - warm.peak_mib) * 1024 ** 2 / size
            rows.append(row)
    finally:
        space.close(args.keep)
    print(f"load after: {load()}\n")
    table = render(rows)
    print(table)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                                           "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
