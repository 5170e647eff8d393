"""Loading and validating config.toml: known sections, ${ENV} interpolation, task defaults.

The schema below is the single list of keys batchdeps understands; an unknown key in one
of batchdeps' own sections is an error naming it. Top-level tables that batchdeps does not
own are left to the pipelines.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_ENV = "BATCHDEPS_CONFIG"
DEFAULT_CONFIG_NAME = "config.toml"


# -- value checks ----------------------------------------------------------------------
Check = Callable[[Any], Any]


def _int_at_least(minimum: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}")
        return value

    return check


def _int_between(minimum: int, maximum: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not (
                minimum <= value <= maximum):
            raise ValueError(f"must be an integer from {minimum} to {maximum}")
        return value

    return check


def _shown(given: Any, value: Any) -> str:
    """The value for an error message; one that came from ${VAR} is not printed (a secret)."""
    if isinstance(given, str) and _ENV_REF.search(given) and given != value:
        return f"the value of {given} (not shown)"
    return repr(value)


def _number_at_least(minimum: float) -> Check:
    def check(value: Any) -> float:
        # `not value >= minimum` also refuses nan, which TOML allows and every `<` lets by.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise ValueError(f"must be a number >= {minimum:g}")
        return float(value)

    return check


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of non-empty strings")
    return list(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _number_between(minimum: float, maximum: float) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                minimum <= value <= maximum):
            raise ValueError(f"must be a number from {minimum:g} to {maximum:g}")
        return float(value)

    return check


def _duration(value: Any) -> float:
    from .durations import parse_duration

    return parse_duration(value)


def _positive_duration(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def _lock_url(value: Any) -> str | list[str]:
    """One lock server URL, or a list of replicas in the order to try them."""
    from .locks.replicas import lock_urls  # the lock server's own rule; stdlib only

    urls = lock_urls(value)
    return urls[0] if isinstance(value, str) else list(urls)


def _choice(*choices: str) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return check


def _rerun_triggers(value: Any) -> list[str]:
    from .staleness import parse_triggers  # the one list of trigger names; stdlib only

    return sorted(parse_triggers(value))


#: section -> key -> check. Extend here when a new key is added.
SCHEMA: dict[str, dict[str, Check]] = {
    "batchdeps": {
        "modules": _string_list,
        "workers": _int_at_least(1),
        "log_level": _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "log_dir": _string,
        "log_format": _choice("text", "json"),
        "retries": _int_at_least(0),
        "retry_delay": _number_at_least(0),
        "retry_backoff": _number_at_least(1),
        "max_retry_delay": _number_at_least(0),
        "timeout": _number_at_least(0.001),
        "lock_dir": _string,
        "task_logs": _choice("auto", "always", "off"),
        "progress": _choice("auto", "off"),
        "kill_grace": _number_at_least(0),
        "state_dir": _string,
    },
    "history": {
        "enabled": _bool,
        "retention_days": _number_at_least(0.01),
        "send_to_server": _bool,
    },
    "lock": {
        "url": _lock_url,
        "ttl": _number_between(1, 7 * 24 * 3600),  # the lock server's MIN_TTL..MAX_TTL
        "wait_timeout": _number_at_least(0),
    },
    "run": {
        "rerun_triggers": _rerun_triggers,
        "record_builds": _bool,
        "wait_for_inputs": _duration,   # --wait-for-inputs
        "poll": _positive_duration,     # --poll
    },
    "executor": {
        "kind": _string,  # a name the executor registry knows: checked when a run starts
        "address": _string,
        "shared_paths": _string_list,
    },
    "notify": {
        "on_failure": _string,
        "command": _string,
        "retries": _int_at_least(0),
        "retry_delay": _number_at_least(0),
        "timeout": _number_at_least(0.001),
    },
}


@dataclass
class Config:
    """The validated configuration of one run."""

    path: str | None = None
    root: str = field(default_factory=os.getcwd)
    batchdeps: dict[str, Any] = field(default_factory=dict)
    lock: dict[str, Any] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    #: the luigi.cfg files this config was read from, when it came from them (fallback)
    luigi_cfg: list[str] = field(default_factory=list)

    @property
    def modules(self) -> list[str]:
        return list(self.batchdeps.get("modules", ["pipelines"]))

    @property
    def workers(self) -> int:
        return int(self.batchdeps.get("workers", 1))

    def where(self) -> str:
        if self.path is None and self.luigi_cfg:
            return self.luigi_cfg[-1]
        return self.path or "config"


# -- loading ---------------------------------------------------------------------------
def find_config_path(explicit: str | None, environ: Mapping[str, str]) -> str | None:
    """--config, else $BATCHDEPS_CONFIG, else ./config.toml if present, else None."""
    if explicit:
        if os.path.isdir(explicit):
            raise ConfigError(f"config file {explicit} is a folder, not a file")
        if not os.path.isfile(explicit):
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    from_env = environ.get(CONFIG_ENV)
    if from_env:
        if not os.path.isfile(from_env):
            raise ConfigError(f"config file {from_env} (from ${CONFIG_ENV}) does not exist")
        return from_env
    if os.path.isfile(DEFAULT_CONFIG_NAME):
        return DEFAULT_CONFIG_NAME
    return None


def load_config(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Find, read, interpolate and validate the config; no file means all defaults."""
    environ = os.environ if environ is None else environ
    path = find_config_path(explicit, environ)
    if path is None:
        from .luigi_files import load_luigi_fallback

        fallback = load_luigi_fallback(environ)  # a Luigi project's luigi.cfg, if any
        if fallback is not None:
            return fallback
        return parse_config({}, environ=environ)  # defaults, and BATCHDEPS_... overrides
    return parse_config(read_toml(path), path=path, environ=environ)


def read_toml(path: str) -> dict[str, Any]:
    """The TOML document in `path`; one that cannot be read or parsed is a ConfigError."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


_ENV_REF = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Environment overrides: BATCHDEPS_<KEY> for [batchdeps] keys, BATCHDEPS_<SECTION>__<KEY>
#: for the other sections batchdeps owns ([lock], [run], [notify], [history]).
ENV_PREFIX = "BATCHDEPS_"
#: Keys whose variable had a meaning before overrides existed, kept: $BATCHDEPS_LOCK_DIR is
#: used only when `[batchdeps] lock_dir` is not set.
_NOT_OVERRIDDEN = {("batchdeps", "lock_dir")}


class UnsetVariable:
    """A config value that names an environment variable that is not set.

    Kept in place of the value, so that only a command that uses it fails: a section
    (`Section`) raises the error when the key is read, a task parameter default when a task
    takes it.
    """

    def __init__(self, where: str, name: str) -> None:
        self.where = where
        self.name = name

    def error(self) -> ConfigError:
        return ConfigError(
            f"{self.where} refers to ${{{self.name}}}, but the environment variable "
            f"{self.name} is not set (set it, or write ${{{self.name}:-default}})"
        )

    def __repr__(self) -> str:
        return f"${{{self.name}}} (not set)"

    __str__ = __repr__


class Section(dict):  # type: ignore[type-arg]
    """A config table whose values that name an unset variable raise when read.

    `__iter__` is overridden so that `dict(section)` and `{**section}` read the values
    through `__getitem__` too (CPython copies a plain dict's entries directly).
    """

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, UnsetVariable):
            raise value.error()
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            return default
        return self[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(dict.__iter__(self)))

    def items(self) -> Any:
        return [(key, self[key]) for key in dict.__iter__(self)]

    def values(self) -> Any:
        return [self[key] for key in dict.__iter__(self)]

    def copy(self) -> Section:
        return Section(super().items())

    def __reduce__(self) -> Any:
        # Pickled as it is (a fork-server worker gets the storage options): unset values stay
        # unset values, rather than raising here.
        return (Section, (list(dict.items(self)),))


def _interpolate(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    """Replace `${NAME}`, `${NAME:-default}` and `${NAME:-}` in strings from `environ`.

    `${NAME:-default}` takes the default when NAME is unset or empty. A string with an
    unset `${NAME}` becomes an `UnsetVariable`, an error only once the value is used.
    """
    if isinstance(value, str):
        unset: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name, has_default, default = match.group(1).partition(":-")
            if not _NAME.fullmatch(name):
                raise ConfigError(f"{where}: '${{{match.group(1)}}}' is not a valid variable "
                                  "name (write ${NAME} or ${NAME:-default})")
            found = environ.get(name)
            if has_default:
                return found if found else default
            if found is None:
                unset.append(name)
                return ""
            return found

        replaced = _ENV_REF.sub(replace, value)
        return UnsetVariable(where, unset[0]) if unset else replaced
    if isinstance(value, list):
        items = [_interpolate(v, f"{where}[{i}]", environ) for i, v in enumerate(value)]
        return _first_unset(items) or items
    if isinstance(value, dict):
        table = {k: _interpolate(v, f"{where}.{k}", environ) for k, v in value.items()}
        return _first_unset(list(table.values())) or table
    return value


def _first_unset(values: list[Any]) -> UnsetVariable | None:
    """A list or table with an unset variable anywhere in it is unset as a whole."""
    return next((v for v in values if isinstance(v, UnsetVariable)), None)


def _table(values: dict[str, Any], where: str, environ: Mapping[str, str]) -> Section:
    """A table of options or defaults, each interpolated on its own (see UnsetVariable)."""
    return Section((key, _interpolate(value, f"{where}.{key}", environ))
                   for key, value in values.items())


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, Any]]:
    """(section, key) -> (variable name, value) for every BATCHDEPS_... override set.

    A value is read as a TOML value (`3`, `true`, `["a", "b"]`), else taken as a string.
    """
    overrides: dict[tuple[str, str], tuple[str, Any]] = {}
    for section, keys in SCHEMA.items():
        for key in keys:
            if (section, key) in _NOT_OVERRIDDEN:
                continue
            name = (f"{ENV_PREFIX}{key.upper()}" if section == "batchdeps"
                    else f"{ENV_PREFIX}{section.upper()}__{key.upper()}")
            text = environ.get(name)
            if text is None:
                continue
            try:
                value: Any = tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError:
                value = text
            overrides[(section, key)] = (name, value)
    return overrides


def parse_config(
    raw: dict[str, Any], path: str | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-read TOML document."""
    environ = os.environ if environ is None else environ
    label = path or "config"
    config = Config(
        path=path,
        root=os.path.dirname(os.path.abspath(path)) if path else os.getcwd(),
        raw=raw,
    )
    overrides = _env_overrides(environ)
    for section, keys in SCHEMA.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{label}: [{section}] must be a table")
        checked: dict[str, Any] = Section()
        for key, raw_value in table.items():
            where = f"{label}: [{section}] {key}"
            if key not in keys:
                known = ", ".join(sorted(keys))
                raise ConfigError(f"{where}: unknown key (known keys: {known})")
            if (section, key) in overrides:
                continue  # the environment wins; checked below
            value = _interpolate(raw_value, where, environ)
            if isinstance(value, UnsetVariable):
                checked[key] = value  # an error when read (see Section)
                continue
            try:
                checked[key] = keys[key](value)
            except ValueError as exc:
                raise ConfigError(f"{where} {exc}, got {_shown(raw_value, value)}") from None
        for key in keys:
            if (section, key) in overrides:
                variable, value = overrides[(section, key)]
                try:
                    checked[key] = keys[key](value)
                except ValueError as exc:
                    raise ConfigError(f"${variable} (overrides [{section}] {key}) {exc}; "
                                      "value not shown") from None
        setattr(config, section, checked)

    storage = raw.get("storage", {})
    if not isinstance(storage, dict) or not all(isinstance(v, dict) for v in storage.values()):
        raise ConfigError(f"{label}: [storage.PROTOCOL] sections must be tables of options")
    # An option that is empty after interpolation (`${S3_ENDPOINT:-}` with the variable
    # unset) is left out, so the filesystem's own default applies.
    config.storage = {
        protocol: Section((key, value) for key, value in
                          dict.items(_table(options, f"{label}: [storage.{protocol}]", environ))
                          if value != "")
        for protocol, options in storage.items()
    }

    resources = raw.get("resources", {})
    if not isinstance(resources, dict):
        raise ConfigError(f"{label}: [resources] must be a table")
    check = _int_between(1, 10_000)  # the lock server's MAX_RESOURCE_SLOTS
    for name, value in resources.items():
        try:
            config.resources[name] = check(value)
        except ValueError as exc:
            raise ConfigError(f"{label}: [resources] {name} {exc} (the lock server's limit), "
                              f"got {value!r}") from None

    tasks = raw.get("tasks", {})
    if not isinstance(tasks, dict) or not all(isinstance(v, dict) for v in tasks.values()):
        raise ConfigError(f"{label}: [tasks.FAMILY] sections must be tables of parameters")
    config.tasks = {
        family: _table(values, f"{label}: [tasks.{family}]", environ)
        for family, values in tasks.items()
    }
    return config
