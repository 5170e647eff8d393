"""Every kind of bad input exits 2 with a clear message, no traceback, and runs nothing."""

from __future__ import annotations

import pytest
from support.project import Project

BROKEN_TASKS = '''
import abc

import batchdeps as bd


class Loop1(bd.Task):
    def requires(self):
        return Loop2()
    def output(self):
        return bd.FileTarget("out/loop1")
    def run(self):
        pass


class Loop2(bd.Task):
    def requires(self):
        return Loop1()
    def output(self):
        return bd.FileTarget("out/loop2")
    def run(self):
        pass


class BadRequires(bd.Task):
    def requires(self):
        return ["not a task"]
    def output(self):
        return bd.FileTarget("out/bad-requires")


class RaisingOutput(bd.Task):
    def output(self):
        raise KeyError("oops")


class BadOutputType(bd.Task):
    def output(self):
        return 42


class BadDefault(bd.Task):
    n = bd.IntParameter(default="many")
    def output(self):
        return bd.FileTarget("out/bad-default")


class Clash(bd.Task):
    workers = bd.IntParameter(default=1)
    def output(self):
        return bd.FileTarget("out/clash")


class Abstract(bd.Task):
    @abc.abstractmethod
    def source(self):
        ...
    def output(self):
        return bd.FileTarget("out/abstract")
'''


@pytest.fixture
def broken(project: Project) -> Project:
    (project.root / "pipelines" / "broken.py").write_text(BROKEN_TASKS)
    return project


def assert_usage_error(result, *needles: str) -> None:
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


CASES = [
    (["run", "Dd"], ["unknown task 'Dd'", "Did you mean D"]),
    (["run", "Shource"], ["unknown task 'Shource'", "Source"]),
    (["run", "D", "--day", "yesterday"], ["'yesterday' is not a valid date", "--day"]),
    (["run", "D", "--count", "three"], ["'three' is not a valid int",
                                        "Try 'batchdeps run D --help'"]),
    (["run", "D", "--colour", "red"], ["No such option", "--colour"]),
    (["run", "Leaf"], ["Leaf needs --i (int)"]),
    (["run", "D", "--workers", "0"], ["--workers"]),
    (["run", "D", "--config", "nope.toml"], ["config file nope.toml does not exist"]),
    (["run"], ["missing TASK"]),
    (["run", "pipelines.demo.Nope"], ["has no task class Nope"]),
]


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_command_line_exits_2(project: Project, args: list[str], needles: list[str]) -> None:
    assert_usage_error(project.run(*args), *needles)
    assert project.runs() == []


DEFINITION_CASES = [
    ("Loop1", ["dependency cycle", "Loop1()", "Loop2()"]),
    ("BadRequires", ["BadRequires()", "requires() must return tasks", "'not a task'"]),
    ("RaisingOutput", ["RaisingOutput()", "output() raised KeyError"]),
    ("BadOutputType", ["BadOutputType()", "output() must return targets", "int 42"]),
    ("BadDefault", ["BadDefault", "'n'", "many"]),
    ("Clash", ["Clash", "workers", "clash with options"]),
    ("Abstract", ["Abstract is abstract", "leaves source undefined", "run a subclass"]),
]


@pytest.mark.parametrize("task,needles", DEFINITION_CASES, ids=[c[0] for c in DEFINITION_CASES])
def test_bad_task_definition_exits_2(broken: Project, task: str, needles: list[str]) -> None:
    assert_usage_error(broken.run("run", task), *needles)
    assert not (broken.root / "out").exists()


def test_debug_shows_traceback(broken: Project) -> None:
    result = broken.run("run", "RaisingOutput", "--debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_import_error_in_task_module_names_file(project: Project) -> None:
    project.write("pipelines/typo.py", "import batchdeps as bd\nx = undefined_name\n")
    assert_usage_error(project.run("run", "D"), "pipelines.typo", "NameError", "typo.py:2")


CONFIG_CASES = [
    ("[batchdeps]\nmodules = ['pipelines']\nworkerz = 2\n",
     ["[batchdeps] workerz: unknown key"]),
    ("[batchdeps]\nworkers = 'two'\n", ["[batchdeps] workers must be an integer >= 1", "'two'"]),
    ("[lock]\nttl = 0\n", ["[lock] ttl must be a number from 1 to 604800"]),
    ("[lock]\nurl = 'http://127.0.0.1:1'\nlease = 3\n", ["[lock] lease: unknown key"]),
    ("[tasks.D]\ncolour = 'red'\n", ["[tasks.D] colour", "D has no parameter 'colour'"]),
    ("[tasks.Nope]\nx = 1\n", ["[tasks.Nope] names no known task"]),
    ("[tasks.D]\nday = 'soon'\n", ["[tasks.D] day", "'soon'"]),
    ("[tasks.D]\ncount = 1.5\n", ["[tasks.D] count", "expected an integer"]),
    # An unset variable is an error once the value is used: every run reads [lock] url.
    ("[lock]\nurl = '${NOT_SET_ANYWHERE}'\n", ["NOT_SET_ANYWHERE", "is not set"]),
    ("[batchdeps\nmodules = 1\n", ["is not valid TOML"]),
    ("[batchdeps]\nmodules = ['no_such_pkg']\n", ["cannot import task module 'no_such_pkg'"]),
    ("[resources]\nwarehouse = 0\n", ["[resources] warehouse must be an integer from 1 to 10000"]),
]


@pytest.mark.parametrize("text,needles", CONFIG_CASES, ids=[c[1][0] for c in CONFIG_CASES])
def test_bad_config_exits_2(project: Project, text: str, needles: list[str]) -> None:
    project.write("config.toml", text)
    assert_usage_error(project.run("run", "D"), "config.toml", *needles)
    assert project.runs() == []
    assert not (project.root / "out").exists()


def test_unknown_storage_protocol_is_a_definition_error(project: Project) -> None:
    project.write("pipelines/odd.py", """
        import batchdeps as bd

        class Odd(bd.Task):
            def output(self):
                return bd.FileTarget("nosuchproto://bucket/x")
    """)
    assert_usage_error(project.run("run", "Odd"), "unknown storage protocol 'nosuchproto://'")


def test_parameter_named_help_is_a_definition_error(project: Project) -> None:
    project.write("pipelines/helpful.py", """
        import batchdeps as bd

        class Helpful(bd.Task):
            help = bd.Parameter(default="x")
    """)
    assert_usage_error(project.run("run", "Helpful"), "help", "clash with options")


def test_config_path_that_is_a_folder(project: Project) -> None:
    (project.root / "conf.d").mkdir()
    assert_usage_error(project.run("run", "D", "--config", "conf.d"), "is a folder, not a file")
