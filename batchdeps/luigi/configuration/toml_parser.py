"""Luigi's luigi.toml parser (LUIGI_CONFIG_PARSER=toml): values keep their TOML types.

The files and their order are batchdeps.luigi_files' (`luigi_config_paths("toml")`).
"""

from __future__ import annotations

import os
from typing import Any

from ...luigi_files import ADDED_PATHS, luigi_config_paths, luigi_key, read_luigi_files
from .base_parser import BaseParser

__all__ = ["LuigiTomlParser"]

_NO_DEFAULT: Any = object()


class LuigiTomlParser(BaseParser):
    """Luigi's TOML config: luigi.toml files (/etc/luigi/luigi.toml, luigi.toml, then
    $LUIGI_CONFIG_PATH's and `add_config_path()`'s), values with their TOML types.

    `get()` of a key that is not there raises KeyError unless given a default, as Luigi's.
    """

    NO_DEFAULT: Any = _NO_DEFAULT
    #: Luigi's flag for "the toml package is installed"; batchdeps reads TOML itself, so it
    #: is True unless a test turns it off (get_config("toml") then raises ImportError)
    enabled = True
    _instance: LuigiTomlParser | None = None
    _config_paths: list[str] = ADDED_PATHS["toml"]  # read by luigi_config_paths("toml")
    label = "luigi.toml"

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def reload(self) -> dict[str, dict[str, Any]]:
        return self.read(luigi_config_paths("toml"))

    def read(self, config_paths: list[str]) -> dict[str, dict[str, Any]]:
        self.data = read_luigi_files([p for p in config_paths if os.path.isfile(p)], "toml")
        return self.data

    def get(self, section: str, option: str, default: Any = _NO_DEFAULT, **kwargs: Any) -> Any:
        try:
            return self.data[section][option]
        except KeyError:
            if default is _NO_DEFAULT:
                raise
            return default

    # Luigi's typed getters give the value as the file typed it.
    def getboolean(self, section: str, option: str, default: Any = _NO_DEFAULT) -> Any:
        return self.get(section, option, default)

    getint = getfloat = getboolean

    def getintdict(self, section: str) -> dict[str, Any]:
        return self.data.get(section, {})

    def set(self, section: str, option: str, value: Any = None) -> None:
        self.data.setdefault(section, {})[option] = value

    def has_option(self, section: str, option: str) -> bool:
        return section in self.data and option in self.data[section]

    def has_section(self, section: str) -> bool:
        return section in self.data

    def sections(self) -> list[str]:
        return list(self.data)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.data[name]

    def get_task_value(self, family: str, param: str) -> Any:
        """The `[family] param` value as the file typed it, or None."""
        return self.data.get(family, {}).get(param)

    def section_items(self, section: str) -> list[tuple[str, Any]]:
        """The keys set in `[section]`, with dashes read as underscores, and their values."""
        return [(luigi_key(key), value) for key, value in self.data.get(section, {}).items()]
