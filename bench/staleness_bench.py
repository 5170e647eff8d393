"""What opt-in staleness costs: `status` and `--dry-run` with rerun triggers, and build records.

    python bench/staleness_bench.py [--size 10000] [--reps 5] [--dir DIR]

On the 10-ary tree of bench/dags/bd_dags.py (every output in one folder), as whole
processes, interleaved A B B A so neither side always goes first; figures are medians, and
the ratio is the median of the pair-by-pair ratios:

1. `status TreeNode` against `status TreeNode --rerun-triggers upstream` over a tree built
   with records (issue 21 asks for at most 2x);
2. `run TreeNode --dry-run` against the same with `--rerun-triggers upstream` (the dry run
   without triggers looks only at the top task; with them the whole tree is walked);
3. building the whole tree without records against `[run] record_builds = true` (what a
   record per task costs, the figure behind the choice not to write them by default).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from measure import Sample, run_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    workspace = Path(tempfile.mkdtemp(prefix="batchdeps-staleness-", dir=args.dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHDEPS_")}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{workspace}"
    shutil.copy(HERE / "dags" / "bd_dags.py", workspace / "bd_dags.py")
    (workspace / "config.toml").write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
    size = str(args.size)
    log = str(workspace / "processes.log")

    def batchdeps(*argv: str, ok: tuple[int, ...] = (0,), **extra: str) -> Sample:
        sample = run_process([sys.executable, "-m", "batchdeps.cli", *argv], str(workspace),
                             {**env, **extra}, log)
        if sample.code not in ok:
            raise SystemExit(f"exit {sample.code}: {' '.join(argv)}; see {log}")
        return sample

    try:
        built = str(workspace / "built")
        batchdeps("run", "TreeNode", "--size", size, "--root", built,
                  "--rerun-triggers", "upstream")
        tree = ["TreeNode", "--size", size, "--root", built]
        print(f"{args.size:,} tasks, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        print(line("status", pairs(args.reps,
                                   lambda: batchdeps("status", *tree),
                                   lambda: batchdeps("status", *tree,
                                                     "--rerun-triggers", "upstream"))))
        print(line("run --dry-run", pairs(args.reps,
                                          lambda: batchdeps("run", *tree, "--dry-run"),
                                          lambda: batchdeps("run", *tree, "--dry-run",
                                                            "--rerun-triggers", "upstream"))))
        serial = iter(range(1_000_000))

        def build(**extra: str) -> Callable[[], Sample]:
            def one() -> Sample:
                root = str(workspace / f"fresh-{next(serial)}")
                sample = batchdeps("run", "TreeNode", "--size", size, "--root", root, **extra)
                shutil.rmtree(root, ignore_errors=True)
                return sample
            return one

        print(line("build all", pairs(args.reps, build(),
                                      build(BATCHDEPS_RUN__RECORD_BUILDS="true"))))
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def pairs(reps: int, plain: Callable[[], Sample],
          other: Callable[[], Sample]) -> tuple[list[Sample], list[Sample]]:
    """`reps` samples of each, in A B B A order."""
    first: list[Sample] = []
    second: list[Sample] = []
    for rep in range(reps):
        if rep % 2 == 0:
            first.append(plain())
            second.append(other())
        else:
            second.append(other())
            first.append(plain())
    return first, second


def line(label: str, samples: tuple[list[Sample], list[Sample]]) -> str:
    plain, other = samples
    ratios = [b.seconds / a.seconds for a, b in zip(plain, other)]
    return (f"| {label} | {statistics.median(s.seconds for s in plain):.2f} s | "
            f"{statistics.median(s.seconds for s in other):.2f} s | "
            f"{statistics.median(ratios):.2f}x | {len(ratios)} pairs |")


if __name__ == "__main__":
    main()
