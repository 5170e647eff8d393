"""Luigi's parameter classes under Luigi's names, with Luigi's parsing and serialising.

Each class is a batchdeps `Parameter`, so a task of `batchdeps.luigi` also runs through
`batchdeps run`; what differs from batchdeps' own parameters is Luigi's: a value given to
the constructor is kept as given (an IntParameter given "3" holds "3", as in Luigi), and
`serialize()` writes Luigi's strings ("True", `[1, 2]` with a space), which the task id is
made from, so that ids and paths built from them do not change on switching.
"""

from __future__ import annotations

import datetime as _dt
import enum
import itertools
import json
import operator
from ast import literal_eval
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import parameters as _bd
from ..errors import ParameterError

_NO_VALUE: Any = _bd._NO_DEFAULT
_counter = itertools.count()


class ParameterException(ParameterError):
    """A parameter value is wrong (Luigi's base of the three below)."""


class MissingParameterException(ParameterException):
    """A task was made without a value for a parameter that has no default."""


class UnknownParameterException(ParameterException):
    """A task was given a value for a parameter it does not have."""


class DuplicateParameterException(ParameterException):
    """A parameter was given both by position and by name."""


class ParameterVisibility(enum.IntEnum):
    """Luigi's visibilities: a private parameter is left out of the task id and repr."""

    PUBLIC = 0
    HIDDEN = 1
    PRIVATE = 2

    @classmethod
    def has_value(cls, value: int) -> bool:
        return any(value == item.value for item in cls)

    def serialize(self) -> int:
        return int(self.value)


class Parameter(_bd.Parameter):
    """Luigi's `Parameter`: any value, serialized with `str()`.

    Keyword arguments are Luigi's. `significant=False` leaves the parameter out of the task
    id (two tasks differing only there are one task); `positional=False` refuses it by
    position; `config_path` names another config section/key to read the default from.
    """

    type_name = "str"

    def __init__(self, default: Any = _NO_VALUE, is_global: bool = False,
                 significant: bool = True, description: str | None = None,
                 config_path: dict[str, str] | None = None, positional: bool = True,
                 always_in_help: bool = False, batch_method: Any = None,
                 visibility: ParameterVisibility = ParameterVisibility.PUBLIC) -> None:
        super().__init__(default=default, description=description or "",
                         significant=significant, positional=positional and not is_global,
                         batch_method=batch_method)
        self.is_global = is_global
        self.config_path = config_path
        self.always_in_help = always_in_help
        self.visibility = visibility if ParameterVisibility.has_value(visibility) \
            else ParameterVisibility.PUBLIC
        self._counter = next(_counter)  # Luigi orders a task's parameters by creation

    # -- Luigi's three conversions ---------------------------------------------------------
    def parse(self, x: str) -> Any:
        return x

    def serialize(self, x: Any) -> str:
        return str(x)

    def normalize(self, x: Any) -> Any:
        return x

    def _check(self, value: Any) -> Any:
        return value

    def convert(self, task_family: str, value: Any) -> Any:
        """As batchdeps' convert, but a string is parsed only where Luigi parses it."""
        if value is None and self._default is None:
            return None
        try:
            return self.normalize(value)
        except (ValueError, TypeError, KeyError) as exc:
            raise ParameterError(
                f"{task_family}: bad value {value!r} for parameter '{self.name}' "
                f"({self.type_name}): {exc}") from None

    def parse_value(self, task_family: str, text: str) -> Any:
        """A command-line or config string as a value (ParameterError naming the task)."""
        try:
            return self.normalize(self.parse(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise ParameterError(
                f"{task_family}: bad value {text!r} for parameter '{self.name}' "
                f"({self.type_name}): {exc}") from None

    def render(self, value: Any) -> str:
        return self.serialize(value)

    def next_in_enumeration(self, value: Any) -> Any:
        return None

    def has_task_value(self, task_name: str, param_name: str) -> bool:
        return self.has_default

    def task_value(self, task_name: str, param_name: str) -> Any:
        if not self.has_default:
            raise MissingParameterException(f"No default specified for {task_name}.{param_name}")
        return self.normalize(self._default)

    def _parser_kwargs(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


class StrParameter(Parameter):
    """A string (Luigi's StrParameter)."""


class _Optional:
    """Luigi's Optional* variants: None is allowed, serialized as the empty string."""

    expected_type: Any = str

    def serialize(self, x: Any) -> str:
        if x is None:
            return ""
        return super().serialize(x)  # type: ignore[misc]

    def parse(self, x: str) -> Any:
        if not isinstance(x, str):
            return x
        if x == "":
            return None
        return super().parse(x)  # type: ignore[misc]

    def normalize(self, x: Any) -> Any:
        if x is None:
            return None
        return super().normalize(x)  # type: ignore[misc]


class OptionalParameter(_Optional, Parameter):
    """A string or None."""


class OptionalStrParameter(_Optional, StrParameter):
    """A string or None."""


class IntParameter(Parameter):
    """An integer; a value given to the constructor is kept as given (Luigi's)."""

    type_name = "int"
    supports_range = True

    def parse(self, x: str) -> int:
        return int(x)

    def next_in_enumeration(self, value: Any) -> Any:
        return value + 1

    def _range_length(self, first: int, last: int) -> int:
        return last - first + 1

    def _range_value(self, first: int, index: int) -> int:
        return first + index


class OptionalIntParameter(_Optional, IntParameter):
    """An integer or None."""


class FloatParameter(Parameter):
    """A floating-point number."""

    type_name = "float"

    def parse(self, x: str) -> float:
        return float(x)


class OptionalFloatParameter(_Optional, FloatParameter):
    """A number or None."""


class BoolParameter(Parameter):
    """A boolean, False unless a default says otherwise; `--name` on the command line."""

    type_name = "bool"
    IMPLICIT_PARSING = "implicit"
    EXPLICIT_PARSING = "explicit"
    _VALUES = {"true": True, "false": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.parsing = kwargs.pop("parsing", self.IMPLICIT_PARSING)
        super().__init__(*args, **kwargs)
        if not self.has_default:
            self._default = False

    def parse(self, x: Any) -> bool:
        if isinstance(x, bool):
            return x
        try:
            return self._VALUES[str(x).lower()]
        except KeyError:
            raise ValueError("expected true or false") from None

    def normalize(self, x: Any) -> Any:
        try:
            return self.parse(x)
        except ValueError:
            return x  # Luigi keeps what it cannot read as a bool


class OptionalBoolParameter(_Optional, BoolParameter):
    """A boolean or None."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._default is False and not args and "default" not in kwargs:
            self._default = None


class _DateBase(Parameter):
    """Dates and times written with a strftime format, optionally snapped to an interval."""

    date_format = "%Y-%m-%d"
    type_name = "date"

    def __init__(self, interval: int = 1, start: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interval = interval
        self.start = start if start is not None else self._default_start()

    def _default_start(self) -> Any:
        return _dt.datetime(1970, 1, 1)

    def parse(self, s: str) -> Any:
        return _dt.datetime.strptime(s, self.date_format)

    def serialize(self, dt: Any) -> str:
        if dt is None:
            return str(dt)
        return str(dt.strftime(self.date_format))


class DateParameter(_DateBase):
    """A date, YYYY-MM-DD; a datetime given is cut to its date."""

    supports_range = True

    def _default_start(self) -> Any:
        return _dt.date(1970, 1, 1)

    def parse(self, s: str) -> _dt.date:
        return _dt.datetime.strptime(s, self.date_format).date()

    def normalize(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = self.parse(value)
        if isinstance(value, _dt.datetime):
            value = value.date()
        if not isinstance(value, _dt.date):
            return value
        delta = (value - self.start).days % self.interval
        return value - _dt.timedelta(days=delta)

    def next_in_enumeration(self, value: Any) -> Any:
        return value + _dt.timedelta(days=self.interval)

    def _range_length(self, first: Any, last: Any) -> int:
        return (last - first).days + 1

    def _range_value(self, first: Any, index: int) -> Any:
        return first + _dt.timedelta(days=index)


class MonthParameter(DateParameter):
    """A month, YYYY-MM (the date of its first day)."""

    date_format = "%Y-%m"
    supports_range = False

    def normalize(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = self.parse(value)
        if isinstance(value, _dt.datetime):
            value = value.date()
        months = (value.year - self.start.year) * 12 + value.month - self.start.month
        months -= months % self.interval
        year, month = divmod(self.start.month - 1 + months, 12)
        return _dt.date(self.start.year + year, month + 1, 1)

    def next_in_enumeration(self, value: Any) -> Any:
        months = value.month - 1 + self.interval
        return _dt.date(value.year + months // 12, months % 12 + 1, 1)


class YearParameter(DateParameter):
    """A year, YYYY (the date of its first day)."""

    date_format = "%Y"
    supports_range = False

    def normalize(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = self.parse(value)
        year = value.year - (value.year - self.start.year) % self.interval
        return _dt.date(year, 1, 1)

    def next_in_enumeration(self, value: Any) -> Any:
        return _dt.date(value.year + self.interval, 1, 1)


class _DateTimeBase(_DateBase):
    type_name = "datetime"
    _step = _dt.timedelta(hours=1)

    def normalize(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = self.parse(value)
        if not isinstance(value, _dt.datetime):
            return value
        value = value.replace(microsecond=0)
        if self.interval > 1:
            delta = (value - self.start) % (self._step * self.interval)
            value -= delta
        return value

    def next_in_enumeration(self, value: Any) -> Any:
        return value + self._step * self.interval


class DateHourParameter(_DateTimeBase):
    """An hour, YYYY-MM-DDTHH."""

    date_format = "%Y-%m-%dT%H"

    def normalize(self, value: Any) -> Any:
        value = super().normalize(value)
        return value.replace(minute=0, second=0) if isinstance(value, _dt.datetime) else value


class DateMinuteParameter(_DateTimeBase):
    """A minute, YYYY-MM-DDTHHMM (YYYY-MM-DDTHHhMM read too)."""

    date_format = "%Y-%m-%dT%H%M"
    _step = _dt.timedelta(minutes=1)

    def parse(self, s: str) -> Any:
        try:
            return super().parse(s)
        except ValueError:
            return _dt.datetime.strptime(s, "%Y-%m-%dT%Hh%M")

    def normalize(self, value: Any) -> Any:
        value = super().normalize(value)
        return value.replace(second=0) if isinstance(value, _dt.datetime) else value


class DateSecondParameter(_DateTimeBase):
    """A second, YYYY-MM-DDTHHMMSS."""

    date_format = "%Y-%m-%dT%H%M%S"
    _step = _dt.timedelta(seconds=1)


class DateIntervalParameter(Parameter):
    """A span of dates: 2026-11-01-2026-11-05, 2026-W47, 2026-11, 2026 or 2026-11-24."""

    type_name = "date interval"

    def parse(self, s: str) -> Any:
        from .date_interval import parse_interval

        return parse_interval(s)


class TimeDeltaParameter(Parameter):
    """A timedelta: ISO 8601 (P1DT2H), "1 w 2 d 3 h" or a number of seconds."""

    type_name = "timedelta"
    _UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

    def parse(self, input: str) -> _dt.timedelta:
        import re

        text = input.strip()
        iso = re.fullmatch(
            r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?"
            r"(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?", text)
        if iso and text != "P":
            return _dt.timedelta(**{k: int(v) for k, v in iso.groupdict().items() if v})
        simple = re.fullmatch(
            r"\s*(?:(?P<weeks>\d+)\s*w(?:eeks?)?)?\s*(?:(?P<days>\d+)\s*d(?:ays?)?)?\s*"
            r"(?:(?P<hours>\d+)\s*h(?:ours?)?)?\s*(?:(?P<minutes>\d+)\s*m(?:inutes?)?)?\s*"
            r"(?:(?P<seconds>\d+)\s*s(?:econds?)?)?\s*", text)
        if simple and any(simple.groupdict().values()):
            return _dt.timedelta(**{k: int(v) for k, v in simple.groupdict().items() if v})
        try:
            return _dt.timedelta(seconds=float(text))
        except ValueError:
            raise ValueError(f"invalid time delta {input!r}") from None

    def serialize(self, x: Any) -> str:
        weeks, days = divmod(x.days, 7)
        hours, rest = divmod(x.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{weeks} w {days} d {hours} h {minutes} m {seconds} s"

    def normalize(self, x: Any) -> Any:
        if isinstance(x, str):
            return self.parse(x)
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return _dt.timedelta(seconds=x)
        return x


class TaskParameter(Parameter):
    """A task class, given by its family name."""

    type_name = "task"

    def parse(self, input: str) -> Any:
        from .task_register import Register

        return Register.get_task_cls(input)

    def serialize(self, cls: Any) -> str:
        return str(cls.get_task_family())


class EnumParameter(Parameter):
    """One member of `enum=`, by name."""

    type_name = "enum"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "enum" not in kwargs:
            raise ParameterException("An enum class must be specified.")
        self._enum = kwargs.pop("enum")
        super().__init__(*args, **kwargs)
        self.type_name = "{" + "|".join(m.name for m in self._enum) + "}"

    @property
    def enum(self) -> Any:
        return self._enum

    def parse(self, s: str) -> Any:
        try:
            return self._enum[s]
        except KeyError:
            choices = ", ".join(m.name for m in self._enum)
            raise ValueError(f"expected one of {choices}") from None

    def serialize(self, e: Any) -> str:
        return str(e.name)


class EnumListParameter(EnumParameter):
    """Members of `enum=`, comma-separated names."""

    def parse(self, s: str) -> tuple[Any, ...]:
        return tuple(super(EnumListParameter, self).parse(part) for part in s.split(",") if part)

    def serialize(self, enum_values: Any) -> str:
        return ",".join(e.name for e in enum_values)


class FrozenOrderedDict(Mapping[Any, Any]):
    """An immutable, hashable mapping that keeps its order (what Luigi's DictParameter holds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict = dict(*args, **kwargs)
        self.__hash: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self.__dict[key]

    def __iter__(self) -> Any:
        return iter(self.__dict)

    def __len__(self) -> int:
        return len(self.__dict)

    def __repr__(self) -> str:
        return f"<FrozenOrderedDict {self.__dict!r}>"

    def __hash__(self) -> int:
        if self.__hash is None:
            self.__hash = hash(tuple(self.__dict.items()))
        return self.__hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def get_wrapped(self) -> dict[Any, Any]:
        return self.__dict


def recursively_freeze(value: Any) -> Any:
    """Lists become tuples and dicts FrozenOrderedDicts, all the way down."""
    if isinstance(value, Mapping):
        return FrozenOrderedDict((k, recursively_freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(recursively_freeze(v) for v in value)
    return value


def recursively_unfreeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: recursively_unfreeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [recursively_unfreeze(v) for v in value]
    return value


class _JsonEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, FrozenOrderedDict):
            return o.get_wrapped()
        return json.JSONEncoder.default(self, o)


class DictParameter(Parameter):
    """A JSON object; held frozen, so tasks stay hashable."""

    type_name = "dict"

    def normalize(self, value: Any) -> Any:
        if isinstance(value, str):
            value = self.parse(value)
        return recursively_freeze(value)

    def parse(self, source: str) -> Any:
        if isinstance(source, Mapping):
            return source
        return json.loads(source, object_pairs_hook=FrozenOrderedDict)

    def serialize(self, x: Any) -> str:
        return json.dumps(x, cls=_JsonEncoder)


class OptionalDictParameter(_Optional, DictParameter):
    """A JSON object or None."""


class ListParameter(Parameter):
    """A JSON list (nested values allowed); held as a tuple of tuples."""

    type_name = "list"

    def normalize(self, x: Any) -> Any:
        if isinstance(x, str):
            x = self.parse(x)
        return recursively_freeze(x)

    def parse(self, x: str) -> Any:
        if isinstance(x, (list, tuple)):
            return x
        return list(json.loads(x, object_pairs_hook=FrozenOrderedDict))

    def serialize(self, x: Any) -> str:
        return json.dumps(x, cls=_JsonEncoder)


class OptionalListParameter(_Optional, ListParameter):
    """A JSON list or None."""


class TupleParameter(ListParameter):
    """A tuple of tuples, as JSON (`[[1, 2], [3, 4]]`) or a Python literal."""

    type_name = "tuple"

    def parse(self, x: str) -> Any:
        if isinstance(x, tuple):
            return x
        try:
            return tuple(tuple(item) if isinstance(item, list) else item
                         for item in json.loads(x, object_pairs_hook=FrozenOrderedDict))
        except (ValueError, TypeError):
            return literal_eval(x)


class OptionalTupleParameter(_Optional, TupleParameter):
    """A tuple or None."""


class NumericalParameter(Parameter):
    """A number of `var_type` within `min_value` (inclusive) and `max_value` (exclusive)."""

    type_name = "number"

    def __init__(self, left_op: Any = operator.le, right_op: Any = operator.lt,
                 *args: Any, **kwargs: Any) -> None:
        for key in ("var_type", "min_value", "max_value"):
            if key not in kwargs:
                raise ParameterException(f"{key} must be specified")
        self._var_type = kwargs.pop("var_type")
        self._min_value = kwargs.pop("min_value")
        self._max_value = kwargs.pop("max_value")
        self._left_op, self._right_op = left_op, right_op
        super().__init__(*args, **kwargs)

    def parse(self, s: str) -> Any:
        value = self._var_type(s)
        if self._left_op(self._min_value, value) and self._right_op(value, self._max_value):
            return value
        raise ValueError(f"{s} is not in the range [{self._min_value}, {self._max_value})")

    def normalize(self, x: Any) -> Any:
        if x is None:
            return None
        return self.parse(x)


class OptionalNumericalParameter(_Optional, NumericalParameter):
    """A number in range, or None."""


class ChoiceParameter(Parameter):
    """One of `choices`, converted with `var_type` (str by default)."""

    type_name = "choice"

    def __init__(self, var_type: Any = str, *args: Any, **kwargs: Any) -> None:
        if "choices" not in kwargs:
            raise ParameterException("A choices iterable must be specified")
        self._choices = set(kwargs.pop("choices"))
        self._var_type = var_type
        super().__init__(*args, **kwargs)
        self.type_name = "{" + "|".join(sorted(map(str, self._choices))) + "}"

    def parse(self, s: str) -> Any:
        return self.normalize(self._var_type(s))

    def normalize(self, var: Any) -> Any:
        if var in self._choices:
            return var
        raise ValueError(f"{var} is not a valid choice from {sorted(map(str, self._choices))}")


class OptionalChoiceParameter(_Optional, ChoiceParameter):
    """One of `choices`, or None."""


class ChoiceListParameter(ChoiceParameter):
    """Several of `choices`, comma-separated."""

    def parse(self, s: str) -> Any:
        return self.normalize(tuple(self._var_type(x.strip()) for x in s.split(",") if x))

    def normalize(self, var: Any) -> Any:
        values = tuple(var)
        bad = [v for v in values if v not in self._choices]
        if bad:
            raise ValueError(f"{bad} are not valid choices from {sorted(map(str, self._choices))}")
        return values

    def serialize(self, x: Any) -> str:
        return ",".join(str(v) for v in x)


class PathParameter(Parameter):
    """A `pathlib.Path`; `absolute=True` makes it absolute, `exists=True` checks it."""

    type_name = "path"

    def __init__(self, *args: Any, absolute: bool = False, exists: bool = False,
                 **kwargs: Any) -> None:
        self.absolute = absolute
        self.exists = exists
        super().__init__(*args, **kwargs)

    def normalize(self, x: Any) -> Any:
        path = Path(x)
        if self.absolute:
            path = path.absolute()
        if self.exists and not path.exists():
            raise ValueError(f"the path {path} does not exist")
        return path


class OptionalPathParameter(_Optional, PathParameter):
    """A path or None."""
