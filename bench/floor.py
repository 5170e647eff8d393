"""The floor: what plain Python needs for the same file work, with no tool in between.

    python floor.py write N FOLDER             # N small files, each written to a temp file, then renamed
    python floor.py check N FOLDER             # stat() N files (they must exist)
    python floor.py contract N FOLDER [PARTS]  # `write`, plus what batchdeps' contract adds per task

`contract` is the floor of a build with batchdeps' guarantees and defaults: the same atomic
writes, and per task the system calls and history rows batchdeps makes for them, in a
plain loop with no layer in between. PARTS (comma-separated, default all) picks which:

    looks     the output looked at twice while missing (resolution, the re-check under the lock)
    lock      a record lock taken and given back at a hashed offset of one lock file (fcntl)
    lines     the two log lines (start, built), each written as a line to stderr
    capture   the task log's scratch file: its size before, a header line, its size after
    history   a planned row per task at the start in one transaction, then a finished row
              per task in batches of 2,000, into batchdeps' own history tables
    model     the user's own task code of the bench tree (bench/dags/bd_dags.py, on the
              import path) in place of the plain write: every `TreeNode` made by the
              `requires()` of its parent as a walk makes them, its `output()` target, and
              its `run()` writing through that target inside a staging scope, committed
              after it returns; what batchdeps' task model costs before a runner is in
              between (not part of the default PARTS: `contract` is the contract's floor)

Run as a whole process, like the tools it is compared with.
"""

from __future__ import annotations

import os
import sys

CONTRACT_PARTS = ("looks", "lock", "lines", "capture", "history")
MODEL = "model"
HISTORY_BATCH = 2000  # rows per transaction, as the history listener writes them


def write(count: int, folder: str) -> None:
    tmp_dir = os.path.join(folder, ".tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    for n in range(count):
        tmp_path = os.path.join(tmp_dir, f"{n}.txt.tmp")
        with open(tmp_path, "w") as handle:
            handle.write(f"{n}\n")
        os.replace(tmp_path, os.path.join(folder, f"{n}.txt"))


def check(count: int, folder: str) -> None:
    for n in range(count):
        os.stat(os.path.join(folder, f"{n}.txt"))


def contract(count: int, folder: str, parts: frozenset[str]) -> None:
    """`write`, with the per-task work of `parts` (see the module docstring) around it."""
    import fcntl
    import time

    tmp_dir = os.path.join(folder, ".batchdeps-tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    lock_fd = os.open(os.path.join(folder, "locks"), os.O_RDWR | os.O_CREAT, 0o600)
    log = os.fdopen(os.dup(2), "w", buffering=1)  # as the command line's stderr handler
    scratch = os.open(os.path.join(folder, "scratch.log"),
                      os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S+0000", time.gmtime())
    ids = [f"TreeNode(n={n}, size={count}, root={folder})" for n in range(count)]
    tasks: list = []
    if MODEL in parts:  # the tree's task objects as a walk makes them, and their targets
        from bd_dags import TreeNode

        tasks = [TreeNode(n=0, size=count, root=folder)]
        for task in tasks:  # (grows while walked: breadth first)
            tasks.extend(task.requires())
        tasks.sort(key=lambda task: task.n)
        outputs = [(task.output(),) for task in tasks]
        ids = [task.task_id for task in tasks]
        from batchdeps.targets import staging_scope
    store = None
    if "history" in parts:
        from batchdeps.history.store import HistoryStore

        store = HistoryStore(os.path.join(folder, "history.db"))
        now = time.time()
        store.write(("r", now, "planned", ids[n], "TreeNode", "planned", 0, 0.0, "", "",
                     f"output {folder}/{n}.txt missing", "host", 1, now)
                    for n in range(count))
    looks, lock, lines, capture = (name in parts for name in ("looks", "lock", "lines",
                                                              "capture"))
    rows = []
    for n in range(count):
        path = outputs[n][0].path if tasks else f"{folder}/{n}.txt"
        if looks:
            try:
                os.stat(path)
            except FileNotFoundError:
                pass
        if lock:
            offset = hash(ids[n]) & ((1 << 62) - 1)
            fcntl.lockf(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        if looks:
            try:
                os.stat(path)
            except FileNotFoundError:
                pass
        if lines:
            log.write(f"{stamp} INFO start {ids[n]}: output {path} missing\n")
        if capture:
            os.fstat(scratch)
            os.write(scratch, f"# {ids[n]} attempt 1 of run r on host, pid 1\n".encode())
        if tasks:
            with staging_scope() as staging:
                tasks[n].run()
        else:
            tmp_path = f"{tmp_dir}/{n}.txt.host-1.abc.{n}"
            with open(tmp_path, "w", buffering=65536) as handle:
                handle.write(f"{n}\n")
        if capture:
            os.fstat(scratch)
        if tasks:
            staging.commit(outputs[n])
        else:
            os.replace(tmp_path, path)
        if lock:
            fcntl.lockf(lock_fd, fcntl.LOCK_UN, 1, offset)
        if lines:
            log.write(f"{stamp} INFO built {ids[n]}\n")
        if store is not None:
            now = time.time()
            rows.append(("r", now, "finished", ids[n], "TreeNode", "built", 1, 0.0, "", "",
                         f"output {path} missing", "host", 1, now))
            if len(rows) >= HISTORY_BATCH:
                store.write(rows)
                rows = []
    if store is not None:
        store.write(rows)
        store.close()


if __name__ == "__main__":
    mode, count, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "contract":
        chosen = sys.argv[4].split(",") if len(sys.argv) > 4 else list(CONTRACT_PARTS)
        unknown = set(chosen) - set(CONTRACT_PARTS) - {"", MODEL}
        if unknown:
            raise SystemExit(f"unknown part(s) {', '.join(sorted(unknown))}; "
                             f"parts: {', '.join((*CONTRACT_PARTS, MODEL))}")
        contract(count, folder, frozenset(chosen))
    else:
        write(count, folder) if mode == "write" else check(count, folder)
