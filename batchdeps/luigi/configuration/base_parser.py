"""What both of Luigi's config parsers share: one instance per parser class, read once,
and read again when a file is added (Luigi's `BaseParser`)."""

from __future__ import annotations

from typing import Any

__all__ = ["BaseParser"]


class BaseParser:
    """A parser class's one instance; a subclass sets its own `_instance = None` and
    `_config_paths = []`, and has a `reload()` that reads its files."""

    _instance: Any = None
    _config_paths: list[str] = []

    def reload(self) -> Any:
        raise NotImplementedError

    @classmethod
    def instance(cls) -> Any:
        if cls._instance is None:
            cls._instance = cls()
            cls._instance.reload()
        return cls._instance

    @classmethod
    def add_config_path(cls, path: str) -> None:
        cls._config_paths.append(path)
        cls.reload_instance()

    @classmethod
    def reload_instance(cls) -> None:
        if cls._instance is not None:
            cls._instance.reload()
