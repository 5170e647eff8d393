"""Where a run with nothing to do spends its time per task, in process, beside the floor's.

    python bench/noop_parts.py                        # 100,000 complete leaves on /dev/shm
    python bench/noop_parts.py --size 10000 --reps 5

Builds `AllLeaves --size N` once (bench/dags/bd_dags.py), then times, in this process (best
of `--reps`, CPU time of this thread), each part of resolving the wrapper over its N
complete leaves, and the floor's own loop (`floor.py check`: a join and a stat per file):
the user's `requires()` (N `Leaf` task objects), the least a Python object with the same
task id costs (a slotted class and the same f-string), each leaf's `output()` (N targets),
the targets alone (`FileTarget` of each path), the look at every output (`check_exists`: a
stat each), and `resolve()` whole. The whole process figures (start-up included) are
bench/run.py's "nothing to do" rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from measure import child_env

HERE = Path(__file__).resolve().parent


def best(reps: int, action: Callable[[], Any]) -> float:
    """The least CPU time of `reps` calls of `action` (the garbage collector held back, as
    resolution holds it)."""
    import gc

    times = []
    for _ in range(reps):
        gc.collect()
        gc.disable()
        started = time.thread_time()
        action()
        times.append(time.thread_time() - started)
        gc.enable()
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args()
    size = args.size

    workspace = Path(tempfile.mkdtemp(prefix="batchdeps-noop-parts-", dir=args.dir))
    try:
        for source in (HERE / "dags").glob("*.py"):
            shutil.copy(source, workspace / source.name)
        (workspace / "config.toml").write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
        root = str(workspace / "data")
        env = child_env("BATCHDEPS_")
        env["PYTHONPATH"] = str(workspace)
        env["BATCHDEPS_LOCK_DIR"] = str(workspace / "locks")
        subprocess.run([sys.executable, "-m", "batchdeps.cli", "run", "AllLeaves", "--size",
                        str(size), "--root", root, "--workers", "2"], cwd=workspace, env=env,
                       check=True, capture_output=True)
        sys.path.insert(0, str(workspace))
        from bd_dags import AllLeaves

        from batchdeps.resolver import resolve
        from batchdeps.targets import FileTarget, check_exists

        wrapper = AllLeaves(size=size, root=root)
        leaves = wrapper.requires()
        outputs = [leaf.output() for leaf in leaves]
        paths = [target.path for target in outputs]
        folder = os.path.join(root, "leaves")

        class Plain:
            __slots__ = ("n", "root", "task_id")

            def __init__(self, n: int, root: str) -> None:
                self.n = n
                self.root = root
                self.task_id = f"Leaf(n={n}, root={root})"

        def floor() -> None:
            for n in range(size):
                os.stat(os.path.join(folder, f"{n}.txt"))

        parts = [
            ("floor: a join and a stat per file (floor.py check)", floor),
            ("the user's requires(): N Leaf task objects", wrapper.requires),
            ("the least such an object costs: a slotted class, the same id",
             lambda: [Plain(n=i, root=root) for i in range(size)]),
            ("each leaf's output(): N targets (a join each)",
             lambda: [leaf.output() for leaf in leaves]),
            ("the targets alone: FileTarget(path) of each joined path",
             lambda: [FileTarget(path) for path in paths]),
            ("every output looked at (check_exists: a stat each)", lambda: check_exists(outputs)),
            ("resolve() of the wrapper, all of the above included", lambda: resolve([wrapper])),
        ]
        print(f"{size:,} complete leaves, {args.dir or 'the disk'}, best of {args.reps}, "
              f"load {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
        print("| part | CPU | µs per task |")
        print("| --- | ---: | ---: |")
        for label, action in parts:
            seconds = best(args.reps, action)
            print(f"| {label} | {seconds:.3f} s | {seconds / size * 1e6:.2f} |", flush=True)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
