"""The run history's SQLite writes alone, per row, at two sizes: does a row cost more in a
larger file?

    python bench/history_growth.py [--sizes 100000,1000000] [--cache-kib 0] [--dir /dev/shm]

For each size N: a fresh history file (`HistoryStore`, the schema and pragmas a run uses);
N `planned` rows written 20,000 per transaction (as a run's plan), then N `finished` rows
2,000 per transaction (the listener's batch) in a tree build's order, leaves (the highest
numbers) first, with the task ids, folders and log paths of a `TreeNode` build. Prints the
CPU per row of each kind. `--cache-kib` sets SQLite's page cache (0: its default, 2 MiB).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchdeps.history.store import HistoryStore


def measure(size: int, folder: str, cache_kib: int) -> tuple[float, float, float]:
    path = os.path.join(folder, f"history-{size}.db")
    store = HistoryStore(path)
    if cache_kib:
        store.db.execute(f"PRAGMA cache_size=-{cache_kib}")
    root = os.path.join(folder, "data-1000000-0")
    task = f"TreeNode(n={{}}, size={size}, root={root})".format
    start = time.process_time()
    planned = [("run", 1.0, "planned", task(n), "TreeNode", "planned", 0, 0.0, "", "", "",
                "host", 1, 0.0) for n in range(size)]
    for first in range(0, size, 20_000):
        store.write(planned[first:first + 20_000], None)
    del planned
    middle = time.process_time()
    batch: list[tuple[object, ...]] = []
    ts = 2.0
    for n in range(size - 1, -1, -1):
        ts += 1e-4
        batch.append(("run", ts, "finished", task(n), "TreeNode", "built", 1, 0.001, "",
                      f"logs/TreeNode/{n}.log", "output missing", "host", 1, ts))
        if len(batch) >= 2000:
            store.write(batch, None)
            batch = []
    store.write(batch, None)
    end = time.process_time()
    megabytes = os.path.getsize(path) / 1e6
    store.close()
    return (middle - start) / size * 1e6, (end - middle) / size * 1e6, megabytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--cache-kib", type=int, default=0)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="batchdeps-history-", dir=args.dir) as folder:
            planned, finished, megabytes = measure(size, folder, args.cache_kib)
        print(f"{size:>9,} rows: planned {planned:.1f} µs/row, finished {finished:.1f} µs/row, "
              f"file {megabytes:,.0f} MB (load {'/'.join(f'{v:.2f}' for v in os.getloadavg())})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
