"""Shares of a batchdeps build's time by part, from a py-spy raw profile of the main thread.

    py-spy record -r 1000 -f raw -o tree.raw -- \
        python -m batchdeps.cli run TreeNode --size 10000 --root /dev/shm/x
    python bench/profile_shares.py tree.raw CPU_US_PER_TASK

Each sample is counted once, in the first part (in the order below) one of whose frames
it has; CPU_US_PER_TASK (the process's user + system CPU time over the task count) turns
the shares into microseconds per task. Only the main thread's samples count.
"""

from __future__ import annotations

import collections
import sys

#: (part, frame names that put a sample in it); the first match wins, "" matches all.
PARTS: list[tuple[str, list[str]]] = [
    ("start-up: imports, config, CLI", ["_find_and_load"]),
    ("resolution (walk, task objects, output checks)", ["Session.resolve"]),
    ("per-task log lines (two INFO records)", ["LogListener.on_event"]),
    ("run history (rows made and written)", ["HistoryListener"]),
    ("task log capture around run()", ["_Capture.", "TaskLogs."]),
    ("the task's own run(): open, write, close through staging",
     ["run (bd_dags.py", "_write (bd_dags.py"]),
    ("commit (rename) of the staged write", ["Staging.commit", "commit_together"]),
    ("lock: take and give back", ["LocalLockProvider", "try_acquire"]),
    ("outputs checked again under the lock", ["_complete_after_lease"]),
    ("stale temporary files (leftovers)", ["Leftovers.clean"]),
    ("recording results, readying downstream", ["Runner.close"]),
    ("the loop, attempts, the rest", [""]),
]


def shares(raw_path: str) -> dict[str, float]:
    """Part -> share of the main thread's samples."""
    total = 0
    counts: collections.Counter[str] = collections.Counter()
    with open(raw_path) as raw:
        for line in raw:
            stack, _, number = line.rstrip().rpartition(" ")
            if not stack.startswith("_run_module_as_main"):
                continue  # another thread (the history ticker)
            total += int(number)
            for name, frames in PARTS:
                if any(frame in stack for frame in frames):
                    counts[name] += int(number)
                    break
    return {name: counts[name] / max(total, 1) for name, _ in PARTS}


def main() -> None:
    per_task = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    for name, share in shares(sys.argv[1]).items():
        print(f"| {100 * share:4.1f} % | {share * per_task:5.0f} µs | {name} |")


if __name__ == "__main__":
    main()
