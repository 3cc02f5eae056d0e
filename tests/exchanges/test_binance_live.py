"""Against the real Binance API. Opt-in with `pytest --live`; never in CI (451 in some places)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hedgewatch.venues import make_exchange

pytestmark = pytest.mark.live


@pytest.mark.parametrize("market", ["spot", "perp"])
def test_fetches_the_last_day_of_closed_candles(market: str) -> None:
    client = make_exchange("binance", venue="binance")
    try:
        now = client.server_time()
        candles = client.fetch_candles(market, "BTCUSDT", "1h", now - timedelta(days=1), now)
    finally:
        client.close()
    assert 23 <= candles.height <= 24
    assert candles["open_time"].max() + timedelta(hours=1) <= now  # type: ignore[operator]
    assert candles["open_time"].is_sorted()


def test_fetches_funding_rates() -> None:
    client = make_exchange("binance", venue="binance")
    try:
        end = datetime.now(UTC)
        funding = client.fetch_funding("BTCUSDT", end - timedelta(days=2), end)
    finally:
        client.close()
    assert funding.height >= 5
