"""Binance spot (/api/v3) and USD-M perpetuals (/fapi/v1) as a `VenueSpec`, with Binance's own
strict row decoders.

Each market has its own host and its own per-IP weight budget (counted per minute, echoed in
X-MBX-USED-WEIGHT-1M); a klines call weighs more the more rows it asks for. Rows come oldest
first, the live candle last; from `startTime` the venue answers the first `limit` rows, so
both klines and funding page forward from the start. Errors come as `{"code", "msg"}` bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from hedgewatch.venues.base import CANDLE_SCHEMA, FUNDING_SCHEMA
from hedgewatch.venues.errors import BadResponse
from hedgewatch.venues.fields import decimal_field, int_field, preview, utc_from_ms
from hedgewatch.venues.paging import ForwardFromStart
from hedgewatch.venues.rest import (
    CandleEndpoint,
    FundingEndpoint,
    MarketSpec,
    PathStep,
    RateLimit,
    RestClient,
    TimeEndpoint,
    VenueSpec,
)

_FIXED_INTERVALS = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
)


@dataclass(frozen=True)
class KlineRows:
    """Binance's 12-field kline rows in a bare JSON array (integers as JSON integers)."""

    def decode(
        self,
        payload: Any,
        rows_path: Sequence[PathStep],
        *,
        venue: str,
        market: str,
        symbol: str,
        interval: str,
        endpoint: str,
    ) -> tuple[pl.DataFrame, int]:
        frame = parse_klines(
            payload, venue=venue, market=market, symbol=symbol, interval=interval, endpoint=endpoint
        )
        return frame, len(payload)


@dataclass(frozen=True)
class FundingRows:
    """Binance fundingRate rows {symbol, fundingTime, fundingRate, markPrice}."""

    def decode(
        self, payload: Any, endpoint: FundingEndpoint, *, venue: str, symbol: str
    ) -> tuple[pl.DataFrame, int]:
        return parse_funding(payload, venue=venue, endpoint=endpoint.path), len(payload)


def _klines(
    path: str,
    max_limit: int,
    weights: tuple[tuple[int, int], ...],
    group: str,
    intervals: tuple[str, ...],
) -> CandleEndpoint:
    # The venue filters on open time, inclusive at both ends, and answers the first `limit` rows
    # from startTime (the latest `limit` without one).
    return CandleEndpoint(
        path=path,
        intervals={name: name for name in intervals},
        max_limit=max_limit,
        rows=KlineRows(),
        start_param="startTime",
        end_param="endTime",
        paging=ForwardFromStart(),
        rate_limit=group,
        limit_weights=weights,
        default_limit=500,
    )


BINANCE = VenueSpec(
    venue="binance",
    base_url="https://api.binance.com",
    time=TimeEndpoint(
        path="/api/v3/time", field_path=("serverTime",), unit="ms", rate_limit="spot", integer=True
    ),
    markets={
        "spot": MarketSpec(
            market="spot",
            # "1s" exists on spot only.
            candles=_klines(
                "/api/v3/klines", 1000, ((1000, 2),), "spot", ("1s", *_FIXED_INTERVALS)
            ),
            symbol_example="BTCUSDT",
        ),
        "perp": MarketSpec(
            market="perp",
            candles=_klines(
                "/fapi/v1/klines",
                1500,
                ((99, 1), (499, 2), (1000, 5), (1500, 10)),
                "perp",
                _FIXED_INTERVALS,
            ),
            symbol_example="BTCUSDT",
            funding=FundingEndpoint(
                path="/fapi/v1/fundingRate",
                max_limit=1000,
                time_field="fundingTime",
                rate_field="fundingRate",
                symbol_field="symbol",
                mark_field="markPrice",
                # Ascending and inclusive: a row stamped at the requested start is a repeat.
                paging=ForwardFromStart(repeats_cursor=True),
                newest_first=False,
                time_as_string=False,
                # fundingRate is limited separately (500 requests / 5 min / IP, shared with
                # fundingInfo); an hourly run asks a handful of times, so it is only counted
                # against the minute budget here.
                rate_limit="perp",
                default_limit=100,
                format=FundingRows(),
            ),
            base_url="https://fapi.binance.com",
            time=TimeEndpoint(
                path="/fapi/v1/time",
                field_path=("serverTime",),
                unit="ms",
                rate_limit="perp",
                integer=True,
            ),
        ),
    },
    limits={
        "spot": RateLimit(6000, 60.0, "6000 request weight / min per IP (spot)"),
        # Commonly 2400/min; the authoritative number is in /fapi/v1/exchangeInfo rateLimits.
        "perp": RateLimit(2400, 60.0, "2400 request weight / min per IP (USD-M)"),
    },
    used_weight_header="X-MBX-USED-WEIGHT-1M",
    geo_advice=(
        "Binance refuses this location (HTTP 451, also common on US cloud hosts); run from a "
        "permitted region, or set base_urls to another host: data-api.binance.vision serves spot "
        "market data, api.binance.us is a separate US exchange (spot only, fewer pairs)"
    ),
)

_KLINE_FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
)
_KLINE_DECIMALS = ((1, "open"), (2, "high"), (3, "low"), (4, "close"), (5, "volume"))


class BinanceClient(RestClient):
    """Closed candles and funding from Binance spot and USD-M perps."""

    def __init__(self, *, spec: VenueSpec = BINANCE, **options: Any) -> None:
        super().__init__(spec=spec, **options)


def parse_klines(
    payload: Any,
    *,
    venue: str,
    market: str,
    symbol: str,
    interval: str,
    endpoint: str = "/api/v3/klines",
) -> pl.DataFrame:
    """Binance 12-field kline rows -> CANDLE_SCHEMA (every row, open or closed, as given)."""
    rows = _expect_list(payload, venue, endpoint)
    n = len(rows)
    open_ms: list[int] = [0] * n
    decimals: dict[str, list[float]] = {name: [0.0] * n for _, name in _KLINE_DECIMALS}
    quote_volume: list[float | None] = [None] * n
    trades: list[int | None] = [None] * n
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 9:
            raise BadResponse(
                venue,
                endpoint,
                f"row {i}: expected a list of 12 fields ({', '.join(_KLINE_FIELDS)}, ...), "
                f"got {preview(row)}",
            )
        open_ms[i] = int_field(row[0], i, "open_time", venue, endpoint, digit_strings=False)
        for j, name in _KLINE_DECIMALS:
            decimals[name][i] = decimal_field(row[j], i, name, venue, endpoint)
        quote_volume[i] = decimal_field(row[7], i, "quote_volume", venue, endpoint)
        trades[i] = int_field(row[8], i, "trades", venue, endpoint, digit_strings=False)
    frame = pl.DataFrame(
        {
            "venue": [venue] * n,
            "market": [market] * n,
            "symbol": [symbol] * n,
            "interval": [interval] * n,
            "open_time": utc_from_ms(open_ms),
            **{name: pl.Series(name, values, pl.Float64) for name, values in decimals.items()},
            "quote_volume": pl.Series("quote_volume", quote_volume, pl.Float64),
            "trades": pl.Series("trades", trades, pl.Int64),
        },
    )
    return frame.select(CANDLE_SCHEMA.names()).cast(CANDLE_SCHEMA)


def parse_funding(
    payload: Any, *, venue: str, endpoint: str = "/fapi/v1/fundingRate"
) -> pl.DataFrame:
    """Binance fundingRate rows {symbol, fundingTime, fundingRate, markPrice} -> FUNDING_SCHEMA."""
    rows = _expect_list(payload, venue, endpoint)
    symbols: list[str] = []
    times: list[int] = []
    rates: list[float] = []
    marks: list[float | None] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadResponse(venue, endpoint, f"row {i}: expected an object, got {preview(row)}")
        symbol = row.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise BadResponse(
                venue,
                endpoint,
                f"row {i} field 'symbol': expected a string, got {preview(symbol)}",
            )
        symbols.append(symbol)
        times.append(
            int_field(
                row.get("fundingTime"), i, "fundingTime", venue, endpoint, digit_strings=False
            )
        )
        rates.append(decimal_field(row.get("fundingRate"), i, "fundingRate", venue, endpoint))
        # Older settlements come back with markPrice "" (or without it).
        mark = row.get("markPrice")
        marks.append(
            None if mark in (None, "") else decimal_field(mark, i, "markPrice", venue, endpoint)
        )
    return pl.DataFrame(
        {
            "venue": pl.Series("venue", [venue] * len(rows), pl.Utf8),
            "symbol": pl.Series("symbol", symbols, pl.Utf8),
            "funding_time": utc_from_ms(times),
            "funding_rate": pl.Series("funding_rate", rates, pl.Float64),
            "mark_price": pl.Series("mark_price", marks, pl.Float64),
        }
    ).cast(FUNDING_SCHEMA)


def _expect_list(payload: Any, venue: str, endpoint: str) -> list[Any]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and "code" in payload and "msg" in payload:
        detail = f"HTTP 200 with an error body: code {payload['code']}: {payload['msg']}"
        raise BadResponse(venue, endpoint, detail)
    raise BadResponse(venue, endpoint, f"expected a JSON array of rows, got {preview(payload)}")
