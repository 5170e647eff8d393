"""Single-value parameters: numbers, booleans, closed sets of values, paths, durations."""

from __future__ import annotations

import datetime as _dt
import enum
import operator
import re
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .base import _NO_DEFAULT, QUOTED_TEXT, OptionalMixin, Parameter


class IntParameter(Parameter):
    """An integer."""

    type_name = "int"
    supports_range = True

    def parse(self, text: str) -> int:
        return int(text.strip())

    def _range_length(self, first: int, last: int) -> int:
        return last - first + 1

    def _range_value(self, first: int, index: int) -> int:
        return first + index

    def _range_example(self) -> str:
        return "1..10"

    def _check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__}")
        return value


class FloatParameter(Parameter):
    """A floating-point number."""

    type_name = "float"

    def parse(self, text: str) -> float:
        return float(text.strip())

    def _check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        return float(value)


class BoolParameter(Parameter):
    """A boolean; on the command line a flag (`--name` / `--no-name`)."""

    type_name = "bool"
    _TRUE = {"1", "true", "yes", "on"}
    _FALSE = {"0", "false", "no", "off"}

    def __init__(self, default: Any = False, description: str | None = "",
                 **kwargs: Any) -> None:
        super().__init__(default, description, **kwargs)

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in self._TRUE:
            return True
        if lowered in self._FALSE:
            return False
        raise ValueError("expected true or false")

    def _check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {type(value).__name__}")
        return value

    def serialize(self, value: Any) -> str:
        return "true" if value else "false"

    def luigi_serialize(self, value: Any) -> str:
        return str(bool(value))


class EnumParameter(Parameter):
    """One member of an `enum.Enum`, given by name."""

    type_name = "enum"

    def __init__(self, enum: type[enum.Enum] | None = None, default: Any = _NO_DEFAULT,
                 description: str | None = "", **kwargs: Any) -> None:
        if enum is None:
            raise TypeError("EnumParameter needs enum=, the Enum class of its values")
        super().__init__(default, description, **kwargs)
        self.enum = enum
        self.type_name = "{" + "|".join(m.name for m in enum) + "}"

    def parse(self, text: str) -> enum.Enum:
        try:
            return self.enum[text.strip()]
        except KeyError:
            choices = ", ".join(m.name for m in self.enum)
            raise ValueError(f"expected one of {choices}") from None

    def normalize(self, value: Any) -> Any:
        # A member of a `str`-mixin enum is itself a str: take it as a member, not a name.
        if isinstance(value, self.enum):
            return value
        return super().normalize(value)

    def _check(self, value: Any) -> enum.Enum:
        if not isinstance(value, self.enum):
            raise ValueError(f"expected a member of {self.enum.__name__}")
        return value

    def serialize(self, value: Any) -> str:
        return str(value.name)

    def completions(self) -> list[str]:
        return [member.name for member in self.enum]


class ChoiceParameter(Parameter):
    """One of a fixed set of values of one type: `ChoiceParameter(choices=["a", "b"])`.

    `var_type` (default str) turns the command-line text into a value before it is
    looked up (`var_type=float` with `choices=[0.1, 0.2]`).
    """

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 choices: Iterable[Any] | None = None, var_type: type = str,
                 **kwargs: Any) -> None:
        if choices is None:
            raise TypeError(f"{type(self).__name__} needs choices=, the values it allows")
        self.choices = tuple(dict.fromkeys(choices))
        if not self.choices:
            raise TypeError(f"{type(self).__name__} needs at least one choice")
        wrong = [c for c in self.choices if type(c) is not var_type]
        if wrong:
            raise TypeError(f"{type(self).__name__}: choice {wrong[0]!r} is not a "
                            f"{var_type.__name__} (var_type)")
        self.var_type = var_type
        super().__init__(default, description, **kwargs)
        self.type_name = "{" + "|".join(str(c) for c in self.choices) + "}"

    def _choice(self, value: Any) -> Any:
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def parse(self, text: str) -> Any:
        try:
            value = self.var_type(text.strip())
        except (TypeError, ValueError):
            raise ValueError(f"{text!r} is not one of "
                             f"{', '.join(map(str, self.choices))}") from None
        return self._choice(value)

    def _check(self, value: Any) -> Any:
        return self._choice(value)

    def completions(self) -> list[str]:
        return [self.serialize(c) for c in self.choices]


def _bound(op: Callable[[Any, Any], bool], inclusive: str, exclusive: str) -> str:
    if op is operator.le:
        return inclusive
    if op is operator.lt:
        return exclusive
    raise TypeError("left_op and right_op must be operator.le or operator.lt")


class NumericalParameter(Parameter):
    """A number of `var_type` (int or float) within bounds, `min_value <= x < max_value`
    by default; `left_op` / `right_op` (`operator.le` or `operator.lt`) choose whether
    each bound is included. Checked for values from code too, not only from text.
    """

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 var_type: type | None = None, min_value: Any = None, max_value: Any = None,
                 left_op: Callable[[Any, Any], bool] = operator.le,
                 right_op: Callable[[Any, Any], bool] = operator.lt, **kwargs: Any) -> None:
        for what, given in (("var_type", var_type), ("min_value", min_value),
                            ("max_value", max_value)):
            if given is None:
                raise TypeError(f"{type(self).__name__} needs {what}=")
        if var_type not in (int, float):
            raise TypeError(f"{type(self).__name__}: var_type must be int or float")
        self.var_type: type = var_type  # type: ignore[assignment]
        self.min_value = min_value
        self.max_value = max_value
        self.left_op = left_op
        self.right_op = right_op
        self.permitted = (f"{var_type.__name__} in {_bound(left_op, '[', '(')}{min_value}, "
                          f"{max_value}{_bound(right_op, ']', ')')}")
        self.type_name = self.permitted
        self.supports_range = var_type is int
        super().__init__(default, description, **kwargs)

    def _in_bounds(self, value: Any) -> Any:
        if not (self.left_op(self.min_value, value) and self.right_op(value, self.max_value)):
            raise ValueError(f"{value} is outside {self.permitted}")
        return value

    def parse(self, text: str) -> Any:
        return self._in_bounds(self.var_type(text.strip()))

    def _check(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        if self.var_type is int and not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return self._in_bounds(self.var_type(value))

    def _range_length(self, first: int, last: int) -> int:
        return last - first + 1

    def _range_value(self, first: int, index: int) -> int:
        return first + index


class PathParameter(Parameter):
    """A filesystem path, as a `pathlib.Path`.

    Args:
        absolute: make a relative path absolute (against the current directory).
        exists: refuse a path that does not exist when the task is made.
    """

    type_name = "path"

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 absolute: bool = False, exists: bool = False, **kwargs: Any) -> None:
        super().__init__(default, description, **kwargs)
        self.absolute = absolute
        self.exists = exists

    def parse(self, text: str) -> Path:
        return self._check(Path(text))

    def _check(self, value: Any) -> Path:
        if not isinstance(value, (str, Path)):
            raise ValueError(f"expected a path, got {type(value).__name__}")
        path = Path(value)
        if self.absolute:
            path = path.absolute()
        if self.exists and not path.exists():
            raise ValueError(f"The path {path} does not exist")  # Luigi's words
        return path


_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W|(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?)")
_WORDS_DURATION = re.compile(
    r"(?:(?P<weeks>\d+) ?w(?:eek)?s? ?)?(?:(?P<days>\d+) ?d(?:ay)?s? ?)?"
    r"(?:(?P<hours>\d+) ?h(?:our)?s? ?)?(?:(?P<minutes>\d+) ?m(?:inute)?s? ?)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?) ?s(?:econd)?s?)?")


def _seconds(text: str) -> _dt.timedelta:
    """A number of seconds (`90`, `1.5`, `-2`), to the microsecond."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{text!r} is not a finite number of seconds")
    micro = (amount * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    try:
        return _dt.timedelta(microseconds=int(micro))
    except OverflowError:
        raise ValueError(f"{text} seconds is too long a duration") from None


class TimeDeltaParameter(Parameter):
    """A duration, as a `datetime.timedelta`, written in any of Luigi's forms:

    * a bare number of seconds: `90`, `1.5`;
    * `N unit` from longest to shortest, units w[eek[s]], d[ay[s]], h[our[s]],
      m[inute[s]], s[econd[s]]: `1 week 2 days`, `3h`, `2 hours 30 minutes`;
    * ISO 8601 `PnDTnHnMnS` (each part optional) or `PnW`: `P1DT12H`, `P2W`.

    Written back as `W w D d H h M m S s` (`0 w 1 d 12 h 0 m 0 s`), as Luigi writes it;
    a duration below zero is written as its number of seconds (`-90`), which Luigi's
    own form cannot hold, and seconds keep their fraction (`... 0 m 1.5 s`).
    """

    type_name = "duration"

    def parse(self, text: str) -> _dt.timedelta:
        stripped = text.strip()
        try:
            return _seconds(stripped)
        except ValueError:
            pass
        for form in (_ISO_DURATION, _WORDS_DURATION):
            match = form.fullmatch(stripped)
            if match is not None and any(v is not None for v in match.groupdict().values()):
                parts = {unit: float(value) for unit, value in match.groupdict().items()
                         if value is not None}
                try:
                    return _dt.timedelta(**parts)
                except OverflowError:
                    raise ValueError(f"{stripped!r} is too long a duration") from None
        raise ValueError("expected a duration: seconds (90), words (1 week 2 days, 3h, "
                         "2 hours 30 minutes) or ISO 8601 (P1DT12H, P2W)")

    def _check(self, value: Any) -> _dt.timedelta:
        if isinstance(value, _dt.timedelta):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _seconds(repr(value))  # a number from the config: seconds
        raise ValueError(f"expected a timedelta, got {type(value).__name__}")

    def serialize(self, value: _dt.timedelta) -> str:
        if value < _dt.timedelta(0):
            size = -value
            whole, micro = size.days * 86400 + size.seconds, size.microseconds
            return f"-{whole}" + (f".{micro:06d}".rstrip("0") if micro else "")
        seconds = f"{value.seconds % 60}"
        if value.microseconds:
            seconds += f".{value.microseconds:06d}".rstrip("0")
        return (f"{value.days // 7} w {value.days % 7} d {value.seconds // 3600} h "
                f"{value.seconds % 3600 // 60} m {seconds} s")


class OptionalIntParameter(OptionalMixin, IntParameter):
    """An integer or None (the default); an empty string is None."""


class OptionalFloatParameter(OptionalMixin, FloatParameter):
    """A number or None (the default); an empty string is None."""


class OptionalBoolParameter(OptionalMixin, BoolParameter):
    """True, False or None (the default); an empty string is None."""


class OptionalPathParameter(OptionalMixin, PathParameter):
    """A path or None (the default); an empty string is None."""


class OptionalNumericalParameter(OptionalMixin, NumericalParameter):
    """A bounded number or None; required unless a default is given (as Luigi's)."""

    def __init__(self, default: Any = _NO_DEFAULT, *args: Any, **kwargs: Any) -> None:
        super().__init__(default, *args, **kwargs)


class OptionalChoiceParameter(OptionalMixin, ChoiceParameter):
    """One of the choices or None; required unless a default is given (as Luigi's)."""

    def __init__(self, default: Any = _NO_DEFAULT, *args: Any, **kwargs: Any) -> None:
        super().__init__(default, *args, **kwargs)


QUOTED_TEXT.update({PathParameter, OptionalPathParameter})
