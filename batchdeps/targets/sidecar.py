"""Build records: the small file beside a task's outputs that says how they were built.

A task's record lives beside its first file output `dir/name` as `dir/.name.batchdeps.json`
(on S3 the key `prefix/.name.batchdeps.json`), so it travels with the outputs: a second
machine or a fresh checkout that sees the outputs sees the record. It is never one of the
task's outputs: `output()` does not return it, so completeness and `status` ignore it.

The record is written as one more staged write of the attempt (`stage`), so it is
committed together with the outputs by `commit.commit_together`: it is moved before the
sentinel output, and a crash mid-commit is completed or rolled back with the outputs (the
commit record of journal.py lists it like any other write).

Format (JSON, one object):

    {"batchdeps_build_record": 1, "task_id": "Clean(day=2026-11-24)",
     "version": "2" or null, "params": {"day": "2026-11-24"},
     "inputs": {"data/raw/2026-11-24.log": {"mtime_ns": ..., "size": ...}, ...},
     "built": 1764471600.0}

`inputs` holds each input's identity (`Target.identity()`) taken before `run()` started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .base import FileTarget, Target, read_files

if TYPE_CHECKING:
    from .staging import Staging

#: `.<name><SUFFIX>` beside the first file output.
SUFFIX = ".batchdeps.json"
FORMAT = 1

K = TypeVar("K", bound=Hashable)


def is_record_name(name: str) -> bool:
    """Whether a file name is a build record's (`.<name>.batchdeps.json`)."""
    return name.startswith(".") and name.endswith(SUFFIX)


def record_target(outputs: list[Target]) -> FileTarget | None:
    """Where the record of a task with these outputs lives (None: no file output)."""
    for target in outputs:
        if isinstance(target, FileTarget):
            base = target.url.rstrip("/").rpartition("/")[2]
            return target.sibling(f".{base}{SUFFIX}")
    return None


def make_record(task_id: str, version: str | None, params: Mapping[str, str],
                inputs: Mapping[str, Any], built: float | None = None) -> dict[str, Any]:
    """The record's content (see the module docstring)."""
    return {"batchdeps_build_record": FORMAT, "task_id": task_id, "version": version,
            "params": dict(params), "inputs": dict(inputs),
            "built": time.time() if built is None else built}


def stage(staging: Staging, target: FileTarget, record: dict[str, Any]) -> None:
    """Write `record` to a temporary file of `target`, held with the attempt's other writes
    so that it is committed together with them (or discarded with them)."""
    data = json.dumps(record, sort_keys=True).encode()
    handle, tmp_path = target._open_tmp("wb")
    try:
        handle.write(data)
        handle.close()
    except BaseException:
        target.discard_tmp(tmp_path)
        raise
    from .staging import PendingWrite

    staging.add(PendingWrite(target, tmp_path))


def records_of(slots: Mapping[K, Target], wanted: Iterable[K],
               identities: Mapping[Target, dict[str, Any] | None]) -> dict[K, dict[str, Any] | None]:
    """The record of each of `wanted` (None: it has none), from `slots` (where each one's
    record lives) and the `identities` just found in one batch with the outputs': only the
    records found there are read, each from its local copy when that is of the version
    found (copies.py), else fetched."""
    from .copies import read_with_copies

    found: dict[K, dict[str, Any] | None] = dict.fromkeys(wanted)
    present: list[K] = []
    seen: list[dict[str, Any]] = []
    for owner in found:
        identity = identities.get(slots[owner])
        if identity is not None:
            present.append(owner)
            seen.append(identity)
    found.update(zip(present, _parsed(read_with_copies([slots[o] for o in present], seen))))
    return found


def read_records(targets: list[Target]) -> list[dict[str, Any] | None]:
    """The records at `targets` (batched per storage, each fetched); None where there is
    none.

    A record that cannot be parsed counts as none (it says nothing we can trust); a store
    that cannot be read is an error, as for existence checks.
    """
    return _parsed(read_files(targets))


def _parsed(contents: Iterable[bytes | None]) -> list[dict[str, Any] | None]:
    records: list[dict[str, Any] | None] = []
    for data in contents:
        record = None
        if data is not None:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("batchdeps_build_record") == FORMAT:
                record = parsed
        records.append(record)
    return records

