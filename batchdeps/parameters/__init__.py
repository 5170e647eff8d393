"""Typed task parameters: parsing from strings, normalising values, serialising back.

    base.py        Parameter, the Optional form, task-id rendering, ranges
    scalars.py     Int, Float, Bool, Enum, Choice, Numerical, Path, TimeDelta
    dates.py       Date, Month, Year, DateTime, DateHour/Minute/Second, DateInterval
    structured.py  List, Tuple, Dict (JSON), ChoiceList, EnumList
    frozen.py      the frozen (hashable) form of JSON-like values
    tasks.py       TaskParameter (a task class by family name)

Ordered parameters (Int, Date, DateTime, Month, ...) also read an inclusive range `A..B`
(`parse_range()`), which the command line turns into one task per value (a backfill).
"""

from __future__ import annotations

from .base import (
    MAX_RANGE_VALUES,
    RANGE_SEPARATOR,
    OptionalMixin,
    OptionalParameter,
    OptionalStrParameter,
    Parameter,
    ParameterTypeWarning,
    StrParameter,
)
from .dates import (
    DateHourParameter,
    DateIntervalParameter,
    DateMinuteParameter,
    DateParameter,
    DateSecondParameter,
    DateTimeParameter,
    MonthParameter,
    YearParameter,
)
from .frozen import FrozenDict, freeze, thaw
from .scalars import (
    BoolParameter,
    ChoiceParameter,
    EnumParameter,
    FloatParameter,
    IntParameter,
    NumericalParameter,
    OptionalBoolParameter,
    OptionalChoiceParameter,
    OptionalFloatParameter,
    OptionalIntParameter,
    OptionalNumericalParameter,
    OptionalPathParameter,
    PathParameter,
    TimeDeltaParameter,
)
from .structured import (
    ChoiceListParameter,
    DictParameter,
    EnumListParameter,
    ListParameter,
    OptionalDictParameter,
    OptionalListParameter,
    OptionalTupleParameter,
    TupleParameter,
)
from .tasks import TaskParameter

#: Every parameter type, by name (what `batchdeps` and `batchdeps.luigi` export). The list
#: lives in the top-level package, which cannot import this one to read it (its names are
#: imported on first use).
from .. import _PARAMETER_TYPES as PARAMETER_TYPES

__all__ = [
    *PARAMETER_TYPES, "MAX_RANGE_VALUES", "RANGE_SEPARATOR", "FrozenDict", "OptionalMixin",
    "ParameterTypeWarning", "freeze", "thaw",
]
