"""Luigi's parameter classes: batchdeps' own types, taking Luigi's extra options too.

batchdeps has every Luigi parameter type natively (batchdeps.parameters), with Luigi's
parsing and, through `luigi_serialize()`, Luigi's strings for task ids. Each class here
is the batchdeps type of the same name, also accepting the constructor options batchdeps
does not need: `visibility` (a private or hidden parameter stays out of Luigi's task id,
as in Luigi), `config_path` (another luigi.cfg section and key to read the default from)
and `is_global`; and numbered as made, since Luigi orders a task's parameters that way.
"""

from __future__ import annotations

import enum
import itertools
import warnings  # noqa: F401 - Luigi's code (and tests) reach luigi.parameter.warnings
from typing import Any

from .. import parameters as _bd
from ..errors import ParameterError

__all__ = [*_bd.PARAMETER_TYPES, "DuplicateParameterException", "FrozenOrderedDict",
           "MissingParameterException", "ParameterException", "ParameterVisibility",
           "UnknownParameterException"]

_made = itertools.count()
FrozenOrderedDict = _bd.FrozenDict
_no_value: Any = _bd.base._NO_DEFAULT  # Luigi's name for "no default"
OptionalParameterTypeWarning = _bd.ParameterTypeWarning


class UnconsumedParameterWarning(Warning):
    """Luigi warns of a config value no parameter takes; batchdeps.luigi does not."""


class ParameterException(ParameterError):
    """A parameter value is wrong (Luigi's base of the three below)."""


class MissingParameterException(ParameterException):
    """A task was made without a value for a parameter that has no default."""


class UnknownParameterException(ParameterException):
    """A task was given a value for a parameter it does not have."""


class DuplicateParameterException(ParameterException):
    """A parameter was given both by position and by name."""


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
    """Takes Luigi's options batchdeps' parameters do not have, and numbers the parameter."""

    def __init__(self, *args: Any, visibility: Any = ParameterVisibility.PUBLIC,
                 config_path: dict[str, str] | None = None, is_global: bool = False,
                 **kwargs: Any) -> None:
        if is_global:
            kwargs["positional"] = False
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
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

    def parse_value(self, task_family: str, text: str) -> Any:
        """A command-line or config string as a value (ParameterError naming the task)."""
        try:
            value = self.parse(text)  # type: ignore[attr-defined]
        except (ValueError, TypeError, KeyError) as exc:
            raise ParameterError(
                f"{task_family}: bad value {text!r} for parameter "
                f"'{self.name}' ({self.type_name}): {exc}") from None  # type: ignore[attr-defined]
        return self.convert(task_family, value)  # type: ignore[attr-defined]


def _luigi_type(name: str) -> type:
    native = getattr(_bd, name)
    return type(name, (_LuigiOptions, native), {
        "__module__": __name__, "__qualname__": name,
        "__doc__": f"Luigi's {name}: batchdeps' {name}, with Luigi's options."})


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
BoolParameter = _luigi_type("BoolParameter")
OptionalBoolParameter = _luigi_type("OptionalBoolParameter")
DateParameter = _luigi_type("DateParameter")
MonthParameter = _luigi_type("MonthParameter")
YearParameter = _luigi_type("YearParameter")
DateTimeParameter = _luigi_type("DateTimeParameter")
DateHourParameter = _luigi_type("DateHourParameter")
DateMinuteParameter = _luigi_type("DateMinuteParameter")
DateSecondParameter = _luigi_type("DateSecondParameter")
DateIntervalParameter = _luigi_type("DateIntervalParameter")
TimeDeltaParameter = _luigi_type("TimeDeltaParameter")
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
OptionalNumericalParameter = _luigi_type("OptionalNumericalParameter")
ChoiceParameter = _luigi_type("ChoiceParameter")
OptionalChoiceParameter = _luigi_type("OptionalChoiceParameter")
ChoiceListParameter = _luigi_type("ChoiceListParameter")
PathParameter = _luigi_type("PathParameter")
OptionalPathParameter = _luigi_type("OptionalPathParameter")
