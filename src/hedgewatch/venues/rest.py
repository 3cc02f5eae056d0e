"""The one REST market-data client, driven entirely by a `VenueSpec`: Binance spot and USD-M,
Bybit, OKX, Coinbase and Kraken.

Everything that differs between venues — hosts, paths, parameter names, page size, request
weights, time unit, row order and layout, exclusive bounds, the open-candle marker, the error
envelope, the symbol format, rate budgets, and how a range is paged (a strategy object from
`paging`) — is data in the spec. The client has one paging loop for candles and funding alike,
and every page passes the shared guard. The replay exchange serves the same specs.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

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
from hedgewatch.venues.errors import BadResponse, HistoryUnavailable, InvalidRequest
from hedgewatch.venues.fields import MAX_MS, decimal_field, int_field, preview, utc_from_ms
from hedgewatch.venues.http import Envelope, JsonHttp, RetryPolicy, VenueBudget, WeightLimiter
from hedgewatch.venues.paging import (
    FUNDING_STEP_MS,
    BackwardFromEnd,
    FixedWindows,
    Page,
    PageGuard,
    Paging,
)

log = logging.getLogger(__name__)

TimeUnit = Literal["ms", "s", "iso"]
PathStep = str | int


@dataclass(frozen=True)
class RateLimit:
    """A documented per-IP budget: `budget` weight units per fixed window of `window_s` seconds."""

    budget: int
    window_s: float
    source: str = ""


@dataclass(frozen=True)
class Rows:
    """Where each candle field sits in a venue's list row, and how the wire writes values."""

    time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    width: int
    quote_volume: int | None = None
    trades: int | None = None
    vwap: int | None = None
    # The venue's own open-candle marker (OKX `confirm`: "0" open, "1" closed).
    closed_flag: int | None = None
    closed_value: str = "1"
    time_unit: Literal["ms", "s"] = "ms"
    time_as_string: bool = True
    numbers_as_strings: bool = True

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
        """The candles in a body (open ones the venue marks dropped) and how many rows it held."""
        rows = dig(payload, rows_path, venue, endpoint)
        frame = parse_rows(
            rows,
            self,
            venue=venue,
            market=market,
            symbol=symbol,
            interval=interval,
            endpoint=endpoint,
        )
        return frame, len(rows)


class RowFormat(Protocol):
    """Turns a candle body into CANDLE_SCHEMA rows: `Rows` describes list rows by position; a
    venue with a stricter format of its own (Binance's klines) brings its own decoder."""

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
    ) -> tuple[pl.DataFrame, int]: ...


class FundingFormat(Protocol):
    """Turns a funding body into FUNDING_SCHEMA rows (how many rows it held, too)."""

    def decode(
        self, payload: Any, endpoint: FundingEndpoint, *, venue: str, symbol: str
    ) -> tuple[pl.DataFrame, int]: ...


@dataclass(frozen=True)
class CandleEndpoint:
    path: str  # may contain "{symbol}" (Coinbase puts the product in the path)
    intervals: Mapping[str, str]  # our interval -> the venue's value
    max_limit: int
    rows: RowFormat
    rows_path: tuple[PathStep, ...] = ()  # keys to the row list; "*" = the one list-valued key
    symbol_param: str | None = "symbol"
    interval_param: str = "interval"
    start_param: str | None = "start"
    end_param: str | None = "end"
    limit_param: str | None = "limit"
    time_unit: TimeUnit = "ms"
    # OKX before/after are strict; Kraken's since means "after": widen by one unit on the wire.
    exclusive_bounds: bool = False
    newest_first: bool = False
    paging: Paging = field(default_factory=FixedWindows)
    fixed_params: Mapping[str, str] = field(default_factory=dict)
    rate_limit: str = "public"
    weight: int = 1
    # (largest limit, weight) ascending, when the weight grows with the limit (Binance).
    limit_weights: tuple[tuple[int, int], ...] = ()
    # The limit a request without one gets (what the replay assumes).
    default_limit: int | None = None
    # Only this many most recent bars are served (Kraken 720, OKX `candles` 1440)...
    history_bars: int | None = None
    # ...and older windows go here (OKX `history-candles`), or are unreachable when None.
    older: CandleEndpoint | None = None
    # Coinbase answers 400 when a range holds more candles than one page.
    range_over_limit_is_error: bool = False

    def weight_for(self, limit: int) -> int:
        """The request weight of a call asking for `limit` rows."""
        for largest, weight in self.limit_weights:
            if limit <= largest:
                return weight
        if self.limit_weights:
            raise ValueError(f"limit {limit} exceeds {self.path} maximum {self.max_limit}")
        return self.weight


@dataclass(frozen=True)
class FundingEndpoint:
    path: str
    max_limit: int
    time_field: str
    rate_field: str
    symbol_field: str | None = None
    mark_field: str | None = None
    rows_path: tuple[PathStep, ...] = ()
    symbol_param: str = "symbol"
    start_param: str | None = "startTime"
    end_param: str = "endTime"
    limit_param: str = "limit"
    exclusive_bounds: bool = False
    # Newest-first venues page back from the end; Binance forward from the start.
    paging: Paging = field(default_factory=BackwardFromEnd)
    newest_first: bool = True
    time_as_string: bool = True
    fixed_params: Mapping[str, str] = field(default_factory=dict)
    rate_limit: str = "public"
    weight: int = 1
    default_limit: int | None = None
    # A stricter decoder than the fields above describe (Binance's); None reads them.
    format: FundingFormat | None = None

    def decode(self, payload: Any, *, venue: str, symbol: str) -> tuple[pl.DataFrame, int]:
        if self.format is not None:
            return self.format.decode(payload, self, venue=venue, symbol=symbol)
        rows = dig(payload, self.rows_path, venue, self.path)
        return parse_funding_rows(rows, self, venue=venue, symbol=symbol), len(rows)


@dataclass(frozen=True)
class TimeEndpoint:
    path: str
    field_path: tuple[PathStep, ...]
    unit: Literal["ms", "s"]
    as_string: bool = False
    rate_limit: str = "public"
    # The venue sends a JSON integer; anything else (a string, a float) is a malformed body.
    integer: bool = False


@dataclass(frozen=True)
class MarketSpec:
    market: str
    candles: CandleEndpoint
    symbol_example: str
    # The venue's symbol format, checked before asking; None leaves it to the venue.
    symbol_pattern: str | None = None
    funding: FundingEndpoint | None = None
    # A market on a host of its own (Binance USD-M) with its own clock endpoint; None: the venue's.
    base_url: str | None = None
    time: TimeEndpoint | None = None


@dataclass(frozen=True)
class VenueSpec:
    """Every fact about one venue's public market-data API, as data."""

    venue: str
    base_url: str
    time: TimeEndpoint
    markets: Mapping[str, MarketSpec]
    limits: Mapping[str, RateLimit]
    envelope: Envelope | None = None
    # Extra fields of a success body, as the venue sends them (the replay writes them).
    success_fields: Mapping[str, Any] = field(default_factory=dict)
    # The venue's own count of the weight used in the current window (Binance), if it sends one.
    used_weight_header: str | None = None
    geo_advice: str | None = None
    forbidden_advice: str | None = None
    history_advice: str | None = None

    def market_time(self, market: str) -> TimeEndpoint:
        return self.markets[market].time or self.time


_E = TypeVar("_E", CandleEndpoint, FundingEndpoint)


class RestClient:
    """Closed candles and funding from one venue described by a `VenueSpec`."""

    def __init__(
        self,
        *,
        spec: VenueSpec,
        venue: str | None = None,
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
        self.venue = venue or spec.venue
        self.spec = spec
        self._limiters = {
            name: WeightLimiter(limit.budget, window_s=limit.window_s, clock=clock, sleep=sleep)
            for name, limit in spec.limits.items()
        }
        # Markets on the venue's host share one connection pool; a market with a host of its
        # own (Binance USD-M) gets its own.
        hosts: dict[str, str] = {}
        for name, market in spec.markets.items():
            group = name if market.base_url else ""
            hosts.setdefault(group, market.base_url or spec.base_url)
        given: dict[str, set[str]] = {}
        for name, url in overrides.items():
            given.setdefault(name if spec.markets[name].base_url else "", set()).add(url)
        for group, urls in given.items():
            if len(urls) > 1:
                raise ValueError(
                    f"{spec.venue} serves every market from one host; got {sorted(urls)}"
                )
            hosts[group] = next(iter(urls))
        policy = policy or RetryPolicy(max_attempts=max_attempts)
        budget = budget or VenueBudget()
        self._http: dict[str, JsonHttp] = {
            group: JsonHttp(
                self.venue,
                url,
                limiter=self._limiters[
                    spec.market_time(group).rate_limit if group else spec.time.rate_limit
                ],
                policy=policy,
                timeout_s=timeout_s,
                sleep=sleep,
                used_weight_header=spec.used_weight_header,
                geo_advice=spec.geo_advice,
                forbidden_advice=spec.forbidden_advice,
                envelope=spec.envelope,
                rng=rng,
                transport=transport,
                budget=budget,
            )
            for group, url in hosts.items()
        }

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for http in self._http.values():
            http.close()

    @property
    def history_bars(self) -> int | None:
        """Most recent bars the venue serves at all (None: back to listing)."""
        depths = [m.candles.history_bars for m in self.spec.markets.values()]
        if any(d is None for d in depths):
            return None
        if any(m.candles.older is not None for m in self.spec.markets.values()):
            return None
        return min(d for d in depths if d is not None)

    def page_size(self, market: str) -> int:
        """Candles per request on `market` (the venue's largest page)."""
        return self._market(market).candles.max_limit

    def server_time(self, market: str | None = None) -> datetime:
        """The venue's clock (`market`'s, where a market has a host of its own)."""
        return ms_to_datetime(self._server_time_ms(market))

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
        endpoint = spec.candles
        self._check_symbol(spec, symbol, endpoint.path)
        if interval not in endpoint.intervals:
            raise InvalidRequest(
                self.venue,
                endpoint.path,
                f"interval {interval!r} is not supported on {market}",
                advice=f"use one of {', '.join(endpoint.intervals)}",
            )
        step = interval_ms(interval)
        start_ms, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        if end_ms <= start_ms:
            return empty_candles()
        now_ms = self._server_time_ms(market) if now is None else datetime_to_ms(now)
        # Closed means open + step <= now.
        lo, hi = endpoint.paging.bounds(start_ms, min(end_ms - 1, now_ms - step), step)
        if hi < lo:
            return empty_candles()
        lo = self._reachable_from(endpoint, lo, hi, now_ms, step, symbol)

        def decode(current: CandleEndpoint, payload: Any) -> tuple[pl.DataFrame, int]:
            return current.rows.decode(
                payload,
                current.rows_path,
                venue=self.venue,
                market=market,
                symbol=symbol,
                interval=interval,
                endpoint=current.path,
            )

        pages = self._walk(
            market,
            lambda cursor: self._endpoint_for(endpoint, cursor, now_ms, step),
            endpoint.paging,
            lo,
            hi,
            step,
            guard=PageGuard(
                self.venue,
                endpoint.path,
                span_ms=hi - lo,
                step_ms=step,
                page_limit=endpoint.max_limit,
            ),
            params={endpoint.symbol_param: symbol} if endpoint.symbol_param else {},
            interval=endpoint.intervals[interval],
            symbol=symbol,
            decode=decode,
            column="open_time",
        )
        frame = pl.concat(pages) if pages else empty_candles()
        return (
            frame.filter(
                (pl.col("open_time") >= ms_to_datetime(lo))
                & (pl.col("open_time") <= ms_to_datetime(hi))
            )
            .unique(subset="open_time", keep="last", maintain_order=True)
            .sort("open_time")
        )

    def fetch_funding(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Funding settlements with start <= funding_time < end, ascending."""
        perp = self.spec.markets.get("perp")
        if perp is None or perp.funding is None:
            raise InvalidRequest(
                self.venue,
                "funding",
                "this venue has no perpetuals here, so no funding",
                advice="configure funding instruments on a venue with perps",
            )
        endpoint = perp.funding
        self._check_symbol(perp, symbol, endpoint.path)
        start_ms, end_ms = datetime_to_ms(start), datetime_to_ms(end)

        def decode(current: FundingEndpoint, payload: Any) -> tuple[pl.DataFrame, int]:
            return current.decode(payload, venue=self.venue, symbol=symbol)

        # Funding times are not on a grid: the cursor moves by 1 ms past a row.
        pages = self._walk(
            "perp",
            lambda cursor: endpoint,
            endpoint.paging,
            start_ms,
            end_ms - 1,
            1,
            guard=PageGuard(
                self.venue,
                endpoint.path,
                span_ms=end_ms - start_ms,
                step_ms=FUNDING_STEP_MS,
                page_limit=endpoint.max_limit,
            ),
            params={endpoint.symbol_param: symbol},
            interval=None,
            symbol=symbol,
            decode=decode,
            column="funding_time",
        )
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

    # -- the paging loop -----------------------------------------------------------------------

    def _walk(
        self,
        market: str,
        endpoint_at: Callable[[int], _E],
        paging: Paging,
        lo: int,
        hi: int,
        step: int,
        *,
        guard: PageGuard,
        params: Mapping[str, str | int],
        interval: str | None,
        symbol: str,
        decode: Callable[[_E, Any], tuple[pl.DataFrame, int]],
        column: str,
    ) -> list[pl.DataFrame]:
        """Every page of [lo, hi] (ms, inclusive) as `paging` walks it; the guard checks each."""
        http = self._http[market if self.spec.markets[market].base_url else ""]
        pages: list[pl.DataFrame] = []
        cursor = paging.start(lo, hi)
        while cursor is not None:
            current = endpoint_at(cursor)
            asked = paging.window(cursor, lo, hi, step, current.max_limit)
            query: dict[str, str | int] = {**params, **current.fixed_params}
            if interval is not None and isinstance(current, CandleEndpoint):
                query[current.interval_param] = interval
            unit: TimeUnit = current.time_unit if isinstance(current, CandleEndpoint) else "ms"
            pad = (1000 if unit in ("s", "iso") else 1) if current.exclusive_bounds else 0
            if current.start_param:
                query[current.start_param] = wire_time(asked[0] - pad, unit)
            if current.end_param:
                query[current.end_param] = wire_time(asked[1] + pad, unit)
            if current.limit_param:
                query[current.limit_param] = current.max_limit
            weight = (
                current.weight_for(current.max_limit)
                if isinstance(current, CandleEndpoint)
                else current.weight
            )
            payload = http.get(
                current.path.format(symbol=symbol),
                query,
                weight=weight,
                limiter=self._limiters[current.rate_limit],
            )
            frame, sent = decode(current, payload)
            pages.append(frame)
            times = frame[column]
            page = Page(
                rows=sent,
                limit=current.max_limit,
                oldest=None if frame.is_empty() else datetime_to_ms(times.min()),  # type: ignore[arg-type]
                newest=None if frame.is_empty() else datetime_to_ms(times.max()),  # type: ignore[arg-type]
            )
            cursor = paging.next(cursor, asked, page, lo, hi, step, guard)
        return pages

    # -- helpers -------------------------------------------------------------------------------

    def _market(self, market: str) -> MarketSpec:
        try:
            return self.spec.markets[market]
        except KeyError:
            raise InvalidRequest(
                self.venue,
                "-",
                f"unknown market {market!r}",
                advice=f"{self.venue} offers {', '.join(sorted(self.spec.markets))}",
            ) from None

    def _check_symbol(self, spec: MarketSpec, symbol: str, path: str) -> None:
        if spec.symbol_pattern is not None and not re.fullmatch(spec.symbol_pattern, symbol):
            raise InvalidRequest(
                self.venue,
                path,
                f"{symbol!r} is not a {self.venue} {spec.market} symbol",
                advice=f"use the venue's own symbol, e.g. {spec.symbol_example!r}",
            )

    def _reachable_from(
        self,
        endpoint: CandleEndpoint,
        first_open: int,
        last_open: int,
        now_ms: int,
        step: int,
        symbol: str,
    ) -> int:
        if endpoint.history_bars is None or endpoint.older is not None:
            return first_open
        # The served bars include the open one: the oldest is history_bars - 1 steps back.
        oldest = (now_ms // step - (endpoint.history_bars - 1)) * step
        if first_open >= oldest:
            return first_open
        message = (
            f"{self.venue} serves only the latest {endpoint.history_bars} candles of {symbol} "
            f"(from {ms_to_datetime(oldest):%Y-%m-%d %H:%M} UTC); earlier ones cannot be fetched"
        )
        if oldest > last_open:
            raise HistoryUnavailable(
                self.venue, endpoint.path, message, advice=self.spec.history_advice
            )
        log.warning("%s. %s", message, self.spec.history_advice or "")
        return oldest

    def _endpoint_for(
        self, endpoint: CandleEndpoint, lo: int, now_ms: int, step: int
    ) -> CandleEndpoint:
        if endpoint.history_bars is None or endpoint.older is None:
            return endpoint
        oldest = (now_ms // step - (endpoint.history_bars - 1)) * step
        return endpoint if lo >= oldest else endpoint.older

    def _server_time_ms(self, market: str | None = None) -> int:
        if market is not None:
            self._market(market)
        spec = self.spec.time if market is None else self.spec.market_time(market)
        own_host = market is not None and self.spec.markets[market].base_url
        http = self._http[market if own_host and market else ""]
        payload = http.get(spec.path, limiter=self._limiters[spec.rate_limit])
        try:
            value = payload
            for step in spec.field_path:
                value = value[step]
            if spec.integer and (not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(value)
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
        except (KeyError, IndexError, TypeError, ValueError):
            raise BadResponse(
                self.venue,
                spec.path,
                f"expected the server time at {'.'.join(map(str, spec.field_path))}, "
                f"got {preview(payload)}",
            ) from None
        return int(number * 1000) if spec.unit == "s" else int(number)


def wire_time(ms: int, unit: TimeUnit) -> str | int:
    if unit == "ms":
        return ms
    if unit == "s":
        return ms // 1000
    return ms_to_datetime(ms).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_wire_time(value: str, unit: TimeUnit) -> int:
    """A wire time parameter back to ms (for the replay exchange)."""
    if unit == "ms":
        return int(value)
    if unit == "s":
        return int(float(value) * 1000)
    return datetime_to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


def dig(payload: Any, path: Sequence[PathStep], venue: str, endpoint: str) -> list[Any]:
    """The row list at `path` in `payload` ("*" = the single list-valued key, as Kraken names
    its result by the pair's internal name)."""
    value = payload
    for step in path:
        if step == "*" and isinstance(value, dict):
            lists = [v for v in value.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise BadResponse(venue, endpoint, f"expected one row list, got {preview(value)}")
            value = lists[0]
        elif (isinstance(value, dict) and isinstance(step, str) and step in value) or (
            isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value)
        ):
            value = value[step]  # type: ignore[index]
        else:
            raise BadResponse(
                venue,
                endpoint,
                f"expected rows at {'.'.join(map(str, path))}, got {preview(payload)}",
            )
    if not isinstance(value, list):
        raise BadResponse(venue, endpoint, f"expected a list of rows, got {preview(value)}")
    return value


def parse_rows(
    rows: list[Any],
    layout: Rows,
    *,
    venue: str,
    market: str,
    symbol: str,
    interval: str,
    endpoint: str,
) -> pl.DataFrame:
    """List rows in any order -> CANDLE_SCHEMA; rows the venue marks as open are dropped."""
    times: list[int] = []
    values: dict[str, list[float | None]] = {
        name: [] for name in ("open", "high", "low", "close", "volume", "quote_volume")
    }
    trades: list[int | None] = []
    scale = 1000 if layout.time_unit == "s" else 1
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < layout.width:
            raise BadResponse(
                venue,
                endpoint,
                f"row {i}: expected a list of {layout.width} fields, got {preview(row)}",
            )
        if layout.closed_flag is not None and str(row[layout.closed_flag]) != layout.closed_value:
            continue
        moment = int_field(row[layout.time], i, "time", venue, endpoint) * scale
        if abs(moment) > MAX_MS:  # seconds that are in range can still overflow as ms
            shown = preview(row[layout.time])
            raise BadResponse(venue, endpoint, f"row {i} field 'time': {shown} is out of range")
        times.append(moment)
        for name in ("open", "high", "low", "close", "volume"):
            values[name].append(decimal_field(row[getattr(layout, name)], i, name, venue, endpoint))
        values["quote_volume"].append(
            None
            if layout.quote_volume is None
            else decimal_field(row[layout.quote_volume], i, "quote_volume", venue, endpoint)
        )
        trades.append(
            None
            if layout.trades is None
            else int_field(row[layout.trades], i, "trades", venue, endpoint)
        )
    n = len(times)
    frame = pl.DataFrame(
        {
            "venue": [venue] * n,
            "market": [market] * n,
            "symbol": [symbol] * n,
            "interval": [interval] * n,
            "open_time": utc_from_ms(times),
            **{name: pl.Series(name, vals, pl.Float64) for name, vals in values.items()},
            "trades": pl.Series("trades", trades, pl.Int64),
        },
        schema_overrides={
            "venue": pl.Utf8,
            "market": pl.Utf8,
            "symbol": pl.Utf8,
            "interval": pl.Utf8,
        },
    )
    return frame.select(CANDLE_SCHEMA.names()).cast(CANDLE_SCHEMA)


def parse_funding_rows(
    rows: list[Any], endpoint: FundingEndpoint, *, venue: str, symbol: str
) -> pl.DataFrame:
    times: list[int] = []
    rates: list[float | None] = []
    marks: list[float | None] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadResponse(
                venue, endpoint.path, f"row {i}: expected an object, got {preview(row)}"
            )
        if endpoint.symbol_field and row.get(endpoint.symbol_field) not in (None, symbol):
            continue
        times.append(
            int_field(row.get(endpoint.time_field), i, endpoint.time_field, venue, endpoint.path)
        )
        rates.append(
            decimal_field(
                row.get(endpoint.rate_field), i, endpoint.rate_field, venue, endpoint.path
            )
        )
        mark = row.get(endpoint.mark_field) if endpoint.mark_field else None
        marks.append(
            None if mark in (None, "") else decimal_field(mark, i, "mark", venue, endpoint.path)
        )
    n = len(times)
    return pl.DataFrame(
        {
            "venue": pl.Series("venue", [venue] * n, pl.Utf8),
            "symbol": pl.Series("symbol", [symbol] * n, pl.Utf8),
            "funding_time": utc_from_ms(times),
            "funding_rate": pl.Series("funding_rate", rates, pl.Float64),
            "mark_price": pl.Series("mark_price", marks, pl.Float64),
        }
    ).cast(FUNDING_SCHEMA)
