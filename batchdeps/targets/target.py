"""What every target is (`Target`) and a write waiting to be moved into place (`PendingWrite`).

The interface the staging, commit and journal modules work with, so that none of them
needs the target model (base.py) or the backends: base.py, staging.py and commit.py
import this module and each other in one direction only (base -> staging -> commit).
"""

from __future__ import annotations

from typing import IO, Any

from ..errors import TargetError


class Target:
    """Something a task makes; subclasses say whether it exists and how to open it."""

    # No per-instance dict in the classes of the package (a plan keeps one target per output,
    # a million of them for a million tasks); a subclass without __slots__ gets its dict.
    __slots__ = ()

    url: str

    def exists(self) -> bool:
        raise NotImplementedError

    def open(self, mode: str = "r") -> IO[Any]:
        raise NotImplementedError

    def modified(self) -> float | None:
        """When the target last changed (seconds since the epoch); None if unknown or absent.

        Used only to report "upstream newer" in `batchdeps status`, never to decide a build.
        """
        return None

    def identity(self) -> dict[str, Any] | None:
        """What tells the current content from a rewrite of it (JSON-ready); None if absent.

        Kept in a task's build record for each of its inputs (staleness.py), and compared
        with the input's identity now: the backend's own stamps (a local file's mtime_ns
        and size, an S3 object's ETag and LastModified), never a clock of this machine.
        """
        if not self.exists():
            return None
        return {"mtime": self.modified()}

    @classmethod
    def identity_many(cls, targets: list[Target]) -> list[dict[str, Any] | None]:
        """`identity()` of many targets of this class; backends batch as for existence."""
        return [target.identity() for target in targets]

    @classmethod
    def read_many(cls, targets: list[Target]) -> list[bytes | None]:
        """The content of many small files of this class (None: not there)."""
        answers: list[bytes | None] = []
        for target in targets:
            try:
                with target.open("rb") as handle:
                    answers.append(handle.read())
            except (FileNotFoundError, TargetError):
                if target.exists():
                    raise
                answers.append(None)
        return answers

    @classmethod
    def copy_keys(cls, targets: list[Target], identities: list[dict[str, Any]],
                  ) -> list[tuple[str, str, str] | None]:
        """Under what a local copy of each (present) small file may be kept (copies.py):
        (scope, place, version), where `version` is what its identity says of its content
        and changes whenever the content does (an S3 object's ETag and size). None: no
        copy is kept, the default (a local file is read as cheaply as it is checked)."""
        return [None] * len(targets)

    @classmethod
    def read_many_versioned(cls, targets: list[Target]) -> list[tuple[bytes | None, str | None]]:
        """`read_many`, each answer with the version (as `copy_keys` gives it) of the
        content read; None: not known, so not kept."""
        return [(data, None) for data in cls.read_many(targets)]

    def cleanup_stale(self, fresh: bool = False, listings: dict[str, Any] | None = None) -> None:
        """Remove temporary files that a crashed writer of this target left behind.

        Called by the runner, holding the task's lock, before an attempt. `fresh` asks for
        a new look at the store; otherwise what was found when this run first looked (kept
        in the run-scoped `listings`) may be used: stale files come from earlier runs.
        """

    def commit_tmp(self, tmp_path: str) -> None:
        """Move a finished temporary file into place, atomically."""
        raise NotImplementedError

    def discard_tmp(self, tmp_path: str) -> None:
        """Remove a temporary file that will not be committed."""
        raise NotImplementedError

    def hand_over_tmp(self, tmp_path: str) -> str:
        """Where another machine can commit this finished temporary file from.

        An attempt that ran on another machine (a Dask worker) hands its writes to the
        runner; a file that only its own disk holds (S3's local spool) is moved to staging
        on the target's storage first. By default the temporary file is already there.
        """
        return tmp_path

    # A commit of several writes (commit.py) keeps what each one replaces until it is done.
    def keep_previous(self, tmp_path: str, hide: bool) -> Any:
        """Keep the current file aside so that `undo_commit` can restore it; `hide` also
        takes it out of view. Returns what `undo_commit` needs, None if there was none."""
        raise NotImplementedError

    def undo_commit(self, backup: Any) -> None:
        """Undo `commit_tmp`: put back what `keep_previous` kept, or remove the new file."""
        raise NotImplementedError

    def drop_backup(self, backup: Any) -> None:
        """The commit is done: remove what `keep_previous` kept."""
        raise NotImplementedError

    @classmethod
    def exists_many(cls, targets: list[Target]) -> list[bool]:
        """Existence of many targets of this class; subclasses may batch round trips."""
        return [target.exists() for target in targets]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.url == self.url  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.url)


class PendingWrite:
    """A finished temporary file waiting to be moved into place by its target."""

    __slots__ = ("target", "tmp_path")

    def __init__(self, target: Target, tmp_path: str) -> None:
        self.target = target
        self.tmp_path = tmp_path

    def commit(self) -> None:
        self.target.commit_tmp(self.tmp_path)

    def discard(self) -> None:
        self.target.discard_tmp(self.tmp_path)

    def hand_over(self) -> PendingWrite:
        """This write, staged where the runner's machine can commit it."""
        return PendingWrite(self.target, self.target.hand_over_tmp(self.tmp_path))
