"""One contract, five venues: every client against the replay speaking that venue's wire format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from hedgewatch.venues import CANDLE_SCHEMA, EXCHANGE_MARKETS, FUNDING_SCHEMA
from hedgewatch.venues.errors import InvalidRequest

H = timedelta(hours=1)
NOW = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)


def stored(replay: Any, market: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
    frame = replay._candles
    return frame.filter(
        (pl.col("market") == market)
        & (pl.col("symbol") == symbol)
        & (pl.col("open_time") >= start)
        & (pl.col("open_time") < end)
    ).sort("open_time")


def reach(case: Any, hours: int) -> datetime:
    """A start `hours` back from the last closed candle, within what the venue serves."""
    depth = case.client.history_bars
    if depth is not None:
        hours = min(hours, depth - 1)
    return datetime(2024, 3, 1, 12, tzinfo=UTC) - hours * H


def test_server_time_is_the_replay_clock(venue_case: Any) -> None:
    assert venue_case.client.server_time() == NOW


def test_candles_span_pages_and_equal_the_stored_rows(venue_case: Any) -> None:
    start = reach(venue_case, 2500)
    end = datetime(2024, 3, 1, 12, tzinfo=UTC)

    candles = venue_case.client.fetch_candles("spot", venue_case.spot, "1h", start, end)

    expected = stored(venue_case.replay, "spot", venue_case.spot, start, end)
    assert candles.schema == CANDLE_SCHEMA
    assert candles.height == expected.height > 700
    assert candles["open_time"].to_list() == expected["open_time"].to_list()
    assert candles["open_time"].is_sorted()
    for column in ("open", "high", "low", "close"):
        assert candles[column].to_list() == pytest.approx(expected[column].to_list(), rel=1e-9)
    assert candles["volume"].to_list() == pytest.approx(expected["volume"].to_list(), rel=1e-6)
    assert set(candles["venue"]) == {venue_case.venue}
    assert set(candles["symbol"]) == {venue_case.spot}


def test_the_open_candle_is_never_returned(venue_case: Any) -> None:
    # now = 12:30: the 12:00 candle is open whatever the venue's marker or row position.
    start = datetime(2024, 3, 1, 6, tzinfo=UTC)

    candles = venue_case.client.fetch_candles("spot", venue_case.spot, "1h", start, NOW + 5 * H)

    assert candles["open_time"].to_list() == [start + i * H for i in range(6)]


def test_perp_candles_and_funding(venue_case: Any) -> None:
    if "perp" not in EXCHANGE_MARKETS[venue_case.venue]:
        with pytest.raises(InvalidRequest, match=r"no perpetuals|unknown market"):
            venue_case.client.fetch_funding("X", NOW - 24 * H, NOW)
        return
    start, end = datetime(2023, 10, 1, tzinfo=UTC), datetime(2023, 11, 15, tzinfo=UTC)
    candles = venue_case.client.fetch_candles("perp", venue_case.perp, "1h", start, end)
    assert candles.height == stored(venue_case.replay, "perp", venue_case.perp, start, end).height
    assert set(candles["market"]) == {"perp"}

    funding = venue_case.client.fetch_funding(venue_case.perp, start, end)

    assert funding.schema == FUNDING_SCHEMA
    assert funding.height == 45 * 3  # 8-hourly settlements
    assert funding["funding_time"].is_sorted() and funding["funding_time"].is_unique().all()
    assert funding["funding_time"].min() == start
    assert funding["funding_time"].max() < end


def test_an_unknown_symbol_is_an_invalid_request_not_a_retry(venue_case: Any) -> None:
    unknown = {"okx": "NOPE-USDT", "coinbase": "NOPE-USD"}.get(venue_case.venue, "NOPEUSDT")

    with pytest.raises(InvalidRequest) as caught:
        venue_case.client.fetch_candles("spot", unknown, "1h", NOW - 5 * H, NOW)

    assert venue_case.venue in str(caught.value)
    candle_calls = [r for r in venue_case.replay.requests if "ime" not in r.path]
    assert len(candle_calls) == 1  # not retried
    assert candle_calls[0].status in (200, 400, 404)


def test_a_symbol_in_another_venues_format_is_refused_before_any_request(
    venue_case: Any,
) -> None:
    wrong = {"okx": "BTCUSDT", "coinbase": "BTCUSD", "kraken": "btc-usd"}.get(
        venue_case.venue, "BTC-USDT"
    )
    before = len(venue_case.replay.requests)

    with pytest.raises(InvalidRequest, match=r"symbol|Invalid"):
        venue_case.client.fetch_candles("spot", wrong, "1h", NOW - 5 * H, NOW)

    if venue_case.venue != "binance":
        assert len(venue_case.replay.requests) == before


def test_an_unsupported_interval_names_the_supported_ones(venue_case: Any) -> None:
    with pytest.raises(InvalidRequest, match="1h"):
        venue_case.client.fetch_candles("spot", venue_case.spot, "7m", NOW - 5 * H, NOW)
