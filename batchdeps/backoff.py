"""Growing delays between tries: the one backoff every retry and polling loop uses.

    RETRY = Backoff(first=0.05, factor=2.0, cap=1.0)
    RETRY.delay(3)                     # seconds before the 3rd retry: 0.1 to 0.2 (jitter)

    waits = RETRY.waits(deadline=time.monotonic() + 30)
    while True:
        try:
            return call()
        except Unreachable:
            wait = next(waits, None)   # None: the deadline has passed, give up
            if wait is None:
                raise
            time.sleep(wait)

It is pure (no sleeping): the runner schedules its waits on its own clock, and async code
awaits `asyncio.sleep(delay)` itself. Jitter spreads retries of many callers apart:
`jitter = 0.5` ("equal jitter") draws from the upper half of the delay, so a retry never
comes sooner than half of it; `jitter = 0` gives the delay exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

#: attempt numbers past this give the same delay (keeps `factor ** n` finite)
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Backoff:
    """Delays growing by `factor` from `first` seconds up to `cap`, less up to `jitter` of each."""

    first: float
    factor: float = 2.0
    cap: float = float("inf")
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before try number `attempt` + 1 (`attempt` is 1-based)."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        try:
            base = min(self.cap, self.first * self.factor ** exponent)
        except OverflowError:
            base = self.cap
        if not self.jitter:
            return base
        return base * (1.0 - self.jitter + self.jitter * rand())

    def waits(self, deadline: float | None = None,
              clock: Callable[[], float] = time.monotonic,
              rand: Callable[[], float] = random.random) -> Iterator[float]:
        """Successive delays, each cut to what is left before `deadline` (a `clock()` time).

        Ends once the deadline has passed, so `next(waits, None) is None` means "give up".
        """
        attempt = 0
        while True:
            attempt += 1
            wait = self.delay(attempt, rand)
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    return
                wait = min(wait, left)
            yield wait


def retry_delay(attempt: int, delay: float, backoff: float, cap: float,
                rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `attempt` of a task (its `retry_delay`, `retry_backoff`
    and `max_retry_delay` options): exponential, capped, with equal jitter."""
    return Backoff(delay, backoff, cap).delay(attempt, rand)
