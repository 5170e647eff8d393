"""Luigi's config files (luigi.cfg, or luigi.toml under LUIGI_CONFIG_PARSER=toml) read as
batchdeps' fallback config when there is no config.toml.

Which files, as Luigi picks them: `$LUIGI_CONFIG_PARSER` (`cfg`, the default, `conf`,
`ini` or `toml`) chooses the kind; the cfg kind reads /etc/luigi/client.cfg,
/etc/luigi/luigi.cfg, client.cfg and luigi.cfg, the toml kind /etc/luigi/luigi.toml and
luigi.toml; then the files `$LUIGI_CONFIG_PATH` names (later files win). A file there is
read by the kind its extension names (`.toml`, `.cfg`, `.conf`, `.ini`; no such extension:
the chosen kind). Where Luigi warns and reads nothing (an unknown parser, a file of the
other kind), batchdeps stops with an error naming it. TOML values keep their types
(`workers = 2`, a table as a frozen dict); luigi.cfg values are text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .config import Config, parse_config, read_toml
from .errors import ConfigError

__all__ = ["LUIGI_HONOURED", "LUIGI_IGNORED", "file_kind", "load_luigi_fallback",
           "luigi_cfg_as_toml", "luigi_cfg_paths", "luigi_config_paths", "luigi_key",
           "luigi_parser", "read_luigi_files"]

#: Where Luigi looks for its config, per kind, in order (later files win).
LUIGI_FILES: dict[str, tuple[str, ...]] = {
    "cfg": ("/etc/luigi/client.cfg", "/etc/luigi/luigi.cfg", "client.cfg", "luigi.cfg"),
    "toml": ("/etc/luigi/luigi.toml", "luigi.toml"),
}
#: Files added from code (`batchdeps.luigi.configuration.add_config_path`), per parser kind,
#: read after the others: for parameter values and for the run's settings ([core],
#: [worker], [resources], ...) alike, as Luigi reads them. The parser classes' own
#: `_config_paths` are these lists.
ADDED_PATHS: dict[str, list[str]] = {kind: [] for kind in LUIGI_FILES}
LUIGI_CONFIG_ENV = "LUIGI_CONFIG_PATH"
LUIGI_PARSER_ENV = "LUIGI_CONFIG_PARSER"
#: LUIGI_CONFIG_PARSER's values (and the file extensions), as Luigi's: the kind each reads.
LUIGI_PARSERS = {"cfg": "cfg", "conf": "cfg", "ini": "cfg", "toml": "toml"}

#: Luigi config keys batchdeps honours: (section, key with underscores) -> how.
#: ("batchdeps", key) sets that key; ("retries_from_count",) turns Luigi's most-runs count
#: into batchdeps' extra attempts.
LUIGI_HONOURED: dict[tuple[str, str], tuple[str, ...]] = {
    ("core", "workers"): ("batchdeps", "workers"),
    ("core", "log_level"): ("batchdeps", "log_level"),
    ("worker", "timeout"): ("batchdeps", "timeout"),
    ("scheduler", "retry_delay"): ("batchdeps", "retry_delay"),
    ("scheduler", "retry_count"): ("retries_from_count",),
    ("worker", "retry_count"): ("retries_from_count",),
}
#: Luigi config keys that have no effect here because what they tune does not exist (no
#: central scheduler, no keep-alive worker): read and ignored, as docs/from-luigi.md lists.
LUIGI_IGNORED: dict[str, frozenset[str]] = {
    "core": frozenset({"local_scheduler", "no_lock", "lock_pid_dir", "lock_size",
                       "parallel_scheduling", "parallel_scheduling_processes",
                       "assistant", "help", "help_all", "module", "logging_conf_file",
                       "no_configure_logging", "autoload_range", "rpc_connect_timeout",
                       "rpc_retry_attempts", "rpc_retry_wait", "take_lock"}),
    "worker": frozenset({"keep_alive", "ping_interval", "wait_interval", "wait_jitter",
                         "max_keep_alive_idle_duration", "max_reschedules",
                         "count_uniques", "count_last_scheduled", "check_unfulfilled_deps",
                         "check_complete_on_run", "force_multiprocessing",
                         "task_process_context", "cache_task_completion", "send_messages",
                         "retry_external_tasks", "no_install_shutdown_handler", "id"}),
    "scheduler": frozenset({"disable_window", "disable_hard_timeout", "disable_persist",
                            "disable_failures", "remove_delay", "worker_disconnect_delay",
                            "state_path", "batch_emails", "record_task_history",
                            "prune_on_get_work", "pause_enabled", "send_messages",
                            "metrics_collector", "stable_done_cooldown_secs"}),
    "logging": frozenset(),  # logging dictConfig: batchdeps logs its own way (log_level)
    "execution_summary": frozenset({"summary_length"}),
}


def luigi_key(key: str) -> str:
    """A luigi.cfg key as batchdeps spells keys: `retry-count` is `retry_count`."""
    return key.strip().replace("-", "_")


def luigi_parser(environ: Mapping[str, str] | None = None) -> str:
    """The kind of Luigi config file read, `cfg` or `toml`, from $LUIGI_CONFIG_PARSER."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(LUIGI_PARSER_ENV) or "cfg"
    kind = LUIGI_PARSERS.get(chosen)
    if kind is None:
        raise ConfigError(f"${LUIGI_PARSER_ENV} is {chosen!r}: Luigi's config parsers are "
                          f"{', '.join(LUIGI_PARSERS)} (see docs/from-luigi.md, "
                          "\"luigi.toml\")")
    return kind


def file_kind(path: str, default: str) -> str:
    """The kind of Luigi config file `path` is by its extension, else `default`."""
    return LUIGI_PARSERS.get(os.path.splitext(path)[1][1:], default)


def _env_files(environ: Mapping[str, str]) -> list[str]:
    extra = environ.get(LUIGI_CONFIG_ENV) or ""
    return [part for part in extra.split(os.pathsep) if part and os.path.isfile(part)]


def luigi_config_paths(kind: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The existing files Luigi's `kind` parser reads, in order (later ones win)."""
    environ = os.environ if environ is None else environ
    chosen = luigi_parser(environ)
    return [*(path for path in LUIGI_FILES[kind] if os.path.isfile(path)),
            *(path for path in _env_files(environ) if file_kind(path, chosen) == kind),
            *(path for path in ADDED_PATHS[kind] if os.path.isfile(path))]


def luigi_cfg_paths(environ: Mapping[str, str] | None = None) -> list[str]:
    """The Luigi config files of the chosen kind that exist, in Luigi's order.

    A file of $LUIGI_CONFIG_PATH of the other kind is an error naming it (Luigi warns and
    reads nothing of it)."""
    environ = os.environ if environ is None else environ
    chosen = luigi_parser(environ)
    for path in _env_files(environ):
        kind = file_kind(path, chosen)
        if kind != chosen:
            raise ConfigError(
                f"${LUIGI_CONFIG_ENV} names {path}, a {kind} file, but the {chosen} parser "
                f"is chosen: set {LUIGI_PARSER_ENV}={kind} to read it (see "
                "docs/from-luigi.md, \"luigi.toml\")")
    return luigi_config_paths(chosen, environ)


def read_luigi_files(paths: list[str], kind: str | None = None) -> dict[str, dict[str, Any]]:
    """The sections of Luigi config files, later files over earlier ones (key by key).

    luigi.cfg keys are read with underscores (`retry-count` and `retry_count` are one key)
    and their values are text; luigi.toml keys stay as written, as Luigi reads them, and
    their values keep their TOML types (a table under a section as a frozen dict). A file
    is read by the kind its extension names, else `kind` (else the chosen parser's)."""
    kind = kind or luigi_parser()
    sections: dict[str, dict[str, Any]] = {}
    for path in paths:
        read = _read_toml(path) if file_kind(path, kind) == "toml" else _read_cfg(path)
        for section, values in read.items():
            sections.setdefault(section, {}).update(values)
    return sections


def _read_cfg(path: str) -> dict[str, dict[str, str]]:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=path)
    except configparser.Error as exc:
        raise ConfigError(f"{path} is not a valid luigi.cfg: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return {section: {luigi_key(k): v for k, v in parser.items(section)}
            for section in parser.sections()}


def _read_toml(path: str) -> dict[str, dict[str, Any]]:
    from .parameters import freeze

    document = read_toml(path)
    sections: dict[str, dict[str, Any]] = {}
    for section, values in document.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section} = {values!r} is outside a section: a "
                              "luigi.toml key belongs in a table ([core], [Family], ...)")
        sections[section] = {}
        for key, value in values.items():
            try:  # a table as Luigi keeps it: frozen, so a DictParameter can take it
                sections[section][key] = freeze(value) if isinstance(value, dict) else value
            except ValueError as exc:
                raise ConfigError(f"{path}: [{section}] {key}: {exc}") from None
    return sections


def luigi_cfg_as_toml(sections: dict[str, dict[str, Any]], label: str,
                      kind_name: str = "luigi.cfg") -> dict[str, Any]:
    """The parts of a Luigi config batchdeps honours, as a config.toml document holds them.

    `[core]`, `[worker]` and `[scheduler]` keys of LUIGI_HONOURED set batchdeps' own keys,
    `[resources]` caps resources; keys of LUIGI_IGNORED are dropped; any other key of those
    sections is an error naming it, never a setting silently lost.
    """
    raw: dict[str, Any] = {"batchdeps": {}}
    for section in ("core", "worker", "scheduler"):
        for key, value in sections.get(section, {}).items():
            how = LUIGI_HONOURED.get((section, key))
            if how is None:
                if key in LUIGI_IGNORED.get(section, frozenset()):
                    continue
                raise ConfigError(
                    f"{label}: [{section}] {key}: batchdeps cannot honour this {kind_name} "
                    "key (see docs/from-luigi.md, \"luigi.cfg\"); remove it or move the "
                    "setting to config.toml")
            where = f"{label}: [{section}] {key}"
            if how[0] == "retries_from_count":
                count = _luigi_number(value, where, int)
                if count < 1:
                    raise ConfigError(f"{where} must be an integer >= 1, got {value!r}")
                raw["batchdeps"]["retries"] = count - 1
            else:
                parse: Any = str if how[1] == "log_level" else (
                    int if how[1] == "workers" else float)
                number = _luigi_number(value, where, parse)
                raw[how[0]][how[1]] = number.upper() if how[1] == "log_level" else number
    if "resources" in sections:
        raw["resources"] = {key: _luigi_number(value, f"{label}: [resources] {key}", int)
                            for key, value in sections["resources"].items()}
    return raw


def _luigi_number(value: Any, where: str, parse: Any) -> Any:
    """A luigi.cfg text, or a luigi.toml value, as `parse` (int, float or str) reads it."""
    if isinstance(value, str):
        try:
            return parse(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: cannot read {value!r} as {parse.__name__}") from None
    taken = (str,) if parse is str else (int,) if parse is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, taken):
        raise ConfigError(f"{where}: cannot read {value!r} as {parse.__name__}")
    return parse(value)


def load_luigi_fallback(environ: Mapping[str, str]) -> Config | None:
    """The config from luigi.cfg (or luigi.toml) when there is no config.toml; None when
    there is none."""
    paths = luigi_cfg_paths(environ)
    if not paths:
        return None
    label = paths[-1]
    kind = luigi_parser(environ)
    raw = luigi_cfg_as_toml(read_luigi_files(paths, kind), label, f"luigi.{kind}")
    config = parse_config(raw, path=None, environ=environ)
    config.luigi_cfg = paths
    return config
