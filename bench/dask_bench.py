"""The Dask executor against the local one: parallel sleeps, and per-task overhead.

    python bench/dask_bench.py                     # the figures of docs/benchmarks.md
    python bench/dask_bench.py --quick             # smaller sizes, one round

Cases, each as whole `batchdeps run` processes, the executors interleaved (A B C A B C):

* 4 workers, 200 independent tasks that each sleep 50 ms (ideal: 200 * 0.05 / 4 = 2.5 s):
  `--executor local --workers 4`; `--executor dask --workers 4` (a LocalCluster started by
  the run: its start-up is in the figure); `--scheduler` on a cluster of 4 `dask worker`
  processes started beforehand (what a long-lived cluster costs a run).
* N no-op tasks (each writes an empty file) for N = 1,000, 2,000, 10,000: local against
  `--scheduler`; the per-task overhead is (dask - local) / N, and the growth from 1,000 to
  10,000 tasks says whether it stays linear.

Printed: the median wall time of each, and the run's own time from the summary line.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(sys.executable)
BATCHDEPS = os.path.join(BIN, "batchdeps")
DASK = os.path.join(BIN, "dask")

PIPELINE = '''
import time
import batchdeps as bd


class Nap(bd.Task):
    i = bd.IntParameter()
    ms = bd.IntParameter()
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.i}.txt")

    def run(self):
        time.sleep(self.ms / 1000)
        with self.output().open("w") as out:
            out.write("")


class All(bd.WrapperTask):
    n = bd.IntParameter()
    ms = bd.IntParameter(default=0)
    root = bd.Parameter()

    def requires(self):
        return [Nap(i=i, ms=self.ms, root=self.root) for i in range(self.n)]
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """`dask scheduler` and `workers` single-threaded `dask worker` processes."""

    def __init__(self, workspace: str, workers: int) -> None:
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": workspace}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                            str(port), "--no-dashboard"], env=env, **quiet)]
        for n in range(workers):
            folder = os.path.join(workspace, f"worker-{n}")
            os.makedirs(folder)
            self.processes.append(subprocess.Popen(
                [DASK, "worker", self.address, "--nthreads", "1", "--no-dashboard",
                 "--no-nanny", "--local-directory", folder, "--host", "127.0.0.1"],
                cwd=folder, env=env, **quiet))
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            process.wait(10)


def run(workspace: str, n: int, ms: int, *executor: str) -> tuple[float, float]:
    """(wall seconds, the run's own seconds from its summary) of one run from scratch."""
    out = os.path.join(workspace, "out")
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": workspace}
    started = time.perf_counter()
    done = subprocess.run([BATCHDEPS, "run", "All", "--n", str(n), "--ms", str(ms), "--root",
                           out, "--log-level", "WARNING", *executor], cwd=workspace, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(executor)}): {done.stderr[-2000:]}")
    found = re.search(r" in ([0-9.]+) s \(exit", done.stdout + done.stderr)
    return wall, float(found.group(1)) if found else float("nan")


def measure(workspace: str, rounds: int, n: int, ms: int,
            cases: dict[str, list[str]]) -> dict[str, tuple[float, float]]:
    """Median (wall, run) per case, the cases interleaved round by round."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, args in cases.items():
            samples[name].append(run(workspace, n, ms, *args))
    return {name: (statistics.median(s[0] for s in got), statistics.median(s[1] for s in got))
            for name, got in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    workspace = tempfile.mkdtemp(prefix="bd-dask-bench-")
    with open(os.path.join(workspace, "config.toml"), "w") as handle:
        handle.write('[batchdeps]\nmodules = ["naps"]\ntask_logs = "off"\n\n'
                     f'[history]\nenabled = false\n\n[executor]\nshared_paths = ["{workspace}"]\n')
    with open(os.path.join(workspace, "naps.py"), "w") as handle:
        handle.write(PIPELINE)
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    cluster = Cluster(workspace, 4)
    try:
        local = ["--executor", "local", "--workers", "4"]
        scheduler = ["--scheduler", cluster.address]
        n = 40 if args.quick else 200
        ideal = n * 0.05 / 4
        result = measure(workspace, rounds, n, 50, {
            "local --workers 4": local,
            "dask --workers 4 (LocalCluster started by the run)": [
                "--executor", "dask", "--workers", "4"],
            "dask --scheduler (4 workers, started before)": scheduler,
        })
        print(f"\n{n} tasks of 50 ms on 4 workers (ideal {ideal:.2f} s)")
        print("| executor | wall | run (summary) | run / ideal |")
        print("| --- | ---: | ---: | ---: |")
        for name, (wall, own) in result.items():
            print(f"| {name} | {wall:.2f} s | {own:.2f} s | {own / ideal:.2f}x |")
        sizes = [200, 1_000] if args.quick else [1_000, 2_000, 10_000]
        overhead: dict[int, tuple[float, float]] = {}
        for size in sizes:
            # The largest size once: its figure is tens of seconds, steady enough.
            got = measure(workspace, 1 if size >= 10_000 else rounds, size, 0,
                          {"local": local, "dask": scheduler})
            overhead[size] = (got["local"][0], got["dask"][0])
        print("\nno-op tasks, local --workers 4 against dask --scheduler (4 workers)")
        print("| tasks | local | dask | dask - local per task |")
        print("| ---: | ---: | ---: | ---: |")
        for size, (lo, da) in overhead.items():
            print(f"| {size:,} | {lo:.2f} s | {da:.2f} s | {(da - lo) / size * 1e6:,.0f} µs |")
        first, last = sizes[0], sizes[-1]
        print(f"\ngrowth {first:,} -> {last:,} tasks (x{last // first}): dask "
              f"{overhead[last][1] / overhead[first][1]:.1f}x, local "
              f"{overhead[last][0] / overhead[first][0]:.1f}x")
    finally:
        cluster.stop()
        shutil.rmtree(workspace, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
