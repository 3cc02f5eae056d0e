"""Binance spot and USD-M perpetual market data: klines and funding, parsed into the shared schemas.

Venue facts (hosts, paths, page sizes, weights, budgets) are data in BINANCE; the client paginates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import polars as pl

from hedgewatch.venues.base import (
    CANDLE_SCHEMA,
    FUNDING_SCHEMA,
    base_url_overrides,
    datetime_to_ms,
    empty_candles,
    empty_funding,
    interval_ms,
    ms_to_datetime,
)
from hedgewatch.venues.errors import BadResponse, InvalidRequest
from hedgewatch.venues.fields import decimal_field, int_field, preview, utc_from_ms
from hedgewatch.venues.http import JsonHttp, RetryPolicy, VenueBudget, WeightLimiter
from hedgewatch.venues.paging import FUNDING_STEP_MS, PageGuard

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
class MarketSpec:
    """One Binance market (its own host and its own per-IP weight budget)."""

    market: str
    base_url: str
    time_path: str
    klines_path: str
    klines_max_limit: int
    # (largest limit, weight) in ascending order: the request weight of a klines call by its limit.
    klines_weights: tuple[tuple[int, int], ...]
    weight_budget_per_minute: int
    intervals: tuple[str, ...] = _FIXED_INTERVALS
    # The budget's window; Binance counts per minute (benchmarks scale both down together).
    weight_window_s: float = 60.0
    funding_path: str | None = None
    funding_max_limit: int = 0
    # fundingRate is limited separately (500 requests / 5 min / IP, shared with fundingInfo); an
    # hourly run asks a handful of times, so it is only counted against the minute budget here.
    funding_weight: int = 1
    time_weight: int = 1

    def klines_weight(self, limit: int) -> int:
        for largest, weight in self.klines_weights:
            if limit <= largest:
                return weight
        raise ValueError(
            f"limit {limit} exceeds {self.market} klines maximum {self.klines_max_limit}"
        )


@dataclass(frozen=True)
class VenueSpec:
    venue: str
    markets: Mapping[str, MarketSpec]
    used_weight_header: str
    geo_advice: str


BINANCE = VenueSpec(
    venue="binance",
    markets={
        "spot": MarketSpec(
            market="spot",
            base_url="https://api.binance.com",
            time_path="/api/v3/time",
            klines_path="/api/v3/klines",
            klines_max_limit=1000,
            klines_weights=((1000, 2),),
            weight_budget_per_minute=6000,
            # "1s" exists on spot only.
            intervals=("1s", *_FIXED_INTERVALS),
        ),
        "perp": MarketSpec(
            market="perp",
            base_url="https://fapi.binance.com",
            time_path="/fapi/v1/time",
            klines_path="/fapi/v1/klines",
            klines_max_limit=1500,
            klines_weights=((99, 1), (499, 2), (1000, 5), (1500, 10)),
            # Commonly 2400/min; the authoritative number is in /fapi/v1/exchangeInfo rateLimits.
            weight_budget_per_minute=2400,
            funding_path="/fapi/v1/fundingRate",
            funding_max_limit=1000,
        ),
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


class BinanceClient:
    """Closed candles and funding from Binance spot (/api/v3) and USD-M perps (/fapi/v1)."""

    def __init__(
        self,
        *,
        venue: str = "binance",
        spec: VenueSpec = BINANCE,
        base_urls: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        budget: VenueBudget | None = None,
    ) -> None:
        overrides = base_url_overrides(base_urls, spec.markets)
        self.venue = venue
        budget = budget or VenueBudget()
        self.spec = spec
        policy = policy or RetryPolicy(max_attempts=max_attempts)
        self._http: dict[str, JsonHttp] = {}
        for name, market in spec.markets.items():
            limiter = WeightLimiter(
                market.weight_budget_per_minute,
                window_s=market.weight_window_s,
                clock=clock,
                sleep=sleep,
            )
            self._http[name] = JsonHttp(
                venue,
                overrides.get(name, market.base_url),
                limiter=limiter,
                policy=policy,
                timeout_s=timeout_s,
                sleep=sleep,
                used_weight_header=spec.used_weight_header,
                geo_advice=spec.geo_advice,
                rng=rng,
                transport=transport,
                budget=budget,
            )

    def __enter__(self) -> BinanceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for http in self._http.values():
            http.close()

    def server_time(self, market: str = "spot") -> datetime:
        return ms_to_datetime(self._server_time_ms(self._market(market)))

    def fetch_candles(
        self,
        market: str,
        symbol: str,
        interval: str,
        start: datetime,
        end: datetime,
        *,
        now: datetime | None = None,
    ) -> pl.DataFrame:
        """Every closed candle with start <= open_time < end, ascending, one row per open_time."""
        spec = self._market(market)
        if interval not in spec.intervals:
            raise InvalidRequest(
                self.venue,
                spec.klines_path,
                f"interval {interval!r} is not supported on {market}",
                advice=f"use one of {', '.join(spec.intervals)}",
            )
        step = interval_ms(interval)
        start_ms, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        if end_ms <= start_ms:
            return empty_candles()
        now_ms = self._server_time_ms(spec) if now is None else datetime_to_ms(now)
        # The venue filters on open time, inclusive at both ends; closed means open + step <= now.
        last_open_ms = min(end_ms - 1, now_ms - step)
        http = self._http[spec.market]
        limit = spec.klines_max_limit
        weight = spec.klines_weight(limit)
        pages: list[pl.DataFrame] = []
        cursor = start_ms
        guard = PageGuard(
            self.venue,
            spec.klines_path,
            span_ms=last_open_ms - start_ms,
            step_ms=step,
            page_limit=limit,
        )
        while cursor <= last_open_ms:
            params: dict[str, str | int] = {
                "symbol": symbol,
                "interval": interval,
                "startTime": cursor,
                "endTime": last_open_ms,
                "limit": limit,
            }
            payload = http.get(spec.klines_path, params, weight=weight)
            page = parse_klines(
                payload,
                venue=self.venue,
                market=spec.market,
                symbol=symbol,
                interval=interval,
                endpoint=spec.klines_path,
            )
            if page.is_empty():
                break
            pages.append(page)
            newest_ms = datetime_to_ms(page["open_time"].max())  # type: ignore[arg-type]
            # A short page means the range is exhausted; a page that does not advance is an error.
            if len(payload) < limit:
                break
            cursor = guard.advance(cursor, newest_ms + step)
        if not pages:
            return empty_candles()
        start_dt, end_dt = ms_to_datetime(start_ms), ms_to_datetime(min(end_ms, now_ms - step + 1))
        return (
            pl.concat(pages)
            .filter((pl.col("open_time") >= start_dt) & (pl.col("open_time") < end_dt))
            .unique(subset="open_time", keep="last", maintain_order=True)
            .sort("open_time")
        )

    def fetch_funding(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Funding settlements with start <= funding_time < end, ascending."""
        spec = self._market("perp")
        path = spec.funding_path
        if path is None:  # pragma: no cover - the spec always has it for Binance
            raise InvalidRequest(self.venue, "funding", "this venue spec has no funding endpoint")
        start_ms, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        http = self._http[spec.market]
        limit = spec.funding_max_limit
        pages: list[pl.DataFrame] = []
        cursor = start_ms
        guard = PageGuard(
            self.venue, path, span_ms=end_ms - start_ms, step_ms=FUNDING_STEP_MS, page_limit=limit
        )
        while cursor < end_ms:
            params: dict[str, str | int] = {
                "symbol": symbol,
                "startTime": cursor,
                "endTime": end_ms - 1,
                "limit": limit,
            }
            payload = http.get(path, params, weight=spec.funding_weight)
            page = parse_funding(payload, venue=self.venue, endpoint=path)
            if page.is_empty():
                break
            pages.append(page)
            newest_ms = datetime_to_ms(page["funding_time"].max())  # type: ignore[arg-type]
            if len(payload) < limit:
                break
            # Rows stamped at the requested start (or older) move nothing: stop, with an error.
            cursor = guard.advance(cursor, newest_ms + 1 if newest_ms > cursor else cursor)
        if not pages:
            return empty_funding()
        return (
            pl.concat(pages)
            .filter(
                (pl.col("funding_time") >= ms_to_datetime(start_ms))
                & (pl.col("funding_time") < ms_to_datetime(end_ms))
                & (pl.col("symbol") == symbol)
            )
            .unique(subset="funding_time", keep="last", maintain_order=True)
            .sort("funding_time")
        )

    def _market(self, market: str) -> MarketSpec:
        try:
            return self.spec.markets[market]
        except KeyError:
            raise InvalidRequest(
                self.venue,
                "-",
                f"unknown market {market!r}",
                advice=f"use one of {', '.join(sorted(self.spec.markets))}",
            ) from None

    def _server_time_ms(self, spec: MarketSpec) -> int:
        payload = self._http[spec.market].get(spec.time_path, weight=spec.time_weight)
        if isinstance(payload, dict):
            value = payload.get("serverTime")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        raise BadResponse(
            self.venue, spec.time_path, f'expected {{"serverTime": <ms>}}, got {preview(payload)}'
        )


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
