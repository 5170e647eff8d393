"""File targets on any fsspec filesystem, with honest existence checks and atomic writes.

    target.py    Target (the interface) and PendingWrite
    base.py      FileTarget and the protocol registry, Storage, check_exists
    formats.py   how a target's bytes are read and written: Text, UTF8, Nop, Gzip, Bzip2
    filesystem.py  a target's storage as `target.fs`: exists, remove, listdir, ...
    staging.py   temporary files, the staging scope
    commit.py    committing one attempt's writes together (all or none)
    journal.py   commit records: finishing a commit that a crash cut short
    leftovers.py run-scoped clean-up of stale files and empty temporary folders
    local.py     plain paths and file://, through os
    looks.py     whether many local files exist: a stat each, or a folder listed once
    fsspec.py    any other fsspec protocol
    s3.py        s3://, with batched checks and multipart uploads (imports s3fs when used)
"""

from __future__ import annotations

from .base import (
    FileTarget,
    Storage,
    Target,
    check_exists,
    check_identities,
    default_storage,
    read_files,
    register_protocol,
    target_class,
)
from .filesystem import FileSystem, FsspecFileSystem, LocalFileSystem
from .leftovers import Leftovers
from .local import LocalTarget
from .staging import TMP_DIR_NAME, PendingWrite, Staging, current_staging, staging_scope

__all__ = [
    "TMP_DIR_NAME",
    "FileSystem",
    "FileTarget",
    "FsspecFileSystem",
    "LocalFileSystem",
    "Leftovers",
    "LocalTarget",
    "PendingWrite",
    "Staging",
    "Storage",
    "Target",
    "check_exists",
    "check_identities",
    "current_staging",
    "default_storage",
    "read_files",
    "register_protocol",
    "staging_scope",
    "target_class",
]
