"""The GCRA arithmetic the Redis script and the embedded limiter share."""

from __future__ import annotations

from orchestrator.adapters.rate_limit import LocalRateLimiter, gcra


def admitted(rate: float, times: list[float]) -> list[bool]:
    tat, out = 0.0, []
    for now in times:
        tat, wait = gcra(tat, now, rate)
        out.append(wait == 0)
    return out


def test_a_burst_of_one_seconds_worth_is_admitted_then_the_rate():
    assert admitted(4, [10.0] * 6) == [True] * 4 + [False] * 2
    assert admitted(4, [10.0] * 4 + [10.26, 10.3, 10.51]) == [True] * 5 + [False, True]


def test_a_rate_below_one_admits_one_request_then_waits_its_interval():
    tat, wait = gcra(0.0, 100.0, 0.5)
    assert wait == 0
    _, wait = gcra(tat, 100.5, 0.5)
    assert 1.49 < wait < 1.51


def test_the_wait_is_when_the_next_request_would_be_admitted():
    tat = 0.0
    for _ in range(2):
        tat, _ = gcra(tat, 5.0, 2)
    tat, wait = gcra(tat, 5.0, 2)
    assert 0.49 < wait < 0.51
    assert gcra(tat, 5.0 + wait, 2)[1] == 0


def test_the_embedded_limiter_counts_per_tenant():
    limiter = LocalRateLimiter()
    assert [limiter.admit("a", 2) for _ in range(3)][:2] == [0, 0]
    assert limiter.admit("a", 2) > 0 and limiter.admit("b", 2) == 0
