"""`--since` values: a date or time (`2026-11-01`, `2026-11-01T08:00`) or an age (`24h`, `7d`)."""

from __future__ import annotations

import datetime as dt
import re
import time

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """Seconds since the epoch; ValueError with the accepted forms when `text` is neither.

    A date or time without an offset is local time.
    """
    now = time.time() if now is None else now
    value = text.strip()
    age = _AGE.fullmatch(value)
    if age:
        return now - float(age.group(1)) * _UNIT[age.group(2)]
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is neither a date (2026-11-01, 2026-11-01T08:00) nor an "
                         "age (30m, 24h, 7d)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()
