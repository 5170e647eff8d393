"""The Dask executor against the local one: parallel sleeps, and per-task overhead.

    python bench/dask_bench.py                     # the figures of docs/benchmarks.md
    python bench/dask_bench.py --quick             # smaller sizes, one round
    python bench/run.py --cases dask               # the same, from the benchmark driver

Cases, each as whole `batchdeps run` processes, the executors interleaved round by round
(A B C A B C ...), so that a busy minute on a shared machine hits all of them alike:

* 4 workers, 200 independent tasks that each sleep 50 ms (ideal: 200 * 0.05 / 4 = 2.5 s):
  `--executor local --workers 4`; `--executor dask --workers 4` (a LocalCluster started by
  the run: its start-up and close are in both figures); `--scheduler` on a cluster of 4
  `dask worker` processes started beforehand (what a run costs on a long-lived cluster).
  Two times each: the wall time of the whole process (interpreter start-up and imports
  included), and the run's own time from its summary line (from the executor's start to
  its close: without the interpreter and the imports, with the LocalCluster's start-up).
* A LocalCluster of 4 workers started and closed on its own, its worker processes
  spawned (Dask's default) or forked from a fork server (what the executor asks for).
* Where the wall time of one run goes (`--cases breakdown`): the 200 x 50 ms case, local and
  `--scheduler`, through a wrapper that notes the time (and the runner's CPU time) at each
  step: interpreter up, command line imported, plan resolved, executor made (`distributed`
  imported), connected, first attempts sent, first run() started, last run() ended, executor
  closed, process gone. Its CPU column is what the step costs on a quiet machine, whatever
  the load. Below it: the median gap, in one worker process, between one attempt's run()
  ending and the next one's starting (the executor's turnaround per attempt), and the CPU
  seconds of the run's processes and of the cluster's (scheduler, workers, attempt
  processes) during the run.
* What the runner's import of Dask's client side costs (`--cases imports`, no cluster):
  `python -X importtime` over `dask_import.load()` after the command line is imported, the
  medians of the parts that weigh most (cumulative: a part includes what it imports first).
* N no-op tasks (each writes one short line) for N = 1,000, 2,000, 10,000: local against
  `--scheduler`; the per-task overhead is (dask - local) / N of the wall times, and the
  time per task at 1,000 and at 10,000 says whether it stays linear.

Printed: medians, the median of the round-by-round dask/local ratios, and the load
average (the machine may be shared) before each case.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from measure import child_env

BIN = os.path.dirname(sys.executable)
BATCHDEPS = os.path.join(BIN, "batchdeps")
DASK = os.path.join(BIN, "dask")

PIPELINE = '''
import os
import time
import batchdeps as bd


class Nap(bd.Task):
    i = bd.IntParameter()
    ms = bd.IntParameter()
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.i}.txt")

    def run(self):
        started = time.time()
        time.sleep(self.ms / 1000)
        with self.output().open("w") as out:  # when and where run() ran, for the breakdown
            out.write(f"{started} {time.time()} {os.getpid()}\\n")


class All(bd.WrapperTask):
    n = bd.IntParameter()
    ms = bd.IntParameter(default=0)
    root = bd.Parameter()

    def requires(self):
        return [Nap(i=i, ms=self.ms, root=self.root) for i in range(self.n)]
'''


#: Runs `batchdeps` (the arguments after -c) noting, in the JSON file $MARKS, the wall time
#: since $T0 (the bench's clock when it started the process) and this process's CPU time
#: at each step of the run.
MARKED = r"""
import atexit, functools, json, os, sys, time
T0 = float(os.environ["T0"])
marks = []
def mark(name):
    marks.append((name, time.time() - T0, time.process_time()))
mark("interpreter up")
import batchdeps.cli
mark("command line imported")
from batchdeps.run import runner, session
def after(owner, name, label, once=False):
    inner = getattr(owner, name)
    @functools.wraps(inner)
    def wrapped(*args, **kwargs):
        try:
            return inner(*args, **kwargs)
        finally:
            if not (once and any(m[0] == label for m in marks)):
                mark(label)
    setattr(owner, name, wrapped)
def before(owner, name, label):
    inner = getattr(owner, name)
    @functools.wraps(inner)
    def wrapped(*args, **kwargs):
        mark(label)
        return inner(*args, **kwargs)
    setattr(owner, name, wrapped)
after(session.Session, "resolve", "plan resolved")
after(session, "make_executor", "executor made")
if "--scheduler" in sys.argv:
    from batchdeps.run import dask_executor
    after(dask_executor.DaskExecutor, "start", "connected")
    after(dask_executor.DaskExecutor, "_send", "first attempts sent", once=True)
    before(dask_executor.DaskExecutor, "close", "last attempt ended, executor closing")
else:
    from batchdeps.run import executors
    before(executors.ForkedExecutor, "close", "last attempt ended, executor closing")
after(runner.Runner, "run", "run over (executor closed)")
atexit.register(lambda: (mark("exit begins"),
                         open(os.environ["MARKS"], "w").write(json.dumps(marks))))
sys.argv[0] = "batchdeps"
batchdeps.cli.main()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """`dask scheduler` and `workers` single-threaded `dask worker` processes."""

    def __init__(self, workspace: str, workers: int) -> None:
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        env = {**child_env(), "PYTHONPATH": workspace}
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

    def cpu(self) -> float:
        """CPU seconds used so far by the scheduler, the workers and their children (the
        attempt processes), read from /proc."""
        children: dict[int, list[int]] = {}
        times: dict[int, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(name))
            times[int(name)] = (int(fields[11]) + int(fields[12])) / tick
        total, stack = 0.0, [p.pid for p in self.processes]
        while stack:
            pid = stack.pop()
            total += times.get(pid, 0.0)
            stack.extend(children.get(pid, ()))
        return total

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def run(workspace: str, n: int, ms: int, *executor: str) -> tuple[float, float]:
    """(wall seconds, the run's own seconds from its summary) of one run from scratch."""
    out = os.path.join(workspace, "out")
    shutil.rmtree(out, ignore_errors=True)
    env = {**child_env(), "PYTHONPATH": workspace}
    started = time.perf_counter()
    done = subprocess.run([BATCHDEPS, "run", "All", "--n", str(n), "--ms", str(ms), "--root",
                           out, "--log-level", "WARNING", *executor], cwd=workspace, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(executor)}): {done.stderr[-2000:]}")
    found = re.search(r" in ([0-9.]+) s \(exit", done.stdout + done.stderr)
    return wall, float(found.group(1)) if found else float("nan")


def marked_run(workspace: str, n: int, ms: int, *executor: str,
               cluster: Cluster | None = None) -> list[tuple[str, float, float]]:
    """One run from scratch through MARKED: (step, wall seconds, CPU seconds) per step,
    then the CPU seconds of the run's whole process tree (the runner and, for the local
    executor, its workers) and of the cluster's processes during the run."""
    out = os.path.join(workspace, "out")
    shutil.rmtree(out, ignore_errors=True)
    marks = os.path.join(workspace, "marks.json")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster_before = cluster.cpu() if cluster is not None else 0.0
    started = time.time()
    done = subprocess.run([sys.executable, "-c", MARKED, "run", "All", "--n", str(n), "--ms",
                           str(ms), "--root", out, "--log-level", "WARNING", *executor],
                          cwd=workspace, capture_output=True, text=True, check=False,
                          env={**child_env(), "PYTHONPATH": workspace, "T0": repr(started),
                               "MARKS": marks})
    ended = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(executor)}): {done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    with open(marks) as handle:
        steps = [tuple(step) for step in json.load(handle)]
    first, last, gap = attempt_times(out, started)
    steps = sorted([*steps, ("first run() starts", first, float("nan")),
                    ("last run() ends", last, float("nan"))], key=lambda step: step[1])
    return [*steps, ("process gone", ended, float("nan")),  # type: ignore[list-item]
            ("gap between two attempts in one worker process (median)", gap, float("nan")),
            ("CPU: the run's processes", float("nan"), tree),
            ("CPU: scheduler and workers", float("nan"),
             cluster.cpu() - cluster_before if cluster is not None else float("nan"))]


def attempt_times(out: str, started: float) -> tuple[float, float, float]:
    """From the outputs Nap wrote: when the first run() started and the last ended
    (seconds since `started`), and the median gap, in one worker process, between the end
    of one attempt's run() and the start of the next (the executor's turnaround)."""
    runs: dict[str, list[tuple[float, float]]] = {}
    for name in os.listdir(out):
        if name.endswith(".txt"):
            with open(os.path.join(out, name)) as handle:
                begin, end, pid = handle.read().split()
            runs.setdefault(pid, []).append((float(begin), float(end)))
    gaps = []
    for spans in runs.values():
        spans.sort()
        gaps += [after[0] - before[1] for before, after in zip(spans, spans[1:])]
    first = min(span[0] for spans in runs.values() for span in spans)
    last = max(span[1] for spans in runs.values() for span in spans)
    return first - started, last - started, statistics.median(gaps) if gaps else float("nan")


def breakdown(workspace: str, rounds: int, n: int, cases: dict[str, list[str]],
              cluster: Cluster) -> None:
    """Medians of each step's time, local against --scheduler, interleaved."""
    print(f"\nwhere the wall time goes: {n} tasks of 50 ms, {rounds} round(s); {load()}")
    got: dict[str, list[list[tuple[str, float, float]]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, args in cases.items():
            got[name].append(marked_run(workspace, n, 50, *args,
                                        cluster=cluster if "--scheduler" in args else None))
    names = list(cases)
    print("| step | " + " | ".join(f"{name}: wall, CPU" for name in names) + " |")
    print("| --- |" + " ---: |" * len(names))
    order = [step for step, _, _ in max((got[name][0] for name in names), key=len)]
    for step in order:
        cells = []
        for name in names:
            walls = [w for sample in got[name] for s, w, _ in sample if s == step]
            cpus = [c for sample in got[name] for s, _, c in sample if s == step]
            if not walls or all(c != c for c in cpus) and all(w != w for w in walls):
                cells.append("")
                continue
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            cells.append(", ".join(f"{value:.3f} s" if value == value else "-"
                                   for value in (wall, cpu)))
        print(f"| {step} | " + " | ".join(cells) + " |")
    print(f"{load()} at the end of the case")


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)"


def measure(workspace: str, rounds: int, n: int, ms: int,
            cases: dict[str, list[str]]) -> dict[str, list[tuple[float, float]]]:
    """(wall, run) samples per case, the cases interleaved round by round."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, args in cases.items():
            samples[name].append(run(workspace, n, ms, *args))
    return samples


def median(samples: list[tuple[float, float]], which: int) -> float:
    return statistics.median(sample[which] for sample in samples)


def paired(samples: list[tuple[float, float]], base: list[tuple[float, float]],
           which: int) -> float:
    """The median of the round-by-round ratios samples / base."""
    return statistics.median(a[which] / b[which] for a, b in zip(samples, base))


def sleeps(workspace: str, rounds: int, n: int, cases: dict[str, list[str]]) -> None:
    ideal = n * 0.05 / 4
    print(f"\n{n} tasks of 50 ms on 4 workers (ideal {ideal:.2f} s), {rounds} round(s); "
          f"{load()}")
    got = measure(workspace, rounds, n, 50, cases)
    local = got["local --workers 4"]
    print("| executor | wall | wall / ideal | run (summary) | run / ideal "
          "| wall / local, paired |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, samples in got.items():
        wall, own = median(samples, 0), median(samples, 1)
        print(f"| {name} | {wall:.2f} s | {wall / ideal:.2f}x | {own:.2f} s | "
              f"{own / ideal:.2f}x | {paired(samples, local, 0):.2f}x |")
    own_cluster = got.get("dask --workers 4 (LocalCluster started by the run)")
    given = got.get("dask --scheduler (4 workers, started before)")
    if own_cluster and given:
        extra = statistics.median(a[0] - b[0] for a, b in zip(own_cluster, given))
        print(f"\nLocalCluster start-up and close (paired wall difference against "
              f"--scheduler): {extra:.2f} s")


def overhead(workspace: str, rounds: int, sizes: list[int], local: list[str],
             dask: list[str]) -> None:
    print(f"\nno-op tasks, local --workers 4 against dask --scheduler (4 workers); {load()}")
    print("| tasks | rounds | local | dask | dask / local, paired | dask per task "
          "| (dask - local) per task |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    walls: dict[int, tuple[float, float]] = {}
    for size in sizes:
        # The largest size once: its figure is tens of seconds, steady enough.
        times = 1 if size >= 10_000 else rounds
        got = measure(workspace, times, size, 0, {"local": local, "dask": dask})
        lo, da = median(got["local"], 0), median(got["dask"], 0)
        walls[size] = (lo, da)
        print(f"| {size:,} | {times} | {lo:.2f} s | {da:.2f} s | "
              f"{paired(got['dask'], got['local'], 0):.2f}x | {da / size * 1e6:,.0f} µs | "
              f"{(da - lo) / size * 1e6:,.0f} µs |", flush=True)
    first, last = sizes[0], sizes[-1]
    print(f"\ngrowth {first:,} -> {last:,} tasks (x{last // first}): dask "
          f"{walls[last][1] / walls[first][1]:.1f}x, local "
          f"{walls[last][0] / walls[first][0]:.1f}x; {load()}")


def _cluster_start(method: str) -> None:
    """In a process of its own: start and close a LocalCluster as the executor does, with
    worker processes made by `method`; print the two times."""
    import logging

    import dask
    import distributed

    with dask.config.set({"distributed.worker.multiprocessing-method": method,
                          "distributed.worker.daemon": False}):
        started = time.perf_counter()
        cluster = distributed.LocalCluster(
            n_workers=4, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
        up = time.perf_counter()
        cluster.close()
        print(f"{up - started:.3f} {time.perf_counter() - up:.3f}")


def cluster_start(rounds: int) -> None:
    """A 4-worker LocalCluster's start and close, workers spawned (Dask's default) against
    forked from a fork server (what the executor asks for), interleaved."""
    print(f"\nLocalCluster of 4 workers, {rounds} round(s) each; {load()}")
    times: dict[str, list[tuple[float, float]]] = {"spawn": [], "forkserver": []}
    for _ in range(rounds):
        for method in times:
            done = subprocess.run([sys.executable, __file__, "--cluster-start", method],
                                  capture_output=True, text=True, check=True)
            up, down = done.stdout.split()[-2:]
            times[method].append((float(up), float(down)))
    print("| worker processes | start | close |")
    print("| --- | ---: | ---: |")
    for method, samples in times.items():
        print(f"| {method} | {median(samples, 0):.2f} s | {median(samples, 1):.2f} s |")


#: The parts of the client-side import shown by `--cases imports`, in the order imported.
IMPORT_PARTS = ["distributed.config", "dask", "yaml", "asyncio", "dask._expr", "dask.delayed",
                "dask.widgets", "dask.datasets", "distributed.client", "distributed.worker",
                "distributed.preloading", "distributed.comm", "distributed.comm.ws",
                "distributed.versions", "importlib.metadata"]
IMPORT_LOAD = ("import time; import batchdeps.cli; t = time.perf_counter(); "
               "from batchdeps.run import dask_import; dask_import.load(); "
               "print(time.perf_counter() - t)")


def imports(rounds: int) -> None:
    """Where the runner's import of Dask's client side goes (see the module docstring)."""
    print(f"\nthe client-side import of Dask, {rounds} round(s); {load()}")
    totals: list[float] = []
    parts: dict[str, list[float]] = {name: [] for name in IMPORT_PARTS}
    for _ in range(rounds):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORT_LOAD],
                              capture_output=True, text=True, check=True, env=child_env())
        totals.append(float(done.stdout.split()[-1]))
        seen: set[str] = set()
        for line in done.stderr.splitlines():
            fields = line.split("|")
            if len(fields) != 3 or not fields[1].strip().isdigit():
                continue
            name = fields[2].strip()
            if name in parts and name not in seen:
                seen.add(name)
                parts[name].append(int(fields[1]) / 1e6)
    print(f"| part (cumulative) | median |\n| --- | ---: |\n"
          f"| all of `dask_import.load()` (wall) | {statistics.median(totals) * 1e3:.0f} ms |")
    for name, times in parts.items():
        if times:
            print(f"| {name} | {statistics.median(times) * 1e3:.1f} ms |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--cases", default="sleeps,breakdown,overhead,cluster,imports",
                        help="which cases, comma-separated (default: all)")
    parser.add_argument("--cluster-start", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cluster_start:
        _cluster_start(args.cluster_start)
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    cases = args.cases.split(",")
    if "imports" in cases:
        imports(max(rounds, 5))
        if cases == ["imports"]:
            return 0
    # A SIGTERM (timeout, kill) still stops the cluster below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workspace = tempfile.mkdtemp(prefix="bd-dask-bench-")
    with open(os.path.join(workspace, "config.toml"), "w") as handle:
        handle.write('[batchdeps]\nmodules = ["naps"]\ntask_logs = "off"\n\n'
                     f'[history]\nenabled = false\n\n[executor]\nshared_paths = ["{workspace}"]\n')
    with open(os.path.join(workspace, "naps.py"), "w") as handle:
        handle.write(PIPELINE)
    print(f"{load()} before starting the cluster")
    cluster = Cluster(workspace, 4)
    try:
        local = ["--executor", "local", "--workers", "4"]
        scheduler = ["--scheduler", cluster.address]
        run(workspace, 8, 0, *scheduler)  # every worker's attempt process started once
        n = 40 if args.quick else 200
        if "sleeps" in cases:
            sleeps(workspace, rounds, n, {
                "local --workers 4": local,
                "dask --workers 4 (LocalCluster started by the run)": [
                    "--executor", "dask", "--workers", "4"],
                "dask --scheduler (4 workers, started before)": scheduler,
            })
        if "breakdown" in cases:
            breakdown(workspace, rounds, n, {"local --workers 4": local,
                                             "dask --scheduler": scheduler}, cluster)
        if "overhead" in cases:
            overhead(workspace, rounds,
                     [200, 1_000] if args.quick else [1_000, 2_000, 10_000], local, scheduler)
        if "cluster" in cases:
            cluster_start(rounds)
    finally:
        cluster.stop()
        shutil.rmtree(workspace, ignore_errors=True)
    print(f"\n{load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
