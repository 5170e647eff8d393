"""Parameters holding several values: lists, tuples, dicts (JSON), lists of choices.

Values are frozen (frozen.py) so that tasks holding them stay hashable and unchanged.
Serialized as compact JSON (`["a",1]`) for task ids and the command line; Luigi's own
spacing (`["a", 1]`) is `luigi_serialize()`.
"""

from __future__ import annotations

import ast
import enum
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .base import _NO_DEFAULT, OptionalMixin, Parameter
from .frozen import FrozenDict, freeze, thaw
from .scalars import ChoiceParameter


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON {what}: {exc.msg} (column {exc.colno})") from None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@functools.cache
def _schema_mismatch() -> type[Any]:
    """The error of a value that does not match a parameter's schema: a ValueError (so a
    task's constructor names the parameter) that is also jsonschema's ValidationError
    (what code written for jsonschema, or Luigi, catches)."""
    import jsonschema

    def __str__(self: Any) -> str:
        return f"does not match the schema: {self.message}"

    return type("SchemaMismatch", (jsonschema.ValidationError, ValueError),
                {"__module__": __name__, "__str__": __str__,
                 "__doc__": "A value that does not match the parameter's JSON schema."})


class _JsonParameter(Parameter):
    """What List, Tuple and Dict share: an optional JSON schema, JSON serialization."""

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 schema: Any = None, **kwargs: Any) -> None:
        super().__init__(default, description, **kwargs)
        if schema is not None:
            try:
                import jsonschema  # noqa: F401 - only to say early that it is missing
            except ImportError:
                raise TypeError(f"{type(self).__name__}(schema=...) needs the jsonschema "
                                "package: pip install jsonschema") from None
        self.schema = schema

    def _validated(self, value: Any) -> Any:
        """The frozen value, checked against the schema (a dict, or a validator object)."""
        frozen = freeze(value)
        if self.schema is None:
            return frozen
        import jsonschema

        plain = thaw(frozen)
        try:
            if hasattr(self.schema, "validate") and not isinstance(self.schema, Mapping):
                self.schema.validate(plain)
            else:
                jsonschema.validate(instance=plain, schema=self.schema)
        except jsonschema.ValidationError as exc:
            raise _schema_mismatch().create_from(exc) from None
        return freeze(plain)  # a validator may fill in defaults

    def serialize(self, value: Any) -> str:
        return _compact(value)

    def luigi_serialize(self, value: Any) -> str:
        return json.dumps(value)


#: A list's text starting so is JSON (and must be a JSON list); any other is comma-separated.
_JSON_STARTS = ("[", "{", '"')


class ListParameter(_JsonParameter):
    """A list, written as JSON (`["a", {"b": 1}, [2, 3]]`) or comma-separated (`a,b`).

    Text starting with `[`, `{` or `"` is JSON, and refused unless it is a JSON list
    (Luigi would split the JSON string `"ab"` into the list `["a", "b"]`).

    Items may be lists and mappings, any depth; held as a tuple of frozen items so that
    tasks holding it stay hashable. On the command line, repeating the option joins the
    lists (`--tag a --tag b` is `["a","b"]`).
    """

    type_name = "list"
    multiple = True

    def parse(self, text: str) -> tuple[Any, ...]:
        stripped = text.strip()
        if stripped.startswith(_JSON_STARTS):
            return self._check(_loads(stripped, "list"))
        if not stripped:
            return self._check([])
        return self._check([part.strip() for part in stripped.split(",")])

    def _check(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return self._validated(value)  # type: ignore[no-any-return]


class TupleParameter(ListParameter):
    """A tuple, possibly of tuples: JSON (`[[1, 2], [3, 4]]`) or Python (`((1, 2), (3, 4))`).

    Held frozen, as a List parameter's value is; unlike a List, it is one option on the
    command line (not joined when repeated) and has no comma-separated form.
    """

    type_name = "tuple"
    multiple = False

    def parse(self, text: str) -> tuple[Any, ...]:
        stripped = text.strip()
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError:
            try:
                loaded = ast.literal_eval(stripped)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise ValueError("expected a tuple as JSON ([[1, 2], [3, 4]]) or Python "
                                 "((1, 2), (3, 4))") from None
        return self._check(loaded)


class DictParameter(_JsonParameter):
    """A mapping, written as a JSON object (`{"role": "web", "env": {"zone": 2}}`).

    Held as a `FrozenDict` (a dict that cannot be changed), nested values frozen too; in
    the config it may also be a TOML table. `schema=` checks it with jsonschema.
    """

    type_name = "dict"

    def parse(self, text: str) -> FrozenDict:
        return self._check(_loads(text.strip(), "object"))

    def _check(self, value: Any) -> FrozenDict:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a JSON object (a mapping), got {type(value).__name__}")
        return self._validated(value)  # type: ignore[no-any-return]


class ChoiceListParameter(ChoiceParameter):
    """A list of values from a fixed set, comma-separated (`a,b,a`); order and repeats
    are kept, and the empty string is the empty list. Held as a tuple."""

    multiple = True

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "",
                 **kwargs: Any) -> None:
        super().__init__(default, description, **kwargs)
        self.type_name = "{" + "|".join(str(c) for c in self.choices) + "},..."

    def parse(self, text: str) -> tuple[Any, ...]:
        if text.strip() == "":
            return ()
        return tuple(super(ChoiceListParameter, self).parse(part) for part in text.split(","))

    def _check(self, value: Any) -> tuple[Any, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValueError(f"expected a list of choices, got {type(value).__name__}")
        return tuple(self._choice(item) for item in value)

    def serialize(self, value: Any) -> str:
        return ",".join(str(item) for item in value)

    def completions(self) -> list[str]:
        return []


class EnumListParameter(Parameter):
    """A list of members of one `enum.Enum`, comma-separated by name (`RED,GREEN`)."""

    multiple = True

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 enum: type[enum.Enum] | None = None, **kwargs: Any) -> None:
        if enum is None:
            raise TypeError("EnumListParameter needs enum=, the Enum class of its values")
        super().__init__(default, description, **kwargs)
        self.enum = enum
        self.type_name = "{" + "|".join(m.name for m in enum) + "},..."

    def parse(self, text: str) -> tuple[enum.Enum, ...]:
        if text.strip() == "":
            return ()
        values = []
        for part in text.split(","):
            try:
                values.append(self.enum[part.strip()])
            except KeyError:
                raise ValueError(f"{part.strip()!r} is not one of "
                                 f"{', '.join(m.name for m in self.enum)}") from None
        return tuple(values)

    def _check(self, value: Any) -> tuple[enum.Enum, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValueError(f"expected a list of {self.enum.__name__}, "
                             f"got {type(value).__name__}")
        items = tuple(value)
        for item in items:
            if not isinstance(item, self.enum):
                raise ValueError(f"{item!r} is not a member of {self.enum.__name__}")
        return items

    def serialize(self, value: Any) -> str:
        return ",".join(member.name for member in value)


class OptionalListParameter(OptionalMixin, ListParameter):
    """A list or None (the default); an empty string is None."""


class OptionalTupleParameter(OptionalMixin, TupleParameter):
    """A tuple or None (the default); an empty string is None."""


class OptionalDictParameter(OptionalMixin, DictParameter):
    """A mapping or None (the default); an empty string is None."""
