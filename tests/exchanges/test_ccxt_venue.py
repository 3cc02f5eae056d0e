"""The ccxt venue adapter over real HTTP: ccxt's own binance class pointed at the replay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from hedgewatch.replay import ReplayExchange
from hedgewatch.venues import CANDLE_SCHEMA, FUNDING_SCHEMA, make_exchange
from hedgewatch.venues.errors import InvalidRequest

pytest.importorskip("ccxt")

H = timedelta(hours=1)
NOW = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)


def market(symbol: str, market_id: str, swap: bool) -> dict[str, Any]:
    """A minimal ccxt market, so no exchangeInfo call is needed (the replay has none)."""
    base, quote = symbol.split(":")[0].split("/")
    return {
        "id": market_id,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": quote if swap else None,
        "baseId": base,
        "quoteId": quote,
        "settleId": quote if swap else None,
        "type": "swap" if swap else "spot",
        "spot": not swap,
        "margin": False,
        "swap": swap,
        "future": False,
        "option": False,
        "contract": swap,
        "linear": True if swap else None,
        "inverse": False if swap else None,
        "active": True,
        "precision": {"amount": 0.00001, "price": 0.01},
        "limits": {},
        "info": {},
    }


@pytest.fixture
def ccxt_client(replay: ReplayExchange) -> Iterator[Any]:
    client = make_exchange(
        "ccxt",
        venue="binance-ccxt",
        exchange="binance",
        base_urls={"spot": replay.url},
        page_size=300,  # several pages in a short range
    )
    client.exchange.set_markets(
        [market("BTC/USDT", "BTCUSDT", False), market("BTC/USDT:USDT", "BTCUSDT", True)]
    )
    yield client
    client.close()


def test_ccxt_candles_page_from_since_and_equal_the_stored_rows(
    ccxt_client: Any, replay: ReplayExchange, stored_candles: pl.DataFrame
) -> None:
    start, end = datetime(2024, 1, 25, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)

    candles = ccxt_client.fetch_candles("spot", "BTC/USDT", "1h", start, end)

    expected = stored_candles.filter(
        (pl.col("market") == "spot")
        & (pl.col("open_time") >= start)
        & (pl.col("open_time") < datetime(2024, 3, 1, 12, tzinfo=UTC))  # 12:00 is still open
    ).sort("open_time")
    assert candles.schema == CANDLE_SCHEMA
    assert candles["open_time"].to_list() == expected["open_time"].to_list()
    assert candles["close"].to_list() == expected["close"].to_list()
    assert set(candles["venue"]) == {"binance-ccxt"}
    assert len(replay.statuses("/api/v3/klines")) == 3  # 876 candles in pages of 300


def test_ccxt_funding_history(ccxt_client: Any) -> None:
    start, end = datetime(2023, 10, 1, tzinfo=UTC), datetime(2023, 11, 15, tzinfo=UTC)

    funding = ccxt_client.fetch_funding("BTC/USDT:USDT", start, end)

    assert funding.schema == FUNDING_SCHEMA
    assert funding.height == 45 * 3
    assert funding["funding_time"].min() == start


def test_ccxt_errors_become_ours(ccxt_client: Any) -> None:
    with pytest.raises(InvalidRequest, match="binance-ccxt"):
        ccxt_client.fetch_candles("spot", "NOPE/USDT", "1h", NOW - 5 * H, NOW)


def test_a_ccxt_venue_without_an_exchange_id_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown ccxt exchange"):
        make_exchange("ccxt", venue="x", exchange="not-an-exchange")
