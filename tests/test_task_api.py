"""The task API beyond requires/output/run, as Luigi users know it: families and namespaces,
the parameter accessors, clone, significant and positional parameters, retry_count,
bd.inherits / bd.requires, settings classes, event handler registration, Luigi's task ids."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import batchdeps as bd
from batchdeps.errors import ConfigError, ParameterError, TaskDefinitionError, UnknownTaskError
from batchdeps.handlers import Event, HandlerRegistry
from batchdeps.namespaces import Namespaces
from batchdeps.registry import TaskRegistry
from test_registry import make_package  # noqa: F401 - the fixture


class Colour(enum.Enum):
    red = 1
    blue = 2


class Plain(bd.Task):
    day = bd.DateParameter()
    n = bd.IntParameter(default=3)
    note = bd.Parameter(default="", significant=False)


class Spaced(bd.Task):
    task_namespace = "reports"
    day = bd.DateParameter()


class SpacedChild(Spaced):
    pass


class Unspaced(Spaced):
    task_namespace = None


bd.namespace("daily", scope=__name__)


class InDaily(bd.Task):
    pass


bd.namespace(scope=__name__)


class AfterReset(bd.Task):
    pass


# -- families and namespaces -------------------------------------------------------------
def test_family_is_the_class_name_without_a_namespace() -> None:
    assert Plain.task_family == Plain.family() == Plain.get_task_family() == "Plain"
    assert Plain(day="2026-11-24").task_id == "Plain(day=2026-11-24, n=3)"


def test_task_namespace_prefixes_the_family_and_task_id_and_is_inherited() -> None:
    assert Spaced.task_family == "reports.Spaced"
    assert SpacedChild.task_family == "reports.SpacedChild"
    assert SpacedChild(day="2026-11-24").task_id == "reports.SpacedChild(day=2026-11-24)"
    assert Unspaced.task_family == "Unspaced"  # set back to none explicitly


def test_namespace_call_covers_classes_defined_after_it_until_reset() -> None:
    assert InDaily.task_family == "daily.InDaily"
    assert AfterReset.task_family == "AfterReset"


def test_longest_scope_wins_and_scopes_end_at_module_boundaries() -> None:
    spaces = Namespaces()
    spaces.set("all")
    spaces.set("pipe", scope="pkg.pipe")
    assert spaces.for_module("pkg.pipe.daily") == "pipe"
    assert spaces.for_module("pkg.pipe") == "pipe"
    assert spaces.for_module("pkg.pipeline") == "all"  # not a submodule of pkg.pipe
    spaces.set(None, scope="pkg.pipe")
    # Ended, the scope covers nothing: the wider namespace applies again, as in Luigi
    # (tests/test_luigi_compat.py compares with Luigi itself).
    assert spaces.for_module("pkg.pipe.daily") == "all"
    spaces.set(None)
    assert spaces.for_module("pkg.pipe.daily") is None


def test_auto_namespace_uses_the_module_name() -> None:
    spaces = Namespaces()
    from batchdeps.namespaces import SAME_AS_MODULE

    spaces.set(SAME_AS_MODULE, scope="pkg")
    assert spaces.for_module("pkg.sub") == "pkg.sub"
    assert spaces.for_module("other") is None


def test_auto_namespace_on_a_real_class(make_package: Callable[..., str]) -> None:
    name = make_package({
        "__init__.py": "",
        "mod.py": "import batchdeps as bd\nbd.auto_namespace(scope=__name__)\n"
                  "class T(bd.Task):\n    pass\n",
    })
    registry = TaskRegistry.from_modules([name])
    assert registry.names() == [f"{name}.mod.T"]
    assert registry.get(f"{name}.mod.T").task_family == f"{name}.mod.T"


# -- registry: families with namespaces, dotted paths -------------------------------------
NAMESPACED = {
    "__init__.py": "",
    "daily.py": '''
import batchdeps as bd

class Report(bd.Task):
    task_namespace = "reports"
    day = bd.Parameter(default="x")

class Report2(bd.Task):
    task_namespace = "reports"
    n = bd.IntParameter(default=0)

class Db(bd.Settings):
    host = bd.Parameter(default="localhost")
    port = bd.IntParameter(default=5432)
''',
}


@pytest.fixture
def namespaced(make_package: Callable[..., str]) -> Iterator[tuple[str, TaskRegistry]]:
    name = make_package(NAMESPACED)
    registry = TaskRegistry.from_modules([name])
    yield name, registry
    registry.apply_defaults({})


def test_a_namespaced_family_is_looked_up_by_its_full_name(
        namespaced: tuple[str, TaskRegistry]) -> None:
    name, registry = namespaced
    assert registry.names() == ["reports.Report", "reports.Report2"]  # settings left out
    assert registry.get("reports.Report").__module__ == f"{name}.daily"
    # the module path still works, and gives the same class
    assert registry.get(f"{name}.daily.Report") is registry.get("reports.Report")


def test_the_bare_class_name_of_a_namespaced_task_suggests_the_family(
        namespaced: tuple[str, TaskRegistry]) -> None:
    _, registry = namespaced
    with pytest.raises(UnknownTaskError, match="Did you mean reports.Report"):
        registry.get("Report")


def test_config_defaults_for_a_namespaced_family_quoted_or_nested(
        namespaced: tuple[str, TaskRegistry]) -> None:
    _, registry = namespaced
    cls = registry.get("reports.Report")
    registry.apply_defaults({"reports.Report": {"day": "quoted"}})
    assert cls().day == "quoted"
    registry.apply_defaults({"reports": {"Report": {"day": "nested"}, "Report2": {"n": 4}}})
    assert cls().day == "nested"
    assert registry.get("reports.Report2")().n == 4
    with pytest.raises(ConfigError, match=r"\[tasks.reports.Nope\] names no known task"):
        registry.apply_defaults({"reports": {"Nope": {"day": "x"}}})


def test_settings_class_reads_its_section_and_cannot_be_run(
        namespaced: tuple[str, TaskRegistry]) -> None:
    _, registry = namespaced
    db = registry.by_name["Db"][0]
    assert db().host == "localhost"
    registry.apply_defaults({"Db": {"host": "db.internal", "port": "6543"}})
    assert (db().host, db().port) == ("db.internal", 6543)
    with pytest.raises(ConfigError, match=r"\[tasks.Db\] user: Db has no parameter 'user'"):
        registry.apply_defaults({"Db": {"user": "x"}})
    with pytest.raises(UnknownTaskError, match="'Db' is a settings class"):
        registry.get("Db")


# -- parameter accessors ----------------------------------------------------------------
def test_get_params_and_names_in_declaration_order() -> None:
    assert [name for name, _ in Plain.get_params()] == ["day", "n", "note"]
    assert all(isinstance(p, bd.Parameter) for _, p in Plain.get_params())
    assert Plain.get_param_names() == ["day", "n"]
    assert Plain.get_param_names(include_significant=True) == ["day", "n", "note"]


def test_get_param_values_binds_positional_keyword_and_defaults() -> None:
    values = Plain.get_param_values(Plain.get_params(), ["2026-11-24"], {"note": "hi"})
    assert values == [("day", dt.date(2026, 11, 24)), ("n", 3), ("note", "hi")]
    with pytest.raises(ParameterError, match="missing value for parameter 'day'"):
        Plain.get_param_values(Plain.get_params(), [], {})
    with pytest.raises(ParameterError, match="unknown parameter"):
        Plain.get_param_values(Plain.get_params(), [], {"day": "2026-11-24", "x": 1})
    with pytest.raises(ParameterError, match="given twice"):
        Plain.get_param_values(Plain.get_params(), ["2026-11-24"], {"day": "2026-11-24"})


def test_param_kwargs_holds_every_value_the_insignificant_too() -> None:
    task = Plain(day="2026-11-24", note="why")
    assert task.param_kwargs == {"day": dt.date(2026, 11, 24), "n": 3, "note": "why"}


def test_str_params_round_trip_and_only_significant() -> None:
    task = Plain(day="2026-11-24", n=5, note="why")
    assert task.to_str_params() == {"day": "2026-11-24", "n": "5", "note": "why"}
    assert task.to_str_params(only_significant=True) == {"day": "2026-11-24", "n": "5"}
    again = Plain.from_str_params(task.to_str_params())
    assert again == task and again.note == "why"
    assert Plain.from_str_params({"day": "2026-11-24", "not_a_param": "x"}).n == 3
    with pytest.raises(ParameterError, match=r"Plain: bad value 'soon' for parameter 'day'"):
        Plain.from_str_params({"day": "soon"})


def test_str_params_of_a_none_value_round_trip() -> None:
    class Maybe(bd.Task):
        day = bd.DateParameter(default=None)

    assert Maybe().to_str_params() == {"day": "None"}
    assert Maybe.from_str_params({"day": "None"}).day is None
    assert Maybe.from_str_params({"day": "2026-11-24"}).day == dt.date(2026, 11, 24)


def test_clone_copies_shared_parameters_and_takes_overrides() -> None:
    task = Plain(day="2026-11-24", n=5, note="why")
    assert task.clone() == task
    assert task.clone(n=6) == Plain(day="2026-11-24", n=6)
    other = task.clone(Spaced, unrelated=1)  # keys Spaced has no parameter for: left out
    assert other == Spaced(day="2026-11-24")


# -- significant and positional ----------------------------------------------------------
def test_insignificant_parameter_is_settable_but_not_identity() -> None:
    first, second = Plain(day="2026-11-24", note="a"), Plain(day="2026-11-24", note="b")
    assert first == second and hash(first) == hash(second)
    assert first.task_id == second.task_id == "Plain(day=2026-11-24, n=3)"
    assert (first.note, second.note) == ("a", "b")


class KeywordOnly(bd.Task):
    a = bd.Parameter()
    secret = bd.Parameter(default="s", positional=False)
    b = bd.IntParameter(default=0)


def test_positional_false_parameter_is_skipped_by_positional_arguments() -> None:
    task = KeywordOnly("x", 2)
    assert (task.a, task.secret, task.b) == ("x", "s", 2)
    assert KeywordOnly("x", secret="t").secret == "t"
    with pytest.raises(ParameterError, match=r"takes 2 parameter\(s\) positionally, 3 given"):
        KeywordOnly("x", "y", 3)


def test_batch_method_is_accepted_and_recorded() -> None:
    class Batched(bd.Task):
        n = bd.IntParameter(batch_method=max)

    assert Batched.get_params()[0][1].batch_method is max
    assert Batched(n=2) != Batched(n=3)  # each task stays itself (no batching)


@pytest.mark.parametrize("kind", [bd.BoolParameter, bd.EnumParameter, bd.DateTimeParameter])
def test_every_parameter_type_takes_the_options(kind: type) -> None:
    extra = {"enum": Colour} if kind is bd.EnumParameter else {}
    param = kind(significant=False, positional=False, **extra)
    assert (param.significant, param.positional) == (False, False)


# -- retry_count --------------------------------------------------------------------------
def test_retry_count_is_the_runs_in_all_so_retries_is_one_less() -> None:
    class Five(bd.Task):
        retry_count = 5

    class One(bd.Task):
        retry_count = 1

    class Child(Five):
        pass

    assert (Five.retries, One.retries, Child.retries) == (4, 0, 4)


def test_retry_count_disagreeing_with_retries_or_bad_is_a_definition_error() -> None:
    with pytest.raises(TaskDefinitionError, match="retry_count = 3 means retries = 2"):
        class Both(bd.Task):
            retry_count = 3
            retries = 5
    with pytest.raises(TaskDefinitionError, match="retry_count must be a whole number"):
        class Bad(bd.Task):
            retry_count = "3"


# -- inherits / requires -----------------------------------------------------------------
class Upstream(bd.Task):
    day = bd.DateParameter()
    region = bd.Parameter(default="eu")


class Other(bd.Task):
    size = bd.IntParameter(default=1)


@bd.requires(Upstream)
class Downstream(bd.Task):
    fmt = bd.Parameter(default="csv")


@bd.inherits(Upstream, Other)
class Both(bd.Task):
    region = bd.Parameter(default="us")  # its own wins over the copied one

    def requires(self):
        return self.clone_parents()


@bd.requires(up=Upstream, other=Other)
class Named(bd.Task):
    pass


def test_requires_copies_parameters_ahead_and_requires_the_clone() -> None:
    assert [n for n, _ in Downstream.get_params()] == ["day", "region", "fmt"]
    task = Downstream("2026-11-24", fmt="tsv")  # positional order: the copies first
    assert task.task_id == "Downstream(day=2026-11-24, region=eu, fmt=tsv)"
    assert task.requires() == Upstream(day="2026-11-24", region="eu")
    assert task.clone_parent() == Upstream(day="2026-11-24")


def test_inherits_keeps_the_class_own_parameter_and_clones_all_parents() -> None:
    assert [n for n, _ in Both.get_params()] == ["day", "size", "region"]
    task = Both(day="2026-11-24", size=4)
    assert task.region == "us"
    assert task.requires() == [Upstream(day="2026-11-24", region="us"), Other(size=4)]


def test_requires_with_keywords_gives_a_dict() -> None:
    task = Named(day="2026-11-24")
    assert task.requires() == {"up": Upstream(day="2026-11-24"), "other": Other()}


def test_subclass_of_a_decorated_task_keeps_its_parameters() -> None:
    class Sub(Downstream):
        extra = bd.IntParameter(default=0)

    assert [n for n, _ in Sub.get_params()] == ["day", "region", "fmt", "extra"]
    assert Sub(day="2026-11-24").requires() == Upstream(day="2026-11-24")


def test_inherits_bad_use_is_a_definition_error() -> None:
    with pytest.raises(TaskDefinitionError, match="needs at least one task class"):
        bd.inherits()
    with pytest.raises(TaskDefinitionError, match="either all by position or all by keyword"):
        bd.requires(Upstream, other=Other)
    with pytest.raises(TaskDefinitionError, match="is not a task class"):
        bd.inherits(int)  # type: ignore[arg-type]


# -- event handler registration ----------------------------------------------------------
def test_handlers_fire_for_the_class_and_its_subclasses_only() -> None:
    registry = HandlerRegistry()
    heard: list[tuple[str, str]] = []
    registry.add(Spaced, Event.SUCCESS, lambda task: heard.append(("spaced", task.task_id)))
    registry.add(bd.Task, Event.SUCCESS, lambda task: heard.append(("all", task.task_id)))
    child, plain = SpacedChild(day="2026-11-24"), Plain(day="2026-11-24")
    registry.fire(child, Event.SUCCESS, child)
    registry.fire(plain, Event.SUCCESS, plain)
    registry.fire(plain, Event.FAILURE, plain, RuntimeError("x"))  # none registered
    assert heard == [("spaced", child.task_id), ("all", child.task_id), ("all", plain.task_id)]


def test_a_raising_handler_is_logged_and_the_next_still_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = HandlerRegistry()
    heard: list[str] = []

    def broken(task: bd.Task) -> None:
        raise ValueError("handler broke")

    registry.add(Plain, Event.START, broken)
    registry.add(Plain, Event.START, lambda task: heard.append(task.task_id))
    task = Plain(day="2026-11-24")
    registry.fire(task, Event.START, task)
    assert heard == [task.task_id]
    assert "raised ValueError: handler broke" in caplog.text


def test_event_handler_decorator_registers_and_remove_unregisters() -> None:
    class Local(bd.Task):
        pass

    heard: list[str] = []

    @Local.event_handler(bd.Event.START)
    def started(task: bd.Task) -> None:
        heard.append(task.task_id)

    Local().trigger_event(bd.Event.START, Local())
    Local.remove_event_handler(bd.Event.START, started)
    Local().trigger_event(bd.Event.START, Local())
    assert heard == ["Local()"]
    with pytest.raises(TaskDefinitionError, match="no such event; use one of bd.Event"):
        Local.event_handler("event.core.nope")


def test_an_abstract_method_left_undefined_makes_the_class_abstract() -> None:
    """`@abc.abstractmethod` works on task classes without abc.ABC, as on Luigi's (whose
    metaclass is an ABCMeta): the class cannot be made, a subclass that defines it can."""
    import abc

    class Base(bd.Task):
        n = bd.IntParameter(default=1)

        @property
        @abc.abstractmethod
        def label(self) -> str: ...

        @abc.abstractmethod
        def helper(self) -> str: ...

    class Half(Base):
        def helper(self) -> str:
            return "h"

    class Whole(Half):
        label = "w"

    with pytest.raises(TypeError, match="abstract"):
        Base()
    with pytest.raises(TypeError, match="label"):
        Half()
    assert Whole(n=2).label + Whole(n=2).helper() == "wh"
    assert not getattr(Whole, "__abstractmethods__", frozenset())


def test_events_of_ones_own_are_fired_by_trigger_event_and_core_typos_refused() -> None:
    """As in Luigi, any name is an event a handler can be registered for and a task can
    fire; only a name under `event.core.` that batchdeps does not fire is refused."""
    class Custom(bd.Task):
        pass

    heard: list[tuple[str, ...]] = []

    @Custom.event_handler("foo event")
    def foo(*args: str) -> None:
        heard.append(args)

    Custom().trigger_event("foo event", "a", "b")
    Custom().trigger_event("other event")
    Custom.remove_event_handler("foo event", foo)
    Custom().trigger_event("foo event", "c")
    assert heard == [("a", "b")]
    with pytest.raises(TaskDefinitionError, match="outside event.core"):
        Custom.event_handler("event.core.sucess")
    with pytest.raises(TaskDefinitionError, match="an event is a name"):
        Custom.event_handler(42)  # type: ignore[arg-type]


def test_event_names_are_luigis() -> None:
    luigi_event = pytest.importorskip("luigi.event")
    for name in ("DEPENDENCY_DISCOVERED", "DEPENDENCY_MISSING", "DEPENDENCY_PRESENT",
                 "BROKEN_TASK", "START", "PROGRESS", "FAILURE", "SUCCESS", "PROCESSING_TIME",
                 "TIMEOUT", "PROCESS_FAILURE"):
        assert getattr(bd.Event, name) == getattr(luigi_event.Event, name)


# -- Luigi's task ids ---------------------------------------------------------------------
luigi = pytest.importorskip("luigi")


class LuigiPlain(luigi.Task):
    day = luigi.DateParameter()
    n = luigi.IntParameter(default=3)
    note = luigi.Parameter(default="", significant=False)


class LuigiSpaced(luigi.Task):
    task_namespace = "reports"
    day = luigi.DateParameter()


class LuigiMany(luigi.Task):
    path = luigi.Parameter()
    colour = luigi.EnumParameter(enum=Colour)
    zeta = luigi.IntParameter()
    alpha = luigi.Parameter()


class LuigiNone(luigi.Task):
    pass


class LuigiUnset(luigi.Task):
    day = luigi.DateParameter(default=None)


class Many(bd.Task):
    path = bd.Parameter()
    colour = bd.EnumParameter(Colour)
    zeta = bd.IntParameter()
    alpha = bd.Parameter()


class NoParams(bd.Task):
    pass


class Unset(bd.Task):
    day = bd.DateParameter(default=None)


def _pairs() -> list[tuple[bd.Task, object]]:
    long_path = "s3://bucket/some/very/long/path/with spaces/é/and-dashes.csv"
    return [
        (Plain(day="2026-11-24", note="x"), LuigiPlain(day=dt.date(2026, 11, 24), note="y")),
        (Plain(day="2026-01-02", n=40), LuigiPlain(day=dt.date(2026, 1, 2), n=40)),
        (Spaced(day="2026-11-24"), LuigiSpaced(day=dt.date(2026, 11, 24))),
        (Many(path=long_path, colour=Colour.blue, zeta=7, alpha="a,b=c"),
         LuigiMany(path=long_path, colour=Colour.blue, zeta=7, alpha="a,b=c")),
        (NoParams(), LuigiNone()),
        (Unset(), LuigiUnset()),
    ]


@pytest.mark.parametrize("index", range(6))
def test_luigi_task_id_matches_real_luigi(index: int) -> None:
    ours, theirs = _pairs()[index]
    family = ours.task_family.replace("Plain", "LuigiPlain").replace("Spaced", "LuigiSpaced") \
        .replace("Many", "LuigiMany").replace("NoParams", "LuigiNone") \
        .replace("Unset", "LuigiUnset")
    assert bd.luigi_task_id(family, ours.to_str_params(only_significant=True)) \
        == theirs.task_id  # type: ignore[attr-defined]


class Warehouse(bd.Settings):
    host = bd.Parameter(default="localhost")


class ReadsWarehouse(bd.Task):
    def run(self) -> None:
        ReadsWarehouse.seen = Warehouse().host  # type: ignore[attr-defined]


def test_settings_read_through_bd_build_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[batchdeps]\nmodules = []\n[history]\nenabled = false\n'
        '[tasks.Warehouse]\nhost = "db.internal"\n')
    config = bd.load_config(str(tmp_path / "config.toml"))
    try:
        result = bd.build(ReadsWarehouse(), config=config)
        assert result.ok
        assert ReadsWarehouse.seen == "db.internal"  # type: ignore[attr-defined]
    finally:
        Warehouse._config_defaults = {}
