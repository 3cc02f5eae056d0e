"""OKX v5 public market data (spot, USDT swaps, funding) as a `VenueSpec`.

`candles` serves only the latest 1,440 bars; older windows go to `history-candles`, which has
its own, smaller budget. `before`/`after` are exclusive and rows come newest first, with
`confirm = "0"` marking the open candle. Every body carries `code`; "0" is success, anything else
is an error even with HTTP 200. 1h is "1H"; daily and longer bars use the UTC variants ("1Dutc"),
since plain "1D" buckets start at Hong Kong midnight.
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
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1H",
    "2h": "2H",
    "4h": "4H",
    "6h": "6Hutc",
    "12h": "12Hutc",
    "1d": "1Dutc",
    "1w": "1Wutc",
}


def _rows(volume: int) -> Rows:
    # [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]; spot vol is base, swap vol is
    # contracts and volCcy is base.
    return Rows(
        time=0,
        open=1,
        high=2,
        low=3,
        close=4,
        volume=volume,
        quote_volume=7,
        width=9,
        closed_flag=8,
        closed_value="1",
    )


def _candles(volume: int) -> CandleEndpoint:
    history = CandleEndpoint(
        path="/api/v5/market/history-candles",
        intervals=INTERVALS,
        max_limit=300,
        rows=_rows(volume),
        rows_path=("data",),
        symbol_param="instId",
        interval_param="bar",
        start_param="before",  # rows newer than this
        end_param="after",  # rows older than this
        exclusive_bounds=True,
        newest_first=True,
        rate_limit="history",
    )
    return CandleEndpoint(
        path="/api/v5/market/candles",
        intervals=INTERVALS,
        max_limit=300,
        rows=_rows(volume),
        rows_path=("data",),
        symbol_param="instId",
        interval_param="bar",
        start_param="before",
        end_param="after",
        exclusive_bounds=True,
        newest_first=True,
        rate_limit="candles",
        history_bars=1440,
        older=history,
    )


OKX = VenueSpec(
    venue="okx",
    base_url="https://www.okx.com",
    time=TimeEndpoint(
        path="/api/v5/public/time",
        field_path=("data", 0, "ts"),
        unit="ms",
        as_string=True,
        rate_limit="time",
    ),
    markets={
        "spot": MarketSpec(
            market="spot",
            candles=_candles(volume=5),
            symbol_pattern=r"[A-Z0-9]+-[A-Z0-9]+",
            symbol_example="BTC-USDT",
        ),
        "perp": MarketSpec(
            market="perp",
            candles=_candles(volume=6),
            symbol_pattern=r"[A-Z0-9]+-[A-Z0-9]+-SWAP",
            symbol_example="BTC-USDT-SWAP",
            funding=FundingEndpoint(
                path="/api/v5/public/funding-rate-history",
                max_limit=100,
                time_field="fundingTime",
                rate_field="realizedRate",
                symbol_field="instId",
                rows_path=("data",),
                symbol_param="instId",
                start_param="before",
                end_param="after",
                exclusive_bounds=True,
                rate_limit="funding",
            ),
        ),
    },
    limits={
        "candles": RateLimit(40, 2.0, "market/candles: 40 requests / 2 s per IP"),
        "history": RateLimit(20, 2.0, "market/history-candles: 20 requests / 2 s per IP"),
        "funding": RateLimit(10, 2.0, "funding-rate-history: 10 requests / 2 s per IP+instId"),
        "time": RateLimit(10, 2.0, "public/time: 10 requests / 2 s per IP"),
    },
    envelope=Envelope(
        code_field="code",
        ok_codes=("0",),
        message_field="msg",
        rate_limit_codes=("50011", "50061"),
        busy_codes=("50001", "50004", "50013", "50026"),
    ),
    success_fields={"code": "0", "msg": ""},
    geo_advice="OKX refuses this location; regional hosts exist: us.okx.com, eea.okx.com",
)


class OkxClient(RestClient):
    def __init__(self, *, spec: VenueSpec = OKX, **options: Any) -> None:
        super().__init__(spec=spec, **options)
