"""The one backoff helper: growth, cap, jitter bounds, and deadline-bounded waits."""

from __future__ import annotations

import pytest

from batchdeps.backoff import Backoff, retry_delay


def test_delays_grow_by_the_factor_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(first=0.5, factor=3.0, cap=10.0, jitter=0.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10.0]


def test_equal_jitter_stays_in_the_upper_half() -> None:
    backoff = Backoff(first=2.0)
    assert backoff.delay(1, rand=lambda: 0.0) == 1.0
    assert backoff.delay(1, rand=lambda: 0.999999) == pytest.approx(2.0, rel=1e-5)
    assert backoff.delay(3, rand=lambda: 0.5) == pytest.approx(6.0)


def test_huge_attempt_numbers_give_the_cap_not_an_overflow() -> None:
    assert Backoff(first=1.0, factor=1e6, cap=60.0, jitter=0.0).delay(10_000) == 60.0
    assert Backoff(first=1.0, factor=2.0, jitter=0.0).delay(10_000) == 2.0 ** 64


def test_waits_are_cut_to_the_deadline_and_end_after_it() -> None:
    now = [100.0]
    waits = Backoff(first=1.0, factor=2.0, jitter=0.0).waits(deadline=104.0,
                                                             clock=lambda: now[0])
    taken = []
    for wait in waits:
        taken.append(wait)
        now[0] += wait
    assert taken == [1.0, 2.0, 1.0]  # the last one cut to what was left
    assert now[0] == 104.0


def test_waits_without_a_deadline_go_on() -> None:
    waits = Backoff(first=0.1, factor=2.0, cap=0.4, jitter=0.0).waits()
    assert [next(waits) for _ in range(5)] == [0.1, 0.2, 0.4, 0.4, 0.4]


def test_retry_delay_is_the_task_option_backoff() -> None:
    assert retry_delay(3, 1.0, 2.0, 300.0, lambda: 1.0) == 4.0
    assert retry_delay(3, 1.0, 2.0, 300.0, lambda: 0.0) == 2.0
