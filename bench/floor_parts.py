"""What of a build's time over the floor the contract's own work is, and what batchdeps' Python.

    python bench/floor_parts.py                    # tree of 10,000 on /dev/shm, 3 rounds
    python bench/floor_parts.py --size 100000 --reps 1 --dir /dev/shm
    python bench/floor_parts.py --reps 3 --calls   # and Python calls per task (cProfile)

Each round runs, as whole processes one after the other into fresh folders: the floor
(`floor.py write N`: open, write, close, rename per file), then `floor.py contract N PARTS`
with one more part of batchdeps' per-task work each time (the two looks at the missing
output, the lock, the two log lines, the task log's scratch file, the history rows: see
bench/floor.py), then `batchdeps run TreeNode --size N` with default settings (the bench
DAG of bench/run.py, history and task logs fresh each round, as the contract's). So the
last contract line is the same system calls and the same history writes as batchdeps
makes, in a plain loop. The line after it runs the bench tree's own task code in that loop
instead of the plain write (its task objects made by `requires()`, its `output()` targets,
its `run()` through a staging scope, committed: `floor.py contract ... model`), so what is
left between that line and batchdeps is the runner's own Python: scheduling, the attempt's
lifecycle, the listeners' and the capture's Python around the system calls they make.

Prints per line the medians, the paired ratio to the floor (run by run), and CPU time
per task over the floor and over the line before (with `--calls`, also the Python
function calls per task each line makes, counted by cProfile in two more runs of each,
at the size and at a tenth of it, the difference over the difference in tasks so that
start-up is not counted: what the interpreter executes, the same whatever the load); the
last line, a build of one task, is batchdeps' start-up (interpreter, imports, config),
which the per-task figures of the run include (spread over its tasks). Load averages are
printed with each round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from floor import CONTRACT_PARTS
from measure import Sample, child_env, run_process

#: the lines, in order: (label, parts of the contract floor; None: the floor; "run": batchdeps)
LADDER: list[tuple[str, str | None]] = [
    ("floor: open, write, close, rename", None),
    ("+ two looks at the missing output (stat)", "looks"),
    ("+ lock taken and given back (fcntl)", "looks,lock"),
    ("+ two log lines", "looks,lock,lines"),
    ("+ task log scratch: size, header, size", "looks,lock,lines,capture"),
    ("+ history rows (SQLite): the contract's floor", ",".join(CONTRACT_PARTS)),
    ("+ the task model: the tree's task objects, targets, run() through staging",
     ",".join((*CONTRACT_PARTS, "model"))),
    ("batchdeps run (default settings)", "run"),
    ("batchdeps start-up: a build of one task", "one"),
]


def load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--calls", action="store_true",
                        help="also run each line under cProfile at --size and at a tenth of it "
                             "and print its Python function calls per task (the difference "
                             "over the difference in tasks: start-up taken out)")
    args = parser.parse_args()

    workspace = Path(tempfile.mkdtemp(prefix="batchdeps-floor-parts-", dir=args.dir))
    for source in (HERE / "dags").glob("*.py"):
        shutil.copy(source, workspace / source.name)
    (workspace / "config.toml").write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
    env = child_env("BATCHDEPS_")
    env["PYTHONPATH"] = str(workspace)
    env["BATCHDEPS_LOCK_DIR"] = str(workspace / "locks")  # not the machine's (run.py)
    log = str(workspace / "processes.log")
    python = sys.executable
    size = args.size

    def one(parts: str | None, profile: str | None = None, n: int | None = None) -> Sample:
        n = size if n is None else n
        root = workspace / "out"
        shutil.rmtree(root, ignore_errors=True)
        prefix = [python] if profile is None else [python, "-m", "cProfile", "-o", profile]
        if parts in ("run", "one"):
            for leftover in workspace.glob("batchdeps-history.db*"):
                leftover.unlink()
            shutil.rmtree(workspace / "logs", ignore_errors=True)
            argv = [*prefix, "-m", "batchdeps.cli", "run", "TreeNode", "--size",
                    str(n if parts == "run" else 1), "--root", str(root)]
        elif parts is None:
            argv = [*prefix, str(HERE / "floor.py"), "write", str(n), str(root)]
        else:
            argv = [*prefix, str(HERE / "floor.py"), "contract", str(n), str(root), parts]
        sample = run_process(argv, str(workspace), env, log)
        if sample.code != 0:
            raise SystemExit(f"exit {sample.code}: {' '.join(argv)}; see {log}")
        shutil.rmtree(root, ignore_errors=True)
        return sample

    try:
        one("run")  # bytecode written, the file system warmed
        samples: dict[str, list[Sample]] = {label: [] for label, _ in LADDER}
        for rep in range(args.reps):
            before = load()
            for label, parts in LADDER:
                samples[label].append(one(parts))
            print(f"round {rep + 1}: load {before} -> {load()}", flush=True)
        calls: dict[str, float] = {}
        if args.calls:
            import pstats

            # Each line at two sizes: the difference over the difference in tasks is the
            # calls per task, with the start-up's calls (interpreter, imports, config,
            # the history's schema) taken out of every line alike.
            profile = str(workspace / "line.prof")
            small = max(1, size // 10)
            for label, parts in LADDER[:-1]:
                counts = []
                for n in (size, small):
                    one(parts, profile, n)
                    counts.append(pstats.Stats(profile).total_calls)  # type: ignore[attr-defined]
                calls[label] = (counts[0] - counts[1]) / (size - small)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)

    floor = samples[LADDER[0][0]]
    print(f"\ntree of {size:,}, {args.reps} round(s), {args.dir or 'the disk'}")
    print("| line | wall | CPU | / floor, paired | CPU / floor, paired "
          "| CPU µs per task over the floor | over the line before |"
          + (" Python calls per task |" if calls else ""))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if calls else ""))
    previous: list[Sample] | None = None
    for label, _ in LADDER:
        mine = samples[label]
        wall = statistics.median(s.seconds for s in mine)
        cpu = statistics.median(s.cpu_seconds for s in mine)
        ratio = statistics.median(a.seconds / b.seconds for a, b in zip(mine, floor))
        cpu_ratio = statistics.median(a.cpu_seconds / b.cpu_seconds for a, b in zip(mine, floor))
        over = statistics.median((a.cpu_seconds - b.cpu_seconds) / size * 1e6
                                 for a, b in zip(mine, floor))
        step = ""
        if previous is not None and label != LADDER[-1][0]:
            added = statistics.median((a.cpu_seconds - b.cpu_seconds) / size * 1e6
                                      for a, b in zip(mine, previous))
            step = f"{added:.0f} µs"
        per_task = f" {calls[label]:.0f} |" if label in calls else (" |" if calls else "")
        print(f"| {label} | {wall:.3f} s | {cpu:.3f} s | {ratio:.2f}x | {cpu_ratio:.2f}x "
              f"| {over:.0f} µs | {step} |{per_task}")
        previous = mine
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
