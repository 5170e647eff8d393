"""Unit tests of batchdeps.config: where the file is found, ${ENV}, the schema, other tables."""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import pytest

import batchdeps as bd
from batchdeps.config import SCHEMA, find_config_path, parse_config
from batchdeps.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- where the config comes from -------------------------------------------------------
@pytest.fixture
def three_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """./config.toml, an $BATCHDEPS_CONFIG file and a --config file, each with other workers."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHDEPS_CONFIG", raising=False)
    return {
        "cwd": write(tmp_path / "config.toml", "[batchdeps]\nworkers = 2\n"),
        "env": write(tmp_path / "env" / "c.toml", "[batchdeps]\nworkers = 3\n"),
        "explicit": write(tmp_path / "cli" / "c.toml", "[batchdeps]\nworkers = 4\n"),
    }


def test_explicit_path_wins_over_env_and_cwd(three_configs: dict[str, Path]) -> None:
    env = {"BATCHDEPS_CONFIG": str(three_configs["env"])}
    config = bd.load_config(str(three_configs["explicit"]), environ=env)
    assert config.workers == 4
    assert config.path == str(three_configs["explicit"])
    assert config.root == str(three_configs["explicit"].parent)


def test_env_variable_wins_over_cwd(three_configs: dict[str, Path]) -> None:
    config = bd.load_config(None, environ={"BATCHDEPS_CONFIG": str(three_configs["env"])})
    assert config.workers == 3
    assert config.root == str(three_configs["env"].parent)


def test_env_variable_read_from_process_environment(
    three_configs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHDEPS_CONFIG", str(three_configs["env"]))
    assert bd.load_config().workers == 3


def test_cwd_config_used_when_nothing_else_is_named(three_configs: dict[str, Path]) -> None:
    config = bd.load_config(None, environ={})
    assert config.workers == 2
    assert config.root == os.getcwd()


def test_empty_env_variable_falls_back_to_cwd(three_configs: dict[str, Path]) -> None:
    assert bd.load_config(None, environ={"BATCHDEPS_CONFIG": ""}).workers == 2


def test_no_config_anywhere_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = bd.load_config(None, environ={})
    assert config.path is None
    assert config.modules == ["pipelines"]
    assert config.workers == 1
    assert config.lock == {} and config.storage == {} and config.tasks == {}
    assert find_config_path(None, {}) is None


def test_missing_explicit_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=f"config file {missing} does not exist"):
        bd.load_config(missing, environ={})


def test_missing_env_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"nope.toml \(from \$BATCHDEPS_CONFIG\) does not exist"):
        bd.load_config(None, environ={"BATCHDEPS_CONFIG": missing})


def test_invalid_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[batchdeps\nworkers = 2\n")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML"):
        bd.load_config(str(path), environ={})


# -- ${ENV} interpolation --------------------------------------------------------------
def test_env_references_replaced_in_nested_tables_and_lists(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", """
[batchdeps]
modules = ["${PKG}", "extra_${PKG}"]
log_dir = "${HOME_DIR}/logs"

[lock]
url = "http://${HOST}:${PORT}"

[storage.s3]
endpoint_url = "${S3_ENDPOINT}"
client_kwargs = { region_name = "${REGION}", tags = ["a-${REGION}", 5] }

[tasks.Clean]
day = "${DAY}"
""")
    env = {"PKG": "pipes", "HOME_DIR": "/srv", "HOST": "127.0.0.1", "PORT": "8765",
           "S3_ENDPOINT": "http://127.0.0.1:9000", "REGION": "eu-west-1", "DAY": "2026-11-24"}
    config = bd.load_config(str(path), environ=env)
    assert config.modules == ["pipes", "extra_pipes"]
    assert config.batchdeps["log_dir"] == "/srv/logs"
    assert config.lock["url"] == "http://127.0.0.1:8765"
    assert config.storage == {"s3": {
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1", "tags": ["a-eu-west-1", 5]},
    }}
    assert config.tasks == {"Clean": {"day": "2026-11-24"}}


def test_text_without_references_is_left_alone() -> None:
    config = parse_config({"lock": {"url": "http://h/$HOME/{x}"}}, environ={})
    assert config.lock["url"] == "http://h/$HOME/{x}"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"lock": {"url": "${NOPE}"}}, "[lock] url"),
        ({"storage": {"s3": {"client_kwargs": {"region_name": "${NOPE}"}}}},
         "[storage.s3].client_kwargs.region_name"),
        ({"batchdeps": {"modules": ["a", "${NOPE}"]}}, "[batchdeps] modules[1]"),
        ({"tasks": {"Clean": {"day": "${NOPE}"}}}, "[tasks.Clean].day"),
    ],
)
def test_unset_variable_is_an_error_naming_key_and_variable_once_used(
        raw: dict[str, Any], where: str) -> None:
    config = parse_config(raw, path="c.toml", environ={})  # not an error until it is used
    (section, table), = raw.items()
    (key, _), = table.items()
    with pytest.raises(ConfigError) as info:
        if section in ("storage", "tasks"):
            value = getattr(config, section)[key]
            dict(value)  # what a filesystem or task does with its options
            {**value}
        else:
            getattr(config, section)[key]
    message = str(info.value)
    assert message.startswith("c.toml: ")
    assert where in message
    assert "${NOPE}" in message and "environment variable NOPE is not set" in message


@pytest.mark.parametrize("ref", ["${}", "${1ABC}", "${A-B}", "${ A }"])
def test_invalid_variable_name_is_an_error_naming_key(ref: str) -> None:
    with pytest.raises(ConfigError, match=r"c.toml: \[lock\] url: .* is not a valid variable name"):
        parse_config({"lock": {"url": f"http://{ref}"}}, path="c.toml", environ={"A": "x"})


def test_interpolated_value_is_then_validated() -> None:
    with pytest.raises(ConfigError, match=r"\[batchdeps\] log_format must be one of text, json, "
                       r"got the value of \$\{FMT\} \(not shown\)") as info:
        parse_config({"batchdeps": {"log_format": "${FMT}"}}, environ={"FMT": "xml"})
    assert "xml" not in str(info.value)  # a value from the environment may be a secret


@pytest.mark.parametrize(("ref", "environ", "expected"), [
    ("${HOST:-localhost}", {}, "echo localhost"),
    ("${HOST:-localhost}", {"HOST": ""}, "echo localhost"),
    ("${HOST:-localhost}", {"HOST": "h1"}, "echo h1"),
    ("${HOST:-}", {}, "echo "),
    ("${HOST}", {"HOST": "h2"}, "echo h2"),
])
def test_variable_with_a_default(ref: str, environ: dict[str, str], expected: str) -> None:
    config = parse_config({"notify": {"command": f"echo {ref}"}}, environ=environ)
    assert config.notify["command"] == expected


def test_storage_option_empty_after_interpolation_is_left_out() -> None:
    raw = {"storage": {"s3": {"endpoint_url": "${S3_ENDPOINT:-}", "anon": False}}}
    assert parse_config(raw, environ={}).storage == {"s3": {"anon": False}}
    assert parse_config(raw, environ={"S3_ENDPOINT": "http://127.0.0.1:9"}).storage == {
        "s3": {"endpoint_url": "http://127.0.0.1:9", "anon": False}}


@pytest.mark.parametrize(("variable", "text", "section", "key", "expected"), [
    ("BATCHDEPS_WORKERS", "3", "batchdeps", "workers", 3),
    ("BATCHDEPS_MODULES", "pipes", "batchdeps", "modules", ["pipes"]),
    ("BATCHDEPS_MODULES", '["a", "b"]', "batchdeps", "modules", ["a", "b"]),
    ("BATCHDEPS_LOCK__URL", "http://127.0.0.1:8765", "lock", "url", "http://127.0.0.1:8765"),
    ("BATCHDEPS_LOCK__TTL", "12.5", "lock", "ttl", 12.5),
    ("BATCHDEPS_HISTORY__ENABLED", "false", "history", "enabled", False),
])
def test_environment_overrides_a_key(variable: str, text: str, section: str, key: str,
                                     expected: Any) -> None:
    raw = {"batchdeps": {"workers": 1}, "lock": {"ttl": 30}}
    config = parse_config(raw, environ={variable: text})
    assert getattr(config, section)[key] == expected


def test_bad_environment_override_names_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({}, environ={"BATCHDEPS_WORKERS": "zero"})
    message = str(caught.value)
    assert message.startswith("$BATCHDEPS_WORKERS (overrides [batchdeps] workers) must be an "
                              "integer >= 1")
    assert "zero" not in message


# -- every key of SCHEMA ---------------------------------------------------------------
def _string_list() -> tuple[list[tuple[Any, Any]], list[Any]]:
    return [("pkg", ["pkg"]), (["a", "b.c"], ["a", "b.c"])], [[1], [""], 5, {"a": 1}]


def _int(minimum: int) -> tuple[list[tuple[Any, Any]], list[Any]]:
    return [(minimum, minimum), (minimum + 5, minimum + 5)], [minimum - 1, 1.5, True, "3"]


def _number(minimum: float) -> tuple[list[tuple[Any, Any]], list[Any]]:
    good = [(minimum, float(minimum)), (int(minimum) + 2, float(int(minimum) + 2))]
    return good, [minimum - 0.0005 if minimum < 1 else minimum - 0.5, "5", True, math.nan]


def _choice(*choices: str) -> tuple[list[tuple[Any, Any]], list[Any]]:
    return [(c, c) for c in choices], [choices[0].lower() if choices[0].isupper()
                                       else choices[0].upper(), "other", 1]


def _bool() -> tuple[list[tuple[Any, Any]], list[Any]]:
    return [(True, True), (False, False)], ["true", 1, 0, "yes"]


def _string() -> tuple[list[tuple[Any, Any]], list[Any]]:
    return [("some/value", "some/value")], ["", 5, ["x"]]


#: section -> key -> (good values with what they become, bad values)
CASES: dict[str, dict[str, tuple[list[tuple[Any, Any]], list[Any]]]] = {
    "batchdeps": {
        "modules": _string_list(),
        "workers": _int(1),
        "log_level": _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "log_dir": _string(),
        "log_format": _choice("text", "json"),
        "retries": _int(0),
        "retry_delay": _number(0),
        "retry_backoff": _number(1),
        "max_retry_delay": _number(0),
        "timeout": _number(0.001),
        "lock_dir": _string(),
        "task_logs": _choice("auto", "always", "off"),
        "progress": _choice("auto", "off"),
        "kill_grace": _number(0),
        "state_dir": _string(),
    },
    "executor": {
        "kind": _string(),
        "address": _string(),
        "shared_paths": _string_list(),
    },
    "history": {
        "enabled": _bool(),
        "retention_days": _number(0.01),
        "send_to_server": _bool(),
    },
    "lock": {
        "url": ([("http://10.0.0.5:8765", "http://10.0.0.5:8765"),
                 ("https://locks.example", "https://locks.example")],
                ["", 5, "some/value", "ftp://h:21", "http://h:99999", "http://h:0", "not a url"]),
        "ttl": ([(1, 1.0), (30, 30.0), (604800, 604800.0)],
                [0.5, "5", True, math.nan, math.inf, 604801, 1_000_000]),
        "wait_timeout": _number(0),
    },
    "run": {
        "rerun_triggers": ([(["version", "params"], ["params", "version"]),
                            ("upstream", ["upstream"]), ("version,unrecorded",
                                                         ["unrecorded", "version"]),
                            ("none", [])],
                           ["bogus", ["version", "nope"], 5, [1], {"a": 1}]),
        "record_builds": _bool(),
        "wait_for_inputs": ([(0, 0.0), (90, 90.0), ("30s", 30.0), ("6h", 21600.0),
                             ("1h30m", 5400.0), ("0.5s", 0.5), ("2d", 172800.0)],
                            ["", "5x", "30 s", "m5", "5m1h", "5m5m", -1, True, math.nan,
                             math.inf, [1]]),
        "poll": ([(1, 1.0), ("5m", 300.0), ("0.25s", 0.25)],
                 [0, "0s", "", "fast", -5, True, math.nan]),
    },
    "notify": {
        "on_failure": _string(),
        "command": _string(),
        "retries": _int(0),
        "retry_delay": _number(0),
        "timeout": _number(0.001),
    },
}

GOOD = [(s, k, v, out) for s, keys in CASES.items() for k, (good, _) in keys.items()
        for v, out in good]
BAD = [(s, k, v) for s, keys in CASES.items() for k, (_, bad) in keys.items() for v in bad]


def test_every_schema_key_has_test_cases() -> None:
    untested = sorted(f"[{s}] {k}" for s, keys in SCHEMA.items() for k in keys
                      if k not in CASES.get(s, {}))
    gone = sorted(f"[{s}] {k}" for s, keys in CASES.items() for k in keys
                  if k not in SCHEMA.get(s, {}))
    assert not untested, f"add good and bad values for {untested} to CASES in this file"
    assert not gone, f"{gone} are no longer in SCHEMA"


@pytest.mark.parametrize(("section", "key", "value", "expected"), GOOD)
def test_schema_accepts_good_value(section: str, key: str, value: Any, expected: Any) -> None:
    config = parse_config({section: {key: value}}, environ={})
    got = getattr(config, section)[key]
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("section", "key", "value"), BAD)
def test_schema_rejects_bad_value_naming_key(section: str, key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({section: {key: value}}, path="c.toml", environ={})
    message = str(info.value)
    assert message.startswith(f"c.toml: [{section}] {key} ")
    assert f"got {value!r}" in message
    assert "\n" not in message


@pytest.mark.parametrize("section", sorted(SCHEMA))
def test_unknown_key_in_own_section_is_rejected_listing_known_keys(section: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({section: {"wrokers": 2}}, path="c.toml", environ={})
    message = str(info.value)
    assert message.startswith(f"c.toml: [{section}] wrokers: unknown key")
    assert all(key in message for key in SCHEMA[section])


@pytest.mark.parametrize("section", sorted(SCHEMA))
def test_own_section_that_is_not_a_table_is_rejected(section: str) -> None:
    with pytest.raises(ConfigError, match=rf"c.toml: \[{section}\] must be a table"):
        parse_config({section: 5}, path="c.toml", environ={})


def test_config_from_file_names_the_file_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[lock]\nttl = 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: \[lock\] ttl must be a number from 1 to "
                       r"604800, got 0$"):
        bd.load_config(str(path), environ={})


def test_nan_from_toml_file_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[lock]\nwait_timeout = nan\n")
    with pytest.raises(ConfigError, match=r"\[lock\] wait_timeout must be a number >= 0, got nan"):
        bd.load_config(str(path), environ={})


# -- tables batchdeps does not own -----------------------------------------------------
def test_other_top_level_tables_are_kept_untouched_in_raw(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", """
[batchdeps]
workers = 2

[weblogs]
source = "${NOT_SET_ANYWHERE}"
days = [1, 2]
nested = { deep = { x = 1 } }
""")
    config = bd.load_config(str(path), environ={})
    assert config.raw["weblogs"] == {"source": "${NOT_SET_ANYWHERE}", "days": [1, 2],
                                     "nested": {"deep": {"x": 1}}}
    assert config.raw["batchdeps"] == {"workers": 2}


# -- [storage.*], [resources], [tasks.*] -----------------------------------------------
def test_storage_sections_become_options_per_protocol() -> None:
    config = parse_config({"storage": {"s3": {"anon": False, "key": "k"},
                                       "memory": {}}}, environ={})
    assert config.storage == {"s3": {"anon": False, "key": "k"}, "memory": {}}


@pytest.mark.parametrize("storage", [{"s3": "http://x"}, "s3", {"s3": [1]}])
def test_storage_that_is_not_tables_is_rejected(storage: Any) -> None:
    with pytest.raises(ConfigError, match=r"c.toml: \[storage.PROTOCOL\] sections must be tables"):
        parse_config({"storage": storage}, path="c.toml", environ={})


def test_resources_are_positive_integer_caps() -> None:
    config = parse_config({"resources": {"warehouse": 2, "api": 1}}, environ={})
    assert config.resources == {"warehouse": 2, "api": 1}


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True, 10_001])
def test_bad_resource_cap_is_rejected_naming_it(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"resources": {"warehouse": value}}, path="c.toml", environ={})
    assert str(info.value) == (f"c.toml: [resources] warehouse must be an integer from 1 to "
                               f"10000 (the lock server's limit), got {value!r}")


def test_resources_that_is_not_a_table_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"\[resources\] must be a table"):
        parse_config({"resources": [1]}, environ={})


def test_task_sections_are_kept_per_family_as_given(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", """
[tasks.Clean]
day = 2026-11-24
count = 3
name = "x"

[tasks.Report]
tags = ["a", "b"]
""")
    config = bd.load_config(str(path), environ={})
    assert config.tasks == {"Clean": {"day": dt.date(2026, 11, 24), "count": 3, "name": "x"},
                            "Report": {"tags": ["a", "b"]}}


@pytest.mark.parametrize("tasks", [{"Clean": 5}, "Clean", {"Clean": ["day"]}])
def test_task_sections_that_are_not_tables_are_rejected(tasks: Any) -> None:
    with pytest.raises(ConfigError, match=r"c.toml: \[tasks.FAMILY\] sections must be tables"):
        parse_config({"tasks": tasks}, path="c.toml", environ={})


def test_command_line_honours_defaults_and_overrides_from_the_environment(project: Any) -> None:
    project.write("config.toml", """
        [batchdeps]
        modules = ["pipelines"]

        [storage.s3]
        endpoint_url = "${S3_ENDPOINT:-}"
        """)
    env = {k: v for k, v in project.env.items() if k != "S3_ENDPOINT"}
    project.env = env
    done = project.run("run", "Other")
    assert done.returncode == 0, done.stderr
    bad = project.run("run", "Other", "--force", BATCHDEPS_WORKERS="0")
    assert bad.returncode == 2
    assert "$BATCHDEPS_WORKERS (overrides [batchdeps] workers) must be an integer >= 1" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_an_unset_variable_fails_only_the_commands_that_use_it(project: Any) -> None:
    project.write("config.toml", """
        [batchdeps]
        modules = ["pipelines"]

        [storage.s3]
        endpoint_url = "${S3_ENDPOINT}"

        [tasks.Dated]
        day = "${REPORT_DAY}"
        """)
    project.write("pipelines/uses.py", """
        import batchdeps as bd

        class OnS3(bd.Task):
            def output(self):
                return bd.FileTarget("s3://bucket/key.txt")

        class Dated(bd.Task):
            day = bd.DateParameter()
            def output(self):
                return bd.FileTarget(f"out/dated-{self.day}.txt")
            def run(self):
                with self.output().open("w") as out:
                    out.write("x")
        """)
    project.env = {k: v for k, v in project.env.items()
                   if k not in ("S3_ENDPOINT", "REPORT_DAY")}
    local = project.run("run", "Other")
    assert local.returncode == 0, local.stderr
    given = project.run("run", "Dated", "--day", "2026-11-24")
    assert given.returncode == 0, given.stderr
    s3 = project.run("run", "OnS3")
    assert s3.returncode == 2, s3.stderr
    assert ("[storage.s3].endpoint_url refers to ${S3_ENDPOINT}, but the environment "
            "variable S3_ENDPOINT is not set") in s3.stderr
    defaulted = project.run("run", "Dated")
    assert defaulted.returncode == 2, defaulted.stderr
    assert "[tasks.Dated].day refers to ${REPORT_DAY}" in defaulted.stderr
    for done in (s3, defaulted):
        assert "Traceback" not in done.stderr


def test_a_table_with_an_unset_variable_pickles_and_stays_lazy() -> None:
    import pickle

    config = parse_config({"storage": {"s3": {"endpoint_url": "${NOPE}", "anon": True}}},
                          path="c.toml", environ={})
    copy = pickle.loads(pickle.dumps(config.storage))  # as sent to a fork-server worker
    assert copy["s3"]["anon"] is True
    with pytest.raises(ConfigError, match=r"\[storage.s3\].endpoint_url refers to \$\{NOPE\}"):
        {**copy["s3"]}
