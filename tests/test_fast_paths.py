"""Fast paths of the per-task work and their slow twins give the same results."""

from __future__ import annotations

import io
from collections.abc import Mapping
import os
import sys
import logging
import time

import pytest

from batchdeps import logs
from batchdeps.cli.common import text_formatter

MOMENT = 1_765_000_000.25  # a fixed clock, so both ways write the same second


def _logger(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(text_formatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream, handler


@pytest.fixture()
def fixed_clock(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: MOMENT)
    monkeypatch.setattr(time, "time_ns", lambda: int(MOMENT * 1e9))
    monkeypatch.setattr(logs, "_time", lambda: MOMENT)


def test_a_log_line_written_directly_is_the_line_logging_writes(fixed_clock):
    logger, stream, handler = _logger("batchdeps.test-fast-lines")
    assert logs._plain_text_handler(logger, logging.INFO) is handler  # the fast path
    logs.emit(logger, logging.INFO, "start %s%s: %s", "T(n=1)", "", "output x missing",
              extra={"event": "task_started"})
    logs.emit(logger, logging.WARNING, "built %s", "T(n=1)")
    logs.emit(logger, logging.INFO, "no arguments, 100% as given")
    logs.emit(logger, logging.DEBUG, "not shown %s", "x")
    fast = stream.getvalue()

    handler.addFilter(lambda record: True)  # a filter: logging's own path
    assert logs._plain_text_handler(logger, logging.INFO) is None
    stream.seek(0)
    stream.truncate()
    logs.emit(logger, logging.INFO, "start %s%s: %s", "T(n=1)", "", "output x missing",
              extra={"event": "task_started"})
    logs.emit(logger, logging.WARNING, "built %s", "T(n=1)")
    logs.emit(logger, logging.INFO, "no arguments, 100% as given")
    logs.emit(logger, logging.DEBUG, "not shown %s", "x")
    slow = stream.getvalue()
    assert fast == slow
    assert fast.count("\n") == 3 and " INFO start T(n=1): output x missing\n" in fast


def test_other_handlers_and_formats_take_loggings_path():
    logger, _, handler = _logger("batchdeps.test-slow-lines")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    assert logs._plain_text_handler(logger, logging.INFO) is None
    handler.setFormatter(text_formatter())
    handler.setLevel(logging.WARNING)
    assert logs._plain_text_handler(logger, logging.INFO) is None
    handler.setLevel(logging.NOTSET)
    logger.addHandler(logging.NullHandler())
    assert logs._plain_text_handler(logger, logging.INFO) is None


# -- task logs: the scratch file kept from attempt to attempt, and "was a log written" ------
TALKING = '''
import os
import sys
import batchdeps as bd


class Talk(bd.Task):
    n = bd.IntParameter()
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(os.path.join(self.root, f"{self.n}.txt"))

    def run(self):
        if self.n % 3 == 0:
            print(f"said {self.n}")
            print(f"warned {self.n}", file=sys.stderr)
        if self.n == 7:
            print("x" * 1_100_000)  # the scratch file passes its size limit
        with self.output().open("w") as out:
            out.write("x")


class Talks(bd.WrapperTask):
    root = bd.Parameter()

    def requires(self):
        return [Talk(n=n, root=self.root) for n in range(12)]
'''


def _task_logs(folder):
    found = {}
    for path in sorted(folder.rglob("*.log")):
        if ".scratch" in path.parts:
            continue
        text = path.read_text()
        header, _, body = text.partition("\n")
        found[path.relative_to(folder).parts[1]] = (header.split(" of run ")[0], body)
    return found


def _check_talk_logs(found):
    assert sorted(found) == sorted(f"n={n},root=data" for n in (0, 3, 6, 7, 9))
    for n in (0, 3, 6, 9):
        header, body = found[f"n={n},root=data"]
        assert header == f"# Talk(n={n}, root=data) attempt 1"
        assert body == f"said {n}\nwarned {n}\n"  # its own words only, once
    assert found["n=7,root=data"][1] == "x" * 1_100_000 + "\n"


def test_task_logs_hold_each_attempts_words_alike_with_fds_kept_or_given_back(project):
    """The command line keeps fds 1 and 2 on one scratch file that grows from attempt to
    attempt (emptied past a size); bd.build gives them back and empties it every time.
    Both ways each attempt's log holds its own output, and only quiet attempts have none."""
    project.write("pipelines/talking.py", TALKING)
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines.talking"]\n')
    done = project.run("run", "Talks", "--root", "data")
    assert done.returncode == 0, done.stderr
    assert "said" not in done.stdout + done.stderr
    _check_talk_logs(_task_logs(project.root / "logs"))

    script = ("import sys; sys.path.insert(0, '.'); import batchdeps as bd; "
              "from pipelines.talking import Talks; "
              "r = bd.build([Talks(root='data2')], log_dir='logs2'); "
              "print(sorted(k for k, v in r.tasks.items() if v.log_path))")
    import subprocess

    built = subprocess.run([sys.executable, "-c", script], cwd=project.root, env=project.env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    found = {k.replace("root=data2", "root=data"): v
             for k, v in _task_logs(project.root / "logs2").items()}
    _check_talk_logs({k: (h.replace("root=data2", "root=data"), b) for k, (h, b) in found.items()})
    assert built.stdout.strip() == str(sorted(
        f"Talk(n={n}, root=data2)" for n in (0, 3, 6, 7, 9)))


def test_a_built_tasks_log_path_is_the_same_whether_the_capture_says_or_the_file_is_looked_at(
        tmp_path, monkeypatch):
    import importlib.util

    import batchdeps as bd
    from batchdeps.run import executors

    source = tmp_path / "talking_fast.py"
    source.write_text(TALKING)
    spec = importlib.util.spec_from_file_location("talking_fast", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def paths(root: str) -> dict[str, bool]:
        result = bd.build([module.Talks(root=str(tmp_path / root))],
                          log_dir=str(tmp_path / f"logs-{root}"))
        assert result.ok
        return {k.replace(root, "R"): bool(v.log_path and os.path.exists(v.log_path))
                for k, v in result.tasks.items()}

    said = paths("said")
    real_execute = executors.execute

    def unknown(*args, **kwargs):
        outcome = real_execute(*args, **kwargs)
        outcome.log_written = None  # as from a worker that could not say
        return outcome

    monkeypatch.setattr(executors, "execute", unknown)
    looked = paths("looked")
    assert said == looked
    assert [k for k, v in said.items() if v] == [
        f"Talk(n={n}, root={tmp_path}/R)" for n in (0, 3, 6, 7, 9)]


# -- structures of requires() / output(): a list of known leaf classes taken as it is ------


def _node_classes():
    import collections.abc

    import batchdeps as bd

    class FastLeaf(bd.Task):
        n = bd.IntParameter()

        def output(self):
            return bd.FileTarget(f"/nonexistent/fast/{self.n}.txt")

    class MappingTask(bd.Task, collections.abc.Mapping):
        """A task that is also a mapping: `_leaves` walks its values, so it is never taken
        as a leaf by the fast path."""

        n = bd.IntParameter()

        def __getitem__(self, key):
            return {"child": FastLeaf(n=self.n)}[key]

        def __iter__(self):
            return iter(["child"])

        def __len__(self):
            return 1

        __hash__ = bd.Task.__hash__
        __eq__ = bd.Task.__eq__

    class Shaped(bd.Task):
        shape = bd.Parameter()

        def requires(self):
            a, b = FastLeaf(n=1), FastLeaf(n=2)
            return {
                "list": [a, b],
                "empty": [],
                "one": a,
                "nested": [a, [b, (a,)], {"x": b}],
                "dict": {"x": a, "y": [b]},
                "generator": (FastLeaf(n=i) for i in range(3)),
                "mapping task": [MappingTask(n=4), a],
                "wrong": [a, "not a task"],
            }[self.shape]

        def output(self):
            if self.shape == "wrong":
                return [bd.FileTarget("/nonexistent/a"), 5]
            if self.shape == "nested":
                return [bd.FileTarget("/nonexistent/a"), {"b": bd.FileTarget("/nonexistent/b")}]
            return [bd.FileTarget(f"/nonexistent/{self.shape}")]

    return FastLeaf, Shaped


SHAPES = ["list", "empty", "one", "nested", "dict", "generator", "mapping task", "wrong"]


def _flattened(shaped):
    from batchdeps.errors import TaskDefinitionError
    from batchdeps.task import flatten_outputs, flatten_requires

    found = []
    for flatten in (flatten_requires, flatten_outputs):
        try:
            found.append([repr(leaf) for leaf in flatten(shaped)])
        except TaskDefinitionError as exc:
            found.append(f"error: {exc}")
    return found


def test_a_list_of_known_leaf_classes_flattens_as_the_walk_does(monkeypatch):
    """flatten_requires/flatten_outputs take a list of leaves of classes met before as it
    is; the same structures flattened with nothing learnt yet (the walk and the check of
    every leaf) give the same leaves and the same errors."""
    from batchdeps import task as task_module

    _, Shaped = _node_classes()
    tasks = [Shaped(shape=shape) for shape in SHAPES]
    monkeypatch.setattr(task_module, "_TASK_LEAVES", set())
    monkeypatch.setattr(task_module, "_TARGET_LEAVES", set())
    slow = []
    for shaped in tasks:
        task_module._TASK_LEAVES.clear()
        task_module._TARGET_LEAVES.clear()
        slow.append(_flattened(shaped))
    for shaped in tasks:  # learn every class first, then flatten again
        _flattened(shaped)
    assert task_module._TASK_LEAVES and task_module._TARGET_LEAVES
    assert not any(issubclass(cls, __import__("collections.abc").abc.Mapping)
                   for cls in task_module._TASK_LEAVES)
    fast = [_flattened(shaped) for shaped in tasks]
    assert fast == slow
    by_shape = dict(zip(SHAPES, slow))
    assert by_shape["list"][0] == ["FastLeaf(n=1)", "FastLeaf(n=2)"]
    assert by_shape["mapping task"][0] == ["FastLeaf(n=4)", "FastLeaf(n=1)"]  # walked
    assert by_shape["wrong"][0].startswith("error: Shaped(shape=wrong): requires() must "
                                           "return tasks, got str")
    assert by_shape["wrong"][1].startswith("error: Shaped(shape=wrong): output() must "
                                           "return targets, got int")


def test_a_flattened_list_is_a_copy_of_what_requires_returned():
    import batchdeps as bd
    from batchdeps.task import flatten_requires

    FastLeaf, _ = _node_classes()
    kept = [FastLeaf(n=1), FastLeaf(n=2)]

    class Holder(bd.Task):
        def requires(self):
            return kept

    flatten_requires(Holder())  # the classes are known from here on
    flat = flatten_requires(Holder())
    assert flat == kept and flat is not kept
    flat.append(FastLeaf(n=3))
    assert len(kept) == 2


# -- task-log folder names: str.translate for ASCII, quote() for the rest -----------------
def test_percent_encoding_of_task_log_folders_is_quotes():
    import random
    from urllib.parse import quote

    from batchdeps.report.tasklogs import percent_encoded, safe_params_component

    rand = random.Random(22)
    alphabet = "abcXYZ019_.-~=,+@ /%()\"'é漢\U0001F600\n\t:;?#&*\x7f\x00"
    texts = ["".join(rand.choice(alphabet) for _ in range(rand.randint(0, 24)))
             for _ in range(3000)] + [chr(code) for code in range(160)]
    for text in texts:
        assert percent_encoded(text) == quote(text, safe="=,+-_@"), text
    assert safe_params_component("T(n=1, root=/srv/x y)") == "n=1,root=%2Fsrv%2Fx%20y"
    assert safe_params_component("T(city=Zürich)") == "city=Z%C3%BCrich"


# -- resolution: one output decided from its answer, several from the list of missing -----
def test_resolution_decides_one_and_several_outputs_as_the_per_task_check(tmp_path):
    """The resolver reads a one-output task's answer directly and lists the missing ones of
    a task with several; both agree with `complete_many` (the batch check of each task) and
    with `Task.complete()` (one target at a time), and the reasons name what is missing."""
    import batchdeps as bd
    from batchdeps.resolver import complete_many, resolve

    class One(bd.Task):
        n = bd.IntParameter()

        def output(self):
            return bd.FileTarget(str(tmp_path / f"one-{self.n}"))

    class Several(bd.Task):
        n = bd.IntParameter()

        def output(self):
            return [bd.FileTarget(str(tmp_path / f"several-{self.n}-{k}")) for k in range(3)]

    class NoOutputs(bd.Task):
        pass

    class Top(bd.WrapperTask):
        def requires(self):
            return [*(One(n=n) for n in range(4)), *(Several(n=n) for n in range(4)),
                    NoOutputs()]

    for n in (1, 3):
        (tmp_path / f"one-{n}").write_text("x")
    for n, present in ((1, range(3)), (2, [0, 2]), (3, [1])):
        for k in present:
            (tmp_path / f"several-{n}-{k}").write_text("x")
    tasks = Top().requires()
    plan = resolve([Top()])
    planned = {step.task for step in plan.steps}
    by_check = dict(zip(tasks, complete_many(tasks)))
    assert {task: task not in planned for task in tasks} == by_check
    assert {task: task.complete() for task in tasks} == by_check
    assert [t.task_id for t in tasks if by_check[t]] == ["One(n=1)", "One(n=3)", "Several(n=1)"]
    reasons = {step.task_id: step.reason for step in plan.steps}
    assert reasons["One(n=0)"] == f"output {tmp_path}/one-0 missing"
    assert reasons["Several(n=0)"].startswith(f"outputs {tmp_path}/several-0-0, ")
    assert reasons["Several(n=0)"].endswith(" and 1 more missing")
    assert reasons["Several(n=2)"] == f"output {tmp_path}/several-2-1 missing"
    assert reasons["Several(n=3)"] == (f"outputs {tmp_path}/several-3-0, "
                                       f"{tmp_path}/several-3-2 missing")
    assert reasons["NoOutputs()"] == "has no outputs"


def test_log_fields_made_by_a_function_only_when_loggings_path_needs_them(fixed_clock):
    """`logs.emit(..., extra=function)`: the direct line never calls it; logging's path
    (here a filter) calls it and the record carries the fields, as a dict would give."""
    logger, stream, handler = _logger("batchdeps.test-lazy-fields")
    calls = []

    def fields():
        calls.append(1)
        return {"event": "task_finished", "task_id": "T(n=1)"}

    logs.emit(logger, logging.INFO, "built %s", "T(n=1)", extra=fields)
    assert calls == []
    seen = []
    handler.addFilter(lambda record: seen.append(record) or True)
    logs.emit(logger, logging.INFO, "built %s", "T(n=1)", extra=fields)
    assert calls == [1]
    assert seen[0].event == "task_finished" and seen[0].task_id == "T(n=1)"
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]


def test_a_files_temporary_folder_is_os_path_split_and_join(monkeypatch):
    """`tmp_place` looks the temporary folder up by the text before the file name; it is
    the folder `os.path.split` and `os.path.join` give, on a first look and from the table."""
    from batchdeps.targets import local
    from batchdeps.targets.staging import TMP_DIR_NAME

    paths = ["/srv/data/x.csv", "data/x.csv", "x.csv", "/x.csv", "//srv//data//x.csv",
             "/srv/data/", "./a/b.txt", "a//b.txt", "/srv/data/y.csv", "data/y.csv"]
    monkeypatch.setattr(local, "_tmp_dirs", {})
    for _ in range(2):  # empty table, then every folder from the table
        for path in paths:
            directory, base = os.path.split(path)
            assert local.tmp_place(path) == (os.path.join(directory, TMP_DIR_NAME), base), path


def test_a_task_logs_path_is_the_one_os_path_join_makes(tmp_path):
    """`TaskLogs.path` joins each family's folder once and formats the rest; for odd
    families and run ids alike it gives what joining every part gives."""
    from batchdeps.report.tasklogs import TaskLogs, safe_params_component

    logs = TaskLogs(str(tmp_path / "logs"))
    families = ["Tree", "reports.Daily", "", "/abs", "a/b", "trailing/", ".hidden"]
    ids = ["Tree(n=1)", "Tree()", "X(path=/a/b, n=2)", "Y(name=" + "é" * 200 + ")", "Bare"]
    for run_id in ["abc123", "", "a/b", "/abs-run", "end/", "x"]:
        logs.run_id = run_id
        for _ in range(2):  # a family's folder made, then taken from the table
            for family in families:
                for task_id in ids:
                    for attempt in (1, 12):
                        slow = os.path.join(logs.log_dir, family, safe_params_component(task_id),
                                            run_id or "run", f"{attempt}.log")
                        assert logs.path(family, task_id, attempt) == slow, (family, run_id)


def test_many_local_outputs_are_checked_as_each_alone(tmp_path):
    """The loop over local targets answers as `_exists` of each: there, missing, missing
    below a file, and a check that cannot decide raises rather than saying missing."""
    from batchdeps.errors import TargetCheckError
    from batchdeps.targets import check_exists
    from batchdeps.targets.local import LocalTarget

    (tmp_path / "there.txt").write_text("x")
    (tmp_path / "file").write_text("x")
    names = ["there.txt", "missing.txt", "file/below.txt", "there.txt"]
    targets = [LocalTarget(str(tmp_path / n)) for n in names]
    assert check_exists(targets) == [t._exists() for t in targets] == [True, False, False, True]
    for target in targets:
        assert check_exists([target]) == [target._exists()]
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # stat() fails with ELOOP: not "missing", a check that cannot decide
    undecided = LocalTarget(str(loop / "x.txt"))
    with pytest.raises(TargetCheckError):
        undecided._exists()
    for batch in ([undecided], [*targets, undecided]):
        with pytest.raises(TargetCheckError):
            check_exists(batch)


def test_a_local_subclass_with_its_own_check_is_asked_for_each_target(tmp_path):
    from batchdeps.targets import check_exists
    from batchdeps.targets.local import LocalTarget

    class Always(LocalTarget):
        __slots__ = ()

        def _exists(self) -> bool:
            return True

    assert check_exists([Always(str(tmp_path / "a")), Always(str(tmp_path / "b"))]) == [True, True]


def test_a_staging_scope_holds_writes_back_and_is_left_as_it_was_entered(tmp_path):
    """The scope (a class now) holds writes closed inside it, is current only inside it,
    nests, and leaves no scope open after an exception."""
    from batchdeps.targets import FileTarget, current_staging, staging_scope

    assert current_staging() is None
    target = FileTarget(str(tmp_path / "out.txt"))
    with staging_scope() as outer:
        assert current_staging() is outer
        with target.open("w") as handle:
            handle.write("x")
        assert not (tmp_path / "out.txt").exists() and len(outer) == 1
        with pytest.raises(RuntimeError), staging_scope(outer) as again:
            assert again is outer and current_staging() is outer
            raise RuntimeError("in run()")
        assert current_staging() is outer
    assert current_staging() is None
    outer.commit([target])
    assert (tmp_path / "out.txt").read_text() == "x"


def test_a_dry_runs_plan_written_in_chunks_is_the_plan_line_by_line(tmp_path, monkeypatch, capsys):
    """The dry run writes its plan a few thousand lines per write; the text is what one
    echo per line of `describe()` writes, for chunks that end on, before and after the end."""
    import click

    import batchdeps as bd
    from batchdeps.cli import run as run_cli
    from batchdeps.resolver import resolve

    class ChunkedLeaf(bd.Task):
        n = bd.IntParameter()

        def output(self):
            return bd.FileTarget(str(tmp_path / f"{self.n}.txt"))

    class ChunkedAll(bd.WrapperTask):
        def requires(self):
            return [ChunkedLeaf(n=n) for n in range(10)]

    plan = resolve([ChunkedAll()])
    for line in plan.describe():
        click.echo(line)
    expected = capsys.readouterr().out
    assert expected.count("\n") == len(plan.steps) == 11
    for per_write in (1, 3, 11, 12, 4096):
        monkeypatch.setattr(run_cli, "PLAN_LINES_PER_WRITE", per_write)
        run_cli._print_plan(plan)
        printed = capsys.readouterr().out
        assert printed.startswith(expected) and printed.count("\n") == 12, per_write
        assert printed[len(expected):].startswith("11 task(s) would run")


def test_task_ids_and_values_of_plain_parameters_are_what_convert_and_render_give():
    """An int given to an IntParameter and a str to a text parameter skip convert() and
    render(); the values and ids are theirs, for awkward values and for every other case
    (None, bool, text given a number, subclasses of the types), which still call them."""
    import warnings

    import batchdeps as bd
    from batchdeps.errors import ParameterError
    from batchdeps.parameters import IntParameter, Parameter, StrParameter
    from batchdeps.task import _render

    class MyInt(IntParameter):
        def render(self, value):
            return f"#{value}"

    class Plain(bd.Task):
        n = bd.IntParameter(default=None)
        text = bd.Parameter(default="x")
        word = bd.StrParameter(default="w")
        mine = MyInt(default=1)
        hidden = bd.IntParameter(default=0, significant=False)

    class Sub(str):
        pass

    cases = [dict(n=1), dict(n=-7, text="a,b"), dict(n=True), dict(text=" pad"),
             dict(text="None"), dict(text='q"uote'), dict(text="(x)=y"), dict(word="é ü"),
             dict(word=Sub("sub")), dict(n=None), dict(mine=5), dict(hidden=3), dict(n="12"),
             dict(text=""), dict(word="ok", text="fine", n=10**30)]
    params = Plain._params
    for kwargs in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                slow = [p.convert("Plain", kwargs[p.name]) if p.name in kwargs
                        else p.convert("Plain", p.default) for p in params]
            except ParameterError as refused:  # refused both ways, in the same words
                with pytest.raises(ParameterError) as raised:
                    Plain(**kwargs)
                assert str(raised.value) == str(refused)
                continue
            task = Plain(**kwargs)
        assert [getattr(task, p.name) for p in params] == slow, kwargs
        assert [type(getattr(task, p.name)) for p in params] == [type(v) for v in slow]
        rendered = ", ".join(f"{p.name}={p.render(v)}" for p, v in zip(params, slow)
                             if p.significant)
        assert task.task_id == f"Plain({rendered})" == f"Plain({_render(params, slow)})", kwargs
    with pytest.warns(Warning):  # a number given to a text parameter is still warned of
        Plain(text=3)
    assert isinstance(Parameter(), Parameter) and isinstance(StrParameter(), Parameter)


def test_a_task_given_every_plain_parameter_by_name_is_the_one_bind_and_render_make():
    """A class whose parameters are all plain ints and texts, given each of them by name
    with a value of the exact type, is set up in one loop (`_direct`); its values and id
    are what `_bind` and `_render` give, and any other call (one left out, an unknown
    name, a bool, a subclass of str, None, positional values) takes their path and ends
    alike, errors included. A text's form in the id is remembered for the next task."""
    import batchdeps as bd
    from batchdeps.errors import ParameterError
    from batchdeps.task import _bind, _plain_kinds, _render

    class Leafy(bd.Task):
        n = bd.IntParameter(default=3)
        root = bd.Parameter()
        note = bd.StrParameter(default="", significant=False)

    class Sub(str):
        pass

    root = "/srv/data"
    cases = [((), dict(n=1, root=root, note="x")), ((), dict(n=-5, root=root, note="")),
             ((), dict(n=10**20, root="a, b=c", note="y")), ((), dict(n=2, root="None", note="")),
             ((), dict(n=2, root=" pad", note="")), ((), dict(n=2, root="", note="")),
             ((), dict(n=2, root="", note="")), ((), dict(n=2, root=root, note="x")),
             ((), dict(root=root)), ((), dict(n=True, root=root, note="")),
             ((), dict(n=1, root=Sub("s"), note="")), ((), dict(n=None, root=root, note="")),
             ((), dict(n=1, root=root, note="", other=2)), ((), dict(n=1, note="", other=2)),
             ((1, root, "x"), {}), ((), dict(n="4", root=root, note=""))]
    params = Leafy._params
    kinds = _plain_kinds(Leafy)
    for args, kwargs in cases:
        try:
            values = _bind(Leafy, params, args, dict(kwargs), kinds)
        except ParameterError as refused:
            with pytest.raises(ParameterError) as raised:
                Leafy(*args, **kwargs)
            assert str(raised.value) == str(refused), kwargs
            continue
        task = Leafy(*args, **kwargs)
        assert [getattr(task, p.name) for p in params] == values, kwargs
        assert [type(getattr(task, p.name)) for p in params] == [type(v) for v in values]
        assert task.task_id == f"Leafy({_render(params, values, kinds)})", kwargs
        assert task.task_id == f"Leafy({_render(params, values)})", kwargs  # render() itself
    assert Leafy(n=1, root=root) == Leafy(n=1, root=root, note="other")


def test_the_written_setter_of_a_class_sets_what_the_loop_sets():
    """`_direct_setter` writes one function per class for `_direct`'s loop; for classes of
    every shape (ints only, texts only, insignificant ones, a namespace, two texts that take
    turns in the remembered form, a parameter whose name cannot be spelt in code) and calls
    that it takes or refuses, the task it makes (values, their types, id) and its answer
    are those of the loop."""
    import batchdeps as bd
    from batchdeps.task import _direct, _kinds_entry

    class Ints(bd.Task):
        a = bd.IntParameter()
        b = bd.IntParameter(significant=False)
        c = bd.IntParameter()

    class Texts(bd.Task):
        task_namespace = "ns"
        x = bd.Parameter()
        y = bd.StrParameter()

    class Mixed(bd.Task):
        n = bd.IntParameter()
        root = bd.Parameter()
        note = bd.StrParameter(significant=False)

    class Odd(bd.Task):
        n = bd.IntParameter()

    setattr(Odd, "not a name", bd.Parameter())
    setattr(Odd, "class", bd.IntParameter())
    Odd.collect_parameters()

    calls = {
        Ints: [dict(a=1, b=2, c=3), dict(a=-1, b=0, c=10**30), dict(a=1, b=2),
               dict(a=1, b=2, c=True), dict(a=1, b=2, d=3), dict(a=1, b=2, c="3")],
        Texts: [dict(x="a", y="b"), dict(x="a, b=c", y=" pad"), dict(x="None", y=""),
                dict(x="p", y="p"), dict(x="p", y="q"), dict(x="a"), dict(x=1, y="b"),
                dict(x="a", y=None)],
        Mixed: [dict(n=1, root="/r", note="x"), dict(n=2, root="/r", note="y"),
                dict(n=3, root="(r)", note=""), dict(n=3, root="/r"),
                dict(n=3.0, root="/r", note="")],
        Odd: [{"n": 1, "not a name": "t", "class": 2}, {"n": 1, "not a name": "t"}],
    }
    for cls, cases in calls.items():
        setter = _kinds_entry(cls)[2]
        direct = tuple((p.name, int if type(p) is bd.IntParameter else str, p.significant)
                       for p in cls._params)
        for kwargs in cases:
            written, looped = object.__new__(cls), object.__new__(cls)
            answer = setter(written, dict(kwargs))
            assert answer == _direct(looped, direct, dict(kwargs)), (cls, kwargs)
            if not answer:
                continue
            for p in cls._params:
                assert getattr(written, p.name) == getattr(looped, p.name), (cls, kwargs)
                assert type(getattr(written, p.name)) is type(getattr(looped, p.name))
            assert written.task_id == looped.task_id == cls(**kwargs).task_id, (cls, kwargs)
    assert Texts(x="a", y="b").task_id == "ns.Texts(x=a, y=b)"
    assert Ints(a=1, b=2, c=3).task_id == "Ints(a=1, c=3)"


def test_requires_walked_the_first_time_gives_the_leaves_of_the_nested_walk():
    from batchdeps.task import _leaves, _walk

    class Leafy:
        pass

    a, b, c = Leafy(), Leafy(), Leafy()
    structs = [[a, None, [b, (c,)], {"k": a}], (a,), [], [None], [[[]]], {1: [b, None]}]
    for struct in structs:
        def nested(value):  # the walk as it was: a generator per value
            if value is None:
                return
            if isinstance(value, dict):
                for v in value.values():
                    yield from nested(v)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    yield from nested(v)
            else:
                yield value
        assert list(_leaves(struct)) == list(nested(struct)) == _walk(struct)



def _routing_tasks(root: str) -> list:
    import batchdeps as bd

    class Good(bd.Task):
        n = bd.IntParameter()
        where = bd.Parameter()

        def output(self):
            return bd.FileTarget(os.path.join(self.where, f"good{self.n}.txt"))

        def run(self):
            print("talking", self.n)  # into its task log
            with self.output().open("w") as handle:
                handle.write("x")

    class Bad(bd.Task):
        where = bd.Parameter()
        retries = 1
        retry_delay = 0.0

        def requires(self):
            return [Good(n=0, where=self.where)]

        def output(self):
            return bd.FileTarget(os.path.join(self.where, "bad.txt"))

        def run(self):
            raise ValueError("no good")

    class After(bd.Task):
        where = bd.Parameter()

        def requires(self):
            return [Bad(where=self.where)]

        def output(self):
            return bd.FileTarget(os.path.join(self.where, "after.txt"))

    return [After(where=root), Good(n=1, where=root)]


def test_listeners_handed_only_the_events_they_name_act_as_when_handed_every_one(tmp_path):
    """The runner hands a listener with `listens_to` only those events (the fast path);
    the same listeners behind a wrapper that hears every event (the slow twin) write the
    same lines, summary, task logs and history."""
    import re
    import sqlite3

    import batchdeps as bd
    from batchdeps.history.listener import HistoryListener
    from batchdeps.locks.local import LocalLockProvider
    from batchdeps.report.events import EVENT_TYPES, RunFinished, TaskStarted, routes
    from batchdeps.report.summary import LogListener, SummaryListener

    class Everything:  # no listens_to: every event
        def __init__(self, inner):
            self.inner = inner

        def on_event(self, event):
            self.inner.on_event(event)

    def one_run(name: str, wrapped: bool) -> tuple[str, str, list, list]:
        logger, stream, _ = _logger("batchdeps")
        summary = io.StringIO()
        inner = [LogListener(), SummaryListener(summary),
                 HistoryListener(str(tmp_path / f"{name}.db"))]
        listeners = [Everything(listener) for listener in inner] if wrapped else inner
        try:
            result = bd.build(_routing_tasks(str(tmp_path / "data")), listeners=listeners,
                              log_dir=str(tmp_path / name / "logs"),
                              locks=LocalLockProvider(str(tmp_path / "locks")))
        finally:
            logger.handlers[:] = []
            logger.propagate = True
        for path in (tmp_path / "data").glob("*.txt"):
            path.unlink()
        assert result.exit_code != 0
        with sqlite3.connect(tmp_path / f"{name}.db") as db:
            rows = db.execute("SELECT kind, task_id, status, attempt, error, reason, "
                              "log != '' FROM history_events ORDER BY rowid").fetchall()
        logs_made = sorted(str(p.relative_to(tmp_path / name)) + ":" + p.read_text().split(
            "\n", 1)[1] for p in (tmp_path / name / "logs").rglob("*.log")
            if ".scratch" not in p.parts)
        def same(text: str) -> str:  # this run's own names and times taken out
            text = text.replace(result.run_id, "RUN").replace(str(tmp_path / name), "ROOT")
            text = re.sub(r"^\S+ \S+ ", "", text, flags=re.M)  # the lines' timestamps
            return re.sub(r"in \d+\.\d+ s", "in N s", text)

        return (same(stream.getvalue()), same(summary.getvalue()), rows,
                [same(made) for made in logs_made])

    fast = one_run("fast", wrapped=False)
    slow = one_run("slow", wrapped=True)
    assert fast == slow
    lines, summary, rows, logs_made = fast
    assert "retry Bad(" in lines and "FAILED Bad(" in lines and "built Good(" in lines
    assert "1 failed" in summary and "2 built" in summary
    assert any(row[0] == "retrying" for row in rows) and len(logs_made) == 4

    route = routes([SummaryListener(), LogListener(), Everything(None)])
    assert [type(listener).__name__ for listener in route[RunFinished]] == [
        "SummaryListener", "Everything"]
    assert [type(listener).__name__ for listener in route[TaskStarted]] == [
        "LogListener", "Everything"]
    assert set(route) == set(EVENT_TYPES)

    class OwnEvents:  # a user's attribute of that name that is not a tuple of types
        listens_to = ["everything"]

        def on_event(self, event):
            pass

    assert all(len(route) == 1 for route in routes([OwnEvents()]).values())


@pytest.mark.parametrize("batch", [3, 2000])
def test_history_rows_of_starts_kept_as_events_are_the_rows_made_at_once(tmp_path, batch):
    """A task's first start waits in the history listener as its event, and its row is made
    when written (or replaced by the finished row); made at once instead (the slow twin),
    the history file holds the same rows. Small batches write starts before their end."""
    import itertools
    import sqlite3

    import batchdeps as bd
    from batchdeps.history.listener import HistoryListener
    from batchdeps.locks.local import LocalLockProvider

    listeners = []
    now = int(time.time())  # (rows older than the retention would be pruned at the end)
    for name, lazy in (("lazy", True), ("at-once", False)):
        listener = HistoryListener(str(tmp_path / f"{name}.db"), batch=batch)
        assert listener.lazy_starts  # a local file: on by default
        listener.lazy_starts = lazy
        ticks = itertools.count(now)
        listener.recorder.clock = lambda ticks=ticks: float(next(ticks))
        listeners.append(listener)
    result = bd.build(_routing_tasks(str(tmp_path / "data")), listeners=listeners,
                      locks=LocalLockProvider(str(tmp_path / "locks")))
    assert result.exit_code != 0

    def rows(name: str) -> list:
        with sqlite3.connect(tmp_path / f"{name}.db") as db:
            return db.execute("SELECT * FROM history_events ORDER BY rowid").fetchall()

    lazy, at_once = rows("lazy"), rows("at-once")
    assert lazy == at_once
    kinds = [row[3] for row in lazy]  # (id, run_id, ts, kind, ...)
    assert {"planned", "attempt failed", "retrying", "finished"} <= set(kinds)
    if batch == 3:
        assert "started" in kinds  # some starts were written before their task ended


# -- local outputs: a folder listed once, or a stat of each ----------------------------------
def _answers(check, targets):
    """What `check` answers for `targets`, or the error it raises, as text."""
    from batchdeps.errors import TargetCheckError

    try:
        return check(targets)
    except TargetCheckError as exc:
        return f"TargetCheckError: {exc}"


def test_a_listed_folder_answers_as_a_stat_of_each_target(tmp_path, monkeypatch):
    """`exists_listed` (one `scandir` per folder that holds many targets) answers as
    `exists_each` (a `stat` of each) for files there and missing, folders, links that
    point somewhere, nowhere or to themselves, a file where a folder should be, a folder
    not there, names a listing never shows (`dir/`, `a/.`), the same file twice, relative
    paths, and a big folder with few of the batch's files; where `stat` cannot decide,
    both raise the same error."""
    import random

    from batchdeps.targets.local import LocalTarget
    from batchdeps.targets.looks import LIST_AT, exists_each, exists_listed

    many = tmp_path / "many"
    many.mkdir()
    for n in range(LIST_AT * 2):
        if n % 3:
            (many / f"{n}.txt").write_text("x")
    (many / "sub").mkdir()
    (many / "link").symlink_to(many / "1.txt")
    (many / "dangling").symlink_to(many / "nowhere")
    (many / "self").symlink_to(many / "self")
    (tmp_path / "file").write_text("x")
    big = tmp_path / "big"
    big.mkdir()
    for n in range(LIST_AT * 40):
        (big / f"{n}.txt").write_text("")
    monkeypatch.chdir(tmp_path)

    fine = ([str(many / f"{n}.txt") for n in range(LIST_AT * 2 + 5)]
            + [str(many / name) for name in ("sub", "link", "dangling", "sub/", ".")]
            + [f"many/{n}.txt" for n in range(LIST_AT + 3)]  # relative, from the folder above
            + [str(tmp_path / "file" / f"{n}.txt") for n in range(LIST_AT)]
            + [str(tmp_path / "gone" / f"{n}.txt") for n in range(LIST_AT)]
            + [str(big / f"{n * 37}.txt") for n in range(LIST_AT)]
            + [str(many / "2.txt"), str(many / "3.txt")]  # the same files again
            + ["file", "nothing-here.txt"])
    rng = random.Random(22)
    for _ in range(5):
        rng.shuffle(fine)
        targets = [LocalTarget(path) for path in fine]
        listed = exists_listed(targets)
        assert listed == exists_each(targets)
        assert listed == [target._exists() for target in targets]
        assert sum(listed) > len(listed) // 3 and not all(listed)
    folders = {}  # and each folder's targets alone (a batch in one folder)
    for path in fine:
        folders.setdefault(path[:path.rfind("/") + 1], []).append(path)
    assert sum(len(paths) >= LIST_AT for paths in folders.values()) >= 5
    for paths in folders.values():
        targets = [LocalTarget(path) for path in paths]
        assert exists_listed(targets) == exists_each(targets), paths
    looped = [LocalTarget(str(many / "self" / f"{n}.txt")) for n in range(LIST_AT + 1)]
    alone = _answers(exists_listed, looped)  # one folder that cannot be looked into
    assert alone.startswith("TargetCheckError: cannot check") and alone == _answers(
        exists_each, looped)
    for broken in (str(many / "self"), str(many / "self" / "x.txt"),
                   *(str(many / "self" / f"{n}.txt") for n in range(LIST_AT))):
        targets = [LocalTarget(path) for path in [*fine, broken]]
        rng.shuffle(targets)
        listed = _answers(exists_listed, targets)
        assert isinstance(listed, str) and listed.startswith("TargetCheckError: cannot check")
        assert listed == _answers(exists_each, targets)


def test_many_local_outputs_are_listed_only_from_many_in_one_folder(tmp_path, monkeypatch):
    """`check_exists` lists a folder only for a batch of many local targets; a subclass
    with its own check is still asked for each target."""
    import os

    from batchdeps.targets import check_exists
    from batchdeps.targets.local import LocalTarget
    from batchdeps.targets.looks import LIST_AT

    for n in range(LIST_AT):
        (tmp_path / f"{n}.txt").write_text("x")
    listings = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listings.append(path) or real_scandir(path))
    few = [LocalTarget(str(tmp_path / f"{n}.txt")) for n in range(LIST_AT - 1)]
    assert check_exists(few) == [True] * len(few) and listings == []
    many = [LocalTarget(str(tmp_path / f"{n}.txt")) for n in range(LIST_AT + 1)]
    assert check_exists(many) == [True] * LIST_AT + [False]
    assert listings == [f"{tmp_path}/"]

    class Never(LocalTarget):
        __slots__ = ()

        def _exists(self) -> bool:
            return False

    listings.clear()
    assert check_exists([Never(str(t.path)) for t in many]) == [False] * len(many)
    assert listings == []


def test_status_tree_written_in_chunks_is_the_tree_line_by_line(tmp_path, monkeypatch, capsys):
    """`status` writes the tree's lines a few thousand per write (`tree_lines`); the text
    is `render.tree()` whatever the chunk, the summary last."""
    import batchdeps as bd
    from batchdeps.cli import common
    from batchdeps.survey import render
    from batchdeps.survey.states import survey

    class TreeLeaf(bd.Task):
        n = bd.IntParameter()

        def output(self):
            return bd.FileTarget(str(tmp_path / f"{self.n}.txt"))

    class TreeTop(bd.WrapperTask):
        def requires(self):
            return [TreeLeaf(n=n) for n in range(10)]

    (tmp_path / "3.txt").write_text("x")
    result = survey([TreeTop()])
    whole = render.tree(result)
    assert whole.count("\n") == 11 and "TreeLeaf(n=3)  [complete]" in whole
    for per_write in (1, 3, 11, 12, 4096):
        common.echo_lines(render.tree_lines(result), per_write)
        assert capsys.readouterr().out == whole + "\n", per_write


def test_a_list_of_leaves_met_for_the_first_time_flattens_as_the_walk_does():
    """`requires()`/`output()` returning a list whose leaf classes are new (the first
    task of a run) is taken in one loop that learns them (`_plain_list`); the leaves, and
    the error for a wrong one, are those of the walk with its check of each leaf."""
    import batchdeps as bd
    from batchdeps.errors import TaskDefinitionError
    from batchdeps.task import _TARGET_LEAVES, _TASK_LEAVES, _walk, flatten_outputs, \
        flatten_requires

    class Part(bd.Task):
        n = bd.IntParameter()

    class Mine(bd.LocalTarget):
        pass

    class Bundle(bd.Task, Mapping):  # a task that is also a mapping: the walk opens it
        def __getitem__(self, key):
            return parts[key]

        def __iter__(self):
            return iter(range(3))

        def __len__(self):
            return 3

    class Several(bd.Task, list):  # and one that is also a list
        pass

    parts = [Part(n=i) for i in range(3)]
    several = Several()
    several.extend(parts[1:])
    shapes = [parts, [parts[0], None, parts[1]], [parts[0], [parts[1], (parts[2],)]],
              [parts[0], {"k": parts[1]}], [], [parts[0], "not a task"], [3, parts[0]],
              [parts[0], Bundle()], [several, parts[0]]]
    for shape in shapes:
        _TASK_LEAVES.difference_update((Part, Bundle, Several))  # met for the first time

        class Wants(bd.Task):
            def requires(self, shape=shape):
                return shape

        expected = [leaf for leaf in _walk(shape) if isinstance(leaf, bd.Task)]
        wrong = [leaf for leaf in _walk(shape) if not isinstance(leaf, bd.Task)]
        if wrong:
            with pytest.raises(TaskDefinitionError, match="requires\\(\\) must return tasks"):
                flatten_requires(Wants())
            continue
        got = flatten_requires(Wants())
        assert got == expected and got is not shape, shape
        assert flatten_requires(Wants()) == expected  # the second time: classes known
    _TARGET_LEAVES.discard(Mine)

    class Makes(bd.Task):
        def output(self):
            return [Mine("a"), Mine("b")]

    assert [t.path for t in flatten_outputs(Makes())] == ["a", "b"]
    assert Mine in _TARGET_LEAVES

    class Bad(bd.Task):
        def output(self):
            return [Mine("a"), Part(n=1)]

    with pytest.raises(TaskDefinitionError, match="output\\(\\) must return targets"):
        flatten_outputs(Bad())


def test_an_init_written_for_a_class_sets_what_task_init_sets():
    """`_write_init` gives a class of plain parameters an `__init__` of its own; for every
    call (taken or refused, errors included) the task is the one `Task.__init__` makes. A
    class's own `__init__` is kept, a subclass with one goes through it, a class whose
    parameters change (`collect_parameters`) gets a new one or, no longer plain, none."""
    import batchdeps as bd
    from batchdeps.errors import ParameterError
    from batchdeps.task import Task

    class Plain(bd.Task):
        n = bd.IntParameter()
        root = bd.Parameter(default="/r")
        note = bd.StrParameter(default="", significant=False)

    class Own(Plain):
        def __init__(self, *args, **kwargs):
            if not args:
                kwargs.setdefault("root", "/own")
            super().__init__(*args, **kwargs)

    class Below(Plain):
        extra = bd.IntParameter(default=7)

    assert "_written_for" in vars(Plain.__init__) and Plain.__init__._written_for is Plain
    assert "__init__" not in vars(Below)  # below a written one: inherits it, the full way
    assert vars(Own)["__init__"].__qualname__.endswith("Own.__init__")

    def full(cls, *args, **kwargs):
        task = object.__new__(cls)
        Task.__init__(task, *args, **kwargs)
        return task

    cases = [((), dict(n=1, root="/a", note="x")), ((), dict(n=1)), ((3, "/b"), {}),
             ((), dict(n=True, root="/a", note="")), ((), dict(n=1, root="a, b", note="")),
             ((), dict(n=1, root=None, note="")), ((), dict(n=1, root="/a", note="", x=1)),
             ((), dict(root="/a", note="", extra=1)), ((), dict(n=1, root="/a", note="", extra=2)),
             ((), dict(n="5", root="/a", note=""))]
    for cls in (Plain, Own, Below):
        for args, kwargs in cases:
            try:
                expected = full(cls, *args, **dict(kwargs))
            except ParameterError as refused:
                with pytest.raises(ParameterError) as raised:
                    cls(*args, **kwargs)
                assert str(raised.value) == str(refused), (cls, kwargs)
                continue
            task = cls(*args, **kwargs)
            if cls is Own and "root" not in kwargs and not args:
                expected = full(cls, *args, **{**kwargs, "root": "/own"})
            assert task.task_id == expected.task_id, (cls, kwargs)
            assert vars(task) == vars(expected), (cls, kwargs)

    class Sized(bd.Task):
        size = bd.IntParameter(default=2)

    class Dated(bd.Task):
        when = bd.DateParameter(default=None)

    @bd.inherits(Sized)  # parameters added after the class was made: a new __init__
    class Grown(bd.Task):
        n = bd.IntParameter()

    assert vars(Grown)["__init__"]._written_for is Grown
    assert Grown(n=1, size=3).task_id == "Grown(size=3, n=1)" == full(Grown, n=1, size=3).task_id
    assert Grown(n=1).task_id == "Grown(size=2, n=1)"

    @bd.inherits(Dated)  # no longer all plain: Task.__init__ itself
    class Mixed(bd.Task):
        n = bd.IntParameter()

    assert "__init__" not in vars(Mixed)
    assert Mixed(n=1).task_id == full(Mixed, n=1).task_id == "Mixed(when=None, n=1)"


def test_a_base_init_put_on_after_a_subclass_was_made_is_called_by_the_subclass():
    """An `__init__` assigned to a task class later (a patch in a test, a decorator) is
    what its subclasses' instances run, as in plain Python: a written `__init__` is only
    put below `Task.__init__` itself, never where it would hide a base's."""
    import batchdeps as bd

    class Base(bd.Task):
        n = bd.IntParameter()

    class Child(Base):
        pass

    class Grandchild(Child):
        pass

    assert "_written_for" in vars(Base.__init__)
    calls = []
    written = Base.__init__

    def counted(self, *args, **kwargs):
        calls.append(type(self).__name__)
        written(self, *args, **kwargs)

    Base.__init__ = counted
    try:
        assert Child(n=1).task_id == "Child(n=1)" and Grandchild(n=2).n == 2
        assert Base(n=3).task_id == "Base(n=3)"
    finally:
        Base.__init__ = written
    assert calls == ["Child", "Grandchild", "Base"]
    assert Grandchild(n=4).task_id == "Grandchild(n=4)"
