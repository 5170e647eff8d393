"""How fast the status page is with 100,000 recorded tasks; and the screenshot in the docs.

    python bench/status_page.py                       # timings only
    python bench/status_page.py --screenshot docs/status-page.png

Fills a lock server database with the history of `--runs` runs of `--tasks-per-run` tasks
each over the last week (about one in fifty failing), starts a real `batchdeps lock-server`
on it, does a real failing run and leaves a slow run going (so every section has live
content), then times each route (median of `--reps` requests). With `--screenshot`,
Debian's chromium (driven by Playwright) logs in through the form and saves the page.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from measure import child_env

BIN = Path(sys.executable).parent
BATCHDEPS = str(BIN / "batchdeps")
TOKEN = "bench-token-0123456789abcdef"
FAMILIES = {"Extract": 2.0, "Clean": 8.0, "Aggregate": 30.0, "Report": 4.0, "Publish": 1.0}
PIPELINE = '''
import os
import time

import batchdeps as bd


class Extract(bd.Task):
    day = bd.DateParameter()

    def output(self):
        return bd.FileTarget(f"out/extract-{self.day}.csv")

    def run(self):
        with self.output().open("w") as out:
            out.write("rows\\n")


class Report(bd.Task):
    day = bd.DateParameter()

    def requires(self):
        return Extract(day=self.day)

    def output(self):
        return bd.FileTarget(f"out/report-{self.day}.csv")

    def run(self):
        print("connecting to the warehouse")
        raise ConnectionError("warehouse db-1 refused the connection (port 5432)")


class Aggregate(bd.Task):
    day = bd.DateParameter()

    def output(self):
        return bd.FileTarget(f"out/aggregate-{self.day}.csv")

    def run(self):
        time.sleep(600)
'''


def fill(db: str, runs: int, per_run: int) -> int:
    """Synthetic history: `runs` finished runs over the last 7 days; rows written."""
    from batchdeps.history.store import HistoryStore
    from batchdeps.locks.store import LeaseStore

    LeaseStore(db).close()  # a lease database first: the server opens no other kind
    rng = random.Random(7)
    store = HistoryStore(db)
    now = time.time()
    written = 0
    names = list(FAMILIES)
    for number in range(runs):
        run_id = f"{number:012x}"
        started = now - 7 * 86400 + number * (7 * 86400 / runs)
        rows = []
        counts = {"built": 0, "failed": 0}
        for index in range(per_run):
            family = names[index % len(names)]
            failed = rng.random() < 0.02
            duration = rng.expovariate(1 / FAMILIES[family])
            status = "failed" if failed else "built"
            counts[status] += 1
            rows.append((run_id, started + index, "finished",
                         f"{family}(day=2026-11-{1 + number % 28:02d}, part={index})", family,
                         status, 1, duration,
                         "ValueError: bad row 17 in input" if failed else "",
                         f"/srv/etl/logs/{family}/part={index}/{run_id}/1.log" if failed
                         else "", "output missing", "etl-1", 4242, started + index - duration))
        store.write(rows, {"run_id": run_id, "requested": [f"Nightly(day=2026-11-{1 + number % 28:02d})"],
                           "host": "etl-1", "user": "etl", "pid": 4242, "started": started,
                           "finished": started + per_run, "exit_code": 1 if counts["failed"] else 0,
                           "planned": per_run, "counts": counts, "last_seen": started + per_run})
        written += len(rows)
    store.close()
    return written


def get(port: int, path: str, token: str = TOKEN) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, body, elapsed


def screenshot(url: str, path: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/")
        page.fill("#token", TOKEN)
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.screenshot(path=path, full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--tasks-per-run", type=int, default=100)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--screenshot", default=None, help="save the page (PNG) here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="batchdeps-page-bench-"))
    server = running = None
    try:
        db = str(work / "locks.db")
        started = time.perf_counter()
        rows = fill(db, args.runs, args.tasks_per_run)
        print(f"filled {rows:,} task records in {time.perf_counter() - started:.1f} s")
        env = {**child_env(), "BATCHDEPS_LOCK_TOKEN": TOKEN}
        server = subprocess.Popen([BATCHDEPS, "lock-server", "--port", "0", "--db", db],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        port = int(url.rsplit(":", 1)[1])
        project = work / "project"
        (project / "pipelines").mkdir(parents=True)
        (project / "pipelines" / "__init__.py").write_text(PIPELINE)
        (project / "config.toml").write_text(textwrap.dedent(f"""\
            [batchdeps]
            modules = ["pipelines"]
            [lock]
            url = "{url}"
            """))
        run_env = {**env, "BATCHDEPS_LOCK_DIR": str(work / "local-locks")}
        subprocess.run([BATCHDEPS, "run", "Report", "--day", "2026-11-27"], cwd=project,
                       env=run_env, capture_output=True, check=False, timeout=120)
        running = subprocess.Popen([BATCHDEPS, "run", "Aggregate", "--day", "2026-11-28"],
                                   cwd=project, env=run_env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while b"Aggregate(day=2026-11-28)" not in get(port, "/")[1]:
            if time.monotonic() > deadline:
                raise SystemExit("the slow run never showed on the page")
            time.sleep(0.5)
        for path in ("/", "/?failures_page=40&runs_page=40", "/metrics",
                     "/v1/history?limit=50", "/v1/history?family=Clean&status=failed&limit=50"):
            times = []
            size = 0
            for _ in range(args.reps):
                status, body, elapsed = get(port, path)
                assert status == 200, (path, status, body[:200])
                times.append(elapsed)
                size = len(body)
            print(f"GET {path:48} median {1000 * statistics.median(times):7.1f} ms, "
                  f"max {1000 * max(times):7.1f} ms, {size / 1024:.0f} KiB")
        if args.screenshot:
            screenshot(url, args.screenshot)
            print(f"screenshot saved to {args.screenshot}")
    finally:
        if running is not None:
            os.killpg(running.pid, signal.SIGTERM)
            running.wait(30)
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
