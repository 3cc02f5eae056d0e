"""Retry and failure behaviour of the Binance client against injected replay faults."""

import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from hedgewatch.replay import Fault, ReplayExchange
from hedgewatch.venues import make_exchange
from hedgewatch.venues.base import Exchange
from hedgewatch.venues.binance import BINANCE
from hedgewatch.venues.errors import (
    BadResponse,
    ExchangeUnavailable,
    GeoBlocked,
    InvalidRequest,
    IPBanned,
    RateLimited,
)
from hedgewatch.venues.rest import VenueSpec

H = timedelta(hours=1)
KLINES = "/api/v3/klines"
START = datetime(2024, 2, 1, tzinfo=UTC)
END = START + 24 * H


def fetch_day(client: Exchange) -> pl.DataFrame:
    return client.fetch_candles("spot", "BTCUSDT", "1h", START, END)


def test_429_is_retried_after_the_retry_after_it_names(
    client: Exchange, replay: ReplayExchange, clock: Any
) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=429, retry_after=7))

    candles = fetch_day(client)

    assert candles.height == 24
    assert replay.statuses(KLINES) == [429, 200]
    assert clock.sleeps == [pytest.approx(7.0)]


def test_a_long_418_ban_raises_at_once_without_sleeping(
    client: Exchange, replay: ReplayExchange, clock: Any
) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=418, retry_after=7200))

    with pytest.raises(IPBanned, match="7200 s") as caught:
        fetch_day(client)

    assert caught.value.retry_after_s == 7200
    assert "binance /api/v3/klines" in str(caught.value)
    assert clock.sleeps == []
    assert replay.statuses(KLINES) == [418]


def test_a_429_longer_than_the_sleep_budget_raises_rate_limited_without_sleeping(
    client: Exchange, replay: ReplayExchange, clock: Any
) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=429, retry_after=3600))

    with pytest.raises(RateLimited, match="rate limited") as caught:
        fetch_day(client)

    assert caught.value.retry_after_s == 3600
    assert clock.sleeps == []


def test_a_firewall_403_is_not_retried(client: Exchange, replay: ReplayExchange) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=403))

    with pytest.raises(RateLimited, match="firewall"):
        fetch_day(client)

    assert replay.statuses(KLINES) == [403]


def test_a_short_418_ban_is_waited_out(
    client: Exchange, replay: ReplayExchange, clock: Any
) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=418, retry_after=120))

    assert fetch_day(client).height == 24
    assert clock.sleeps == [pytest.approx(120.0)]


def test_server_errors_are_retried_with_capped_backoff_then_succeed(
    client: Exchange, replay: ReplayExchange, clock: Any
) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=503, count=2))

    assert fetch_day(client).height == 24
    assert replay.statuses(KLINES) == [503, 503, 200]
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.5 and 0 <= clock.sleeps[1] <= 1.0  # full jitter, base 0.5 s


def test_persistent_server_errors_give_exchange_unavailable_after_max_attempts(
    client: Exchange, replay: ReplayExchange, clock: Any
) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=502, count=None))

    with pytest.raises(ExchangeUnavailable, match=r"binance /api/v3/klines \(HTTP 502\)") as caught:
        fetch_day(client)

    assert replay.statuses(KLINES) == [502] * 4  # max_attempts=4 in the fixture
    assert len(clock.sleeps) == 3
    assert "What to do" in str(caught.value)


@pytest.fixture
def impatient_client(replay: ReplayExchange, clock: Any) -> Iterator[Exchange]:
    with closing(
        make_exchange(
            "binance",
            venue="binance",
            base_urls=replay.base_urls,
            timeout_s=0.2,
            max_attempts=3,
            sleep=clock.sleep,
            clock=clock.time,
        )
    ) as client:
        yield client


def test_a_read_timeout_is_retried(
    impatient_client: Exchange, replay: ReplayExchange, caplog: pytest.LogCaptureFixture
) -> None:
    replay.inject(Fault("timeout", path_prefix=KLINES, delay_s=0.6))

    with caplog.at_level(logging.WARNING, logger="hedgewatch.venues.http"):
        assert fetch_day(impatient_client).height == 24

    assert "no response within 0.2 s (ReadTimeout)" in caplog.text
    assert replay.statuses(KLINES)[0] == 200  # the slow answer is logged when it finally ends


def test_truncated_json_is_retried(client: Exchange, replay: ReplayExchange) -> None:
    replay.inject(Fault("truncate", path_prefix=KLINES))

    assert fetch_day(client).height == 24
    assert len(replay.statuses(KLINES)) == 2


def test_json_truncated_every_time_is_a_bad_response(
    client: Exchange, replay: ReplayExchange
) -> None:
    replay.inject(Fault("truncate", path_prefix=KLINES, count=None))

    with pytest.raises(BadResponse, match="not valid JSON"):
        fetch_day(client)
    assert len(replay.statuses(KLINES)) == 4


def test_a_connection_reset_mid_body_is_retried(client: Exchange, replay: ReplayExchange) -> None:
    replay.inject(Fault("reset", path_prefix=KLINES))

    assert fetch_day(client).height == 24
    assert len(replay.statuses(KLINES)) == 2


def test_persistent_resets_give_exchange_unavailable(
    client: Exchange, replay: ReplayExchange
) -> None:
    replay.inject(Fault("reset", path_prefix=KLINES, count=None))

    with pytest.raises(ExchangeUnavailable, match="connection failed"):
        fetch_day(client)


def test_an_invalid_symbol_error_body_is_not_retried(
    client: Exchange, replay: ReplayExchange, clock: Any
) -> None:
    replay.inject(
        Fault(
            "status", path_prefix=KLINES, code=400, body={"code": -1121, "msg": "Invalid symbol."}
        )
    )

    with pytest.raises(InvalidRequest, match=r"code -1121: Invalid symbol\."):
        fetch_day(client)

    assert replay.statuses(KLINES) == [400]
    assert clock.sleeps == []


def test_geo_block_names_the_alternative_hosts_and_no_query_string(
    client: Exchange, replay: ReplayExchange
) -> None:
    replay.inject(Fault("status", path_prefix=KLINES, code=451))

    with pytest.raises(GeoBlocked) as caught:
        fetch_day(client)

    message = str(caught.value)
    assert "api.binance.us" in message and "data-api.binance.vision" in message
    assert "startTime" not in message and "?" not in message
    assert replay.statuses(KLINES) == [451]


def test_duplicates_across_pages_are_removed(
    client: Exchange, replay: ReplayExchange, stored_candles: pl.DataFrame
) -> None:
    replay.set_now(datetime(2025, 1, 1, tzinfo=UTC))
    start, end = datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC) + 2500 * H
    replay.inject(Fault("duplicate", path_prefix=KLINES, count=None))

    candles = client.fetch_candles("spot", "BTCUSDT", "1h", start, end)

    assert candles.height == 2500
    assert candles["open_time"].is_unique().all()
    assert candles["open_time"].is_sorted()
    served_rows = sum(1 for r in replay.requests if r.fault == "duplicate")
    assert served_rows == 3


def test_missing_candles_are_not_invented(client: Exchange, replay: ReplayExchange) -> None:
    hidden = (START + 3 * H, START + 4 * H, START + 17 * H)
    replay.inject(Fault("drop_candles", path_prefix=KLINES, count=None, open_times=hidden))

    candles = fetch_day(client)

    assert candles.height == 24 - 3
    assert set(hidden).isdisjoint(candles["open_time"].to_list())
    assert candles["close"].null_count() == 0


@pytest.fixture
def small_budget_spec() -> VenueSpec:
    return dataclasses.replace(
        BINANCE,
        limits={
            name: dataclasses.replace(limit, budget=25) for name, limit in BINANCE.limits.items()
        },
    )


def test_a_burst_under_a_small_budget_waits_instead_of_hitting_429(
    stored_candles: pl.DataFrame, clock: Any, small_budget_spec: VenueSpec
) -> None:
    # The replay's weight minute and the client's limiter share one fake clock.
    with (
        ReplayExchange(
            stored_candles,
            now=datetime(2024, 4, 1, tzinfo=UTC),
            weight_limit_per_minute=25,
            weight_clock=clock.time,
        ) as replay,
        closing(
            make_exchange(
                "binance",
                venue="binance",
                base_urls=replay.base_urls,
                sleep=clock.sleep,
                clock=clock.time,
                spec=small_budget_spec,
            )
        ) as client,
    ):
        perp = client.fetch_candles(
            "perp",
            "BTCUSDT",
            "1h",
            datetime(2020, 1, 1, tzinfo=UTC),
            datetime(2022, 1, 1, tzinfo=UTC),
        )
        spot = [
            client.fetch_candles("spot", "BTCUSDT", "1h", START + i * H, START + (i + 1) * H)
            for i in range(12)
        ]

    assert 429 not in replay.statuses()
    assert perp.height == 2 * 365 * 24 + 24  # 2020 is a leap year
    assert all(frame.height == 1 for frame in spot)
    assert clock.sleeps  # the limiter did have to wait for new minutes


def test_concurrent_fetches_share_the_budget_without_429(
    stored_candles: pl.DataFrame, clock: Any, small_budget_spec: VenueSpec
) -> None:
    start, end = datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 7, 1, tzinfo=UTC)
    jobs = [("perp", "BTCUSDT"), ("perp", "ETHUSDT"), ("perp", "BTCUSDT"), ("perp", "ETHUSDT")]
    with (
        ReplayExchange(
            stored_candles,
            now=datetime(2024, 4, 1, tzinfo=UTC),
            weight_limit_per_minute=25,
            weight_clock=clock.time,
        ) as replay,
        closing(
            make_exchange(
                "binance",
                venue="binance",
                base_urls=replay.base_urls,
                sleep=clock.sleep,
                clock=clock.time,
                spec=small_budget_spec,
            )
        ) as client,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        frames = list(
            pool.map(lambda job: client.fetch_candles(job[0], job[1], "1h", start, end), jobs)
        )

    assert 429 not in replay.statuses()
    assert [frame.height for frame in frames] == [181 * 24] * 4
