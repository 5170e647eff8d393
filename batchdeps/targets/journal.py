"""Commit records: how the next run finishes a local multi-write commit that a crash cut short.

Before the first file of a multi-write commit moves, a record listing every local write
(final path, staged file, whether it is the hidden sentinel) is written beside the
sentinel's staged file as `<staged file>.commit`; every other temporary folder involved gets
a `<staged file>.ref` naming the record, so that no sweep of dead writers' files there
removes what the recovery still needs. A replaced file is kept aside as `<staged file>.old`.
The record and its refs are removed when the commit is done or rolled back.

`recover()` runs under the task's lock (the next attempt's stale-file cleanup): if the
sentinel was moved, every move was done and only the kept-aside files are dropped;
otherwise every move is undone. Both are idempotent, so a crash during recovery is
recovered by the next run too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Any

from .. import logs
from ..errors import TargetError

from .target import PendingWrite, Target

log = logs.get("batchdeps.targets")

RECORD_SUFFIX = ".commit"
REF_SUFFIX = ".ref"
OLD_SUFFIX = ".old"


def is_local(target: Target) -> bool:
    """Whether the target is a file on this machine's disk (then a record can cover it)."""
    return bool(getattr(target, "on_local_disk", False))


class CommitRecord:
    """A written record and its refs, removed when the commit is over."""

    def __init__(self, path: str, refs: list[str]) -> None:
        self.path = path
        self.refs = refs

    def remove(self) -> None:
        for ref in self.refs:
            remove_path(ref)
        remove_path(self.path)


def write_record(order: list[PendingWrite], hide_last: bool) -> CommitRecord | None:
    """Write the record of a commit of `order` (None when no write is local)."""
    local = [(w, hide_last and w is order[-1]) for w in order if is_local(w.target)]
    if not local:
        return None
    home = local[-1][0] if local[-1][1] else local[0][0]
    cwd = os.getcwd()  # once: abspath() would ask for every path

    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(cwd, path))  # what abspath() gives

    entries: list[dict[str, Any]] = [
        {"path": absolute(w.target.path),  # type: ignore[attr-defined]
         "tmp": absolute(w.tmp_path), "hide": hide} for w, hide in local]
    path = absolute(home.tmp_path) + RECORD_SUFFIX
    refs: list[str] = []
    try:
        _write(path, json.dumps({"entries": entries}))
        home_dir = os.path.dirname(path)
        seen = {home_dir}
        for entry in entries:
            folder = os.path.dirname(entry["tmp"])
            if folder not in seen:
                seen.add(folder)
                ref = entry["tmp"] + REF_SUFFIX
                _write(ref, path)
                refs.append(ref)
    except OSError as exc:
        CommitRecord(path, refs).remove()
        raise TargetError(f"cannot commit {order[0].target.url}: cannot write the commit "
                          f"record: {exc.strerror or exc}") from exc
    return CommitRecord(path, refs)


def record_of_ref(ref_path: str) -> str | None:
    try:
        with open(ref_path) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def record_paths(record_path: str) -> list[str]:
    """The final paths a record covers ([] if it cannot be read)."""
    return [entry["path"] for entry in _read(record_path) or ()]


def recover(record_path: str) -> None:
    """Complete or roll back the interrupted commit of `record_path`, then remove it."""
    entries = _read(record_path)
    if entries is None:
        return
    sentinel = entries[-1]
    finished = (sentinel["hide"] and not os.path.lexists(sentinel["tmp"])
                and os.path.lexists(sentinel["path"]))
    for entry in reversed(entries):
        old = entry["tmp"] + OLD_SUFFIX
        if finished:
            remove_path(old)
            continue
        if os.path.lexists(old):
            restore(old, entry["path"])
        elif not os.path.lexists(entry["tmp"]):
            remove_path(entry["path"])  # moved into place by the commit: undo it
        remove_path(entry["tmp"])
    for entry in entries:
        remove_path(entry["tmp"] + REF_SUFFIX)
    remove_path(record_path)
    log.warning("%s an interrupted commit of %s", "completed" if finished else "rolled back",
                ", ".join(e["path"] for e in entries[:3]) + (" ..." if len(entries) > 3 else ""))


def restore(kept: str, path: str) -> None:
    """Put the kept-aside file or folder `kept` back at `path`."""
    if os.path.isdir(kept) and not os.path.islink(kept) and os.path.lexists(path):
        remove_path(path)
    os.replace(kept, path)


def remove_path(path: str) -> None:
    """Remove a file or a folder tree; a missing one is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):
        if not os.path.isdir(path) or os.path.islink(path):
            raise
        shutil.rmtree(path)


def _write(path: str, text: str) -> None:
    # os-level: three system calls, where open() adds fstat, ioctl and lseek probes.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(record_path: str) -> list[dict[str, Any]] | None:
    try:
        with open(record_path) as handle:
            entries = json.load(handle)["entries"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring an unreadable commit record %s: %s", record_path, exc)
        with contextlib.suppress(OSError):
            os.unlink(record_path)
        return None
    return entries  # type: ignore[no-any-return]
