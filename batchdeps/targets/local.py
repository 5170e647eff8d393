"""Local files through `os` directly (no fsspec import): start-up and per-target cost stay
near the file system's own."""

from __future__ import annotations

import contextlib
import errno
import os
from typing import IO, Any

from ..errors import TargetCheckError, TargetError
from ..paths import shown
from .base import FileTarget, Storage, Target, target_location
from .filesystem import LOCAL
from .formats import Format
from .looks import LIST_AT, exists_each, exists_listed
from .journal import (
    OLD_SUFFIX,
    RECORD_SUFFIX,
    REF_SUFFIX,
    record_of_ref,
    record_paths,
    recover,
    remove_path,
    restore,
)
from .staging import TMP_DIR_NAME, WRITE_BUFFER, _tmp_suffix

#: Temporary folders this process made. Safe without resets: a folder removed since is made
#: again when a write finds it gone.
_made_dirs: set[str] = set()

#: folder -> its temporary folder (a run writes many files into few folders: each task's
#: write, clean-up and sweep would join the same two strings again)
_tmp_dirs: dict[str, str] = {}


def tmp_place(path: str) -> tuple[str, str]:
    """The temporary folder for a file at `path`, and the file's name (as `os.path.split`
    gives the folder and the name: the folder is looked up by what precedes the name)."""
    cut = path.rfind("/") + 1
    head = path[:cut]
    tmp_dir = _tmp_dirs.get(head)
    if tmp_dir is None:
        if len(_tmp_dirs) >= 4096:  # a run over very many folders keeps no large table
            _tmp_dirs.clear()
        tmp_dir = _tmp_dirs[head] = os.path.join(os.path.split(path)[0], TMP_DIR_NAME)
    return tmp_dir, path[cut:]


class LocalTarget(FileTarget):
    """A file on the local disk, handled with `os` directly."""

    __slots__ = ("format", "path", "url")

    def __init__(self, url: Any = None, *, path: Any = None, format: Format | None = None,
                 storage: Storage | None = None, **storage_options: Any) -> None:
        if type(url) is not str or path is not None:
            url = target_location(url, path)
        self.path = url.removeprefix("file://")  # relative paths stay relative: no getcwd()
        self.url = url
        self.format = format

    #: `target.fs`: this machine's files (targets/filesystem.py).
    fs = LOCAL  # type: ignore[assignment]

    def __str__(self) -> str:
        return self.path

    def _remove(self) -> None:
        try:
            remove_path(self.path)
        except OSError as exc:
            raise TargetError(f"cannot remove {shown(self.url)}: {exc.strerror or exc}") from exc

    def makedirs(self) -> None:
        parent = os.path.dirname(os.path.normpath(self.path))
        if parent:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise TargetError(f"cannot make the folder of {shown(self.url)}: "
                                  f"{exc.strerror or exc}") from exc

    def _exists(self) -> bool:
        try:
            os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise TargetCheckError(
                f"cannot check {shown(self.url)}: {exc.strerror or exc}"
            ) from exc
        return True

    @classmethod
    def _exists_many(cls, targets: list[Target]) -> list[bool]:
        """`_exists` of each: a folder that holds many of them listed once (`exists_listed`),
        the rest looked at one by one (`exists_each`)."""
        if cls._exists is not LocalTarget._exists:  # a subclass with a check of its own
            return super()._exists_many(targets)
        if len(targets) >= LIST_AT:
            return exists_listed(targets)
        return exists_each(targets)


    def identity(self) -> dict[str, Any] | None:
        try:
            info = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise TargetCheckError(
                f"cannot check {shown(self.url)}: {exc.strerror or exc}") from exc
        return {"mtime_ns": info.st_mtime_ns, "size": info.st_size}

    @classmethod
    def read_many(cls, targets: list[Target]) -> list[bytes | None]:
        answers: list[bytes | None] = []
        for target in targets:
            path = target.path  # type: ignore[attr-defined]
            try:
                with open(path, "rb", buffering=0) as handle:
                    answers.append(handle.read())
            except (FileNotFoundError, NotADirectoryError):
                answers.append(None)
            except OSError as exc:
                raise TargetCheckError(
                    f"cannot read {shown(target.url)}: {exc.strerror or exc}") from exc
        return answers

    def modified(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise TargetCheckError(
                f"cannot check {shown(self.url)}: {exc.strerror or exc}") from exc

    def _open_final(self, mode: str) -> IO[Any]:
        return self._open_staged(self.path, mode)

    def _open_staged(self, tmp_path: str, mode: str) -> IO[Any]:
        try:
            return open(tmp_path, mode)
        except OSError as exc:
            raise TargetError(f"cannot read {shown(self.url)}: {exc.strerror or exc}") from exc

    folder_commits = True
    on_local_disk = True

    def _tmp_path(self) -> str:
        directory, base = os.path.split(self.path)
        tmp_dir = os.path.join(directory, TMP_DIR_NAME)
        try:
            os.makedirs(tmp_dir, exist_ok=True)
        except OSError as exc:
            raise TargetError(f"cannot write {shown(self.url)}: {exc.strerror or exc}") from exc
        return os.path.join(tmp_dir, f"{base}.{_tmp_suffix()}")

    def _open_tmp(self, mode: str) -> tuple[IO[Any], str]:
        tmp_dir, base = tmp_place(self.path)
        # os.path.join's result: the folder never ends in a slash, the name never begins so
        tmp_path = f"{tmp_dir}/{base}.{_tmp_suffix()}"
        for _ in range(3):
            if tmp_dir not in _made_dirs:
                try:
                    os.makedirs(tmp_dir, exist_ok=True)
                except OSError as exc:
                    raise TargetError(
                        f"cannot write {shown(self.url)}: {exc.strerror or exc}") from exc
                _made_dirs.add(tmp_dir)
            # An explicit buffer size spares open() its isatty() and block-size probes.
            try:
                return open(tmp_path, mode, buffering=WRITE_BUFFER), tmp_path
            except FileNotFoundError:  # the folder was removed since we made it
                _made_dirs.discard(tmp_dir)
            except OSError as exc:
                raise TargetError(f"cannot write {shown(self.url)}: {exc.strerror or exc}") from exc
        raise TargetError(
            f"cannot write {shown(self.url)}: its temporary folder keeps disappearing")

    def commit_tmp(self, tmp_path: str) -> None:
        try:
            os.replace(tmp_path, self.path)
        except OSError as exc:
            if exc.errno in _DIR_IN_THE_WAY and os.path.isdir(tmp_path):
                self._replace_folder(tmp_path)
                return
            raise TargetError(f"cannot commit {shown(self.url)}: {exc.strerror or exc}") from exc

    def _replace_folder(self, tmp_path: str) -> None:
        """A folder output over an existing folder: the old one is moved aside first (a
        rename cannot replace a folder that is not empty), then removed."""
        old = tmp_path + OLD_SUFFIX
        try:
            os.rename(self.path, old)
            try:
                os.rename(tmp_path, self.path)
            except OSError:
                os.rename(old, self.path)
                raise
        except OSError as exc:
            raise TargetError(f"cannot commit {shown(self.url)}: {exc.strerror or exc}") from exc
        remove_path(old)

    def discard_tmp(self, tmp_path: str) -> None:
        remove_path(tmp_path)

    def keep_previous(self, tmp_path: str, hide: bool) -> str | None:
        old = tmp_path + OLD_SUFFIX
        try:
            if not hide:
                try:
                    os.link(self.path, old)  # the file stays in view and is replaced at once
                    return old
                except FileNotFoundError:
                    return None
                except OSError:
                    pass  # a folder, or no hard links here: move it aside instead
            os.rename(self.path, old)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"cannot commit {shown(self.url)}: cannot keep the file it replaces: "
                              f"{exc.strerror or exc}") from exc
        return old

    def undo_commit(self, backup: str | None) -> None:
        if backup is not None:
            restore(backup, self.path)
        else:
            remove_path(self.path)

    def drop_backup(self, backup: str) -> None:
        remove_path(backup)

    def cleanup_stale(self, fresh: bool = False,
                      listings: dict[str, FolderListing] | None = None) -> None:
        """Remove this target's leftovers, first finishing an interrupted commit of it.

        The caller holds the task's lock. `listings` (run-scoped) keeps each temporary
        folder's first listing, so a run lists a folder once, not once per task.
        """
        tmp_dir, base = tmp_place(self.path)
        listing = listings.get(tmp_dir) if listings is not None and not fresh else None
        if listing is None:
            listing = FolderListing(tmp_dir)
            if listings is not None:
                listings[tmp_dir] = listing
        if listing.records:
            listing.recover_records_of(os.path.abspath(self.path))
        for entry in listing.by_base.pop(base, []):
            if not entry.endswith((RECORD_SUFFIX, REF_SUFFIX)):
                with contextlib.suppress(OSError):
                    remove_path(os.path.join(tmp_dir, entry))


_DIR_IN_THE_WAY = frozenset({errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR})


class FolderListing:
    """The entries of one temporary folder, by the name of the target they were written for."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = tmp_dir
        self.by_base: dict[str, list[str]] = {}
        self.records: list[str] = []  # commit records and refs found here
        try:
            entries = os.listdir(tmp_dir)
        except OSError:
            return
        for entry in entries:
            name = parse_tmp_name(entry)
            if name is None:
                continue
            self.by_base.setdefault(name[0], []).append(entry)
            if entry.endswith((RECORD_SUFFIX, REF_SUFFIX)):
                self.records.append(entry)

    def recover_records_of(self, path: str) -> None:
        """Finish the interrupted commits (records here, or named by refs here) of `path`."""
        for entry in list(self.records):
            full = os.path.join(self.tmp_dir, entry)
            record = full if entry.endswith(RECORD_SUFFIX) else record_of_ref(full)
            if record is None or not os.path.exists(record):
                if record is None or entry.endswith(REF_SUFFIX):
                    remove_path(full)  # a ref whose record is gone
                self.records.remove(entry)
                continue
            if path in record_paths(record):
                recover(record)
                self.records.remove(entry)


def parse_tmp_name(entry: str) -> tuple[str, str, str] | None:
    """(target name, writer, kind) of a temporary folder entry, None if not one of ours.

    Entries are `<name>.<writer>.<random>.<n>` plus ".old", ".commit" or ".ref" for the
    kept-aside file, the commit record and a ref to it; writer is `<host>-<pid>` (or a
    bare pid, from older versions).
    """
    kind = ""
    for suffix in (OLD_SUFFIX, RECORD_SUFFIX, REF_SUFFIX):
        if entry.endswith(suffix):
            kind, entry = suffix, entry[: -len(suffix)]
            break
    parts = entry.rsplit(".", 3)
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    return parts[0], parts[1], kind
