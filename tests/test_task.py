"""Unit tests of batchdeps.task: identity, construction, inheritance, input(), complete()."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import batchdeps as bd
from batchdeps.errors import ParameterError, TaskDefinitionError
from batchdeps.task import flatten_outputs, flatten_requires


class Clean(bd.Task):
    day = bd.DateParameter()
    count = bd.IntParameter(default=3)


class Report(bd.Task):
    day = bd.DateParameter()
    count = bd.IntParameter(default=3)


class Tagged(bd.Task):
    tags = bd.ListParameter(default=[])
    ratio = bd.FloatParameter(default=0.5)
    loud = bd.BoolParameter()
    label = bd.Parameter(default="x")


# -- identity --------------------------------------------------------------------------
def test_same_family_and_values_are_equal_and_hash_alike() -> None:
    a = Clean(day="2026-11-24")
    b = Clean(day=dt.date(2026, 11, 24), count=3)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


def test_different_values_are_not_equal() -> None:
    assert Clean(day="2026-11-24") != Clean(day="2026-11-25")
    assert Clean(day="2026-11-24") != Clean(day="2026-11-24", count=4)


def test_different_families_with_same_values_are_not_equal() -> None:
    a, b = Clean(day="2026-11-24"), Report(day="2026-11-24")
    assert a != b
    assert len({a, b}) == 2


def test_task_is_not_equal_to_its_task_id_string() -> None:
    task = Clean(day="2026-11-24")
    assert task != task.task_id


def test_task_id_format_lists_parameters_in_declaration_order() -> None:
    assert Clean(day="2026-11-24").task_id == "Clean(day=2026-11-24, count=3)"
    assert repr(Clean(day="2026-11-24")) == "Clean(day=2026-11-24, count=3)"


def test_task_id_of_task_without_parameters() -> None:
    class Nothing(bd.Task):
        pass

    assert Nothing().task_id == "Nothing()"


def test_task_id_uses_each_parameters_serialization() -> None:
    task = Tagged(tags=["a", "b"], ratio=1, loud=True, label="hi")
    assert task.task_id == 'Tagged(tags=["a","b"], ratio=1.0, loud=true, label=hi)'


def test_to_str_params_parse_back_to_an_equal_task() -> None:
    task = Tagged(tags=["a", "b"], ratio=0.25, loud=True, label="hi")
    strings = task.to_str_params()
    assert all(isinstance(v, str) for v in strings.values())
    assert Tagged(**strings) == task


def test_task_id_is_stable_across_processes(tmp_path: Path) -> None:
    module = tmp_path / "idmod.py"
    module.write_text(textwrap.dedent("""
        import batchdeps as bd

        class Clean(bd.Task):
            day = bd.DateParameter()
            count = bd.IntParameter(default=3)
            tags = bd.ListParameter(default=["b", "a"])
            ratio = bd.FloatParameter(default=0.1)
    """))
    code = "import idmod; print(idmod.Clean(day='2026-11-24').task_id)"
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True, timeout=60)
        outputs.add(done.stdout.strip())
    assert outputs == {'Clean(day=2026-11-24, count=3, tags=["b","a"], ratio=0.1)'}


# -- construction ----------------------------------------------------------------------
def test_positional_arguments_follow_declaration_order() -> None:
    task = Clean("2026-11-24", 7)
    assert task.day == dt.date(2026, 11, 24)
    assert task.count == 7
    assert task == Clean(day="2026-11-24", count=7)


def test_positional_and_keyword_arguments_mix() -> None:
    assert Clean("2026-11-24", count=5) == Clean(day="2026-11-24", count=5)


def test_param_values_hold_normalised_values() -> None:
    assert Clean(day="2026-11-24").param_values == (dt.date(2026, 11, 24), 3)


def test_missing_parameter_names_task_and_parameter() -> None:
    with pytest.raises(ParameterError, match="^Clean: missing value for parameter 'day'$"):
        Clean()


def test_unknown_parameter_names_task_and_parameter() -> None:
    with pytest.raises(ParameterError, match="^Clean: unknown parameter\\(s\\) colour, size$"):
        Clean(day="2026-11-24", size=1, colour="red")


def test_parameter_given_positionally_and_by_keyword_is_an_error() -> None:
    with pytest.raises(ParameterError, match="^Clean: parameter 'day' given twice$"):
        Clean("2026-11-24", day="2026-11-25")


def test_too_many_positional_arguments_is_an_error() -> None:
    with pytest.raises(ParameterError, match="^Clean: takes 2 parameter\\(s\\), 3 given"):
        Clean("2026-11-24", 1, 2)


def test_bad_value_names_task_parameter_and_type() -> None:
    with pytest.raises(ParameterError, match="Clean: bad value 'soon' for parameter 'day' \\(date\\)"):
        Clean(day="soon")


def test_parameter_errors_are_task_definition_errors_with_exit_code_2() -> None:
    with pytest.raises(TaskDefinitionError) as info:
        Clean()
    assert info.value.exit_code == 2


def test_class_attribute_still_is_the_parameter() -> None:
    Clean(day="2026-11-24", count=9)
    assert isinstance(Clean.count, bd.IntParameter)
    assert Clean(day="2026-11-24").count == 3


# -- inheritance -----------------------------------------------------------------------
class DailyBase(bd.Task):
    day = bd.DateParameter()
    region = bd.Parameter(default="eu")


class DailyChild(DailyBase):
    size = bd.IntParameter(default=1)


class FixedRegion(DailyBase):
    region = "us"


class Redeclared(DailyBase):
    region = bd.Parameter(default="asia")


def test_subclass_inherits_parameters_first() -> None:
    assert [p.name for p in DailyChild.parameters()] == ["day", "region", "size"]
    task = DailyChild(day="2026-11-24")
    assert task.task_id == "DailyChild(day=2026-11-24, region=eu, size=1)"


def test_parameter_overridden_by_constant_is_no_longer_a_parameter() -> None:
    assert [p.name for p in FixedRegion.parameters()] == ["day"]
    task = FixedRegion(day="2026-11-24")
    assert task.region == "us"
    assert task.task_id == "FixedRegion(day=2026-11-24)"
    with pytest.raises(ParameterError, match="FixedRegion: unknown parameter\\(s\\) region"):
        FixedRegion(day="2026-11-24", region="eu")


def test_constant_override_stays_removed_in_grandchildren() -> None:
    class Grand(FixedRegion):
        extra = bd.IntParameter(default=0)

    assert [p.name for p in Grand.parameters()] == ["day", "extra"]
    assert Grand(day="2026-11-24").region == "us"


def test_redeclared_parameter_keeps_position_and_takes_new_default() -> None:
    assert [p.name for p in Redeclared.parameters()] == ["day", "region"]
    assert Redeclared(day="2026-11-24").region == "asia"


def test_base_class_unchanged_by_subclasses() -> None:
    assert [p.name for p in DailyBase.parameters()] == ["day", "region"]
    assert DailyBase(day="2026-11-24").region == "eu"


def test_parameters_from_a_mixin_are_collected() -> None:
    class DayMixin:
        day = bd.DateParameter()

    class Mixed(DayMixin, bd.Task):
        n = bd.IntParameter(default=0)

    assert Mixed(day="2026-11-24").task_id == "Mixed(day=2026-11-24, n=0)"


# -- input() and structures ------------------------------------------------------------
class Leaf(bd.Task):
    name = bd.Parameter()

    def output(self) -> Any:
        return bd.FileTarget(f"out/{self.name}.txt")


class Needs(bd.Task):
    """requires() returns whatever `shape` names."""

    shape = bd.Parameter()

    def requires(self) -> Any:
        return {
            "none": None,
            "task": Leaf(name="a"),
            "list": [Leaf(name="a"), Leaf(name="b")],
            "tuple": (Leaf(name="a"), Leaf(name="b")),
            "dict": {"x": Leaf(name="a"), "y": [Leaf(name="b")]},
            "empty": [],
        }[self.shape]


def urls(struct: Any) -> Any:
    if isinstance(struct, dict):
        return {k: urls(v) for k, v in struct.items()}
    if isinstance(struct, (list, tuple)):
        return type(struct)(urls(v) for v in struct)
    return struct if struct is None else struct.url


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("none", None),
        ("task", "out/a.txt"),
        ("list", ["out/a.txt", "out/b.txt"]),
        ("tuple", ("out/a.txt", "out/b.txt")),
        ("dict", {"x": "out/a.txt", "y": ["out/b.txt"]}),
        ("empty", []),
    ],
)
def test_input_keeps_the_shape_of_requires(shape: str, expected: Any) -> None:
    result = Needs(shape=shape).input()
    assert urls(result) == expected  # a list never equals a tuple, so the type is checked too
    if shape == "task":
        assert isinstance(result, bd.Target)


@pytest.mark.parametrize(("shape", "count"), [("none", 0), ("task", 1), ("list", 2),
                                              ("tuple", 2), ("dict", 2), ("empty", 0)])
def test_flatten_requires_lists_every_task(shape: str, count: int) -> None:
    flat = flatten_requires(Needs(shape=shape))
    assert len(flat) == count
    assert all(isinstance(t, Leaf) for t in flat)


def test_flatten_outputs_of_dict_and_single_target() -> None:
    class Many(bd.Task):
        def output(self) -> Any:
            return {"a": bd.FileTarget("a"), "b": (bd.FileTarget("b"), bd.FileTarget("c"))}

    assert [t.url for t in flatten_outputs(Many())] == ["a", "b", "c"]
    assert [t.url for t in flatten_outputs(Leaf(name="z"))] == ["out/z.txt"]


def test_requires_returning_a_non_task_names_the_task() -> None:
    class Wrong(bd.Task):
        day = bd.DateParameter(default="2026-11-24")

        def requires(self) -> Any:
            return [Leaf(name="a"), "Leaf"]

    with pytest.raises(TaskDefinitionError,
                       match=r"^Wrong\(day=2026-11-24\): requires\(\) must return tasks, got str 'Leaf'"):
        flatten_requires(Wrong())


def test_requires_returning_a_task_class_names_the_task() -> None:
    class ClassNotInstance(bd.Task):
        def requires(self) -> Any:
            return Leaf

    with pytest.raises(TaskDefinitionError, match=r"ClassNotInstance\(\): requires\(\) must return tasks"):
        flatten_requires(ClassNotInstance())


def test_requires_that_raises_names_the_task_and_error() -> None:
    class Broken(bd.Task):
        def requires(self) -> Any:
            raise KeyError("region")

    with pytest.raises(TaskDefinitionError, match=r"^Broken\(\): requires\(\) raised KeyError: 'region'"):
        flatten_requires(Broken())


def test_output_returning_a_path_string_names_the_task() -> None:
    class PathOnly(bd.Task):
        def output(self) -> Any:
            return "data/x.csv"

    with pytest.raises(TaskDefinitionError,
                       match=r"^PathOnly\(\): output\(\) must return targets, got str 'data/x.csv'"):
        flatten_outputs(PathOnly())


def test_output_that_raises_names_the_task_and_error() -> None:
    class Broken(bd.Task):
        n = bd.IntParameter(default=1)

        def output(self) -> Any:
            return bd.FileTarget(f"{1 / 0}")

    with pytest.raises(TaskDefinitionError,
                       match=r"^Broken\(n=1\): output\(\) raised ZeroDivisionError"):
        flatten_outputs(Broken())


# -- complete() ------------------------------------------------------------------------
class Made(bd.Task):
    path = bd.Parameter()

    def output(self) -> Any:
        return [bd.FileTarget(self.path), bd.FileTarget(self.path + ".meta")]


class Outside(bd.ExternalTask):
    path = bd.Parameter()

    def output(self) -> Any:
        return bd.FileTarget(self.path)


class Group(bd.WrapperTask):
    paths = bd.ListParameter()

    def requires(self) -> Any:
        return [Outside(path=p) for p in self.paths]


def test_task_is_complete_only_when_every_output_exists(tmp_path: Path) -> None:
    task = Made(path=str(tmp_path / "x"))
    assert not task.complete()
    (tmp_path / "x").write_text("1")
    assert not task.complete()
    (tmp_path / "x.meta").write_text("1")
    assert task.complete()


def test_task_without_outputs_is_never_complete() -> None:
    class NoOutputs(bd.Task):
        def run(self) -> None:
            pass

    assert NoOutputs().complete() is False


def test_external_task_complete_when_its_output_exists(tmp_path: Path) -> None:
    task = Outside(path=str(tmp_path / "raw.csv"))
    assert not task.complete()
    (tmp_path / "raw.csv").write_text("raw")
    assert task.complete()


def test_wrapper_task_complete_when_all_requirements_are(tmp_path: Path) -> None:
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    task = Group(paths=paths)
    assert not task.complete()
    Path(paths[0]).write_text("a")
    assert not task.complete()
    Path(paths[1]).write_text("b")
    assert task.complete()


def test_wrapper_task_without_requirements_is_complete() -> None:
    assert Group(paths=[]).complete() is True


def test_wrapper_task_and_task_run_do_nothing_by_default_as_in_luigi() -> None:
    # A Task that keeps the default run() fails at the fence ("output ... does not
    # exist"): tests/test_task_api_e2e.py runs it.
    assert Group(paths=[]).run() is None
    assert Made(path="p").run() is None


# -- task ids stay unambiguous; optional parameters ------------------------------------
class Pair(bd.Task):
    a = bd.Parameter()
    b = bd.Parameter()


def test_task_id_quotes_free_text_that_could_be_read_two_ways() -> None:
    one = Pair(a="1, b=2", b="3")
    two = Pair(a="1", b="2, b=3")
    assert one != two and one.task_id != two.task_id
    assert one.task_id == 'Pair(a="1, b=2", b=3)'
    assert Pair(a="plain", b="x-y_z/1.csv").task_id == "Pair(a=plain, b=x-y_z/1.csv)"


class Optional(bd.Task):
    label = bd.Parameter(default=None)
    flag = bd.BoolParameter(default=None)


def test_parameter_with_default_none_is_optional() -> None:
    task = Optional()
    assert task.label is None and task.flag is None
    assert task.task_id == "Optional(label=None, flag=None)"
    assert Optional(label="x").label == "x"


class Gen(bd.Task):
    """requires() written with `yield`, as many Luigi pipelines do."""

    def requires(self):
        yield Pair(a="1", b="2")
        yield Pair(a="3", b="4")


def test_generator_requires_is_accepted_and_input_is_a_list() -> None:
    from batchdeps.task import flatten_requires

    task = Gen()
    assert flatten_requires(task) == [Pair(a="1", b="2"), Pair(a="3", b="4")]
    assert task.input() == [[], []]


# -- input() keeps mapping and named-tuple types -----------------------------------------
class FrozenMap(Mapping):  # type: ignore[type-arg]
    """A read-only Mapping that is not a dict."""

    def __init__(self, items: Any) -> None:
        self._items = dict(items)

    def __getitem__(self, key: Any) -> Any:
        return self._items[key]

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class LeftRight(NamedTuple):
    left: Any
    right: Any


class MyDict(dict):  # type: ignore[type-arg]
    pass


def _shaped(kind: str) -> Any:
    a, b = Leaf(name="a"), Leaf(name="b")
    if kind == "ordered":
        return OrderedDict([("y", b), ("x", a)])
    if kind == "default":
        made: defaultdict[str, Any] = defaultdict(list)
        made["x"] = a
        made["y"] = [b]
        return made
    if kind == "frozen":
        return FrozenMap({"x": a, "y": b})
    if kind == "subclass":
        return MyDict(x=a, y=b)
    return LeftRight(a, b)


class NeedsShaped(bd.Task):
    kind = bd.Parameter()

    def requires(self) -> Any:
        return _shaped(self.kind)


@pytest.mark.parametrize("kind", ["ordered", "default", "frozen", "subclass", "pair"])
def test_input_keeps_mapping_and_named_tuple_types(kind: str) -> None:
    task = NeedsShaped(kind=kind)
    result = task.input()
    assert type(result) is type(task.requires())
    if kind == "pair":
        assert (result.left.url, result.right.url) == ("out/a.txt", "out/b.txt")
        return
    assert list(result) == list(task.requires())  # same keys, same order
    assert result["x"].url == "out/a.txt"
    if kind == "default":
        assert [t.url for t in result["y"]] == ["out/b.txt"]
        assert result.default_factory is list
    else:
        assert result["y"].url == "out/b.txt"
    assert len(flatten_requires(task)) == 2


# -- requires() that fails while it is walked --------------------------------------------
def test_requires_generator_that_raises_is_a_definition_error() -> None:
    class Gen(bd.Task):
        def requires(self) -> Any:
            yield Leaf(name="a")
            raise ValueError("no partition list")

    with pytest.raises(TaskDefinitionError,
                       match=r"^Gen\(\): requires\(\) raised ValueError: no partition list"):
        flatten_requires(Gen())


def test_requires_generator_that_raises_exits_2_naming_the_task(project: Any) -> None:
    project.write("pipelines/gen.py", """
        import batchdeps as bd

        class Part(bd.Task):
            i = bd.IntParameter()
            def output(self):
                return bd.FileTarget(f"out/part-{self.i}.txt")

        class Parts(bd.WrapperTask):
            def requires(self):
                yield Part(i=1)
                raise LookupError("partition list unreadable")
        """)
    result = project.run("run", "Parts")
    assert result.returncode == 2, result.stderr
    assert "Parts(): requires() raised LookupError: partition list unreadable" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.files() == []
