"""The Parameter base: defaults, parsing, ranges, task-id rendering, the Optional form.

A parameter never reads the command line or config itself: the CLI and config loader turn
strings into values with `parse()` and pass them to the task's constructor.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ParameterError

_NO_DEFAULT: Any = object()
_AMBIGUOUS = re.compile(r'[,=()"]')
#: Separates the two ends of an inclusive range: `2026-11-01..2026-11-24`, `1..10`.
RANGE_SEPARATOR = ".."
#: A range that would make more tasks than this is refused (a typo in a year, usually).
MAX_RANGE_VALUES = 100_000


class ParameterTypeWarning(UserWarning):
    """A string parameter was given a value that is not a string (kept as given)."""


class Parameter:
    """A task parameter holding a string; the base of every other parameter type.

    Args:
        default: the value when none is given (none: the parameter is required).
        description: shown by `batchdeps run TASK --help` and `batchdeps list`.
        significant: False: settable, but not part of the task's identity (its
            `task_id`, its lock key, equality).
        positional: False: only given by name, never positionally.
        batch_method: accepted for Luigi's batching and recorded, but each task still
            runs on its own (docs/from-luigi.md#batch_method).
        always_in_help: accepted for Luigi's sake; every parameter is in `--help`.

    Given a value that is not a string from code (`T(name=5)`), a plain `Parameter`
    keeps it as given, as Luigi does, and warns (`ParameterTypeWarning`) that the command
    line would give the string `"5"` instead: declare an IntParameter (or another typed
    parameter) for that.
    """

    type_name = "str"
    #: On the command line, repeats of the option join into one value (lists).
    multiple = False
    #: None is a value of this parameter even when its default is something else.
    nullable = False

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 significant: bool = True, positional: bool = True,
                 batch_method: Callable[[Iterable[Any]], Any] | None = None,
                 always_in_help: bool = False) -> None:
        self.description = description or ""
        self.name = ""  # set by __set_name__
        self._default = default
        self.significant = bool(significant)
        self.positional = bool(positional)
        self.batch_method = batch_method
        self.always_in_help = always_in_help

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "parse" in vars(cls):
            cls.parse = _values_too(vars(cls)["parse"])  # type: ignore[method-assign, assignment]

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
        """Turn a command-line or config string into a value; ValueError if it is bad.

        Given a value that is not a string (from code, as Luigi's own parameters take it:
        `NumericalParameter(...).parse(-3)`), every parameter type checks it as it checks
        a constructor argument (`normalize()`), instead of treating it as text.
        """
        return text

    # -- ranges ------------------------------------------------------------------------
    supports_range = False

    def parse_range(self, text: str) -> list[Any] | None:
        """The values of an inclusive range `A..B`, in order; None when `text` is no range.

        Only ordered parameters (Int, Date, DateTime, Month, ...) read ranges; for the
        others `..` is part of the value (`--root ../data`). Raises ValueError for a bad
        end or an empty range.
        """
        if not self.supports_range or RANGE_SEPARATOR not in text:
            return None
        first_text, _, last_text = text.partition(RANGE_SEPARATOR)
        if not first_text.strip() or not last_text.strip():
            raise ValueError(f"a range needs both ends, as in {self._range_example()}")
        first, last = self.parse(first_text), self.parse(last_text)
        if first is None or last is None:
            raise ValueError(f"a range needs both ends, as in {self._range_example()}")
        try:
            backwards = last < first
        except TypeError:
            raise ValueError(f"the two ends of a range must be of one kind, as in "
                             f"{self._range_example()}") from None
        if backwards:
            raise ValueError(
                f"the range ends ({self.serialize(last)}) before it starts "
                f"({self.serialize(first)}); write the earlier value first"
            )
        return self._range_values(first, last)

    def _range_values(self, first: Any, last: Any) -> list[Any]:
        """The values from `first` to `last`, both included (`last` is not before `first`)."""
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
        """A value given from code (or a config value that is not a string), checked."""
        return value  # a plain Parameter keeps what it is given (see the class docstring)

    def serialize(self, value: Any) -> str:
        """The string that `parse()` turns back into `value`."""
        return str(value)

    def luigi_serialize(self, value: Any) -> str:
        """The string Luigi's own parameter of this type would give (for Luigi's task ids)."""
        return self.serialize(value)

    def completions(self) -> list[str]:
        """The values shell completion offers (the members of a closed set; else none)."""
        return []

    def render(self, value: Any) -> str:
        """The value as written in a task id: serialized, quoted where it could be ambiguous.

        Only free text can hold the characters that separate parameters in a task id, so
        free text holding any of `,=()"`, surrounding spaces, or the word `None` is
        JSON-quoted; the value None is `None`.
        """
        if value is None:
            return "None"
        text = self.serialize(value)
        if type(self) in QUOTED_TEXT and (_AMBIGUOUS.search(text) or text != text.strip()
                                        or text == "None"):
            return json.dumps(text)
        return text

    def convert(self, task_family: str, value: Any) -> Any:
        """normalize() with the error named for the user; None is allowed if the default is."""
        if value is None and (self.nullable or self._default is None):
            return None
        if type(self) in TEXT_ONLY and not isinstance(value, str):
            warnings.warn(ParameterTypeWarning(
                f"{task_family}: parameter '{self.name}' is a {type(self).__name__} (text) "
                f"but was given {type(value).__name__} {value!r}; kept as given. The command "
                f"line and config give it as text: declare a typed parameter (IntParameter, "
                f"...) to get the same value from both"), stacklevel=3)
        try:
            return self.normalize(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ParameterError(
                f"{task_family}: bad value {value!r} for parameter '{self.name}' "
                f"({self.type_name}): {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _values_too(parse: Callable[[Any, str], Any]) -> Callable[[Any, Any], Any]:
    """`parse` for text; a value that is not text goes to `normalize()` instead."""

    @functools.wraps(parse)
    def parse_text_or_value(self: Parameter, text: Any) -> Any:
        if isinstance(text, str):
            return parse(self, text)
        return self.normalize(text)

    return parse_text_or_value


class StrParameter(Parameter):
    """A string (Luigi's name for the plain Parameter)."""


class OptionalMixin:
    """Makes a parameter optional: None by default, and an empty string is None.

    None serializes as the empty string, so `--name ""` on the command line (or
    `name = ""` in the config) gives None, and a task id shows `name=None`.
    """

    nullable = True

    def __init__(self, default: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(default, *args, **kwargs)  # type: ignore[call-arg]

    def parse(self, text: str) -> Any:
        if text == "":
            return None
        return super().parse(text)  # type: ignore[misc]

    def normalize(self, value: Any) -> Any:
        if value is None:
            return None
        return super().normalize(value)  # type: ignore[misc]

    def serialize(self, value: Any) -> str:
        if value is None:
            return ""
        return super().serialize(value)  # type: ignore[misc, no-any-return]

    def luigi_serialize(self, value: Any) -> str:
        if value is None:
            return ""
        return super().luigi_serialize(value)  # type: ignore[misc, no-any-return]


class OptionalParameter(OptionalMixin, Parameter):
    """A string or None (the default); an empty string is None."""


class OptionalStrParameter(OptionalMixin, StrParameter):
    """A string or None (the default); an empty string is None."""


#: The parameter types whose values are text (warned about when given something else).
#: Subclasses are not in it: a parameter type of its own decides what it takes.
TEXT_ONLY: frozenset[type[Parameter]] = frozenset({Parameter, StrParameter,
                                                   OptionalParameter, OptionalStrParameter})
#: The parameter types whose values are free text, quoted in task ids where ambiguous.
QUOTED_TEXT: set[type[Parameter]] = set(TEXT_ONLY)
