"""Coinbase Exchange public candles (spot only) as a `VenueSpec`.

`GET /products/{product}/candles?granularity=<s>&start=<iso>&end=<iso>`: at most 300 candles per
request (a wider range is answered 400), newest first, rows `[time_s, low, high, open, close,
volume]` as JSON numbers — note low and high come before open. Errors are `{"message": …}` with a
4xx status. Public budget: 10 requests/s per IP.
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

GRANULARITY = {"1m": "60", "5m": "300", "15m": "900", "1h": "3600", "6h": "21600", "1d": "86400"}

COINBASE = VenueSpec(
    venue="coinbase",
    base_url="https://api.exchange.coinbase.com",
    time=TimeEndpoint(path="/time", field_path=("epoch",), unit="s"),
    markets={
        "spot": MarketSpec(
            market="spot",
            candles=CandleEndpoint(
                path="/products/{symbol}/candles",
                intervals=GRANULARITY,
                max_limit=300,
                rows=Rows(
                    time=0,
                    low=1,
                    high=2,
                    open=3,
                    close=4,
                    volume=5,
                    width=6,
                    time_unit="s",
                    time_as_string=False,
                    numbers_as_strings=False,
                ),
                symbol_param=None,
                interval_param="granularity",
                start_param="start",
                end_param="end",
                limit_param=None,
                time_unit="iso",
                newest_first=True,
                range_over_limit_is_error=True,
            ),
            symbol_pattern=r"[A-Z0-9]+-[A-Z0-9]+",
            symbol_example="BTC-USD",
        ),
    },
    limits={"public": RateLimit(10, 1.0, "public endpoints: 10 requests / s per IP")},
    envelope=Envelope(message_field="message"),
)


class CoinbaseClient(RestClient):
    def __init__(self, *, spec: VenueSpec = COINBASE, **options: Any) -> None:
        super().__init__(spec=spec, **options)
