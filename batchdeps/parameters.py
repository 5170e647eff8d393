"""Typed task parameters: parsing from strings, normalising values, serialising back.

A parameter never reads the command line or config itself: the CLI and config loader turn
strings into values with `parse()` and pass them to the task's constructor.

Int, Date and DateTime parameters also read an inclusive range `A..B` (`parse_range()`),
which the command line turns into one task per value (a backfill).
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import re
from collections.abc import Sequence
from typing import Any

from .errors import ParameterError

_NO_DEFAULT: Any = object()
_AMBIGUOUS = re.compile(r'[,=()"]')
#: Separates the two ends of an inclusive range: `2026-11-01..2026-11-24`, `1..10`.
RANGE_SEPARATOR = ".."
#: A range that would make more tasks than this is refused (a typo in a year, usually).
MAX_RANGE_VALUES = 100_000


class Parameter:
    """A task parameter holding a string; the base of every other parameter type.

    Options every parameter takes (keyword only), as in Luigi:
    `significant=False`: settable, but not part of the task's identity (its `task_id`, its
    lock key, equality); `positional=False`: only given by name, never positionally;
    `batch_method`: accepted for Luigi's batching and recorded, but each task still runs on
    its own (docs/from-luigi.md#batch_method).
    """

    type_name = "str"

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 significant: bool = True, positional: bool = True,
                 batch_method: Any = None) -> None:
        self.description = description or ""
        self.name = ""  # set by __set_name__
        self._default = default
        self.significant = bool(significant)
        self.positional = bool(positional)
        self.batch_method = batch_method

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    # -- defaults ----------------------------------------------------------------------
    @property
    def has_default(self) -> bool:
        return self._default is not _NO_DEFAULT

    @property
    def default(self) -> Any:
        return self._default

    # -- conversion --------------------------------------------------------------------
    def parse(self, text: str) -> Any:
        """Turn a command-line or config string into a value; ValueError if it is bad."""
        return text

    # -- ranges ------------------------------------------------------------------------
    supports_range = False

    def parse_range(self, text: str) -> list[Any] | None:
        """The values of an inclusive range `A..B`, in order; None when `text` is no range.

        Only Int, Date and DateTime parameters read ranges; for the others `..` is part of
        the value (`--root ../data`). Raises ValueError for a bad end or an empty range.
        """
        if not self.supports_range or RANGE_SEPARATOR not in text:
            return None
        first_text, _, last_text = text.partition(RANGE_SEPARATOR)
        if not first_text.strip() or not last_text.strip():
            raise ValueError(f"a range needs both ends, as in {self._range_example()}")
        first, last = self.parse(first_text), self.parse(last_text)
        if last < first:
            raise ValueError(
                f"the range ends ({self.serialize(last)}) before it starts "
                f"({self.serialize(first)}); write the earlier value first"
            )
        count = self._range_length(first, last)
        if count > MAX_RANGE_VALUES:
            raise ValueError(f"the range holds {count:,} values, more than the "
                             f"{MAX_RANGE_VALUES:,} allowed")
        return [self._range_value(first, index) for index in range(count)]

    def _range_length(self, first: Any, last: Any) -> int:
        raise NotImplementedError

    def _range_value(self, first: Any, index: int) -> Any:
        raise NotImplementedError

    def _range_example(self) -> str:
        return "A..B"

    def normalize(self, value: Any) -> Any:
        """Turn a constructor argument into the canonical value (strings are parsed)."""
        if isinstance(value, str):
            return self.parse(value)
        return self._check(value)

    def _check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
        return value

    def serialize(self, value: Any) -> str:
        """The string that `parse()` turns back into `value`."""
        return str(value)

    def render(self, value: Any) -> str:
        """The value as written in a task id: serialized, quoted where it could be ambiguous.

        Only free text can hold the characters that separate parameters in a task id, so a
        string holding any of `,=()"` or surrounding spaces is JSON-quoted; `None` is `None`.
        """
        if value is None:
            return "None"
        text = self.serialize(value)
        if type(self) is Parameter and (_AMBIGUOUS.search(text) or text != text.strip()):
            return json.dumps(text)
        return text

    def convert(self, task_family: str, value: Any) -> Any:
        """normalize() with the error named for the user; None is allowed if the default is."""
        if value is None and self._default is None:
            return None
        try:
            return self.normalize(value)
        except (ValueError, TypeError) as exc:
            raise ParameterError(
                f"{task_family}: bad value {value!r} for parameter '{self.name}' "
                f"({self.type_name}): {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


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
                 **options: Any) -> None:
        super().__init__(default=default, description=description, **options)

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


class DateParameter(Parameter):
    """A calendar date, written YYYY-MM-DD."""

    type_name = "date"
    supports_range = True

    def _range_length(self, first: _dt.date, last: _dt.date) -> int:
        return (last - first).days + 1

    def _range_value(self, first: _dt.date, index: int) -> _dt.date:
        return first + _dt.timedelta(days=index)

    def _range_example(self) -> str:
        return "2026-11-01..2026-11-24"

    def parse(self, text: str) -> _dt.date:
        try:
            return _dt.date.fromisoformat(text.strip())
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None

    def _check(self, value: Any) -> _dt.date:
        if isinstance(value, _dt.datetime):
            raise ValueError("expected a date, got a datetime")
        if not isinstance(value, _dt.date):
            raise ValueError(f"expected a date, got {type(value).__name__}")
        return value

    def serialize(self, value: Any) -> str:
        return str(value.isoformat())


class DateTimeParameter(Parameter):
    """A date and time, written YYYY-MM-DDTHH:MM[:SS].

    `step` is the spacing of the values of a range `A..B` (default one hour).
    """

    type_name = "datetime"
    supports_range = True

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "",
                 step: _dt.timedelta = _dt.timedelta(hours=1), **options: Any) -> None:
        super().__init__(default=default, description=description, **options)
        if not isinstance(step, _dt.timedelta) or step <= _dt.timedelta(0):
            raise TypeError(f"DateTimeParameter step must be a positive timedelta, got {step!r}")
        self.step = step

    def _range_length(self, first: _dt.datetime, last: _dt.datetime) -> int:
        return (last - first) // self.step + 1

    def _range_value(self, first: _dt.datetime, index: int) -> _dt.datetime:
        return first + self.step * index

    def _range_example(self) -> str:
        return "2026-11-01T00:00..2026-11-01T23:00"

    def parse(self, text: str) -> _dt.datetime:
        try:
            return _dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError("expected a date-time as YYYY-MM-DDTHH:MM:SS") from None

    def _check(self, value: Any) -> _dt.datetime:
        if not isinstance(value, _dt.datetime):
            raise ValueError(f"expected a datetime, got {type(value).__name__}")
        return value

    def serialize(self, value: Any) -> str:
        return str(value.isoformat())


class EnumParameter(Parameter):
    """One member of an `enum.Enum`, given by name."""

    type_name = "enum"

    def __init__(
        self, enum: type[enum.Enum], default: Any = _NO_DEFAULT, description: str | None = "",
        **options: Any,
    ) -> None:
        super().__init__(default=default, description=description, **options)
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


class ListParameter(Parameter):
    """A list of JSON scalars, written as JSON (`["a", "b"]`) or comma-separated (`a,b`).

    Stored as a tuple so that tasks holding it stay hashable.
    """

    type_name = "list"

    def parse(self, text: str) -> tuple[Any, ...]:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                loaded = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list: {exc.msg}") from None
            return self._check(loaded)
        if not stripped:
            return ()
        return tuple(part.strip() for part in stripped.split(","))

    def _check(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        for item in value:
            if item is not None and not isinstance(item, (str, int, float)):
                raise ValueError(
                    "list items must be JSON scalars (string, number, true/false, null), "
                    f"got {type(item).__name__}"
                )
        return tuple(value)

    def serialize(self, value: Sequence[Any]) -> str:
        return json.dumps(list(value), separators=(",", ":"))
