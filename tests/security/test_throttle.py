"""The failed sign-in count per address behind /auth/token's 429."""

from __future__ import annotations

import pytest

from maillage.security.throttle import FailureThrottle


class Clock:
    """Monotonic seconds the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_the_limit_the_wait_and_the_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60.0, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
        clock.advance(10)
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    # the oldest failure (t=0) leaves the window at t=60; it is t=20 now
    assert throttle.retry_after("10.0.0.1") == 40
    assert throttle.retry_after("10.0.0.2") is None  # per address
    clock.advance(40)
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 10  # the second failure (t=10) leaves at 70


def test_memory_is_bounded_by_the_least_recently_failing() -> None:
    clock = Clock()
    throttle = FailureThrottle(1, 60.0, clock=clock, max_addresses=2)
    for address in ("a", "b", "c"):
        throttle.failed(address)
    assert throttle.retry_after("a") is None
    assert throttle.retry_after("b") is not None
    assert throttle.retry_after("c") is not None


def test_a_throttle_needs_a_limit_and_a_window() -> None:
    with pytest.raises(ValueError, match="limit"):
        FailureThrottle(0, 60.0)
