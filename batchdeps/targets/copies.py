"""Local copies of small remote files (build records), each kept with the version it was read at.

`status --rerun-triggers` and a dry run with triggers read the build record of every
complete task; on S3 that was one GET per task, though the listing that found each record
already names its version (ETag and size). A record whose listed version is the one kept
here is taken from here; any other is fetched, and kept. So an unchanged record costs its
listing entry, and a changed one (a new ETag) is always read again.

What is kept is always what the store returned together with the version it is kept
under (the ETag of the GET's own answer, not of the listing, which may be older): a copy
can be out of date, never wrong for its version.

The copies are JSON files in `$BATCHDEPS_CACHE_DIR`, else `$XDG_CACHE_HOME/batchdeps`,
else `~/.cache/batchdeps` (a folder made mode 0700; one file per endpoint and bucket).
They only ever save reads: a file may be deleted at any time (the next look fetches
again). One that cannot be read, parsed or written is passed over (logged) and the files
are fetched as without it; a folder another user could write to is not used at all. Two
processes at once: each file is replaced whole (a temporary file renamed over it), and
its read-merge-write is done under a lock on a file beside it, so neither loses the
other's copies.

Copies of objects that are gone stay until the file is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import Any

from .. import logs
from .base import copy_keys, read_files_versioned
from .target import Target

log = logs.get("batchdeps.targets.copies")

#: Tells a copies file from anything else; raised when the layout changes.
FORMAT = 1
CACHE_ENV = "BATCHDEPS_CACHE_DIR"


def cache_dir() -> str:
    """`$BATCHDEPS_CACHE_DIR`, else `$XDG_CACHE_HOME/batchdeps`, else `~/.cache/batchdeps`."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "batchdeps")


def read_with_copies(targets: list[Target], identities: list[dict[str, Any]]) -> list[bytes | None]:
    """The content of present `targets` (their `identities` just found), each from its
    local copy when that is of the version the identity names, else fetched (and kept).

    Errors of the store are raised as `read_files` raises them; a problem with the copies
    only means more is fetched.
    """
    keys = copy_keys(targets, identities)
    scopes: dict[str, dict[str, list[str]]] = {}
    folder = _usable_folder() if any(key is not None for key in keys) else None
    if folder is not None:
        for scope in {key[0] for key in keys if key is not None}:
            scopes[scope] = _load(_path(folder, scope))
    result: list[bytes | None] = [None] * len(targets)
    fetch: list[int] = []
    for index, key in enumerate(keys):
        kept = scopes.get(key[0], {}).get(key[1]) if key is not None else None
        if key is not None and kept is not None and kept[0] == key[2]:
            result[index] = kept[1].encode("latin-1")
        else:
            fetch.append(index)
    fresh: dict[str, dict[str, list[str]]] = {}
    for index, (data, version) in zip(fetch, read_files_versioned([targets[i] for i in fetch])):
        result[index] = data
        key = keys[index]
        if key is not None and data is not None and version is not None:
            fresh.setdefault(key[0], {})[key[1]] = [version, data.decode("latin-1")]
    if folder is not None:
        for scope, copies in fresh.items():
            _merge(_path(folder, scope), copies)
    return result


def _path(folder: str, scope: str) -> str:
    return os.path.join(folder, f"records-{hashlib.sha256(scope.encode()).hexdigest()[:20]}.json")


def _usable_folder() -> str | None:
    """The cache folder, made mode 0700 if missing; None (logged) if it cannot be made or
    another user could write to it (and so plant a copy)."""
    folder = cache_dir()
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.stat(folder)
    except OSError as exc:
        log.warning("not keeping copies of build records: cannot make %s (%s)", folder,
                    exc.strerror or exc)
        return None
    if info.st_uid != os.geteuid() or info.st_mode & 0o022 or not stat.S_ISDIR(info.st_mode):
        log.warning("not keeping copies of build records in %s: another user could write "
                    "there (set %s to a folder of your own)", folder, CACHE_ENV)
        return None
    return folder


def _load(path: str) -> dict[str, list[str]]:
    """The copies in one file ({} when there is none, or it is not one of ours)."""
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("passing over the build-record copies in %s (%s): records are fetched "
                    "instead", path, exc)
        return {}
    copies = document.get("copies") if isinstance(document, dict) and \
        document.get("batchdeps_record_copies") == FORMAT else None
    if not isinstance(copies, dict):
        log.warning("passing over %s: not a file of build-record copies", path)
        return {}
    return {place: kept for place, kept in copies.items()
            if isinstance(kept, list) and len(kept) == 2
            and all(isinstance(part, str) for part in kept)}


def _merge(path: str, copies: dict[str, list[str]]) -> None:
    """Add `copies` to the file at `path` (replacing older versions of the same places)."""
    try:
        with _locked(path + ".lock"):
            merged = _load(path)
            merged.update(copies)
            handle, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".",
                                           dir=os.path.dirname(path))
            try:
                with os.fdopen(handle, "w") as out:
                    json.dump({"batchdeps_record_copies": FORMAT, "copies": merged}, out)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
    except OSError as exc:
        log.warning("cannot keep copies of build records in %s (%s)", path,
                    exc.strerror or exc)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
