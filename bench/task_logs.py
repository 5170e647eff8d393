"""What per-attempt task logs cost: a run of N trivial tasks with task_logs off, auto, always.

    python bench/task_logs.py                 # 10,000 tasks, 3 rounds, workers 1
    python bench/task_logs.py --size 2000 --rounds 5 --workers 2

Each round runs the modes one after the other (A B C A B C ...), as whole `batchdeps run`
processes on the wrapper-over-N DAG of `bench/dags/bd_dags.py`, and prints the median wall
time and the median CPU time (user + system) of each mode. CPU time is the steadier figure
on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from measure import child_env

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("off", "auto", "always")


def run_once(workspace: str, mode: str, size: int, workers: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, log files made) of one run from an empty workspace."""
    for name in ("data", "logs"):
        shutil.rmtree(os.path.join(workspace, name), ignore_errors=True)
    batchdeps = os.path.join(os.path.dirname(sys.executable), "batchdeps")
    argv = [batchdeps, "run", "AllLeaves", "--size", str(size), "--root", "data",
            "--config", f"{mode}.toml", "--workers", str(workers)]
    env = {**child_env(), "PYTHONPATH": os.path.join(HERE, "dags"),
           "BATCHDEPS_LOCK_DIR": os.path.join(workspace, "locks")}
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=workspace, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code != 0:
        raise SystemExit(f"batchdeps exited {code} (mode {mode})")
    logs = os.path.join(workspace, "logs")
    files = sum(len(names) for _, _, names in os.walk(logs)) if os.path.isdir(logs) else 0
    return wall, usage.ru_utime + usage.ru_stime, files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    workspace = tempfile.mkdtemp(prefix="bd-tasklogs-")
    try:
        for mode in MODES:
            with open(os.path.join(workspace, f"{mode}.toml"), "w") as handle:
                handle.write(f'[batchdeps]\nmodules = ["bd_dags"]\ntask_logs = "{mode}"\n')
        walls: dict[str, list[float]] = {m: [] for m in MODES}
        cpus: dict[str, list[float]] = {m: [] for m in MODES}
        files: dict[str, int] = {}
        for _ in range(args.rounds):
            for mode in MODES:
                wall, cpu, made = run_once(workspace, mode, args.size, args.workers)
                walls[mode].append(wall)
                cpus[mode].append(cpu)
                files[mode] = made
        print(f"{args.size} trivial tasks, workers={args.workers}, median of {args.rounds}:")
        base = statistics.median(cpus["off"])
        for mode in MODES:
            cpu = statistics.median(cpus[mode])
            print(f"  task_logs={mode:6}  wall {statistics.median(walls[mode]):7.2f} s  "
                  f"cpu {cpu:7.2f} s ({(cpu - base) / base * 100:+.0f}% vs off)  "
                  f"log files {files[mode]}")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
