"""What opt-in staleness costs: `status` and `--dry-run` with rerun triggers, and build records.

    python bench/staleness_bench.py [--size 10000] [--reps 5] [--dir DIR] [--s3]

On the 10-ary tree of bench/dags/bd_dags.py (every output in one folder), as whole
processes, interleaved A B B A so neither side always goes first; figures are medians, and
the ratio is the median of the pair-by-pair ratios:

1. `status TreeNode` against `status TreeNode --rerun-triggers upstream` over a tree built
   with records (issue 21 asks for at most 2x);
2. `run TreeNode --dry-run` against the same with `--rerun-triggers upstream` (the dry run
   without triggers looks only at the top task; with them the whole tree is walked);
3. building the whole tree without records against `[run] record_builds = true` (what a
   record per task costs, the figure behind the choice not to write them by default).

With `--s3` the tree lives on moto's S3 server on 127.0.0.1 (started here, fake
credentials): the tree is built once (4 workers), then cases 1 and 2 are timed against it,
case 1 twice: with the records' local copies (targets/copies.py) in place, as every
`status` after the first has them, and without (a fresh cache folder for each sample, so
every record is fetched).
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

from measure import Sample, child_env, run_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--s3", action="store_true", help="the tree on moto's S3 server")
    args = parser.parse_args()
    workspace = Path(tempfile.mkdtemp(prefix="batchdeps-staleness-", dir=args.dir))
    env = child_env("BATCHDEPS_")
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{workspace}"
    env["BATCHDEPS_CACHE_DIR"] = str(workspace / "cache")  # the records' local copies
    shutil.copy(HERE / "dags" / "bd_dags.py", workspace / "bd_dags.py")
    (workspace / "config.toml").write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
    size = str(args.size)
    log = str(workspace / "processes.log")
    moto = None
    built = str(workspace / "built")
    if args.s3:
        from s3_bench import CREDENTIALS, start_moto

        moto, endpoint = start_moto()
        import boto3

        os.environ.update(CREDENTIALS)
        env.update(CREDENTIALS)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="tree")
        (workspace / "config.toml").write_text(
            f'[batchdeps]\nmodules = ["bd_dags"]\n\n[storage.s3]\nendpoint_url = "{endpoint}"\n')
        built = "s3://tree/built"

    def batchdeps(*argv: str, ok: tuple[int, ...] = (0,), **extra: str) -> Sample:
        sample = run_process([sys.executable, "-m", "batchdeps.cli", *argv], str(workspace),
                             {**env, **extra}, log)
        if sample.code not in ok:
            raise SystemExit(f"exit {sample.code}: {' '.join(argv)}; see {log}")
        return sample

    try:
        batchdeps("run", "TreeNode", "--size", size, "--root", built,
                  "--rerun-triggers", "upstream", *(["--workers", "4"] if args.s3 else []))
        tree = ["TreeNode", "--size", size, "--root", built]
        print(f"{args.size:,} tasks{' on S3 (moto)' if args.s3 else ''}, {os.cpu_count()} "
              f"cores, load {os.getloadavg()[0]:.2f}")
        cold = iter(range(1_000_000))
        if args.s3:  # fills the local copies of the records: the samples below have them
            batchdeps("status", *tree, "--rerun-triggers", "upstream")
        print(line("status", pairs(args.reps,
                                   lambda: batchdeps("status", *tree),
                                   lambda: batchdeps("status", *tree,
                                                     "--rerun-triggers", "upstream"))))
        if args.s3:
            print(line("status, no local copies", pairs(
                args.reps, lambda: batchdeps("status", *tree),
                lambda: batchdeps("status", *tree, "--rerun-triggers", "upstream",
                                  BATCHDEPS_CACHE_DIR=str(workspace / f"cold-{next(cold)}")))))
        print(line("run --dry-run", pairs(args.reps,
                                          lambda: batchdeps("run", *tree, "--dry-run"),
                                          lambda: batchdeps("run", *tree, "--dry-run",
                                                            "--rerun-triggers", "upstream"))))
        if args.s3:  # building 10,000 objects twice per pair on moto: not timed here
            print(f"load after: {os.getloadavg()[0]:.2f}")
            return
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
        if moto is not None:
            moto.kill()
            moto.wait()
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
