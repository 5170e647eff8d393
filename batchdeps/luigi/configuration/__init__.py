"""Luigi's config access: `get_config()` over the luigi.cfg or luigi.toml files Luigi reads.

Two parsers, as Luigi's: `LuigiConfigParser` (luigi.cfg, the default; cfg_parser.py) and
`LuigiTomlParser` (luigi.toml; toml_parser.py), chosen by `$LUIGI_CONFIG_PARSER` or by
`get_config("toml")`. Which files each reads: batchdeps.luigi_files.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ...errors import ConfigError
from ...luigi_files import file_kind, luigi_parser
from .cfg_parser import InterpolationMissingEnvvarError, LuigiConfigParser
from .toml_parser import LuigiTomlParser

__all__ = ["InterpolationMissingEnvvarError", "LuigiConfigParser", "LuigiTomlParser",
           "PARSERS", "add_config_path", "get_config"]

#: `get_config(parser)`'s names, and the file extensions `add_config_path` reads by.
PARSERS: dict[str, Any] = {"cfg": LuigiConfigParser, "conf": LuigiConfigParser,
                           "ini": LuigiConfigParser, "toml": LuigiTomlParser}


def _enabled(parser_class: Any, name: str) -> Any:
    if not parser_class.enabled:
        raise ImportError(f"the {name} config parser is turned off "
                          f"({parser_class.__name__}.enabled is False)")
    return parser_class


def get_config(parser: str | None = None) -> Any:
    """The config of this process (read once; `reload()` reads again): the parser `parser`
    names, else the one $LUIGI_CONFIG_PARSER chooses (luigi.cfg by default)."""
    name = parser or luigi_parser()
    if name not in PARSERS:
        raise ConfigError(f"get_config({name!r}): Luigi's config parsers are "
                          f"{', '.join(PARSERS)}")
    return _enabled(PARSERS[name], name).instance()


def add_config_path(path: str) -> bool:
    """Read `path` too, with the parser its extension names (else the chosen one), as
    Luigi's: a file that does not exist is warned of and left out (False); one for the
    parser that is not chosen is warned of, and read by that parser."""
    if not os.path.isfile(path):
        warnings.warn(f"Config file does not exist: {path}", stacklevel=2)
        return False
    chosen = luigi_parser()
    kind = file_kind(path, chosen)
    parser_class = _enabled(PARSERS[kind], kind)
    if kind != chosen:
        warnings.warn(f"Config for {kind} parser added, but used {chosen} parser. Set up "
                      f"right parser via env var: export LUIGI_CONFIG_PARSER={kind}",
                      stacklevel=2)
    parser_class.add_config_path(path)
    return True
