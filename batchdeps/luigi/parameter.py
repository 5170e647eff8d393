"""Luigi's parameter classes: batchdeps' own types, taking Luigi's extra options too.

batchdeps has every Luigi parameter type natively (batchdeps.parameters), with Luigi's
parsing. Each class here is the batchdeps type of the same name, also accepting the
constructor options batchdeps does not need: `visibility` (a private or hidden parameter
stays out of Luigi's task id, as in Luigi), `config_path` (another luigi.cfg section and
key to read the default from), `is_global` and a BoolParameter's `parsing`; numbered as
made, since Luigi orders a task's parameters that way. Towards code it behaves as Luigi's:
`serialize()` is Luigi's text (and makes the task id), Luigi's warnings are given in its
words, a wrong declaration is a ParameterException and a refused value a ValueError.
"""

from __future__ import annotations

import datetime as _dt
import enum
import importlib.util
import itertools
import warnings  # Luigi's tests patch luigi.parameter.warnings: warn through it
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import parameters as _bd
from ..errors import ParameterError

__all__ = [*_bd.PARAMETER_TYPES, "DuplicateParameterException", "FrozenOrderedDict",
           "MissingParameterException", "OptionalParameterTypeWarning",
           "ParameterDeclarationError", "ParameterException", "ParameterValueError",
           "ParameterVisibility", "UnconsumedParameterWarning", "UnknownParameterException",
           "recursively_freeze", "recursively_unfreeze"]

_made = itertools.count()
FrozenOrderedDict = _bd.FrozenDict
_no_value: Any = _bd.base._NO_DEFAULT  # Luigi's name for "no default"
OptionalParameterTypeWarning = _bd.ParameterTypeWarning
#: Luigi's luigi.freezing (reached as `luigi.freezing`): frozen forms of JSON-like values.
recursively_freeze = _bd.freeze
recursively_unfreeze = _bd.thaw
#: Whether a `schema=` can be checked; without jsonschema Luigi warns and checks nothing,
#: and so does batchdeps.luigi (batchdeps' own parameters refuse the schema instead).
_JSONSCHEMA_ENABLED = importlib.util.find_spec("jsonschema") is not None


class UnconsumedParameterWarning(Warning):
    """A luigi.cfg `[Family]` section has a key that no parameter of the task takes."""


class ParameterException(ParameterError):
    """A parameter value is wrong (Luigi's base of the three below)."""


class MissingParameterException(ParameterException):
    """A task was made without a value for a parameter that has no default."""


class UnknownParameterException(ParameterException):
    """A task was given a value for a parameter it does not have."""


class DuplicateParameterException(ParameterException):
    """A parameter was given both by position and by name."""


class ParameterDeclarationError(ParameterException, TypeError):
    """A parameter declared wrongly (`ChoiceParameter()` without choices): Luigi's
    ParameterException, and the TypeError batchdeps' own parameters raise."""


class ParameterValueError(ParameterException, ValueError):
    """A value that the parameter refuses: batchdeps' ParameterError, naming the task and
    the parameter, and the ValueError Luigi raises for it."""


class ParameterVisibility(enum.IntEnum):
    """Luigi's visibilities: a hidden or private parameter is left out of the task id."""

    PUBLIC = 0
    HIDDEN = 1
    PRIVATE = 2

    @classmethod
    def has_value(cls, value: int) -> bool:
        return any(value == item.value for item in cls)

    def serialize(self) -> int:
        return int(self.value)


class _LuigiOptions:
    """Takes Luigi's options batchdeps' parameters do not have, numbers the parameter, and
    raises and warns as Luigi does."""

    def __init__(self, *args: Any, visibility: Any = ParameterVisibility.PUBLIC,
                 config_path: dict[str, str] | None = None, is_global: bool = False,
                 **kwargs: Any) -> None:
        if is_global:
            warnings.warn("is_global support is removed. Assuming positional=False",
                          DeprecationWarning, stacklevel=2)
            kwargs["positional"] = False
        if kwargs.get("schema") is not None and not _JSONSCHEMA_ENABLED:
            warnings.warn("The 'jsonschema' package is not installed so the parameter can "
                          "not be validated even though a schema is given.")
            kwargs["schema"] = None
        try:
            super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        except TypeError as exc:
            raise ParameterDeclarationError(str(exc)) from None
        self.visibility = (ParameterVisibility(visibility)
                           if ParameterVisibility.has_value(visibility)
                           else ParameterVisibility.PUBLIC)
        self.config_path = config_path
        self.is_global = is_global
        self._counter = next(_made)

    def next_in_enumeration(self, value: Any) -> Any:
        """Luigi's: the value after `value`, where there is one (None: no such order, and
        always for an Optional parameter, as in Luigi)."""
        step = getattr(self, "_range_value", None)
        if value is None or step is None or getattr(self, "nullable", False) \
                or not getattr(self, "supports_range", False):
            return None
        try:
            return step(value, 1)
        except (NotImplementedError, TypeError, ValueError):
            return None

    def convert(self, task_family: str, value: Any) -> Any:
        """batchdeps' conversion of a value given from code; a refused value is a
        ValueError too, as in Luigi."""
        try:
            return super().convert(task_family, value)  # type: ignore[misc]
        except ParameterException:
            raise
        except ParameterError as exc:
            raise ParameterValueError(str(exc)) from None

    def _warn_on_wrong_param_type(self, param_name: str, value: Any) -> None:
        """Luigi's warnings, with its words, for a value it would keep as given although
        it is not of the parameter's type (batchdeps then parses or refuses it). The task
        calls it once it is made, with the value as given."""
        if type(self) is Parameter and not isinstance(value, str):
            warnings.warn(f'Parameter "{param_name}" with value "{value}" is not of type '
                          "string.")
        elif type(self) is TimeDeltaParameter and not isinstance(value, _dt.timedelta):
            warnings.warn(f'Parameter "{param_name}" with value "{value}" is not of type '
                          "timedelta.")
        expected = getattr(self, "expected_type", None)
        if value is None or expected is None or not getattr(self, "nullable", False):
            return
        kinds = expected if isinstance(expected, tuple) else (expected,)
        if isinstance(value, tuple(taken for kind in kinds
                                   for taken in (kind, *_ALSO_TAKEN.get(kind, ())))):
            return
        if isinstance(expected, tuple):
            named = "any type in [" + ", ".join(f'"{kind.__name__}"' for kind in kinds) + "]"
        else:
            named = f'type "{expected.__name__}"'
        warnings.warn(f'{type(self).__name__} "{param_name}" with value "{value}" is not of '
                      f"{named} or None.", OptionalParameterTypeWarning)

    def parse_value(self, task_family: str, text: str) -> Any:
        """A command-line or config string as a value (ParameterError naming the task)."""
        try:
            value = self.parse(text)  # type: ignore[attr-defined]
        except (ValueError, TypeError, KeyError) as exc:
            raise ParameterValueError(
                f"{task_family}: bad value {text!r} for parameter "
                f"'{self.name}' ({self.type_name}): {exc}") from None  # type: ignore[attr-defined]
        return self.convert(task_family, value)

    def _is_batchable(self) -> bool:
        return self.batch_method is not None  # type: ignore[attr-defined]

    def _parse_list(self, texts: Any) -> Any:
        """Luigi's: the strings parsed and combined by `batch_method` (for a batch)."""
        if not self._is_batchable():
            raise NotImplementedError("No batch method found")
        if not texts:
            raise ValueError("Empty parameter list passed to parse_list")
        return self.batch_method(map(self.parse, texts))  # type: ignore[attr-defined]

    def luigi_serialize(self, value: Any) -> str:
        """Luigi's task ids are made of `serialize()`, which is Luigi's form here (and a
        subclass's own `serialize()` where it has one, as in Luigi)."""
        return self.serialize(value)  # type: ignore[attr-defined, no-any-return]


#: Values Luigi's normalize() turns into the parameter's type (a list into a tuple), so
#: that it does not warn of them.
_ALSO_TAKEN: dict[type, tuple[type, ...]] = {tuple: (list,), FrozenOrderedDict: (Mapping,)}
#: The types whose text Luigi writes otherwise than batchdeps (`True`, `[1, 2]`): their
#: serialize() is Luigi's form here.
_LUIGI_TEXT = {"BoolParameter", "OptionalBoolParameter", "ListParameter",
               "OptionalListParameter", "TupleParameter", "OptionalTupleParameter",
               "DictParameter", "OptionalDictParameter"}
#: The types whose parse() gives what Luigi's does: lists as lists, mappings frozen (the
#: task freezes the rest).
_THAWED = {"ListParameter", "OptionalListParameter", "DictParameter",
           "OptionalDictParameter"}
#: Luigi's expected_type of each Optional type (what its warning names).
_EXPECTED = {"OptionalParameter": str, "OptionalStrParameter": str,
             "OptionalIntParameter": int, "OptionalFloatParameter": float,
             "OptionalBoolParameter": bool, "OptionalDictParameter": FrozenOrderedDict,
             "OptionalListParameter": tuple, "OptionalTupleParameter": tuple,
             "OptionalPathParameter": (str, Path)}


class _BoolParsing:
    """Luigi's `parsing=`: IMPLICIT (the default) makes `--name` alone mean true on the
    `luigi` command line; EXPLICIT needs a value (`--name true`)."""

    IMPLICIT_PARSING = "implicit"
    EXPLICIT_PARSING = "explicit"
    parsing = IMPLICIT_PARSING

    def __init__(self, *args: Any, parsing: str | None = None, **kwargs: Any) -> None:
        if parsing is None:  # the class's, when made (Luigi lets code set it class-wide)
            parsing = type(self).parsing
        if parsing not in (self.IMPLICIT_PARSING, self.EXPLICIT_PARSING):
            raise ParameterDeclarationError(
                f"BoolParameter parsing must be BoolParameter.IMPLICIT_PARSING or "
                f"EXPLICIT_PARSING, got {parsing!r}")
        super().__init__(*args, **kwargs)
        self.parsing = parsing

    def convert(self, task_family: str, value: Any) -> Any:
        """None stays None, as Luigi's BoolParameter keeps it (its task id says None)."""
        if value is None:
            return None
        return super().convert(task_family, value)  # type: ignore[misc]


def _date_of_datetime(self: Any, value: Any) -> Any:
    """Luigi takes the date of a datetime given to a DateParameter (batchdeps' own refuses
    it: docs/from-luigi.md, "Parameters")."""
    if isinstance(value, _dt.datetime):
        value = value.date()
    return _bd.DateParameter._check(self, value)


def _duck_timedelta(self: Any, value: Any) -> Any:
    """Luigi keeps any value with `days` and `seconds` for a TimeDeltaParameter (and
    warns); here it becomes the timedelta of those, which gives the same task id."""
    if not isinstance(value, _dt.timedelta) and hasattr(value, "days") \
            and hasattr(value, "seconds"):
        try:
            value = _dt.timedelta(days=value.days, seconds=value.seconds,
                                  microseconds=getattr(value, "microseconds", 0))
        except TypeError:
            pass
    return _bd.TimeDeltaParameter._check(self, value)


def _luigi_shape(value: Any) -> Any:
    """A parsed JSON value as Luigi's parse() gives it: lists as lists, mappings frozen
    (the task freezes the lists)."""
    if isinstance(value, Mapping):
        return FrozenOrderedDict({key: _luigi_shape(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return [_luigi_shape(item) for item in value]
    return value


def _luigi_type(name: str, *mixins: type, **namespace: Any) -> type:
    native = getattr(_bd, name)
    if name in _LUIGI_TEXT:
        namespace["serialize"] = lambda self, value: native.luigi_serialize(self, value)
    if name in _THAWED:
        namespace["parse"] = lambda self, text: _luigi_shape(native.parse(self, text))
    if name in _EXPECTED:
        namespace["expected_type"] = _EXPECTED[name]
    return type(name, (*mixins, _LuigiOptions, native), {
        "__module__": __name__, "__qualname__": name,
        "__doc__": f"Luigi's {name}: batchdeps' {name}, with Luigi's options.", **namespace})


Parameter = _luigi_type("Parameter")
StrParameter = _luigi_type("StrParameter")
OptionalParameter = _luigi_type("OptionalParameter")
OptionalStrParameter = _luigi_type("OptionalStrParameter")
IntParameter = _luigi_type("IntParameter")
OptionalIntParameter = _luigi_type("OptionalIntParameter")
FloatParameter = _luigi_type("FloatParameter")


def _keep_int(self: Any, value: Any) -> Any:
    """Luigi keeps a whole number given to a FloatParameter as it is (`1`, not `1.0`),
    and its task id shows it so: kept here too, so that the id does not change."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _bd.FloatParameter.normalize(self, value)


FloatParameter.normalize = _keep_int  # type: ignore[attr-defined]
OptionalFloatParameter = _luigi_type("OptionalFloatParameter")
BoolParameter = _luigi_type("BoolParameter", _BoolParsing)
OptionalBoolParameter = _luigi_type("OptionalBoolParameter", _BoolParsing)
DateParameter = _luigi_type("DateParameter", _check=_date_of_datetime)
MonthParameter = _luigi_type("MonthParameter")
YearParameter = _luigi_type("YearParameter")
DateTimeParameter = _luigi_type("DateTimeParameter")
DateHourParameter = _luigi_type("DateHourParameter")
DateMinuteParameter = _luigi_type("DateMinuteParameter")
DateSecondParameter = _luigi_type("DateSecondParameter")
DateIntervalParameter = _luigi_type("DateIntervalParameter")
TimeDeltaParameter = _luigi_type("TimeDeltaParameter", _check=_duck_timedelta)
TaskParameter = _luigi_type("TaskParameter")
EnumParameter = _luigi_type("EnumParameter")
EnumListParameter = _luigi_type("EnumListParameter")
DictParameter = _luigi_type("DictParameter")
OptionalDictParameter = _luigi_type("OptionalDictParameter")
ListParameter = _luigi_type("ListParameter")
OptionalListParameter = _luigi_type("OptionalListParameter")
TupleParameter = _luigi_type("TupleParameter")
OptionalTupleParameter = _luigi_type("OptionalTupleParameter")
NumericalParameter = _luigi_type("NumericalParameter")
_var_type = property(lambda self: self.var_type, doc="Luigi's expected_type: var_type")
OptionalNumericalParameter = _luigi_type("OptionalNumericalParameter", expected_type=_var_type)
ChoiceParameter = _luigi_type("ChoiceParameter")
OptionalChoiceParameter = _luigi_type("OptionalChoiceParameter", expected_type=_var_type)
ChoiceListParameter = _luigi_type("ChoiceListParameter")
PathParameter = _luigi_type("PathParameter")
OptionalPathParameter = _luigi_type("OptionalPathParameter")
