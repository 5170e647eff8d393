"""Committing one attempt's staged writes together: all of them become visible, or none.

A single write is one atomic move (a rename, or one upload) and needs nothing more. With
several writes:

* One declared output, the *sentinel*, is moved last, and a file it replaces is moved out
  of view first. Until the commit is done the task therefore lacks an output, so neither
  the resolver nor the re-check after taking the lock takes it as complete, even after a
  crash mid-commit.
* Every other replaced file is kept aside (a hard link on local disks) until the commit
  is done, so that a commit that fails part-way restores what it replaced and removes what
  it made before the error is raised.
* For local files a commit record (journal.py) is written beside the staged files first,
  so that the next run that takes the task's lock completes or rolls back a commit that a
  crash (kill -9) interrupted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from .. import logs
from . import journal

from .target import PendingWrite, Target

log = logs.get("batchdeps.targets")


def commit_together(writes: list[PendingWrite], outputs: Sequence[Target] = ()) -> None:
    """Move every write into place; on a failure undo what was done and raise.

    Args:
        writes: the attempt's staged writes, in the order they were closed.
        outputs: the task's declared outputs, in order; the first one written is the
            sentinel (moved last).

    Raises:
        TargetError: a write could not be committed (nothing of this attempt is visible).
    """
    if not writes:
        return
    if len(writes) == 1:
        writes[0].commit()
        return
    order, hide_last = commit_order(writes, outputs)
    try:
        record = journal.write_record(order, hide_last)
    except BaseException:
        for write in writes:
            _quietly(write.discard, write)
        raise
    # Per write: the file it replaces, kept aside (None: there was none), and whether moved.
    done: list[tuple[PendingWrite, Any, bool]] = []
    try:
        last = order[-1]
        if hide_last:
            done.append((last, last.target.keep_previous(last.tmp_path, hide=True), False))
        for write in order[:-1]:
            backup = write.target.keep_previous(write.tmp_path, hide=False)
            done.append((write, backup, False))
            write.commit()
            done[-1] = (write, backup, True)
        last.commit()
        if hide_last:
            done[0] = (last, done[0][1], True)
    except BaseException:
        if _roll_back(order, done) and record is not None:
            record.remove()
        raise
    for write, backup, _ in done:
        if backup is not None:
            _quietly(functools.partial(write.target.drop_backup, backup), write)
    if record is not None:
        record.remove()


def commit_order(writes: list[PendingWrite],
                 outputs: Sequence[Target]) -> tuple[list[PendingWrite], bool]:
    """The writes in commit order, and whether the last one is a declared output.

    The sentinel is the first declared output that was written, preferring a local one
    (only a local commit leaves a record that the next run can act on).
    """
    by_url = {write.target.url: write for write in writes}
    declared = [by_url[t.url] for t in outputs if t.url in by_url]
    if not declared:
        return list(writes), False
    local = [w for w in declared if journal.is_local(w.target)]
    sentinel = (local or declared)[0]
    return [w for w in writes if w is not sentinel] + [sentinel], True


def _roll_back(order: list[PendingWrite], done: list[tuple[PendingWrite, Any, bool]]) -> bool:
    """Undo a commit that failed part-way; False if something could not be undone."""
    clean = True
    touched = set()
    for write, backup, moved in reversed(done):
        touched.add(id(write))
        try:
            if moved or (backup is not None and write is order[-1]):
                write.target.undo_commit(backup)  # restore what it replaced, or remove it
            elif backup is not None:
                write.target.drop_backup(backup)
        except Exception as exc:  # noqa: BLE001 - report, keep undoing the others
            clean = False
            log.error("could not undo the commit of %s: %s", write.target.url, exc)
        if not moved:
            _quietly(write.discard, write)
    for write in order:
        if id(write) not in touched:
            _quietly(write.discard, write)
    return clean


def _quietly(action: Callable[[], object], write: PendingWrite) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the commit's own error is the one to report
        log.warning("could not clean up after %s: %s", write.target.url, exc)
