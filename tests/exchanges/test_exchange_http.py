"""The retry policy and weight limiter on their own (HTTP paths run against the replay server)."""

import random
import threading
from collections import Counter
from typing import Any

import pytest

from hedgewatch.venues.http import RetryPolicy, WeightLimiter


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(7)

    delays = {
        attempt: [policy.backoff_s(attempt, rng) for _ in range(200)] for attempt in (1, 3, 9)
    }

    assert all(0.0 <= d <= 0.5 for d in delays[1])
    assert all(0.0 <= d <= 2.0 for d in delays[3])
    assert all(0.0 <= d <= 4.0 for d in delays[9])
    assert max(delays[9]) > 2.0  # the cap, not the attempt-1 ceiling, bounds late attempts


def test_limiter_waits_for_the_next_window_instead_of_overspending(clock: Any) -> None:
    limiter = WeightLimiter(10, clock=clock.time, sleep=clock.sleep)
    windows = []
    for _ in range(12):
        window = limiter.acquire(2)
        windows.append(window)
        limiter.release(window, 2)

    per_window = Counter(windows)
    assert all(2 * count <= 10 for count in per_window.values())
    assert len(per_window) == 3
    assert len(clock.sleeps) == 2
    assert clock.time() % 60 == pytest.approx(0.0, abs=1e-6)  # slept up to a minute boundary


def test_limiter_adopts_a_higher_count_reported_by_the_venue(clock: Any) -> None:
    limiter = WeightLimiter(100, clock=clock.time, sleep=clock.sleep)
    window = limiter.acquire(1)

    limiter.release(window, 1, used_by_venue=95)

    assert limiter.used == 95
    limiter.acquire(5)
    assert clock.sleeps == []
    limiter.acquire(1)
    assert len(clock.sleeps) == 1


def test_weight_in_flight_when_the_window_turns_counts_in_the_new_window(clock: Any) -> None:
    limiter = WeightLimiter(10, clock=clock.time, sleep=clock.sleep)
    slow = limiter.acquire(4)  # still in flight
    clock.sleep(60)

    assert limiter.used == 4
    limiter.release(slow, 4)
    assert limiter.used == 4


def test_block_for_holds_every_caller_back(clock: Any) -> None:
    limiter = WeightLimiter(100, clock=clock.time, sleep=clock.sleep)
    limiter.block_for(7.0)

    limiter.acquire(1)
    limiter.acquire(1)

    assert clock.sleeps == [pytest.approx(7.0)]


def test_limiter_never_books_more_than_the_budget_per_window_across_threads(clock: Any) -> None:
    limiter = WeightLimiter(20, clock=clock.time, sleep=clock.sleep)
    booked: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            window = limiter.acquire(3)
            with lock:
                booked.append(window)
            limiter.release(window, 3)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(booked) == 100
    assert max(Counter(booked).values()) * 3 <= 20


def test_a_request_heavier_than_the_budget_is_a_programming_error(clock: Any) -> None:
    with pytest.raises(ValueError, match="exceeds the whole budget"):
        WeightLimiter(5, clock=clock.time, sleep=clock.sleep).acquire(10)
