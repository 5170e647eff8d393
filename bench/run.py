"""Benchmark batchdeps against Luigi and the file system's floor, and write the report.

    python bench/run.py --quick     # a smoke run of every case at small sizes (~1 min)
    python bench/run.py             # the full figures; rewrites the table of docs/benchmarks.md

Both tools run the same DAGs (`bench/dags/`) as whole processes with their default
settings, interleaved A B A B; figures are medians. The floor is plain Python doing the
same file work (`bench/floor.py`). Luigi runs only at sizes it is predicted to finish
within `--luigi-limit` seconds (its scheduling is quadratic: the prediction scales the
time at the previous size by the square of the size ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import Sample, Series, child_env, paired_ratio, run_process, series_from_json

REPO = HERE.parent
BIN = Path(sys.executable).parent


@dataclass
class Row:
    """One line of the report: a case measured for batchdeps, Luigi and the floor."""

    case: str
    label: str
    batchdeps: Series
    luigi: Series | None = None
    floor: Series | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case, "label": self.label, "goal": self.goal, "met": self.met,
            "note": self.note, "batchdeps": self.batchdeps.to_json(),
            "luigi": self.luigi.to_json() if self.luigi else None,
            "floor": self.floor.to_json() if self.floor else None, **self.extra,
        }


class Bench:
    """The workspace (a temp folder with both tools' DAG modules) and the ways to run them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workspace = Path(tempfile.mkdtemp(prefix="batchdeps-bench-", dir=args.dir))
        for source in (HERE / "dags").glob("*.py"):
            shutil.copy(source, self.workspace / source.name)
        (self.workspace / "config.toml").write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
        self.env = child_env("BATCHDEPS_", "LUIGI_")
        self.env["PYTHONPATH"] = str(self.workspace)
        # Machine-local locks of its own: the default lock file is shared by every run on
        # the machine, and each fcntl() scans every lock held in it (another run holding
        # 2,000 leases made each of ours 20x dearer).
        self.env["BATCHDEPS_LOCK_DIR"] = str(self.workspace / "locks")
        self.log = str(self.workspace / "processes.log")
        self.rows: list[Row] = []
        self._serial = 0

    # -- commands --------------------------------------------------------------------------
    def batchdeps(self, task: str, *args: str) -> list[str]:
        command = BIN / "batchdeps"
        base = [str(command)] if command.exists() else [sys.executable, "-m", "batchdeps.cli"]
        return base + ["run", task, *args]

    def luigi(self, task: str, *args: str, local: bool = True) -> list[str]:
        extra = ["--local-scheduler"] if local else []
        return [sys.executable, "-m", "luigi", "--module", "luigi_dags", task, *args, *extra]

    def floor(self, mode: str, count: int, folder: Path) -> list[str]:
        return [sys.executable, str(HERE / "floor.py"), mode, str(count), str(folder)]

    def run(self, argv: list[str], timeout: float | None = None) -> Sample:
        os.sync()  # let earlier writes settle so that no run pays for another's
        offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        sample = run_process(argv, str(self.workspace), self.env, self.log, timeout)
        if sample.code != 0:  # say why: the workspace (and its log) goes at the end
            with open(self.log, "rb") as log:
                log.seek(offset)
                tail = log.read().decode("utf-8", "replace").splitlines()[-15:]
            print(f"  exit {sample.code} after {sample.seconds:.2f} s: {' '.join(argv)}",
                  *(f"    {line}" for line in tail), sep="\n", flush=True)
        return sample

    def fresh(self, name: str) -> Path:
        self._serial += 1
        return self.workspace / "data" / f"{name}-{self._serial}"

    def close(self) -> None:
        if not self.args.keep:
            shutil.rmtree(self.workspace, ignore_errors=True)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _count_files(folder: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file())
    except FileNotFoundError:
        return 0


def interleave(reps: dict[str, int], runners: dict[str, Callable[[], Sample]]) -> dict[str, Series]:
    """Run each runner its number of times, alternating between them (A B A B ...)."""
    series = {name: Series() for name in runners}
    for rep in range(max(reps.values(), default=0)):
        for name, runner in runners.items():
            if rep < reps.get(name, 0):
                sample = runner()
                series[name].add(sample)
                if sample.timed_out:
                    reps[name] = 0
                    series[name].note = "did not finish within the limit"
    return series


# -- cases ---------------------------------------------------------------------------------
def case_build(bench: Bench, shape: str, sizes: list[int]) -> None:
    """Build everything: a 10-ary tree or a chain of N tasks, from nothing."""
    limit = bench.args.luigi_limit
    last_luigi: tuple[int, float] | None = None
    for size in sizes:
        reps = bench.args.reps if size <= 10_000 else max(1, bench.args.reps // 2)
        luigi_reps = 0 if bench.args.no_luigi else (reps if size <= 1_000 else 1)
        note = ""
        if luigi_reps and last_luigi is not None:
            predicted = last_luigi[1] * (size / last_luigi[0]) ** 2
            if predicted > limit:
                luigi_reps = 0
                note = (f"Luigi skipped: predicted ~{predicted:,.0f} s from its "
                        f"{last_luigi[1]:.1f} s at {last_luigi[0]:,} (quadratic)")
        if shape == "chain" and size > 10_000 and luigi_reps:
            luigi_reps, note = 0, "Luigi skipped: a chain this long exceeds its limits"

        series = interleave({"batchdeps": reps, "luigi": luigi_reps, "floor": reps},
                            _build_runners(bench, shape, size))
        luigi_series = series["luigi"] if luigi_reps else None
        if luigi_series is not None and luigi_series.median is not None:
            last_luigi = (size, luigi_series.median)
        elif luigi_series is not None:
            last_luigi = (size, limit * 1.5)
        row = Row("build", f"build all, {shape} of {size:,}", series["batchdeps"], luigi_series,
                  series["floor"], note=note or (luigi_series.note if luigi_series else ""))
        bench.rows.append(row)
        _report_progress(row)
    if shape == "tree" and 10_000 in sizes and not bench.args.quick:
        series = interleave({"batchdeps": bench.args.reps}, {
            "batchdeps": lambda: _build_quiet(bench)})
        row = Row("build", "build all, tree of 10,000, --log-level WARNING", series["batchdeps"])
        bench.rows.append(row)
        _report_progress(row)


def _build_runners(bench: Bench, shape: str, size: int) -> dict[str, Callable[[], Sample]]:
    """One fresh build each call, checked for all `size` files, then removed."""
    task, folder = ("TreeNode", "tree") if shape == "tree" else ("ChainLink", "chain")

    def args_for(root: Path) -> list[str]:
        if shape == "tree":
            return ["--size", str(size), "--root", str(root)]
        return ["--n", str(size - 1), "--root", str(root)]

    def one(tool: str, make: Callable[[Path], list[str]], timeout: float | None = None) -> Sample:
        root = bench.fresh(f"{shape}-{tool}")
        sample = bench.run(make(root), timeout)
        target = root / folder if tool != "floor" else root
        if sample.code == 0 and not sample.timed_out and _count_files(target) != size:
            raise SystemExit(f"{tool} {shape} {size}: {_count_files(target)} files, "
                             f"expected {size}; see {bench.log}")
        _remove(root)
        return sample

    return {
        "batchdeps": lambda: one("batchdeps", lambda r: bench.batchdeps(task, *args_for(r))),
        "luigi": lambda: one("luigi", lambda r: bench.luigi(task, *args_for(r)),
                             timeout=bench.args.luigi_limit * 1.5),
        "floor": lambda: one("floor", lambda r: bench.floor("write", size, r)),
    }


def _build_quiet(bench: Bench) -> Sample:
    root = bench.fresh("tree-quiet")
    sample = bench.run(bench.batchdeps("TreeNode", "--size", "10000", "--root", str(root),
                                       "--log-level", "WARNING"))
    _remove(root)
    return sample


def case_nothing_to_do(bench: Bench, sizes: list[int]) -> None:
    """A wrapper over N complete tasks: the nightly cron run when everything is there."""
    for size in sizes:
        root = bench.fresh("leaves")
        run_process(bench.floor("write", size, root / "leaves"), str(bench.workspace),
                    bench.env, bench.log)
        reps = bench.args.reps
        series = interleave(
            {"batchdeps": reps, "luigi": 0 if bench.args.no_luigi else reps, "floor": reps},
            _noop_runners(bench, size, root),
        )
        _remove(root)
        row = Row("noop", f"nothing to do, wrapper over {size:,}", series["batchdeps"],
                  None if bench.args.no_luigi else series["luigi"], series["floor"])
        bench.rows.append(row)
        _report_progress(row)


def _noop_runners(bench: Bench, size: int, root: Path) -> dict[str, Callable[[], Sample]]:
    args = ["--size", str(size), "--root", str(root)]
    return {
        "batchdeps": lambda: bench.run(bench.batchdeps("AllLeaves", *args)),
        "luigi": lambda: bench.run(bench.luigi("AllLeaves", *args)),
        "floor": lambda: bench.run(bench.floor("check", size, root / "leaves")),
    }


def case_workers(bench: Bench, count: int, ms: int = 50, workers: int = 4) -> None:
    """`--workers 4` over tasks that each sleep: how close to the ideal count*ms/workers."""

    def one(make: Callable[[Path], list[str]]) -> Sample:
        root = bench.fresh("sleep")
        sample = bench.run(make(root))
        _remove(root)
        return sample

    args = lambda r: ["--size", str(count), "--ms", str(ms), "--root", str(r),
                      "--workers", str(workers)]
    reps = bench.args.reps
    series = interleave(
        {"batchdeps": reps, "luigi": 0 if bench.args.no_luigi else reps},
        {
            "batchdeps": lambda: one(lambda r: bench.batchdeps("AllSleepers", *args(r))),
            "luigi": lambda: one(lambda r: bench.luigi("AllSleepers", *args(r))),
        },
    )
    ideal = count * ms / 1000 / workers
    row = Row("workers", f"--workers {workers}, {count} tasks of {ms} ms (ideal {ideal:g} s)",
              series["batchdeps"], None if bench.args.no_luigi else series["luigi"],
              extra={"ideal_s": ideal})
    bench.rows.append(row)
    _report_progress(row)


def case_startup(bench: Bench) -> None:
    """Start-up: `--help`, importing the package, and a run with nothing to do on one task."""
    reps = max(5, bench.args.reps * 2)
    luigi_reps = 0 if bench.args.no_luigi else reps
    python = sys.executable
    help_series = interleave({"batchdeps": reps, "luigi": luigi_reps, "floor": reps}, {
        "batchdeps": lambda: bench.run([str(BIN / "batchdeps"), "--help"]),
        "luigi": lambda: bench.run([python, "-m", "luigi", "--help"]),
        "floor": lambda: bench.run([python, "-c", "pass"]),
    })
    bench.rows.append(Row("startup", "`--help`", help_series["batchdeps"],
                          help_series["luigi"] if luigi_reps else None, help_series["floor"],
                          note="floor: `python -c pass`"))
    import_series = interleave({"batchdeps": reps, "luigi": luigi_reps}, {
        "batchdeps": lambda: bench.run([python, "-c", "import batchdeps"]),
        "luigi": lambda: bench.run([python, "-c", "import luigi"]),
    })
    bench.rows.append(Row("startup", "`import` the package", import_series["batchdeps"],
                          import_series["luigi"] if luigi_reps else None))
    root = bench.fresh("one")
    run_process(bench.batchdeps("Leaf", "--n", "0", "--root", str(root)), str(bench.workspace),
                bench.env, bench.log)
    args = ["--n", "0", "--root", str(root)]
    one_series = interleave({"batchdeps": reps, "luigi": luigi_reps}, {
        "batchdeps": lambda: bench.run(bench.batchdeps("Leaf", *args)),
        "luigi": lambda: bench.run(bench.luigi("Leaf", *args)),
    })
    bench.rows.append(Row("startup", "nothing to do, one task", one_series["batchdeps"],
                          one_series["luigi"] if luigi_reps else None))
    for row in bench.rows[-3:]:
        _report_progress(row)


def case_memory(bench: Bench) -> None:
    """Peak memory of the largest builds (taken from the build rows already measured)."""
    builds = [r for r in bench.rows if r.case == "build" and "WARNING" not in r.label]
    for shape in ("tree", "chain"):
        rows = [r for r in builds if f" {shape} of " in r.label]
        if not rows:
            continue
        largest = rows[-1]
        luigi_rows = [r for r in rows if r.luigi is not None and r.luigi.median is not None]
        row = Row("memory", f"peak memory, {largest.label.split(', ')[1]}", largest.batchdeps,
                  luigi_rows[-1].luigi if luigi_rows else None,
                  note=f"Luigi's figure is at its largest size, "
                  f"{luigi_rows[-1].label.split(', ')[1]}"
                  if luigi_rows and luigi_rows[-1] is not largest else "")
        bench.rows.append(row)


def case_locks(bench: Bench) -> None:
    """Case 4: the lock server against luigid (bench/remote_cases.py)."""
    import remote_cases

    sizes = [1_000] if bench.args.quick else [1_000, 10_000]
    for row in remote_cases.case_locks(bench, Row, interleave, sizes, luigi_size=1_000):
        bench.rows.append(row)
        _report_progress(row)


def case_s3(bench: Bench) -> None:
    """Case 5: the completeness check of 2,000 S3 objects on moto's server."""
    import importlib.util

    import remote_cases

    if not all(importlib.util.find_spec(name) for name in ("moto", "boto3")):
        print("[s3] skipped: moto and boto3 are needed (pip install -e '.[test]')", flush=True)
        return
    for row in remote_cases.case_s3(bench, Row, interleave, 200 if bench.args.quick else 2_000):
        bench.rows.append(row)
        _report_progress(row)


# -- goals and report ------------------------------------------------------------------------
def _find(bench: Bench, label: str) -> Row | None:
    return next((r for r in bench.rows if r.label == label), None)


def judge(bench: Bench) -> None:
    """Mark each row that carries a goal with the goal and whether it held."""
    for size in (10_000, 100_000):
        for shape in ("tree", "chain"):
            row = _find(bench, f"build all, {shape} of {size:,}")
            if row is None or row.batchdeps.median is None or row.floor is None:
                continue
            ratio = paired_ratio(row.batchdeps, row.floor) or float("nan")
            limit = 3 if getattr(bench.args, "tmpfs", False) else 2  # issue 22: 3x on tmpfs
            goals = [(f"<= {limit}x floor (is {ratio:.2f}x)", ratio <= limit)]
            if size == 10_000 and shape == "tree" and row.luigi and row.luigi.median:
                faster = row.luigi.median / row.batchdeps.median
                goals.append((f">= 100x faster than Luigi (is {faster:.0f}x)", faster >= 100))
            if size == 100_000:
                small = _find(bench, f"build all, {shape} of 10,000")
                if small and small.batchdeps.median:
                    growth = row.batchdeps.median / small.batchdeps.median
                    row.extra["growth_from_10k"] = growth
                    goals.append((f"10k -> 100k growth <= 12 (is {growth:.1f})", growth <= 12))
            row.goal = ", ".join(f"{text} {'✓' if ok else '✗'}" for text, ok in goals)
            row.met = all(ok for _, ok in goals)
    for row in bench.rows:
        med = row.batchdeps.median
        if row.case == "memory" and row.batchdeps.peak_mib is not None and "100,000" in row.label:
            row.goal, row.met = "< 1 GB", row.batchdeps.peak_mib < 1024
        elif row.case == "noop" and "10,000" in row.label and med is not None:
            row.goal, row.met = "< 0.3 s", med < 0.3
        elif row.case == "workers" and med is not None and "200 tasks" in row.label:
            ideal = row.extra["ideal_s"]
            row.goal, row.met = f"<= {ideal * 1.1:g} s (ideal + 10%)", med <= ideal * 1.1
        elif row.case == "startup" and row.label == "`--help`" and med is not None:
            row.goal, row.met = "< 0.15 s", med < 0.15


def _s(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} s" if value < 10 else f"{value:,.1f} s"


def _x(value: float | None) -> str:
    return "–" if value is None else (f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x")


def render_table(bench: Bench) -> str:
    lines = [
        ("| case | batchdeps | Luigi | Luigi / batchdeps | floor | batchdeps / floor, paired "
         "| goal |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in bench.rows:
        bd, lu = row.batchdeps, row.luigi
        fl = row.floor
        if row.case == "memory":
            same_size = lu is not None and not row.note  # the note names Luigi's other size
            cells = [f"{bd.peak_mib:,.0f} MiB" if bd.peak_mib else "–",
                     f"{lu.peak_mib:,.0f} MiB" if lu and lu.peak_mib else "–",
                     _x(lu.peak_mib / bd.peak_mib)
                     if same_size and lu and lu.peak_mib and bd.peak_mib else "–",
                     "–", "–"]
        else:
            ratio = lu.median / bd.median if lu and lu.median and bd.median else None
            luigi_cell = _s(lu.median) if lu and lu.median else (
                "did not finish" if lu and lu.samples else "–")
            cells = [_s(bd.median), luigi_cell, _x(ratio), _s(fl.median if fl else None),
                     _x(paired_ratio(bd, fl) if fl else None)]
        marked = row.goal.endswith(("✓", "✗"))
        mark = "" if row.met is None or marked else (" ✓" if row.met else " ✗")
        goal = f"{row.goal}{mark}" if row.goal else ""
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {goal} |")
    notes = [f"- {row.label}: {row.note}" for row in bench.rows if row.note]
    return "\n".join(lines + ([""] + notes if notes else []))


def machine() -> dict[str, str]:
    import importlib.metadata as md

    try:
        luigi_version = md.version("luigi")
    except md.PackageNotFoundError:
        luigi_version = "not installed"
    return {
        "machine": f"{os.cpu_count()}-core Linux VM" if sys.platform.startswith("linux")
        else f"{os.cpu_count()}-core {platform.system()}",
        "python": platform.python_version(),
        "batchdeps": md.version("batchdeps"),
        "luigi": luigi_version,
        "date": time.strftime("%Y-%m-%d"),
    }


def _report_progress(row: Row) -> None:
    bd, lu, fl = row.batchdeps, row.luigi, row.floor
    parts = [f"batchdeps {_s(bd.median)}"]
    if lu is not None:
        parts.append(f"luigi {_s(lu.median)}")
    if fl is not None:
        parts.append(f"floor {_s(fl.median)}")
    if bd.peak_mib:
        parts.append(f"peak {bd.peak_mib:,.0f} MiB")
    print(f"[{row.case}] {row.label}: " + ", ".join(parts), flush=True)


DOC_HEAD = """# Benchmarks

How fast batchdeps is, measured against Luigi and against the floor: plain Python doing
the same file work with no tool in between. Every figure is a whole process (interpreter
start-up included), the median of several runs; batchdeps, Luigi and the floor run
interleaved in the same session on the same DAGs, both tools with their default settings
(per-task log lines on stderr, written to a file as under cron).

Reproduce (Luigi comes with the `bench` extra, `pip install -e '.[bench]'`):

```
python bench/run.py            # full figures, rewrites the table below (about an hour, mostly Luigi)
python bench/run.py --quick    # smoke run at small sizes (about a minute)
```
"""


LATEST = "\n## Latest figures\n"


def write_doc(bench: Bench, path: Path, info: dict[str, str] | None = None) -> None:
    """Put this run's table in `path`'s "Latest figures" section. Every other section of an
    existing file (the write-ups under the table) is kept as it is."""
    info = info or machine()
    latest = LATEST + f"""
{info['machine']}, Python {info['python']}, batchdeps {info['batchdeps']}, Luigi {info['luigi']},
measured {info['date']}{' (quick run)' if bench.args.quick else ''}.

{render_table(bench)}
"""
    rest = ""
    if path.exists():
        old = path.read_text()
        start = old.find(LATEST)
        after = old.find("\n## ", start + len(LATEST)) if start >= 0 else -1
        rest = old[after:] if after >= 0 else ""
    path.write_text(DOC_HEAD + latest + rest)


def _report_from_json(path: Path, doc: str | None) -> int:
    """Judge and render a saved run again (after a change to the notes or the report)."""
    import types

    saved = json.loads(path.read_text())
    rows = []
    for item in saved["rows"]:
        extra = {k: v for k, v in item.items() if k in ("ideal_s", "local_locks_s")}
        rows.append(Row(item["case"], item["label"], series_from_json(item["batchdeps"]) or Series(),
                        series_from_json(item["luigi"]), series_from_json(item["floor"]),
                        goal=item["goal"], met=item["met"], note=item["note"], extra=extra))
    bench = types.SimpleNamespace(rows=rows, args=types.SimpleNamespace(quick=saved["quick"]))
    judge(bench)  # type: ignore[arg-type]
    print(render_table(bench))  # type: ignore[arg-type]
    target = Path(doc or REPO / "docs" / "benchmarks.md")
    write_doc(bench, target, saved["machine"])  # type: ignore[arg-type]
    print(f"\nwrote {os.path.relpath(target)}")
    return 0


def case_dask(quick: bool) -> None:
    """The Dask executor against the local one (bench/dask_bench.py prints its tables;
    docs/benchmarks.md, "Dask executor", holds them). Needs the dask extra."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("Dask is not installed (pip install -e '.[dask]'); no Dask figures")
        return
    import dask_bench

    dask_bench.main(["--quick"] if quick else [])


def _on_tmpfs(folder: str) -> bool:
    """Whether `folder` is on a tmpfs (Linux: the longest matching mount point)."""
    try:
        with open("/proc/mounts") as mounts:
            entries = [line.split()[1:3] for line in mounts]
    except OSError:
        return False
    real = os.path.realpath(folder)
    best = max((point for point, _ in entries if real == point or real.startswith(
        point.rstrip("/") + "/")), key=len, default="")
    return any(point == best and kind == "tmpfs" for point, kind in entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, two repetitions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per figure")
    parser.add_argument("--cases", default="build,noop,workers,startup,locks,s3,memory,dask",
                        help="comma-separated cases to run")
    parser.add_argument("--luigi-limit", type=float, default=900.0,
                        help="skip Luigi at sizes predicted to take longer (seconds)")
    parser.add_argument("--no-luigi", action="store_true", help="measure batchdeps only")
    parser.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--doc", default=None,
                        help="write the report here (default: docs/benchmarks.md on a full run)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    parser.add_argument("--dir", default=None,
                        help="where the workspace goes (default: the system's temp folder; "
                        "/dev/shm for tmpfs, where the floor is stable)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated build sizes (default 1000,10000,100000)")
    parser.add_argument("--from-json", default=None, metavar="FILE",
                        help="measure nothing: write the report from a saved results file")
    args = parser.parse_args(argv)
    if args.from_json:
        return _report_from_json(Path(args.from_json), args.doc)
    if args.reps is None:
        args.reps = 2 if args.quick else 3
    if not args.no_luigi:
        try:
            import luigi  # noqa: F401
        except ImportError:
            print("Luigi is not installed (pip install -e '.[bench]'); measuring batchdeps only")
            args.no_luigi = True
    cases = set(args.cases.split(","))
    bench = Bench(args)
    sizes = [1_000] if args.quick else [1_000, 10_000, 100_000]
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    args.tmpfs = _on_tmpfs(args.dir or tempfile.gettempdir())
    try:
        warm = bench.fresh("warm")  # compile both tools' bytecode outside the figures
        bench.run(bench.batchdeps("Leaf", "--n", "0", "--root", str(warm)))
        if not args.no_luigi:
            bench.run(bench.luigi("Leaf", "--n", "0", "--root", str(warm)))
        if "build" in cases:
            case_build(bench, "tree", sizes)
            case_build(bench, "chain", sizes)
        if "noop" in cases:
            case_nothing_to_do(bench, [1_000] if args.quick else [10_000, 100_000])
        if "workers" in cases:
            case_workers(bench, 40 if args.quick else 200)
        if "locks" in cases:
            case_locks(bench)
        if "s3" in cases:
            case_s3(bench)
        if "startup" in cases:
            case_startup(bench)
        if "memory" in cases:
            case_memory(bench)
        if "dask" in cases:
            case_dask(args.quick)
        judge(bench)
    finally:
        bench.close()
    print()
    print(render_table(bench))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"machine": machine(), "quick": args.quick, "rows": [r.to_json() for r in bench.rows]},
        indent=1))
    doc = args.doc or (None if args.quick else str(REPO / "docs" / "benchmarks.md"))
    if doc:
        write_doc(bench, Path(doc))
        print(f"\nwrote {os.path.relpath(doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
