"""A replay of Binance's public REST API on loopback, serving stored candles and funding.

Real HTTP (ThreadingHTTPServer), Binance wire format and limits, a controllable clock, weight
accounting and fault injection, so tests, demos and benchmarks run the production client offline.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import polars as pl

from hedgewatch.venues.base import UTC_US, datetime_to_ms, interval_ms
from hedgewatch.venues.binance import BINANCE, MarketSpec, VenueSpec
from hedgewatch.venues.rest import (
    CandleEndpoint,
    FundingEndpoint,
    RestVenueSpec,
    Rows,
    parse_wire_time,
)
from hedgewatch.venues.rest import MarketSpec as RestMarketSpec

FaultKind = Literal[
    "status", "timeout", "truncate", "reset", "drop_candles", "duplicate", "shuffle"
]


@dataclass
class Fault:
    """A misbehaviour applied to the next `count` requests whose path starts with `path_prefix`.

    kinds: "status" answers `code` with `body` (a default Binance body per code) and Retry-After;
    "timeout" waits `delay_s` before answering; "truncate" sends half the JSON with a matching
    Content-Length; "reset" announces the full body, sends half and closes the connection;
    "drop_candles" hides the candles at `open_times` (like a real gap: pages stay full);
    "duplicate" repeats the row before startTime and the last row of each klines page;
    "shuffle" sends a candle page in a scrambled order. A "status" fault with `code=200` and a
    venue error envelope as `body` is the HTTP-200-with-an-error case.
    `count=None` applies to every matching request.
    """

    kind: FaultKind
    path_prefix: str = "/"
    count: int | None = 1
    code: int = 500
    body: Any = None
    retry_after: float | None = None
    delay_s: float = 0.0
    open_times: tuple[datetime, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "drop_candles" and not self.open_times:
            raise ValueError("a drop_candles fault needs the open_times to hide")


@dataclass(frozen=True)
class RequestLog:
    path: str
    params: dict[str, str]
    status: int
    fault: str | None


_DEFAULT_BODIES: dict[int, Any] = {
    400: {"code": -1121, "msg": "Invalid symbol."},
    403: "<html><body><h1>403 Forbidden</h1>Request blocked.</body></html>",
    429: {"code": -1003, "msg": "Too many requests; please use the websocket for live updates."},
    451: {
        "code": 0,
        "msg": "Service unavailable from a restricted location according to 'b. Eligibility' in "
        "the terms of use. Please contact customer service if you believe you received this "
        "message in error.",
    },
}
# takerBuyBase, takerBuyQuote, ignore: not in the stored files.
_TAKER = ("0", "0", "0")
_SERVER_ERROR_BODY = {"code": -1001, "msg": "Internal error; unable to process your request."}


@dataclass
class _Series:
    """One (market, symbol, interval): sorted open times and their values, column by column."""

    step_ms: int
    times: list[int]
    columns: dict[str, list[Any]]


@dataclass
class _Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ReplayExchange:
    """Serves `candles` (columns as from load_candle_files, plus optional `interval`) and funding.

    Only rows with open_time <= now are visible; the stored candle containing `now` is served as the
    open candle, synthesised as its first instant: open = high = low = close = the stored open,
    and volume, quote volume and trades scaled by the elapsed fraction of the interval. A flat
    price rather than the stored close keeps the future out of view and makes a client that keeps
    the open candle easy to spot. Values missing from a file (quote_volume, trades, the volume of
    a mark-price file) are sent as "0", since the wire format has no null.
    """

    venue = "binance"

    def __init__(
        self,
        candles: pl.DataFrame,
        funding: pl.DataFrame | None = None,
        *,
        now: datetime,
        weight_limit_per_minute: int = 6000,
        weight_window_s: float = 60.0,
        interval: str = "1h",
        weight_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        spec: VenueSpec = BINANCE,
    ) -> None:
        self._spec = spec
        self._weight_limit = weight_limit_per_minute
        self._weight_window_s = weight_window_s
        self._weight_clock = weight_clock
        self._address = (host, port)
        self._lock = threading.Lock()
        self._now_ms = datetime_to_ms(now)
        self._faults: list[Fault] = []
        self._weights: dict[str, tuple[int, int]] = {}  # market -> (window, used)
        self.requests: list[RequestLog] = []
        if "interval" not in candles.columns:
            candles = candles.with_columns(pl.lit(interval).alias("interval"))
        self._candles = candles.sort("market", "symbol", "interval", "open_time")
        self._symbols = {
            (row[0], row[1])
            for row in self._candles.select("market", "symbol").unique().iter_rows()
        }
        self._series: dict[tuple[str, str, str], _Series | None] = {}
        self._funding = _prepare_funding(funding, self.venue)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the replay exchange is not running; call start() or use `with`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_urls(self) -> dict[str, str]:
        """The mapping to pass as make_exchange(..., base_urls=...)."""
        return {market: self.url for market in self._spec.markets}

    def start(self) -> ReplayExchange:
        if self._server is None:
            self._server = _Server(self._address, _Handler, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="replay-exchange",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> ReplayExchange:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------------

    def set_now(self, now: datetime) -> None:
        with self._lock:
            self._now_ms = datetime_to_ms(now)

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def statuses(self, path_prefix: str = "/") -> list[int]:
        """HTTP statuses answered so far for paths under `path_prefix`, in order."""
        with self._lock:
            return [r.status for r in self.requests if r.path.startswith(path_prefix)]

    # -- request handling ------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and (fault.count is None or fault.count > 0):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def _log(self, path: str, params: dict[str, str], status: int, fault: Fault | None) -> None:
        with self._lock:
            self.requests.append(RequestLog(path, params, status, fault.kind if fault else None))

    def _route(self, path: str) -> tuple[MarketSpec, str] | None:
        for market in self._spec.markets.values():
            endpoints = {
                market.time_path: "time",
                market.klines_path: "klines",
                market.funding_path: "funding",
            }
            if path in endpoints:
                return market, endpoints[path]
        return None

    def _charge(self, market: MarketSpec, weight: int) -> tuple[bool, int, float]:
        """Book `weight` in the market's current minute: (allowed, used, seconds to next window)."""
        now = self._weight_clock()
        window = math.floor(now / self._weight_window_s)
        with self._lock:
            booked_window, used = self._weights.get(market.market, (window, 0))
            if booked_window != window:
                used = 0
            allowed = used + weight <= self._weight_limit
            if allowed:
                used += weight
            self._weights[market.market] = (window, used)
        return allowed, used, (window + 1) * self._weight_window_s - now

    def _respond(self, path: str, params: dict[str, str], fault: Fault | None) -> _Response:
        route = self._route(path)
        if route is None:
            return _Response(404, {"code": -1, "msg": f"Unknown endpoint {path}."})
        market, endpoint = route
        weight = 1
        if endpoint == "klines":
            limit = _int_param(params, "limit", 500)
            if limit is not None and 1 <= limit <= market.klines_max_limit:
                weight = market.klines_weight(limit)
        elif endpoint == "funding":
            weight = market.funding_weight
        allowed, used, retry_after = self._charge(market, weight)
        headers = {self._spec.used_weight_header: str(used)}
        if fault is not None and fault.kind == "status":
            body = fault.body if fault.body is not None else _default_body(fault.code)
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return _Response(fault.code, body, headers)
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            msg = (
                f"Too much request weight used; current limit is {self._weight_limit} request "
                "weight per 1 MINUTE. Please use WebSocket Streams for live updates."
            )
            return _Response(429, {"code": -1003, "msg": msg}, headers)
        with self._lock:
            now_ms = self._now_ms
        try:
            if endpoint == "time":
                payload: Any = {"serverTime": now_ms}
            elif endpoint == "klines":
                payload = self._klines(market, params, now_ms, fault)
            else:
                payload = self._funding_rows(params, now_ms)
        except _ApiError as exc:
            return _Response(exc.status, {"code": exc.code, "msg": exc.msg}, headers)
        return _Response(200, payload, headers)

    def _klines(
        self, market: MarketSpec, params: dict[str, str], now_ms: int, fault: Fault | None
    ) -> list[list[Any]]:
        symbol = _required(params, "symbol")
        interval = _required(params, "interval")
        if interval not in market.intervals:
            raise _ApiError(400, -1120, "Invalid interval.")
        limit = _limit(params, default=500, maximum=market.klines_max_limit)
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if (market.market, symbol) not in self._symbols:
            raise _ApiError(400, -1121, "Invalid symbol.")
        series = self._load_series(market.market, symbol, interval)
        if series is None:
            return []
        hidden: set[int] = set()
        if fault is not None and fault.kind == "drop_candles":
            hidden = {datetime_to_ms(t) for t in fault.open_times}
        hi = bisect.bisect_right(series.times, now_ms)
        if end is not None:
            hi = min(hi, bisect.bisect_right(series.times, end))
        lo = 0 if start is None else bisect.bisect_left(series.times, start)
        # Like the venue: from startTime the first `limit` rows, otherwise the latest `limit`.
        picked = [i for i in range(lo, hi) if series.times[i] not in hidden]
        picked = picked[:limit] if start is not None else picked[-limit:]
        picked = _apply_row_faults(picked, fault)
        return [self._wire_row(series, i, now_ms) for i in picked]

    def _wire_row(self, series: _Series, i: int, now_ms: int) -> list[Any]:
        open_ms, step = series.times[i], series.step_ms
        c = series.columns
        volume, quote_volume, trades = c["volume"][i], c["quote_volume"][i], c["trades"][i]
        if open_ms + step <= now_ms:
            prices = [c["open"][i], c["high"][i], c["low"][i], c["close"][i]]
        else:
            # The candle in progress (see the class docstring for how it is synthesised).
            fraction = (now_ms - open_ms) / step
            prices = [c["open"][i]] * 4
            volume = None if volume is None else volume * fraction
            quote_volume = None if quote_volume is None else quote_volume * fraction
            trades = None if trades is None else int(trades * fraction)
        return [
            open_ms,
            *map(_dec, prices),
            _dec(volume),
            open_ms + step - 1,
            _dec(quote_volume),
            trades or 0,
            *_TAKER,
        ]

    def _funding_rows(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        symbol = params.get("symbol")
        limit = _limit(params, default=100, maximum=1000)
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        frame = self._funding.filter(pl.col("ts") <= now_ms)
        if symbol is not None:
            if symbol not in self._funding["symbol"]:
                raise _ApiError(400, -1121, "Invalid symbol.")
            frame = frame.filter(pl.col("symbol") == symbol)
        if start is not None:
            frame = frame.filter(pl.col("ts") >= start)
        if end is not None:
            frame = frame.filter(pl.col("ts") <= end)
        frame = frame.sort("ts", "symbol")
        frame = frame.head(limit) if start is not None else frame.tail(limit)
        return [
            {
                "symbol": sym,
                "fundingTime": ts,
                "fundingRate": _dec(rate),
                "markPrice": "" if mark is None else _dec(mark),
            }
            for sym, ts, rate, mark in frame.select("symbol", "ts", "rate", "mark").iter_rows()
        ]

    def _load_series(self, market: str, symbol: str, interval: str) -> _Series | None:
        key = (market, symbol, interval)
        with self._lock:
            if key in self._series:
                return self._series[key]
        step = interval_ms(interval)
        frame = self._candles.filter(
            (pl.col("market") == market)
            & (pl.col("symbol") == symbol)
            & (pl.col("interval") == interval)
        ).unique(subset="open_time", keep="first", maintain_order=True)
        series = None
        if not frame.is_empty():
            names = ("open", "high", "low", "close", "volume", "quote_volume", "trades")
            series = _Series(
                step,
                frame["open_time"].dt.epoch("ms").to_list(),
                {name: frame[name].to_list() for name in names},
            )
        with self._lock:
            self._series[key] = series
        return series


def _apply_row_faults(picked: list[int], fault: Fault | None) -> list[int]:
    """Duplicate or scramble the rows of one page (indices into the stored series)."""
    if fault is not None and fault.kind == "duplicate" and picked:
        before = [picked[0] - 1] if picked[0] > 0 else []
        return [*before, *picked, picked[-1]]
    if fault is not None and fault.kind == "shuffle" and len(picked) > 2:
        # A fixed scramble: odd positions first, then even ones reversed.
        return picked[1::2] + picked[0::2][::-1]
    return picked


class _ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise _ApiError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _limit(params: dict[str, str], *, default: int, maximum: int) -> int:
    limit = _int_param(params, "limit", default)
    assert limit is not None
    if not 1 <= limit <= maximum:
        raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _dec(value: float | None) -> str:
    # Binance sends fixed 8-decimal strings.
    return "0" if value is None else f"{value:.8f}"


def _default_body(code: int) -> Any:
    if code == 418:
        until = int(time.time() * 1000) + 120_000
        return {
            "code": -1003,
            "msg": f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        }
    if code >= 500:
        return _SERVER_ERROR_BODY
    return _DEFAULT_BODIES.get(code, {"code": -1000, "msg": "An unknown error occurred."})


def _prepare_funding(funding: pl.DataFrame | None, venue: str = "binance") -> pl.DataFrame:
    """One venue's rows of a load_funding_files frame as (symbol, ts ms, rate, mark)."""
    empty = pl.DataFrame(
        schema={"symbol": pl.Utf8, "ts": pl.Int64, "rate": pl.Float64, "mark": pl.Float64}
    )
    if funding is None or funding.is_empty():
        return empty
    if "exchange" in funding.columns:
        funding = funding.filter(pl.col("exchange") == venue)
    mark = pl.col("mark_price") if "mark_price" in funding.columns else pl.lit(None, pl.Float64)
    return funding.select(
        pl.col("symbol"),
        pl.col("funding_time").dt.epoch("ms").alias("ts"),
        pl.col("funding_rate").alias("rate"),
        mark.alias("mark"),
    ).unique(subset=["symbol", "ts"], keep="first")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        replay: ReplayExchange,
    ) -> None:
        self.replay = replay
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out closes its socket; the late answer then hits a closed pipe.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        replay = self.server.replay
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        fault = replay._take_fault(url.path)
        if fault is not None and fault.kind == "timeout":
            time.sleep(fault.delay_s)
        response = replay._respond(url.path, params, fault)
        replay._log(url.path, params, response.status, fault)
        if isinstance(response.body, str):
            payload, content_type = response.body.encode(), "text/html"
        else:
            payload = json.dumps(response.body, separators=(",", ":")).encode()
            content_type = "application/json;charset=UTF-8"
        announced = len(payload)
        if fault is not None and fault.kind == "truncate":
            payload = payload[: len(payload) // 2]
            announced = len(payload)
        elif fault is not None and fault.kind == "reset":
            payload = payload[: len(payload) // 2]
            self.close_connection = True
        self.send_response(response.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(announced))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


# -- the other venues ------------------------------------------------------------------------------

# What each venue answers when a request is over its budget, and when a symbol or parameter is
# wrong: (HTTP status, error code or None, message). Kraken and OKX/Bybit send errors with 200.
_OVER_BUDGET: dict[str, tuple[int, str | None, str]] = {
    "bybit": (403, None, "<html><body>403 Forbidden: access too frequent</body></html>"),
    "okx": (429, "50011", "Too Many Requests"),
    "coinbase": (429, None, "Public rate limit exceeded"),
    "kraken": (200, None, "EAPI:Rate limit exceeded"),
}
_BAD_SYMBOL: dict[str, tuple[int, str | None, str]] = {
    "bybit": (200, "10001", "params error: symbol invalid"),
    "okx": (200, "51001", "Instrument ID does not exist"),
    "coinbase": (404, None, "NotFound"),
    "kraken": (200, None, "EQuery:Unknown asset pair"),
}
_BAD_PARAM: dict[str, tuple[int, str | None, str]] = {
    "bybit": (200, "10001", "params error"),
    "okx": (200, "51000", "Parameter error"),
    "coinbase": (400, None, "granularity too small for the requested time range"),
    "kraken": (200, None, "EGeneral:Invalid arguments"),
}


class VenueReplay(ReplayExchange):
    """The replay exchange speaking a `RestVenueSpec` venue's wire format (Bybit, OKX, Coinbase,
    Kraken): its paths and parameter names, time units, exclusive bounds, page limits, row order
    and layout, open-candle marker, success and error envelopes, and rate budgets per endpoint
    group. Same data model, faults and clock as the Binance replay.
    """

    def __init__(
        self,
        spec: RestVenueSpec,
        candles: pl.DataFrame,
        funding: pl.DataFrame | None = None,
        *,
        now: datetime,
        interval: str = "1h",
        weight_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.venue = spec.venue
        self.rest = spec
        super().__init__(
            candles,
            funding,
            now=now,
            interval=interval,
            weight_clock=weight_clock,
            host=host,
            port=port,
        )
        self.over_budget = 0
        self._routes: list[tuple[re.Pattern[str], str, RestMarketSpec, Any]] = []
        for market in spec.markets.values():
            endpoint: CandleEndpoint | None = market.candles
            while endpoint is not None:
                pattern = re.escape(endpoint.path).replace(
                    re.escape("{symbol}"), "(?P<symbol>[^/]+)"
                )
                self._routes.append((re.compile(pattern + "$"), "candles", market, endpoint))
                endpoint = endpoint.older
            if market.funding is not None:
                pattern = re.escape(market.funding.path) + "$"
                self._routes.append((re.compile(pattern), "funding", market, market.funding))
        self._windows: dict[str, tuple[int, int]] = {}

    @property
    def base_urls(self) -> dict[str, str]:
        return {market: self.url for market in self.rest.markets}

    def _charge_group(self, group: str, weight: int) -> bool:
        limit = self.rest.limits[group]
        window = math.floor(self._weight_clock() / limit.window_s)
        with self._lock:
            booked, used = self._windows.get(group, (window, 0))
            if booked != window:
                used = 0
            allowed = used + weight <= limit.budget
            if allowed:
                used += weight
            else:
                self.over_budget += 1
            self._windows[group] = (window, used)
        return allowed

    def _error(
        self, table: Mapping[str, tuple[int, str | None, str]], detail: str = ""
    ) -> _Response:
        status, code, message = table[self.venue]
        if detail:
            message = f"{message}: {detail}" if status != 403 else message
        return _Response(status, self._error_body(code, message))

    def _error_body(self, code: str | None, message: str) -> Any:
        envelope = self.rest.envelope
        if envelope.code_field is not None:
            body: dict[str, Any] = {envelope.code_field: code or "1"}
            if envelope.message_field:
                body[envelope.message_field] = message
            if (
                code is not None
                and code.isdigit()
                and self.rest.success_fields.get(envelope.code_field) == 0
            ):
                body[envelope.code_field] = int(code)  # Bybit sends retCode as a number
            body["data" if "data" in self._top_keys() else "result"] = (
                [] if "data" in self._top_keys() else {}
            )
            return body
        if envelope.errors_field is not None:
            return {envelope.errors_field: [message]}
        if message.startswith("<html"):
            return message
        return {envelope.message_field or "message": message}

    def _top_keys(self) -> set[str]:
        keys = {str(self.rest.time.field_path[0])}
        for market in self.rest.markets.values():
            if market.candles.rows_path:
                keys.add(str(market.candles.rows_path[0]))
        return keys

    def _respond(self, path: str, params: dict[str, str], fault: Fault | None) -> _Response:
        spec = self.rest
        if path == spec.time.path:
            route: tuple[str, RestMarketSpec | None, Any, str | None] = ("time", None, None, None)
            group = spec.time.rate_limit
        else:
            found = self._match(path, params)
            if found is None:
                return _Response(404, {"message": f"Unknown endpoint {path}"})
            route = found
            group = found[2].rate_limit
        weight = 1 if route[0] == "time" else route[2].weight
        allowed = self._charge_group(group, weight)
        if fault is not None and fault.kind == "status":
            body = fault.body
            if body is None:
                if fault.code == 429:
                    _, code, message = _OVER_BUDGET[self.venue]
                    body = self._error_body(code, message)
                else:
                    body = _default_body(fault.code)
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return _Response(fault.code, body, headers)
        if not allowed:
            return self._error(_OVER_BUDGET)
        with self._lock:
            now_ms = self._now_ms
        kind, market, endpoint, symbol = route
        try:
            if kind == "time":
                return _Response(200, self._time_body(now_ms))
            assert market is not None and symbol is not None
            if kind == "candles":
                return _Response(
                    200, self._candle_page(market, endpoint, symbol, params, now_ms, fault)
                )
            return _Response(200, self._funding_page(endpoint, symbol, params, now_ms))
        except _WireError as exc:
            return self._error(exc.table, exc.detail)

    def _match(
        self, path: str, params: dict[str, str]
    ) -> tuple[str, RestMarketSpec, Any, str | None] | None:
        candidates = []
        for pattern, kind, market, endpoint in self._routes:
            matched = pattern.match(path)
            if matched is None:
                continue
            if any(params.get(k) != v for k, v in endpoint.fixed_params.items()):
                continue
            symbol = matched.groupdict().get("symbol") or params.get(endpoint.symbol_param or "")
            candidates.append((kind, market, endpoint, symbol))
        for candidate in candidates:
            kind, market, _, symbol = candidate
            if kind == "funding" or (market.market, symbol) in self._symbols:
                return candidate
        if candidates:
            kind, market, endpoint, symbol = candidates[0]
            return kind, market, endpoint, symbol or ""
        return None

    def _time_body(self, now_ms: int) -> Any:
        spec = self.rest.time
        value: Any = (
            now_ms
            if spec.unit == "ms"
            else (now_ms // 1000 if now_ms % 1000 == 0 else now_ms / 1000)
        )
        if spec.as_string:
            value = str(value)
        for step in reversed(spec.field_path):
            value = [value] if isinstance(step, int) else {step: value}
        if isinstance(value, dict):
            value = {**self.rest.success_fields, **value}
        return value

    def _bounds(
        self,
        params: dict[str, str],
        start_param: str | None,
        end_param: str | None,
        unit: Any,
        exclusive: bool,
    ) -> tuple[int | None, int | None]:
        """Inclusive [lo, hi] in ms from the wire parameters."""
        lo = hi = None
        try:
            if start_param and params.get(start_param):
                lo = parse_wire_time(params[start_param], unit) + (1 if exclusive else 0)
            if end_param and params.get(end_param):
                hi = parse_wire_time(params[end_param], unit) - (1 if exclusive else 0)
        except ValueError:
            raise _WireError(_BAD_PARAM, "time") from None
        return lo, hi

    def _candle_page(
        self,
        market: RestMarketSpec,
        endpoint: CandleEndpoint,
        symbol: str,
        params: dict[str, str],
        now_ms: int,
        fault: Fault | None,
    ) -> Any:
        if (market.market, symbol) not in self._symbols:
            raise _WireError(_BAD_SYMBOL)
        by_wire = {wire: ours for ours, wire in endpoint.intervals.items()}
        interval = by_wire.get(params.get(endpoint.interval_param, ""))
        if interval is None:
            raise _WireError(_BAD_PARAM, endpoint.interval_param)
        limit = endpoint.max_limit
        if endpoint.limit_param and params.get(endpoint.limit_param):
            try:
                limit = int(params[endpoint.limit_param])
            except ValueError:
                raise _WireError(_BAD_PARAM, "limit") from None
            if not 1 <= limit <= endpoint.max_limit:
                raise _WireError(_BAD_PARAM, "limit")
        lo, hi = self._bounds(
            params,
            endpoint.start_param,
            endpoint.end_param,
            endpoint.time_unit,
            endpoint.exclusive_bounds,
        )
        series = self._load_series(market.market, symbol, interval)
        step = interval_ms(interval)
        if (
            endpoint.range_over_limit_is_error
            and lo is not None
            and hi is not None
            and (hi - lo) // step + 1 > endpoint.max_limit
        ):
            raise _WireError(_BAD_PARAM)
        picked: list[int] = []
        if series is not None:
            a, b = 0, bisect.bisect_right(series.times, now_ms)
            if endpoint.history_bars is not None:
                oldest = (now_ms // step - (endpoint.history_bars - 1)) * step
                a = bisect.bisect_left(series.times, oldest)
            if lo is not None:
                a = max(a, bisect.bisect_left(series.times, lo))
            if hi is not None:
                b = min(b, bisect.bisect_right(series.times, hi))
            hidden: set[int] = set()
            if fault is not None and fault.kind == "drop_candles":
                hidden = {datetime_to_ms(t) for t in fault.open_times}
            picked = [i for i in range(a, b) if series.times[i] not in hidden]
            # Newest-first venues (and any venue asked without a start) give the newest rows.
            newest = endpoint.newest_first or lo is None
            picked = picked[-limit:] if newest else picked[:limit]
            picked = _apply_row_faults(picked, fault)
            if endpoint.newest_first:
                picked = picked[::-1]
        rows = (
            []
            if series is None
            else [self._venue_row(series, i, now_ms, endpoint.rows) for i in picked]
        )
        return self._wrap(endpoint.rows_path, rows, market, symbol, series, now_ms)

    def _venue_row(self, series: _Series, i: int, now_ms: int, layout: Rows) -> list[Any]:
        open_ms, step = series.times[i], series.step_ms
        c = series.columns
        closed = open_ms + step <= now_ms
        fraction = 1.0 if closed else (now_ms - open_ms) / step
        if closed:
            o, h, low, close = c["open"][i], c["high"][i], c["low"][i], c["close"][i]
        else:
            o = h = low = close = c["open"][i]
        volume, quote = c["volume"][i], c["quote_volume"][i]
        volume = None if volume is None else volume * fraction
        quote = None if quote is None else quote * fraction
        trades = c["trades"][i]
        trades = 0 if trades is None else int(trades * fraction)

        def num(value: float | None) -> Any:
            if layout.numbers_as_strings:
                return _dec(value)
            return 0.0 if value is None else float(value)

        row: list[Any] = [num(None)] * layout.width
        stamp = open_ms // 1000 if layout.time_unit == "s" else open_ms
        row[layout.time] = str(stamp) if layout.time_as_string else stamp
        for index, value in (
            (layout.open, o),
            (layout.high, h),
            (layout.low, low),
            (layout.close, close),
            (layout.volume, volume),
            (layout.quote_volume, quote),
            (layout.vwap, close),
        ):
            if index is not None:
                row[index] = num(value)
        if layout.trades is not None:
            row[layout.trades] = trades
        if layout.closed_flag is not None:
            row[layout.closed_flag] = layout.closed_value if closed else "0"
        return row

    def _wrap(
        self,
        rows_path: Sequence[Any],
        rows: list[Any],
        market: RestMarketSpec,
        symbol: str,
        series: _Series | None,
        now_ms: int,
    ) -> Any:
        if not rows_path:
            return rows
        value: Any = rows
        for depth, step in enumerate(reversed(rows_path)):
            if step == "*":
                inner: dict[str, Any] = {symbol: value}
                if series is not None and series.times:
                    # Kraken's `last`: the newest committed (closed) candle's time, seconds.
                    closed = [t for t in series.times[-3:] if t + series.step_ms <= now_ms]
                    inner["last"] = (closed[-1] if closed else series.times[0]) // 1000
                value = inner
            elif depth == 0 and step == "list":
                category = next(iter(market.candles.fixed_params.values()), market.market)
                value = {"symbol": symbol, "category": category, "list": value}
            else:
                value = {step: value}
        return {
            **self.rest.success_fields,
            **value,
            **({"time": now_ms} if "retCode" in self.rest.success_fields else {}),
        }

    def _funding_page(
        self, endpoint: FundingEndpoint, symbol: str, params: dict[str, str], now_ms: int
    ) -> Any:
        if symbol not in set(self._funding["symbol"].to_list()):
            raise _WireError(_BAD_SYMBOL)
        if (
            endpoint.start_param
            and params.get(endpoint.start_param)
            and not params.get(endpoint.end_param)
        ):
            # Bybit: startTime alone is an error.
            raise _WireError(_BAD_PARAM, "startTime without endTime")
        limit = int(params.get(endpoint.limit_param) or endpoint.max_limit)
        if not 1 <= limit <= endpoint.max_limit:
            raise _WireError(_BAD_PARAM, "limit")
        lo, hi = self._bounds(
            params, endpoint.start_param, endpoint.end_param, "ms", endpoint.exclusive_bounds
        )
        frame = self._funding.filter((pl.col("symbol") == symbol) & (pl.col("ts") <= now_ms))
        if lo is not None:
            frame = frame.filter(pl.col("ts") >= lo)
        if hi is not None:
            frame = frame.filter(pl.col("ts") <= hi)
        frame = frame.sort("ts", descending=True).head(limit)
        rows = [
            {
                **({endpoint.symbol_field: symbol} if endpoint.symbol_field else {}),
                endpoint.time_field: str(ts),
                "fundingRate": _dec(rate),
                endpoint.rate_field: _dec(rate),
            }
            for ts, rate in frame.select("ts", "rate").iter_rows()
        ]
        value: Any = rows
        for depth, step in enumerate(reversed(endpoint.rows_path)):
            if depth == 0 and step == "list":
                value = {"category": endpoint.fixed_params.get("category", ""), "list": value}
            else:
                value = {step: value}
        return {**self.rest.success_fields, **value}


class _WireError(Exception):
    def __init__(self, table: Mapping[str, tuple[int, str | None, str]], detail: str = "") -> None:
        super().__init__(detail)
        self.table, self.detail = table, detail


def make_replay(
    venue: str,
    candles: pl.DataFrame,
    funding: pl.DataFrame | None = None,
    *,
    now: datetime,
    spec: RestVenueSpec | None = None,
    **options: Any,
) -> ReplayExchange:
    """A replay exchange speaking `venue`'s wire format ("binance", "bybit", "okx", ...)."""
    if venue == "binance":
        return ReplayExchange(candles, funding, now=now, **options)
    if spec is None:
        from hedgewatch.venues import REST_SPECS

        spec = REST_SPECS.get(venue)
    if spec is None:
        raise ValueError(f"no replay for venue {venue!r}")
    return VenueReplay(spec, candles, funding, now=now, **options)


# -- data files ------------------------------------------------------------------------------------

_INTERVAL_IN_NAME = re.compile(r"_(\d+[smhdw])_")


def load_candle_files(paths: Sequence[Path], market: str | None = None) -> pl.DataFrame:
    """Read candle CSV(.gz) files (ts in epoch ms = open time, symbol, open..volume[, quote_volume,
    trades]) into market, symbol, open_time, open..volume, quote_volume, trades, interval.

    `market` defaults to "perp" when the file name says usdm/perp, else "spot"; `interval` is read
    from the name (e.g. "_1h_"), else the smallest step found in the data.
    """
    frames = []
    for path in map(Path, paths):
        raw = pl.read_csv(path, infer_schema_length=10_000)
        file_market = market or ("perp" if re.search(r"usdm|perp", path.name, re.I) else "spot")
        match = _INTERVAL_IN_NAME.search(path.name)
        interval = match.group(1) if match else _smallest_step(raw)
        columns = [
            pl.lit(file_market).alias("market"),
            pl.col("symbol").cast(pl.Utf8),
            pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="ms")
            .dt.replace_time_zone("UTC")
            .cast(UTC_US)
            .alias("open_time"),
        ]
        for name in ("open", "high", "low", "close", "volume", "quote_volume"):
            expr = pl.col(name) if name in raw.columns else pl.lit(None)
            columns.append(expr.cast(pl.Float64).alias(name))
        trades = pl.col("trades") if "trades" in raw.columns else pl.lit(None)
        columns += [trades.cast(pl.Int64).alias("trades"), pl.lit(interval).alias("interval")]
        frames.append(raw.select(columns))
    return pl.concat(frames) if frames else pl.DataFrame()


def load_funding_files(paths: Sequence[Path]) -> pl.DataFrame:
    """Read funding CSV(.gz) files (ts, exchange, symbol, funding_rate) into exchange, symbol,
    funding_time (UTC), funding_rate."""
    frames = []
    for path in map(Path, paths):
        raw = pl.read_csv(path, infer_schema_length=10_000)
        exchange = pl.col("exchange") if "exchange" in raw.columns else pl.lit("binance")
        frames.append(
            raw.select(
                exchange.cast(pl.Utf8).alias("exchange"),
                pl.col("symbol").cast(pl.Utf8),
                pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="ms")
                .dt.replace_time_zone("UTC")
                .cast(UTC_US)
                .alias("funding_time"),
                pl.col("funding_rate").cast(pl.Float64),
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame()


def _smallest_step(raw: pl.DataFrame) -> str:
    diffs = raw.sort("symbol", "ts").select(pl.col("ts").diff().over("symbol")).to_series()
    smallest = diffs.filter(diffs > 0).min()
    step_s = (smallest if isinstance(smallest, int) else 3_600_000) // 1000
    for unit, seconds in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if step_s % seconds == 0:
            return f"{step_s // seconds}{unit}"
    return f"{step_s}s"


def serve(
    paths: Sequence[Path],
    host: str = "127.0.0.1",
    port: int = 0,
    now: datetime | None = None,
    venue: str = "binance",
) -> None:
    """Serve the given candle and funding files until Ctrl-C, printing the URL.

    Funding files are recognised by their funding_rate column. `now` defaults to just after the
    last stored candle, so every stored candle is closed.
    """
    candle_paths: list[Path] = []
    funding_paths: list[Path] = []
    for path in map(Path, paths):
        is_funding = "funding_rate" in pl.read_csv(path, n_rows=1).columns
        (funding_paths if is_funding else candle_paths).append(path)
    if not candle_paths:
        raise ValueError("no candle files given (funding files alone cannot be served)")
    candles = load_candle_files(candle_paths)
    funding = load_funding_files(funding_paths) if funding_paths else None
    if now is None:
        last = candles.group_by("interval").agg(pl.col("open_time").max()).rows()
        now = max(t + timedelta(milliseconds=interval_ms(iv)) for iv, t in last)
    if venue != "binance" and funding is not None:
        funding = funding.with_columns(pl.lit(venue).alias("exchange"))
    with make_replay(venue, candles, funding, now=now, host=host, port=port) as replay:
        where = "spot /api/v3, perp /fapi/v1" if venue == "binance" else f"{venue} wire format"
        print(
            f"Replay exchange at {replay.url} ({where}), "
            f"now={now.isoformat()}, {candles.height} candles; Ctrl-C to stop",
            flush=True,
        )
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopped", flush=True)
