"""The leftovers of one run's writes: stale files removed before an attempt, dead writers'
files swept and empty temporary folders removed when the run ends.

A `Leftovers` lives as long as one run (the runner makes one per run), so the listing of a
temporary folder it keeps is never carried over into another run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from typing import Any

from .. import logs
from .base import Target
from .journal import RECORD_SUFFIX, REF_SUFFIX, remove_path
from .local import LocalTarget, parse_tmp_name, tmp_place
from .staging import host_tag, writer_is_dead

log = logs.get("batchdeps.targets")


class Leftovers:
    """Run-scoped clean-up of temporary files in the folders a run writes into."""

    def __init__(self) -> None:
        self._listings: dict[str, Any] = {}
        self._folders: set[str] = set()  # local temporary folders this run may commit into

    def clean(self, targets: Iterable[Target], fresh: bool = False) -> None:
        """Remove what earlier writers of `targets` left (the caller holds the task's lock).

        An interrupted commit of one of them is completed or rolled back first.
        """
        for target in targets:
            target.cleanup_stale(fresh=fresh, listings=self._listings)
            if isinstance(target, LocalTarget):
                self._folders.add(tmp_place(target.path)[0])

    def close(self) -> None:
        """The run is over: sweep dead writers' files, remove empty temporary folders."""
        for folder in sorted(self._folders):
            sweep(folder)
        self._folders.clear()
        self._listings.clear()


def sweep(tmp_dir: str, now: float | None = None) -> int:
    """Remove the files in `tmp_dir` whose writer is provably dead; remove the folder if
    it is then empty. A writer with a commit record or ref here is left alone: the next
    run of its task needs them to finish that commit. Returns the number removed."""
    try:
        entries = os.listdir(tmp_dir)
    except OSError:
        return 0
    now = time.time() if now is None else now
    parsed = [(entry, parse_tmp_name(entry)) for entry in entries]
    keep_writers = {name[1] for entry, name in parsed
                    if name is not None and entry.endswith((RECORD_SUFFIX, REF_SUFFIX))}
    here = host_tag() + "-"
    verdicts: dict[str, bool] = {}  # this machine's writers: a pid's fate holds for its files
    removed = 0
    left = len(entries)
    for entry, name in parsed:
        if name is None or name[1] in keep_writers:
            continue
        path = os.path.join(tmp_dir, entry)
        writer = name[1]
        if writer.startswith(here):
            dead = verdicts.get(writer)
            if dead is None:
                dead = verdicts[writer] = writer_is_dead(writer, 0.0)
        else:
            try:
                dead = writer_is_dead(writer, now - os.lstat(path).st_mtime)
            except OSError:
                continue
        if dead:
            try:
                remove_path(path)
            except OSError as exc:
                log.debug("could not remove %s: %s", path, exc)
                continue
            removed += 1
            left -= 1
    if left == 0:
        with contextlib.suppress(OSError):
            os.rmdir(tmp_dir)  # fails harmlessly if another writer put a file there meanwhile
    return removed

