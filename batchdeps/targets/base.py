"""The target model: `Target`, `FileTarget` with its protocol registry, storage options.

`FileTarget(url)` picks its class by the URL's protocol through a registry, so this module
imports no backend; each backend (local.py, fsspec.py, s3.py) implements the primitives.
"""

from __future__ import annotations

import os
from typing import IO, Any

from ..errors import ConfigError, TargetError, TaskDefinitionError


class Target:
    """Something a task makes; subclasses say whether it exists and how to open it."""

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

    def cleanup_stale(self, fresh: bool = False) -> None:
        """Remove temporary files that a crashed writer of this target left behind.

        Called by the runner, holding the task's lock, before an attempt. `fresh` asks for
        a new look at the store; otherwise what was found when this run first looked may
        be used (stale files come from runs before this one).
        """

    def commit_tmp(self, tmp_path: str) -> None:
        """Move a finished temporary file into place, atomically."""
        raise NotImplementedError

    def discard_tmp(self, tmp_path: str) -> None:
        """Remove a temporary file that will not be committed."""
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


class FileTarget(Target):
    """A file at `url`: a local path, `file://...`, `memory://...`, `s3://bucket/key`, ...

    `FileTarget(url)` gives the class registered for the URL's protocol (`register_protocol`):
    LocalTarget for local paths, S3Target for s3://, FsspecTarget for any other.

    Args:
        url: where the file lives.
        storage: the Storage whose per-protocol options apply (default: the configured one).
        **storage_options: options for this target's filesystem, over the configured ones.
    """

    def __new__(cls, url: str, *, storage: Storage | None = None, **storage_options: Any) -> Any:
        if not isinstance(url, str) or not url:
            raise TypeError(f"FileTarget needs a non-empty URL string, got {url!r}")
        if cls is FileTarget:
            cls = target_class(url)
        return super().__new__(cls)

#: protocol -> "module:Class" of its target class, imported on first use (as fsspec's
#: known_implementations): s3fs is imported only by a run that has an s3:// target.
_PROTOCOLS: dict[str, str] = {
    "file": "batchdeps.targets.local:LocalTarget",
    "s3": "batchdeps.targets.s3:S3Target",
}
#: Any protocol not registered: a plain fsspec filesystem.
_FALLBACK = "batchdeps.targets.fsspec:FsspecTarget"
_classes: dict[str, type[FileTarget]] = {}


def register_protocol(protocol: str, spec: str) -> None:
    """Make `FileTarget("<protocol>://...")` an instance of the class `spec` names
    ("package.module:Class", imported when first needed)."""
    _PROTOCOLS[protocol] = spec
    _classes.pop(protocol, None)


def target_class(url: str) -> type[FileTarget]:
    """The FileTarget subclass for `url`'s protocol (a plain path is "file")."""
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    cls = _classes.get(protocol)
    if cls is None:
        import importlib

        module, _, name = _PROTOCOLS.get(protocol, _FALLBACK).partition(":")
        cls = _classes[protocol] = getattr(importlib.import_module(module), name)
    return cls


def _split_url(url: str) -> tuple[str, str]:
    protocol, sep, rest = url.partition("://")
    if not sep:
        return "file", url
    if protocol == "memory":
        return protocol, "/" + rest.lstrip("/")
    return protocol, rest


class Storage:
    """Storage options per protocol and the filesystem instances made from them."""

    def __init__(self, options: dict[str, dict[str, Any]] | None = None) -> None:
        self.options: dict[str, dict[str, Any]] = dict(options or {})
        self._filesystems: dict[tuple[int, str, tuple[tuple[str, Any], ...]], Any] = {}

    def configure(self, options: dict[str, dict[str, Any]]) -> None:
        self.options = dict(options)
        self._filesystems.clear()

    def filesystem(self, protocol: str, overrides: dict[str, Any]) -> Any:
        merged = {**self.options.get(protocol, {}), **overrides}
        # Per process: a forked worker cannot use its parent's event loop or connections.
        key = (os.getpid(), protocol, tuple(sorted((k, repr(v)) for k, v in merged.items())))
        fs = self._filesystems.get(key)
        if fs is None:
            import fsspec

            try:
                cls = fsspec.get_filesystem_class(protocol)
            except ValueError:
                raise TaskDefinitionError(
                    f"unknown storage protocol '{protocol}://' in a target URL (known: "
                    f"{', '.join(sorted(fsspec.available_protocols())[:12])}, ...)") from None
            except ImportError as exc:
                raise TargetError(f"cannot use storage '{protocol}': {exc}") from exc
            try:
                fs = cls(**merged)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"[storage.{protocol}]: options not accepted by the "
                                  f"'{protocol}' filesystem: {exc}") from exc
            self._filesystems[key] = fs
        return fs


#: The storage the CLI and `bd.build()` configure from `[storage.*]`; a test may make its own.
default_storage = Storage()


def check_exists(targets: list[Target]) -> list[bool]:
    """Existence of many targets, batched per target class."""
    by_class: dict[type[Target], list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(type(target), []).append(index)
    result = [False] * len(targets)
    for cls, indices in by_class.items():
        answers = cls.exists_many([targets[i] for i in indices])
        for index, answer in zip(indices, answers):
            result[index] = answer
    return result
