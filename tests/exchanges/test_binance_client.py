"""BinanceClient against the replay exchange over real HTTP on loopback."""

from contextlib import closing
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from hedgewatch.replay import ReplayExchange
from hedgewatch.venues import CANDLE_SCHEMA, FUNDING_SCHEMA, make_exchange
from hedgewatch.venues.base import Exchange
from hedgewatch.venues.errors import InvalidRequest

H = timedelta(hours=1)


def stored(
    frame: pl.DataFrame, market: str, symbol: str, start: datetime, end: datetime
) -> pl.DataFrame:
    return frame.filter(
        (pl.col("market") == market)
        & (pl.col("symbol") == symbol)
        & (pl.col("open_time") >= start)
        & (pl.col("open_time") < end)
    ).sort("open_time")


def klines_requests(replay: ReplayExchange, path: str = "/api/v3/klines") -> int:
    return len(replay.statuses(path))


def test_server_time_is_the_replay_clock(client: Exchange, replay_now: datetime) -> None:
    assert client.server_time() == replay_now


def test_fetch_paginates_across_pages_and_matches_the_stored_rows(
    client: Exchange, replay: ReplayExchange, stored_candles: pl.DataFrame
) -> None:
    start = datetime(2023, 12, 31, tzinfo=UTC)  # before the file starts on 2024-01-21 07:00
    first = datetime(2024, 1, 21, 7, tzinfo=UTC)
    end = first + 2500 * H
    replay.set_now(datetime(2025, 1, 1, tzinfo=UTC))

    candles = client.fetch_candles("spot", "BTCUSDT", "1h", start, end)

    expected = stored(stored_candles, "spot", "BTCUSDT", start, end)
    assert candles.schema == CANDLE_SCHEMA
    assert candles.height == 2500
    assert candles["open_time"].to_list() == expected["open_time"].to_list()
    assert candles["close"].to_list() == expected["close"].to_list()
    assert candles["volume"].to_list() == expected["volume"].to_list()
    assert set(candles["venue"]) == {"binance"} and set(candles["interval"]) == {"1h"}
    assert klines_requests(replay) == 3  # 1000 + 1000 + 500 (short page ends it)


def test_only_closed_candles_are_returned(
    client: Exchange, replay: ReplayExchange, replay_now: datetime
) -> None:
    # now = 12:30, so the 12:00 candle is open; asking past now must stop at 11:00.
    start = datetime(2024, 2, 28, 12, tzinfo=UTC)
    end = replay_now + 48 * H

    candles = client.fetch_candles("spot", "BTCUSDT", "1h", start, end)

    assert candles["open_time"].max() == datetime(2024, 3, 1, 11, tzinfo=UTC)
    assert candles.height == 48

    replay.set_now(datetime(2024, 3, 1, 13, tzinfo=UTC))  # the 12:00 candle closes exactly now
    later = client.fetch_candles("spot", "BTCUSDT", "1h", start, end)
    assert later["open_time"].max() == datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_a_range_holding_only_the_open_candle_is_empty(
    client: Exchange, replay: ReplayExchange
) -> None:
    start = datetime(2024, 3, 1, 12, tzinfo=UTC)

    candles = client.fetch_candles("spot", "BTCUSDT", "1h", start, start + 2 * H)

    assert candles.is_empty()
    assert klines_requests(replay) == 0  # nothing closed in range, so nothing to ask for


def test_fetch_from_a_mid_range_unaligned_start(client: Exchange) -> None:
    start = datetime(2024, 2, 10, 10, 30, tzinfo=UTC)

    candles = client.fetch_candles("spot", "BTCUSDT", "1h", start, start + 5 * H)

    assert candles["open_time"].to_list() == [
        datetime(2024, 2, 10, h, tzinfo=UTC) for h in (11, 12, 13, 14, 15)
    ]


def test_perp_candles_come_from_the_futures_endpoints(
    client: Exchange, replay: ReplayExchange, stored_candles: pl.DataFrame
) -> None:
    start, end = datetime(2022, 5, 1, tzinfo=UTC), datetime(2022, 5, 15, tzinfo=UTC)

    candles = client.fetch_candles("perp", "ETHUSDT", "1h", start, end)

    expected = stored(stored_candles, "perp", "ETHUSDT", start, end)
    assert candles.height == 14 * 24
    assert candles["close"].to_list() == expected["close"].to_list()
    assert set(candles["market"]) == {"perp"}
    assert klines_requests(replay, "/fapi/v1/klines") == 1
    assert klines_requests(replay) == 0


def test_funding_is_fetched_across_pages_within_the_half_open_range(
    client: Exchange, stored_funding: pl.DataFrame
) -> None:
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, 8, tzinfo=UTC)

    funding = client.fetch_funding("BTCUSDT", start, end)

    expected = stored_funding.filter(
        (pl.col("exchange") == "binance")
        & (pl.col("symbol") == "BTCUSDT")
        & (pl.col("funding_time") >= start)
        & (pl.col("funding_time") < end)
    ).sort("funding_time")
    assert funding.schema == FUNDING_SCHEMA
    assert funding.height == expected.height > 1000  # more than one page of 1000
    assert funding["funding_time"].to_list() == expected["funding_time"].to_list()
    assert funding["funding_rate"].to_list() == pytest.approx(expected["funding_rate"].to_list())
    assert funding["funding_time"].to_list()[-1] < end


def test_an_empty_or_inverted_range_returns_an_empty_frame(client: Exchange) -> None:
    t = datetime(2024, 2, 1, tzinfo=UTC)

    assert client.fetch_candles("spot", "BTCUSDT", "1h", t, t).schema == CANDLE_SCHEMA
    assert client.fetch_candles("spot", "BTCUSDT", "1h", t, t - H).is_empty()
    assert client.fetch_funding("BTCUSDT", t, t - H).schema == FUNDING_SCHEMA


def test_an_unknown_symbol_is_an_invalid_request_and_not_retried(
    client: Exchange, replay: ReplayExchange
) -> None:
    with pytest.raises(InvalidRequest, match=r"Invalid symbol") as caught:
        client.fetch_candles(
            "spot",
            "NOPEUSDT",
            "1h",
            datetime(2024, 2, 1, tzinfo=UTC),
            datetime(2024, 2, 2, tzinfo=UTC),
        )

    assert caught.value.status == 400
    assert replay.statuses("/api/v3/klines") == [400]


@pytest.mark.parametrize(
    ("market", "interval"), [("futures", "1h"), ("perp", "1s"), ("spot", "1M")]
)
def test_unsupported_market_or_interval_fails_before_any_request(
    client: Exchange, replay: ReplayExchange, market: str, interval: str
) -> None:
    t = datetime(2024, 2, 1, tzinfo=UTC)

    with pytest.raises(InvalidRequest):
        client.fetch_candles(market, "BTCUSDT", interval, t, t + H)

    assert replay.requests == []


def test_a_real_downtime_gap_is_left_as_a_gap(majors_btc: pl.DataFrame) -> None:
    # Binance spot was down 2021-04-25 05:00-07:00: three candles that never existed.
    start, end = datetime(2021, 4, 24, tzinfo=UTC), datetime(2021, 4, 26, tzinfo=UTC)
    with (
        ReplayExchange(majors_btc, now=datetime(2021, 5, 1, tzinfo=UTC)) as replay,
        closing(make_exchange("binance", venue="binance", base_urls=replay.base_urls)) as client,
    ):
        candles = client.fetch_candles("spot", "BTCUSDT", "1h", start, end)

    assert candles.height == 48 - 3
    missing = {datetime(2021, 4, 25, h, tzinfo=UTC) for h in (5, 6, 7)}
    assert missing.isdisjoint(candles["open_time"].to_list())
