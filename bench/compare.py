"""Earlier code against this tree, side by side: the same whole processes, interleaved.

    python bench/compare.py REV [--cases tree,chain,noop,startup] [--sizes 10000] [--reps 5]
                           [--dir DIR]

REV is a git revision of this repository (the commit before a change, say). Its tree is
checked out into a temporary worktree, and both trees run as whole processes with the same
interpreter, the same DAGs (bench/dags/bd_dags.py) and the same config, old and new taking
turns (old, new, new, old, ...) into fresh folders. Prints, per case, the median seconds of
each and the median of the run-by-run new/old ratios, the figure to read on a machine whose
speed drifts from minute to minute.

`bench/run.py` compares batchdeps with Luigi and the floor; this script answers the other
question a change raises: did this tree get slower than the code before it, on the same
machine, in the same minutes?
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from floor import write as floor_write
from measure import Sample, child_env, run_process

#: case -> the sizes it runs at (startup has none)
CASES: dict[str, list[int]] = {"tree": [1_000, 10_000, 100_000], "chain": [10_000],
                               "noop": [10_000, 100_000], "startup": [0]}


class Side:
    """One tree of the package and how to run its command line."""

    def __init__(self, name: str, tree: Path, workspace: Path) -> None:
        self.name = name
        self.tree = tree
        self.env = child_env("BATCHDEPS_")
        self.env["PYTHONPATH"] = f"{tree}{os.pathsep}{workspace}"
        self.env["BATCHDEPS_LOCK_DIR"] = str(workspace / "locks")  # not the machine's (run.py)
        self.workspace = workspace

    def run(self, *args: str) -> Sample:
        argv = [sys.executable, "-m", "batchdeps.cli", *args]
        sample = run_process(argv, str(self.workspace), self.env,
                             str(self.workspace / "processes.log"))
        if sample.code != 0:
            raise SystemExit(f"{self.name}: exit {sample.code}: {' '.join(args)}; see "
                             f"{self.workspace / 'processes.log'}")
        return sample


def interleave(sides: list[Side], reps: int,
               one: Callable[[Side, int], Sample]) -> dict[str, list[Sample]]:
    """`reps` samples of each side, in ABBA order so neither side always goes first."""
    samples: dict[str, list[Sample]] = {side.name: [] for side in sides}
    for rep in range(reps):
        order = sides if rep % 2 == 0 else list(reversed(sides))
        for side in order:
            samples[side.name].append(one(side, rep))
    return samples


def report(label: str, samples: dict[str, list[Sample]]) -> str:
    old, new = samples["old"], samples["new"]
    ratios = [b.seconds / a.seconds for a, b in zip(old, new)]
    cpu = [b.cpu_seconds / a.cpu_seconds for a, b in zip(old, new) if a.cpu_seconds > 0]
    line = (f"{label}: old {statistics.median(s.seconds for s in old):.3f} s, "
            f"new {statistics.median(s.seconds for s in new):.3f} s; new/old "
            f"{statistics.median(ratios):.2f}x wall")
    if cpu:
        line += f", {statistics.median(cpu):.2f}x CPU"
    return line + f" (median of {len(ratios)} pairs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier revision, e.g. HEAD~3 or a commit id")
    parser.add_argument("--cases", default="tree,chain,noop,startup")
    parser.add_argument("--reps", type=int, default=5, help="pairs per case (1 at 100,000)")
    parser.add_argument("--sizes", default=None,
                        help="only these sizes of the cases (comma-separated, e.g. 10000)")
    parser.add_argument("--dir", default=None, help="where the workspace goes")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    workspace = Path(tempfile.mkdtemp(prefix="batchdeps-compare-", dir=args.dir))
    old_tree = workspace / "old"
    try:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                        str(old_tree), args.rev], check=True)
        shutil.copy(HERE / "dags" / "bd_dags.py", workspace / "bd_dags.py")
        (workspace / "config.toml").write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
        sides = [Side("old", old_tree, workspace), Side("new", REPO, workspace)]
        serial = iter(range(1_000_000))

        def fresh() -> Path:
            return workspace / "data" / str(next(serial))

        def build(*args: str) -> Callable[[Side, int], Sample]:
            def one(side: Side, rep: int) -> Sample:
                root = fresh()
                sample = side.run("run", *args, "--root", str(root))
                shutil.rmtree(root, ignore_errors=True)
                return sample
            return one

        sizes = {int(n) for n in args.sizes.split(",")} if args.sizes else None
        for case in cases:
            for size in CASES[case]:
                if sizes is not None and size not in sizes and case != "startup":
                    continue
                reps = 1 if size >= 100_000 else args.reps
                if case == "tree":
                    label, one = f"build all, tree of {size:,}", build(
                        "TreeNode", "--size", str(size))
                elif case == "chain":  # link n needs links 0 .. n-1
                    label, one = f"build all, chain of {size:,}", build(
                        "ChainLink", "--n", str(size - 1))
                elif case == "noop":
                    root = fresh()
                    floor_write(size, str(root / "leaves"))
                    label = f"nothing to do, wrapper over {size:,}"
                    one = _noop(str(size), str(root))
                else:
                    label, one, reps = "`--help`", _help, max(args.reps, 15)
                print(report(label, interleave(sides, reps, one)), flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                        str(old_tree)], check=False, capture_output=True)
        shutil.rmtree(workspace, ignore_errors=True)


def _noop(size: str, root: str) -> Callable[[Side, int], Sample]:
    return lambda side, rep: side.run("run", "AllLeaves", "--size", size, "--root", root)


def _help(side: Side, rep: int) -> Sample:
    return side.run("--help")


if __name__ == "__main__":
    main()
