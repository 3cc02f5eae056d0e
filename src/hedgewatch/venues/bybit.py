"""Bybit v5 public market data (spot, USDT linear perps, funding) as a `VenueSpec`.

Klines come newest first with the open candle as row 0; funding history newest first, 200 a page,
and asking with only `startTime` is an error, so both bounds are always sent. HTTP 200 with
`retCode != 0` is an error. Limit: 600 requests per 5 s per IP across all hosts; beyond it Bybit
answers 403 ("access too frequent"), the same status it gives US addresses.
"""

from __future__ import annotations

from typing import Any

from hedgewatch.venues.http import Envelope
from hedgewatch.venues.rest import (
    CandleEndpoint,
    FundingEndpoint,
    MarketSpec,
    RateLimit,
    RestClient,
    Rows,
    TimeEndpoint,
    VenueSpec,
)

INTERVALS = {
    "1m": "1",
    "3m": "3",
    "5m": "5",
    "15m": "15",
    "30m": "30",
    "1h": "60",
    "2h": "120",
    "4h": "240",
    "6h": "360",
    "12h": "720",
    "1d": "D",
    "1w": "W",
}
# [startTime, open, high, low, close, volume (base), turnover (quote)], all strings.
ROWS = Rows(time=0, open=1, high=2, low=3, close=4, volume=5, quote_volume=6, width=7)


def _kline(category: str) -> CandleEndpoint:
    return CandleEndpoint(
        path="/v5/market/kline",
        intervals=INTERVALS,
        max_limit=1000,
        rows=ROWS,
        rows_path=("result", "list"),
        fixed_params={"category": category},
        newest_first=True,
    )


BYBIT = VenueSpec(
    venue="bybit",
    base_url="https://api.bybit.com",
    time=TimeEndpoint(path="/v5/market/time", field_path=("time",), unit="ms"),
    markets={
        "spot": MarketSpec(
            market="spot",
            candles=_kline("spot"),
            symbol_pattern=r"[A-Z0-9]+",
            symbol_example="BTCUSDT",
        ),
        "perp": MarketSpec(
            market="perp",
            candles=_kline("linear"),
            symbol_pattern=r"[A-Z0-9]+",
            symbol_example="BTCUSDT",
            funding=FundingEndpoint(
                path="/v5/market/funding/history",
                max_limit=200,
                time_field="fundingRateTimestamp",
                rate_field="fundingRate",
                symbol_field="symbol",
                rows_path=("result", "list"),
                fixed_params={"category": "linear"},
            ),
        ),
    },
    limits={"public": RateLimit(600, 5.0, "600 requests / 5 s per IP (Bybit v5 docs)")},
    envelope=Envelope(
        code_field="retCode",
        ok_codes=("0",),
        message_field="retMsg",
        rate_limit_codes=("10006", "10018"),
        busy_codes=("10016",),
    ),
    success_fields={"retCode": 0, "retMsg": "OK", "retExtInfo": {}},
    forbidden_advice=(
        "Bybit answers 403 both to addresses in blocked regions (the US, mainland China) and "
        "after 600 requests in 5 s; wait 10 minutes, and if it persists use a permitted egress "
        "or the alternative host api.bytick.com (base_urls)"
    ),
)


class BybitClient(RestClient):
    def __init__(self, *, spec: VenueSpec = BYBIT, **options: Any) -> None:
        super().__init__(spec=spec, **options)
