"""Hashable, unchangeable forms of JSON-like values (Luigi's FrozenOrderedDict idea).

A task's parameter values stay fixed once it is made, so a List, Tuple or Dict parameter
holds its value frozen: lists become tuples and mappings `FrozenDict`s, all the way down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

_SCALARS = (str, int, float, bool, type(None))


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict that cannot be changed, and so can be hashed; keeps its order.

    It is a real dict (`json.dumps` takes it, `== {...}` compares as a dict); every
    method that would change it raises TypeError.
    """

    __slots__ = ("_hash",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(frozenset(self.items()))
        return self._hash

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a parameter's dict cannot be changed; copy it with dict(...) first")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


def freeze(value: Any, where: str = "value") -> Any:
    """`value` with every list and tuple a tuple and every mapping a FrozenDict.

    Raises:
        ValueError: something in it is not JSON-like (a string key, or a string, number,
            true/false, null, list or mapping), naming where it is.
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        frozen = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has the key {key!r}: keys must be strings")
            frozen[key] = freeze(item, f"{where}[{key!r}]")
        return FrozenDict(frozen)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item, f"{where}[{index}]") for index, item in enumerate(value))
    raise ValueError(f"{where} is a {type(value).__name__}: only strings, numbers, "
                     "true/false, null, lists and mappings can be written as JSON")


def thaw(value: Any) -> Any:
    """The plain form of a frozen value: tuples become lists, FrozenDicts dicts."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(item) for item in value]
    return value


def freeze_all(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(freeze(item, f"item {index}") for index, item in enumerate(values))
