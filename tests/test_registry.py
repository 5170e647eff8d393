"""Unit tests of batchdeps.registry: importing task packages, lookup, config defaults."""

from __future__ import annotations

import datetime as dt
import itertools
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import batchdeps as bd
from batchdeps.errors import ConfigError, TaskDefinitionError, UnknownTaskError
from batchdeps.registry import TaskRegistry
from support.waiting import wait_for

_counter = itertools.count()

HEADER = "import batchdeps as bd\nfrom batchdeps import Task, WrapperTask\n"


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Write a throw-away package (relative path -> source) and return its unique name.

    Its folder is put on sys.path for this test only, and every module imported during
    the test is removed from sys.modules afterwards.
    """
    before = set(sys.modules)
    monkeypatch.setattr(sys, "path", list(sys.path))  # from_modules(roots=...) inserts
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(files: dict[str, str]) -> str:
        name = f"regpkg{next(_counter)}_{tmp_path.name.replace('-', '_')}"
        for relative, source in files.items():
            path = tmp_path / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return name

    yield make
    for module in set(sys.modules) - before:
        del sys.modules[module]


PIPELINE = {
    "__init__.py": "",
    "clean.py": HEADER + """
class Clean(bd.Task):
    day = bd.DateParameter()
    count = bd.IntParameter(default=3)
    tags = bd.ListParameter(default=[])
""",
    "reports/__init__.py": "",
    "reports/daily.py": HEADER + """
from ..clean import Clean      # imported, not defined here: registered once, under clean

class DailyReport(WrapperTask):
    day = bd.DateParameter()
    def requires(self):
        return Clean(day=self.day)
""",
}


def test_package_and_its_submodules_are_imported(make_package: Callable[..., str]) -> None:
    name = make_package(PIPELINE)
    registry = TaskRegistry.from_modules([name])
    assert registry.names() == ["Clean", "DailyReport"]
    assert f"{name}.reports.daily" in sys.modules


def test_imported_and_base_classes_are_not_registered(make_package: Callable[..., str]) -> None:
    name = make_package(PIPELINE)
    registry = TaskRegistry.from_modules([name])
    assert [c.__module__ for c in registry.by_name["Clean"]] == [f"{name}.clean"]
    assert "Task" not in registry.by_name and "WrapperTask" not in registry.by_name


def test_a_single_module_can_be_listed(make_package: Callable[..., str]) -> None:
    name = make_package(PIPELINE)
    registry = TaskRegistry.from_modules([f"{name}.clean"])
    assert registry.names() == ["Clean"]


def test_roots_are_made_importable(tmp_path: Path, make_package: Callable[..., str]) -> None:
    root = tmp_path / "elsewhere"
    (root / "rootpipes_unique").mkdir(parents=True)
    (root / "rootpipes_unique" / "__init__.py").write_text(HEADER + "class Far(bd.Task): pass\n")
    registry = TaskRegistry.from_modules(["rootpipes_unique"], roots=[str(root)])
    assert registry.names() == ["Far"]
    assert sys.path[0] == str(root)


def test_lookup_by_class_name(make_package: Callable[..., str]) -> None:
    name = make_package(PIPELINE)
    cls = TaskRegistry.from_modules([name]).get("DailyReport")
    assert cls.__module__ == f"{name}.reports.daily"
    assert cls(day="2026-11-24").task_id == "DailyReport(day=2026-11-24)"


def test_lookup_by_dotted_path_outside_the_listed_modules(
    make_package: Callable[..., str]
) -> None:
    name = make_package({**PIPELINE, "extra.py": HEADER + "class Extra(bd.Task): pass\n"})
    registry = TaskRegistry.from_modules([f"{name}.clean"])
    assert registry.get(f"{name}.extra.Extra").__name__ == "Extra"
    assert registry.get(f"{name}.clean.Clean") is registry.get("Clean")


def test_dotted_path_to_missing_class_is_unknown_task(make_package: Callable[..., str]) -> None:
    name = make_package(PIPELINE)
    registry = TaskRegistry.from_modules([name])
    with pytest.raises(UnknownTaskError, match=rf"'{name}.clean.Dirty': {name}.clean has no task class Dirty"):
        registry.get(f"{name}.clean.Dirty")


def test_dotted_path_to_non_task_is_unknown_task(make_package: Callable[..., str]) -> None:
    name = make_package({**PIPELINE, "helpers.py": "class Helper: pass\nvalue = 3\n"})
    registry = TaskRegistry()
    for attribute in ("Helper", "value"):
        with pytest.raises(UnknownTaskError, match="has no task class"):
            registry.get(f"{name}.helpers.{attribute}")


def test_dotted_name_neither_family_nor_module_names_both() -> None:
    with pytest.raises(UnknownTaskError) as info:
        TaskRegistry().get("no_such_pkg_xyz.mod.Task")
    assert str(info.value) == (
        "unknown task 'no_such_pkg_xyz.mod.Task': no family of that name, and no module "
        "'no_such_pkg_xyz.mod' to import it from. Known tasks: none.")


def test_unknown_name_suggests_close_matches(make_package: Callable[..., str]) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    with pytest.raises(UnknownTaskError) as info:
        registry.get("Claen")
    assert str(info.value) == ("unknown task 'Claen'. Did you mean Clean? "
                               "Known tasks: Clean, DailyReport.")


def test_unknown_name_in_other_case_suggests_the_class(make_package: Callable[..., str]) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    with pytest.raises(UnknownTaskError, match="Did you mean DailyReport\\?"):
        registry.get("DAILYREPORT")


def test_unknown_name_without_close_match_lists_known_tasks(
    make_package: Callable[..., str]
) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    with pytest.raises(UnknownTaskError) as info:
        registry.get("Zebra")
    assert "Did you mean" not in str(info.value)
    assert "Known tasks: Clean, DailyReport." in str(info.value)


def test_empty_registry_says_no_tasks_are_known() -> None:
    with pytest.raises(UnknownTaskError, match="Known tasks: none"):
        TaskRegistry().get("Clean")


def test_same_class_name_in_two_modules_is_ambiguous(make_package: Callable[..., str]) -> None:
    name = make_package({
        "__init__.py": "",
        "a.py": HEADER + "class Load(bd.Task): pass\n",
        "b.py": HEADER + "class Load(bd.Task): pass\n",
    })
    registry = TaskRegistry.from_modules([name])
    with pytest.raises(UnknownTaskError) as info:
        registry.get("Load")
    message = str(info.value)
    assert "'Load' is ambiguous" in message
    assert f"{name}.a.Load" in message and f"{name}.b.Load" in message
    assert registry.get(f"{name}.b.Load").__module__ == f"{name}.b"


def test_missing_module_in_list_is_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        TaskRegistry.from_modules(["no_such_pipelines_xyz"], source="c.toml")
    assert str(info.value) == ("cannot import task module 'no_such_pipelines_xyz': no such "
                               "module (listed in c.toml [batchdeps] modules)")


def test_module_that_fails_to_import_names_module_file_and_error(
    make_package: Callable[..., str]
) -> None:
    name = make_package({"__init__.py": "", "broken.py": "x = 1\nraise RuntimeError('boom')\n"})
    with pytest.raises(TaskDefinitionError) as info:
        TaskRegistry.from_modules([name])
    message = str(info.value)
    assert f"importing task module '{name}.broken' failed" in message
    assert "broken.py:2" in message and "RuntimeError: boom" in message


def test_module_importing_a_missing_library_is_a_definition_error(
    make_package: Callable[..., str]
) -> None:
    name = make_package({"__init__.py": "", "needs.py": "import no_such_library_xyz\n"})
    with pytest.raises(TaskDefinitionError, match="ModuleNotFoundError.*no_such_library_xyz"):
        TaskRegistry.from_modules([name])


def test_subpackage_that_fails_to_import_is_a_definition_error(
    make_package: Callable[..., str]
) -> None:
    name = make_package({"__init__.py": "", "sub/__init__.py": "1 / 0\n"})
    with pytest.raises(TaskDefinitionError, match=rf"'{name}.sub' failed .*ZeroDivisionError"):
        TaskRegistry.from_modules([name])


# -- config defaults -------------------------------------------------------------------
def test_apply_defaults_parses_strings_with_the_parameter(
    make_package: Callable[..., str]
) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    registry.apply_defaults({"Clean": {"day": "2026-11-24", "count": "7", "tags": "a,b"}})
    task = registry.get("Clean")()
    assert task.day == dt.date(2026, 11, 24)
    assert task.count == 7
    assert task.tags == ("a", "b")


def test_apply_defaults_takes_native_toml_values(make_package: Callable[..., str]) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    registry.apply_defaults({"Clean": {"day": dt.date(2026, 1, 2), "tags": ["x"]}})
    assert registry.get("Clean")().task_id == 'Clean(day=2026-01-02, count=3, tags=["x"])'


def test_constructor_arguments_win_over_config_defaults(
    make_package: Callable[..., str]
) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    registry.apply_defaults({"Clean": {"day": "2026-11-24", "count": 7}})
    assert registry.get("Clean")(count=1).count == 1
    assert registry.get("Clean")("2026-01-01").day == dt.date(2026, 1, 1)


def test_config_defaults_bind_only_the_named_family(make_package: Callable[..., str]) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    registry.apply_defaults({"Clean": {"day": "2026-11-24"}})
    with pytest.raises(bd.BatchdepsError, match="DailyReport: missing value for parameter 'day'"):
        registry.get("DailyReport")()


def test_apply_defaults_rejects_unknown_family(make_package: Callable[..., str]) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    with pytest.raises(ConfigError, match=r"^c.toml: \[tasks.Cleen\] names no known task$"):
        registry.apply_defaults({"Cleen": {"day": "2026-11-24"}}, label="c.toml")


def test_apply_defaults_rejects_unknown_parameter_listing_parameters(
    make_package: Callable[..., str]
) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    with pytest.raises(ConfigError) as info:
        registry.apply_defaults({"Clean": {"days": "2026-11-24"}}, label="c.toml")
    assert str(info.value) == ("c.toml: [tasks.Clean] days: Clean has no parameter 'days' "
                               "(parameters: day, count, tags)")


@pytest.mark.parametrize(("key", "value", "type_name"),
                         [("day", "24.11.2026", "date"), ("count", 2.5, "int"),
                          ("count", "three", "int")])
def test_apply_defaults_rejects_bad_value_naming_key_and_type(
    make_package: Callable[..., str], key: str, value: object, type_name: str
) -> None:
    registry = TaskRegistry.from_modules([make_package(PIPELINE)])
    with pytest.raises(ConfigError) as info:
        registry.apply_defaults({"Clean": {key: value}}, label="c.toml")
    message = str(info.value)
    assert message.startswith(f"c.toml: [tasks.Clean] {key}: Clean: bad value {value!r}")
    assert f"parameter '{key}' ({type_name})" in message


def test_applying_a_second_config_drops_defaults_of_the_first() -> None:
    class Fresh(bd.Task):
        n = bd.IntParameter(default=1)

    registry = TaskRegistry()
    registry.add(Fresh)
    registry.apply_defaults({"Fresh": {"n": "5"}})
    assert Fresh().n == 5
    registry.apply_defaults({})
    assert Fresh().n == 1


# -- a task module that exits or interrupts itself while imported ------------------------
@pytest.mark.parametrize(("statement", "shown"), [
    ("import sys; sys.exit(3)", "called sys.exit(3)"),
    ("raise SystemExit", "called sys.exit(None)"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
])
def test_task_module_that_exits_while_imported_is_a_definition_error(
        project: Any, statement: str, shown: str) -> None:
    project.write("pipelines/script.py", f"import batchdeps as bd\n{statement}\n")
    result = project.run("run", "Other")
    assert result.returncode == 2, result.stderr
    assert f"importing task module 'pipelines.script' {shown}" in result.stderr
    assert "pipelines/script.py:2" in result.stderr
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr
    assert project.runs() == []


def test_ctrl_c_while_a_task_module_imports_exits_130(project: Any) -> None:
    project.write("pipelines/slow.py", """
        import pathlib
        import time
        pathlib.Path("importing").touch()
        time.sleep(120)
        """)
    runner = project.popen("run", "Other")
    wait_for(lambda: (project.root / "importing").exists() or runner.poll() is not None,
             timeout=60, what="the slow module to start importing")
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    assert "interrupted while loading the task modules" in err
    assert "Traceback" not in err
