"""Lock server benchmark: acquire+release round trips per second, and locking cost per task.

Run by itself: `python bench/lock_bench.py [--seconds 5] [--tasks 10000] [--repeats 2]`,
or `python bench/lock_bench.py --runners 1,4,8,32` for many runners at once.
It starts a real `batchdeps lock-server` on 127.0.0.1 (free port, temp database, rate
limit off) and prints:

- leases/s (acquire + release, each a round trip) on loopback with 1, 16 and 64 concurrent
  clients (`--clients`; each client is its own process with its own persistent
  connection), single (`acquire` then `release-many` of one lease) and batched
  (`acquire-many` of `--batch` keys, default 32, then `release-many` of them): every lease
  granted, fsync'd and released, so batched is two round trips per `--batch` leases;
- the wall time of a run of N independent trivial tasks with no locks, machine-local
  flock() locks and the lock server, and the overhead per task that each lock adds.

With `--runners`: for each count R, R `batchdeps run AllSleepers` processes started together
over one tree of 2,000 tasks of 5 ms (`--sleepers`, `--ms`), 2 workers each, once with
machine-local locks and once through the lock server (interleaved, `--repeats` times, the
median kept), and the ratio of the two: more runners must not make a run slower. Each
lock-server run has a server of its own, whose count of requests by route (logged at its
stop) gives the requests per task.

With `--postgres`: the same round trips (1 and 16 clients) and the same N-task build through
the SQLite server and through servers on one PostgreSQL database (one replica, and two with
the clients dealt between them), in pairs: for each case and repeat, SQLite and each
PostgreSQL setup back to back (the order turned round every other pair), and each
PostgreSQL figure given as the median of its per-pair ratios to SQLite, with their range,
so that the swing of the machine's load between runs does not decide the verdict. The
PostgreSQL server is a throwaway cluster (tests/support/pg.py) with fsync on, as SQLite's
grants are fsynced. A second table says where the CPU went: per lease, the server
process(es) and PostgreSQL's processes (read from /proc before and after each case).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

from measure import child_env

import batchdeps as bd
from batchdeps.locks.base import Lease
from batchdeps.locks.client import HttpLockProvider
from batchdeps.locks.local import LocalLockProvider

TOKEN = "bench-token-0123456789"


def start_server(folder: str, db: str | None = None,
                 log: Any = None) -> tuple[subprocess.Popen[str], str]:
    """A lock server on a free port; its log (requests by route at its stop) to `log`."""
    exe = shutil.which("batchdeps", path=os.path.dirname(sys.executable)) or "batchdeps"
    proc = subprocess.Popen(
        [exe, "lock-server", "--port", "0", "--db", db or os.path.join(folder, "locks.db"),
         "--rate-limit", "0"],
        env={**child_env(), "BATCHDEPS_LOCK_TOKEN": TOKEN}, stdout=subprocess.PIPE, text=True,
        stderr=log)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        raise SystemExit(f"lock server did not start: {line!r}")
    return proc, line.split()[2]


def _client(url: str, seconds: float, start_at: float, index: int, out: Any,
            batch: int = 1) -> None:
    provider = HttpLockProvider(url, token=TOKEN, ttl=30)
    provider.start()
    while time.time() < start_at:
        time.sleep(0.001)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if batch == 1:
            leases = [provider.try_acquire(f"Bench(client={index}, n={done})")]
        else:
            leases = provider.try_acquire_many(
                [f"Bench(client={index}, n={done + i})" for i in range(batch)])
        for lease in leases:
            assert lease is not None
            provider.release(lease)
        provider.flush_releases()  # a round trip of its own, not a release riding along
        done += len(leases)
    provider.close()
    out.put(done)


def round_trips(url: str | list[str], clients: int, seconds: float, batch: int = 1) -> float:
    """Leases acquired and released per second over all clients (dealt over the URLs in
    turn), `batch` keys per acquire request."""
    urls = [url] if isinstance(url, str) else url
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.5 + clients * 0.02
    procs = [ctx.Process(target=_client,
                         args=(urls[i % len(urls)], seconds, start_at, i, out, batch))
             for i in range(clients)]
    for proc in procs:
        proc.start()
    total = sum(out.get() for _ in procs)
    for proc in procs:
        proc.join()
    return total / seconds


class NoLocks:
    """A provider that grants everything: the baseline without any locking."""

    def start(self) -> None: ...
    def try_acquire(self, key: str) -> Lease | None: return Lease(key)
    def try_acquire_many(self, keys: list[str]) -> list[Lease | None]:
        return [Lease(key) for key in keys]
    def acquire_ahead(self, keys: list[str]) -> None: ...
    def try_acquire_resource(self, name: str, slots: int) -> Lease | None: return Lease(name)
    def holder(self, key: str) -> str: return ""
    def check(self, lease: Lease) -> None: ...
    def release(self, lease: Lease) -> None: ...
    def close(self) -> None: ...


class Touch(bd.Task):
    """A trivial task: write one small file."""

    n = bd.IntParameter()
    folder = bd.Parameter()

    def output(self) -> bd.FileTarget:
        return bd.FileTarget(os.path.join(self.folder, f"{self.n}.txt"))

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write("x")


def timed_run(tasks: int, provider: Any, folder: str) -> float:
    out = tempfile.mkdtemp(dir=folder)
    requested = [Touch(n=n, folder=out) for n in range(tasks)]
    started = time.perf_counter()
    result = bd.build(requested, workers=1, locks=provider)
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.counts()
    return elapsed


def runners_at_once(count: int, url: str | None, folder: str, sleepers: int, ms: int,
                    workers: int) -> float:
    """Seconds until `count` runs of the same `sleepers` tasks, started together, all end."""
    exe = shutil.which("batchdeps", path=os.path.dirname(sys.executable)) or "batchdeps"
    root = tempfile.mkdtemp(dir=folder)
    with open(os.path.join(root, "config.toml"), "w") as config:
        config.write('[batchdeps]\nmodules = ["bd_dags"]\ntask_logs = "off"\n\n'
                     '[history]\nenabled = false\n')
    env = {**child_env(), "BATCHDEPS_LOCK_TOKEN": TOKEN,
           "BATCHDEPS_LOCK_DIR": os.path.join(root, "locks"),
           "PYTHONPATH": os.pathsep.join(
               [os.path.join(os.path.dirname(os.path.abspath(__file__)), "dags")]
               + [entry for entry in [os.environ.get("PYTHONPATH", "")] if entry])}
    argv = [exe, "run", "AllSleepers", "--size", str(sleepers), "--ms", str(ms),
            "--root", os.path.join(root, "data"), "--workers", str(workers)]
    if url:
        argv += ["--lock-url", url]
    logs = [open(os.path.join(root, f"runner-{i}.log"), "w+") for i in range(count)]
    started = time.perf_counter()
    procs = [subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
             for log in logs]  # files, not pipes: a pipe nobody reads stops its writer
    codes = [proc.wait() for proc in procs]
    elapsed = time.perf_counter() - started
    for code, log in zip(codes, logs):
        log.seek(0)
        text = log.read()
        log.close()
        if code != 0:
            raise SystemExit(f"a runner failed: {text[-2000:]}")
    made = len(os.listdir(os.path.join(root, "data", "sleep")))
    if made != sleepers:
        raise SystemExit(f"{count} runners made {made} files, not {sleepers}")
    shutil.rmtree(root, ignore_errors=True)
    return elapsed


def served_requests(log_text: str) -> dict[str, int]:
    """Requests by route from a lock server's log line at its stop."""
    found = re.search(r"stopping after \d+ requests \((.*)\); lease changes", log_text)
    if not found:
        return {}
    return {name: int(count) for name, count in
            (part.rsplit(" ", 1) for part in found.group(1).split(", "))}


def runners_on_a_fresh_server(count: int, folder: str, args: argparse.Namespace
                              ) -> tuple[float, dict[str, int]]:
    """`runners_at_once` through a lock server of its own: seconds, requests by route."""
    log_path = os.path.join(folder, "server.log")
    db = os.path.join(tempfile.mkdtemp(dir=folder), "locks.db")
    with open(log_path, "w+") as log:
        server, url = start_server(folder, db, log)
        try:
            took = runners_at_once(count, url, folder, args.sleepers, args.ms, args.workers)
        finally:
            server.terminate()
            server.wait()
        log.seek(0)
        return took, served_requests(log.read())


def runner_counts(args: argparse.Namespace, folder: str) -> None:
    print(f"{args.sleepers} tasks of {args.ms} ms, {args.workers} workers per runner; "
          f"median of {args.repeats}; load {os.getloadavg()[0]:.1f}")
    for count in [int(c) for c in args.runners.split(",")]:
        local: list[float] = []
        remote: list[float] = []
        requests: list[dict[str, int]] = []
        for _ in range(args.repeats):  # interleaved, so load on the machine hits both
            local.append(runners_at_once(count, None, folder, args.sleepers, args.ms,
                                         args.workers))
            took, served = runners_on_a_fresh_server(count, folder, args)
            remote.append(took)
            requests.append(served)
        local_s, remote_s = sorted(local)[len(local) // 2], sorted(remote)[len(remote) // 2]
        ratios = sorted(r / l for r, l in zip(remote, local))
        per_task = sorted(sum(r.values()) / args.sleepers for r in requests)
        routes = Counter[str]()
        for served in requests:
            routes.update(served)
        shown = ", ".join(f"{name} {n / len(requests) / args.sleepers:.2f}"
                          for name, n in routes.most_common())
        print(f"{count:3d} runner(s): local locks {local_s:6.2f} s, lock server "
              f"{remote_s:6.2f} s ({remote_s / local_s:.2f}x; pairs {ratios[0]:.2f}-"
              f"{ratios[-1]:.2f}x); requests per task {per_task[len(per_task) // 2]:.2f} "
              f"({shown}); load {os.getloadavg()[0]:.1f}", flush=True)


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of process `pid` (with its reaped children's)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cluster_cpu(data_dir: str) -> float:
    """CPU seconds of a PostgreSQL cluster so far: the postmaster, its children alive (the
    backends) and those it has reaped."""
    with open(os.path.join(data_dir, "postmaster.pid")) as pidfile:
        postmaster = int(pidfile.readline())
    total = cpu_seconds(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == postmaster:
                total += cpu_seconds(int(entry))
    return total


def compare_stores(args: argparse.Namespace, folder: str) -> None:
    """SQLite against PostgreSQL (one and two replicas): `repeats` pairs of each case, run
    back to back in turn, and the median of the per-pair ratios."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from support.pg import PgCluster

    from batchdeps.locks.store.postgres import init_database

    cluster = PgCluster(fsync=True).start()
    servers: list[subprocess.Popen[str]] = []
    try:
        url = cluster.fresh_url()
        init_database(url)
        sqlite_server, sqlite_url = start_server(folder)
        pg_a, url_a = start_server(folder, url)
        pg_b, url_b = start_server(folder, url)
        servers += [sqlite_server, pg_a, pg_b]
        setups: dict[str, list[str]] = {"sqlite": [sqlite_url], "postgresql, 1 replica": [url_a],
                                        "postgresql, 2 replicas": [url_a, url_b]}
        print(f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; load "
              f"{os.getloadavg()[0]:.1f}; {args.repeats} pairs, alternated")
        pids = {"sqlite": [sqlite_server.pid], "postgresql, 1 replica": [pg_a.pid],
                "postgresql, 2 replicas": [pg_a.pid, pg_b.pid]}
        #: (setup, case) -> [server CPU s, PostgreSQL CPU s, leases] summed over repeats
        spent: dict[tuple[str, str], list[float]] = {}

        def measured(name: str, case: str, leases: float, before: tuple[float, float]) -> None:
            server = sum(cpu_seconds(pid) for pid in pids[name]) - before[0]
            database = (cluster_cpu(cluster.data) - before[1]) if name != "sqlite" else 0.0
            total = spent.setdefault((name, case), [0.0, 0.0, 0.0])
            total[0] += server
            total[1] += database
            total[2] += leases

        def now_cpu(name: str) -> tuple[float, float]:
            return (sum(cpu_seconds(pid) for pid in pids[name]),
                    cluster_cpu(cluster.data) if name != "sqlite" else 0.0)

        timed_run(min(args.tasks, 1000), NoLocks(), folder)
        #: (setup, case) -> the figure of each pair, in order (leases/s, or the build's s)
        runs: dict[tuple[str, str], list[float]] = {}
        names = list(setups)
        for rep in range(args.repeats):
            for case in ("rt1", "rt16", "build"):
                # One pair (SQLite and each PostgreSQL setup) back to back for each case,
                # the order turned round every other pair, so that the load of the moment
                # and its drift hit both sides of a ratio alike.
                for name in (names if rep % 2 == 0 else names[::-1]):
                    urls = setups[name]
                    before = now_cpu(name)
                    if case == "build":
                        figure = timed_run(args.tasks, HttpLockProvider(
                            urls, token=TOKEN, ttl=30), folder)
                        leases = float(args.tasks)
                    else:
                        figure = round_trips(urls, int(case[2:]), args.seconds)
                        leases = figure * args.seconds
                    measured(name, case, leases, before)
                    runs.setdefault((name, case), []).append(figure)
        print(f"load {os.getloadavg()[0]:.1f} at the end")

        def median(values: list[float]) -> float:
            ordered = sorted(values)
            middle = len(ordered) // 2
            return (ordered[middle] if len(ordered) % 2 else
                    (ordered[middle - 1] + ordered[middle]) / 2)

        def ratios(name: str, case: str) -> list[float]:
            """Each pair's PostgreSQL-to-SQLite ratio (for the build, SQLite's time over
            this one's, so that above 1 is faster everywhere and 0.67 is the line)."""
            ours, base = runs[(name, case)], runs[("sqlite", case)]
            return sorted(b / o if case == "build" else o / b for o, b in zip(ours, base))

        print(f"| server | round trips/s, 1 client | round trips/s, 16 clients | "
              f"{args.tasks} tasks, 1 worker |")
        print("| --- | --- | --- | --- |")
        for name in setups:
            cells = []
            for case in ("rt1", "rt16", "build"):
                value = median(runs[(name, case)])
                shown = f"{value:.2f} s" if case == "build" else f"{value:.0f}"
                if name != "sqlite":
                    pairs = ratios(name, case)
                    shown += (f" ({median(pairs):.2f}x; pairs {pairs[0]:.2f}-"
                              f"{pairs[-1]:.2f}x)")
                else:
                    spread = sorted(runs[(name, case)])
                    shown += (f" ({spread[0]:.2f}-{spread[-1]:.2f} s)" if case == "build"
                              else f" ({spread[0]:.0f}-{spread[-1]:.0f})")
                cells.append(shown)
            print(f"| {name} | {' | '.join(cells)} |", flush=True)
        print("(medians of the runs; for PostgreSQL the median of the per-pair ratios to "
              "SQLite, speed: above 1.00x is faster, 0.67x is the goal's line)")
        print("\nCPU per lease, all repeats (us; server process(es) + PostgreSQL's processes):")
        print("| server | 1 client | 16 clients | build |")
        print("| --- | --- | --- | --- |")
        for name in setups:
            cells = []
            for case in ("rt1", "rt16", "build"):
                server, database, leases = spent[(name, case)]
                cells.append(f"{server / leases * 1e6:.0f} + {database / leases * 1e6:.0f}")
            print(f"| {name} | {' | '.join(cells)} |", flush=True)
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()
        cluster.destroy()


def lease_rates(args: argparse.Namespace, url: str) -> None:
    """The leases/s table: single and batched, for each client count, median of repeats."""
    counts = [int(c) for c in args.clients.split(",")]
    rates: dict[tuple[int, int], list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits every cell
        for clients in counts:
            for batch in (1, args.batch):
                rates.setdefault((clients, batch), []).append(
                    round_trips(url, clients, args.seconds, batch))
    print(f"| clients | leases/s, single | leases/s, batched ({args.batch} keys) |")
    print("| ---: | ---: | ---: |")
    for clients in counts:
        single, batched = (sorted(rates[(clients, b)])[args.repeats // 2]
                           for b in (1, args.batch))
        print(f"| {clients} | {single:.0f} | {batched:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runners", default="", help="runner counts, e.g. 1,4,8,32")
    parser.add_argument("--sleepers", type=int, default=2000)
    parser.add_argument("--ms", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", default="1,16,64",
                        help="concurrent clients for leases/s, e.g. 1,16,64")
    parser.add_argument("--batch", type=int, default=32, help="keys per acquire-many")
    parser.add_argument("--leases-only", action="store_true",
                        help="only the leases/s table, not the N-task build")
    parser.add_argument("--postgres", action="store_true",
                        help="SQLite against PostgreSQL with one and two replicas")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="lock-bench-")
    if args.postgres:
        try:
            compare_stores(args, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if args.runners:
        try:
            runner_counts(args, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    server, url = start_server(folder)
    try:
        print(f"lock server at {url}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
              f"load {os.getloadavg()[0]:.1f}; median of {args.repeats}, interleaved")
        lease_rates(args, url)
        if args.leases_only:
            return
        timed_run(min(args.tasks, 1000), NoLocks(), folder)  # warm up imports and caches
        baseline = local = remote = float("inf")
        for _ in range(args.repeats):  # interleaved; the best of each is least disturbed
            baseline = min(baseline, timed_run(args.tasks, NoLocks(), folder))
            local = min(local, timed_run(
                args.tasks, LocalLockProvider(os.path.join(folder, "flock")), folder))
            remote = min(remote, timed_run(
                args.tasks, HttpLockProvider(url, token=TOKEN, ttl=30), folder))
        print(f"{args.tasks} tasks, 1 worker, best of {args.repeats}: no locks {baseline:.2f} s, "
              f"local locks {local:.2f} s, lock server {remote:.2f} s")
        for name, value in (("local locks", local), ("lock server", remote)):
            print(f"locking overhead per task, {name}: "
                  f"{(value - baseline) / args.tasks * 1e6:8.0f} us")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
