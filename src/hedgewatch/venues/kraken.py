"""Kraken spot OHLC as a `VenueSpec`.

Kraken serves only the 720 most recent candles of an interval, whatever `since` says (30 days of
1h candles). Older history cannot be fetched from this endpoint at all: load Kraken's own CSV
downloads, or another venue's files, with `hedgewatch import`. `since` is in seconds and means
"after"; the last row is always the open candle; errors arrive as HTTP 200 with a non-empty
`error` list. The result is keyed by Kraken's internal pair name (XXBTZUSD), not what was sent.
Budget: about one public request per second per IP (ccxt's figure).
"""

from __future__ import annotations

from typing import Any

from hedgewatch.venues.http import Envelope
from hedgewatch.venues.rest import (
    CandleEndpoint,
    MarketSpec,
    RateLimit,
    RestClient,
    Rows,
    TimeEndpoint,
    VenueSpec,
)

INTERVALS = {
    "1m": "1",
    "5m": "5",
    "15m": "15",
    "30m": "30",
    "1h": "60",
    "4h": "240",
    "1d": "1440",
    "1w": "10080",
}

KRAKEN = VenueSpec(
    venue="kraken",
    base_url="https://api.kraken.com",
    time=TimeEndpoint(path="/0/public/Time", field_path=("result", "unixtime"), unit="s"),
    markets={
        "spot": MarketSpec(
            market="spot",
            candles=CandleEndpoint(
                path="/0/public/OHLC",
                intervals=INTERVALS,
                max_limit=720,
                # [time_s, open, high, low, close, vwap, volume, count]
                rows=Rows(
                    time=0,
                    open=1,
                    high=2,
                    low=3,
                    close=4,
                    vwap=5,
                    volume=6,
                    trades=7,
                    width=8,
                    time_unit="s",
                    time_as_string=False,
                ),
                rows_path=("result", "*"),
                symbol_param="pair",
                start_param="since",
                end_param=None,
                limit_param=None,
                time_unit="s",
                exclusive_bounds=True,
                history_bars=720,
            ),
            symbol_pattern=r"[A-Z0-9./]+",
            symbol_example="XXBTZUSD",
        ),
    },
    limits={"public": RateLimit(1, 1.0, "about 1 public request / s per IP (ccxt)")},
    envelope=Envelope(
        errors_field="error",
        message_field=None,
        rate_limit_codes=("EAPI:Rate limit exceeded", "EGeneral:Too many requests"),
        busy_codes=("EService:Unavailable", "EService:Busy", "EGeneral:Internal error"),
    ),
    success_fields={"error": []},
    history_advice=(
        "Kraken keeps only the latest 720 candles per interval; load older history from files "
        "(Kraken's OHLCVT downloads, or Binance's data archive) with `hedgewatch import`"
    ),
)


class KrakenClient(RestClient):
    def __init__(self, *, spec: VenueSpec = KRAKEN, **options: Any) -> None:
        super().__init__(spec=spec, **options)
