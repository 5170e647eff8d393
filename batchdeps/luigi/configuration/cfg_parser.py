"""Luigi's luigi.cfg parser: a ConfigParser with `get(section, key, default)`, dash-blind
keys and Luigi's interpolation (`%(key)s`, then `${ENVVAR}`).

The files and their order are batchdeps.luigi_files' (`luigi_config_paths("cfg")`).
"""

from __future__ import annotations

import configparser
import os
import re
from typing import Any

from ...errors import ConfigError
from ...luigi_files import ADDED_PATHS, luigi_config_paths, luigi_key
from .base_parser import BaseParser

__all__ = ["InterpolationMissingEnvvarError", "LuigiConfigParser"]

_NO_DEFAULT: Any = object()
_ENV_REF = re.compile(r"\$\{([^}]+)\}")


class InterpolationMissingEnvvarError(ConfigError):
    """A luigi.cfg value names an environment variable (`${NAME}`) that is not set."""


class _LuigiInterpolation(configparser.BasicInterpolation):
    """Luigi's: `%(key)s` as configparser's BasicInterpolation, then `${ENVVAR}`; a value
    that cannot be interpolated is a ConfigError naming the section and key."""

    def before_get(self, parser: Any, section: str, option: str, value: str,
                   defaults: Any) -> str:
        try:
            value = super().before_get(parser, section, option, value, defaults)
        except configparser.InterpolationError as exc:
            raise ConfigError(f"luigi.cfg [{section}] {option}: {exc.message.strip()}") \
                from None

        def environ(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise InterpolationMissingEnvvarError(
                    f"luigi.cfg [{section}] {option} = {value!r}: the environment "
                    f"variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(environ, value)


class LuigiConfigParser(BaseParser, configparser.ConfigParser):
    """A ConfigParser with Luigi's `get(section, option, default)` and dash-blind keys."""

    _instance: LuigiConfigParser | None = None
    _config_paths: list[str] = ADDED_PATHS["cfg"]  # read by luigi_config_paths("cfg")
    label = "luigi.cfg"  # the files' kind, as messages name it
    enabled = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._underscored: set[tuple[str, str]] = set()  # keys set spelt with underscores
        kwargs.setdefault("interpolation", _LuigiInterpolation())
        kwargs.setdefault("strict", False)
        super().__init__(*args, **kwargs)

    def optionxform(self, optionstr: str) -> str:
        return luigi_key(optionstr)

    def set(self, section: str, option: str, value: str | None = None) -> None:
        """Set a key; a dashed key does not replace one set with underscores (`mc_p` wins
        over `mc-p`, as in Luigi)."""
        key = (section, luigi_key(option))
        if "-" in option and key in self._underscored:
            return
        super().set(section, option, value)
        if "-" not in option:
            self._underscored.add(key)

    def reload(self) -> list[str]:
        paths = luigi_config_paths("cfg")
        read = self.read(paths, encoding="utf-8")
        self._underscores_win(paths)
        return read

    def _underscores_win(self, paths: list[str]) -> None:
        """Where a section spells a key both ways (`mc_p` and `mc-p`), the underscore one
        is the value, wherever it stands, as in Luigi."""
        raw = configparser.RawConfigParser(strict=False)
        raw.optionxform = str.strip  # type: ignore[assignment, method-assign]
        raw.read(paths, encoding="utf-8")
        for section in raw.sections():
            for key, value in raw.items(section, raw=True):
                if "-" not in key and "_" in key and raw.has_option(
                        section, key.replace("_", "-")) and self.has_section(section):
                    self.set(section, key, value)

    def get(self, section: str, option: str, default: Any = _NO_DEFAULT,  # type: ignore[override]
            **kwargs: Any) -> Any:
        try:
            return super().get(section, option, **kwargs)
        except (configparser.NoSectionError, configparser.NoOptionError):
            if default is _NO_DEFAULT:
                raise
            return default

    def _typed(self, convert: Any, section: str, option: str, default: Any) -> Any:
        value = self.get(section, option, default)
        return value if value is default else convert(value)

    def getint(self, section: str, option: str, default: Any = _NO_DEFAULT,  # type: ignore[override]
               **kwargs: Any) -> Any:
        return self._typed(int, section, option, default)

    def getfloat(self, section: str, option: str, default: Any = _NO_DEFAULT,  # type: ignore[override]
                 **kwargs: Any) -> Any:
        return self._typed(float, section, option, default)

    def getboolean(self, section: str, option: str, default: Any = _NO_DEFAULT,  # type: ignore[override]
                   **kwargs: Any) -> Any:
        value = self.get(section, option, default)
        if value is default or isinstance(value, bool):
            return value
        return self.BOOLEAN_STATES[str(value).lower()]

    def get_task_value(self, family: str, param: str) -> str | None:
        """The `[family] param` string, or None."""
        if not self.has_section(family):
            return None
        value = self.get(family, param, None)
        return None if value is None else str(value)

    def section_items(self, section: str) -> list[tuple[str, str]]:
        """The keys set in `[section]` itself (not [DEFAULT]'s), with their values as
        written (not interpolated)."""
        if not self.has_section(section):
            return []
        inherited = self.defaults()
        return [(key, str(self.get(section, key, raw=True))) for key in self.options(section)
                if key not in inherited]  # as written: a key no task reads is not resolved
