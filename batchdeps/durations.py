"""Lengths of time as people write them: `30s`, `5m`, `6h`, `1h30m`, `2d`, or plain seconds.

    parse_duration("1h30m")   # 5400.0
    parse_duration(90)        # 90.0 (a number from config.toml is seconds)
    format_duration(5400)     # "1h30m"
"""

from __future__ import annotations

import re
from typing import Any

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_FORMS = "a number of seconds or a duration such as 30s, 5m, 6h, 1h30m, 2d"


def parse_duration(value: Any) -> float:
    """Seconds in `value` (a number, a numeric string, or units d/h/m/s in that order).

    Raises:
        ValueError: `value` is none of these, or negative; the message lists the forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be {_FORMS}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip().lower())
    else:
        raise ValueError(f"must be {_FORMS}")
    if not seconds >= 0 or seconds == float("inf"):  # also NaN
        raise ValueError(f"must be {_FORMS}, not negative")
    return seconds


def _parse_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    position = 0
    total = 0.0
    units_seen: list[str] = []
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        unit = match.group(2)
        if units_seen and "dhms".index(unit) <= "dhms".index(units_seen[-1]):
            raise ValueError(f"must be {_FORMS} (units largest first, each once)")
        units_seen.append(unit)
        total += float(match.group(1)) * _UNIT[unit]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"must be {_FORMS}")
    return total


def format_duration(seconds: float) -> str:
    """`seconds` written back the way `parse_duration` reads it (`90` -> `1m30s`)."""
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    whole = int(round(seconds))
    parts = []
    for unit in "dhms":
        size = int(_UNIT[unit])
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
