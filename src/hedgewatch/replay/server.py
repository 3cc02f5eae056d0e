"""The replay exchange's HTTP server: Binance's API and the other venues' on loopback.

Real HTTP (ThreadingHTTPServer), each venue's wire format and limits, a controllable clock, weight
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
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

from hedgewatch.replay.data import Series, prepare_funding, series_from_frame
from hedgewatch.replay.faults import Fault, RequestLog, apply_row_faults
from hedgewatch.replay.wire import (
    BAD_PARAM,
    BAD_SYMBOL,
    OVER_BUDGET,
    ApiError,
    Response,
    WireError,
    binance_row,
    dec,
    default_body,
    int_param,
    limit_param,
    required,
    venue_row,
)
from hedgewatch.venues.base import datetime_to_ms, interval_ms
from hedgewatch.venues.binance import BINANCE
from hedgewatch.venues.http import Envelope
from hedgewatch.venues.rest import (
    CandleEndpoint,
    FundingEndpoint,
    MarketSpec,
    Rows,
    VenueSpec,
    parse_wire_time,
)

# The replay's own control endpoint (no venue has a path under /_replay).
CLOCK_PATH = "/_replay/clock"


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_utc(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
        self._speed = 0.0  # replay seconds per real second; 0 holds the clock
        self._wall_anchor = time.monotonic()
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
        self._series: dict[tuple[str, str, str], Series | None] = {}
        self._funding = prepare_funding(funding, self.venue)
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

    @property
    def candle_count(self) -> int:
        return self._candles.height

    # -- control ---------------------------------------------------------------------------------

    def set_now(self, now: datetime) -> None:
        with self._lock:
            self._now_ms = datetime_to_ms(now)
            self._wall_anchor = time.monotonic()

    def now(self) -> datetime:
        """The exchange's clock."""
        return ms_to_datetime(self._clock_ms())

    def advance(self, by: timedelta) -> datetime:
        """Move the clock forward (or back, with a negative `by`); returns the new time."""
        with self._lock:
            self._now_ms = self._clock_ms_locked() + int(by.total_seconds() * 1000)
            self._wall_anchor = time.monotonic()
            return ms_to_datetime(self._now_ms)

    def set_speed(self, speed: float) -> None:
        """Let the clock run at `speed` replay seconds per real second (0 stops it)."""
        if speed < 0 or not math.isfinite(speed):
            raise ValueError("the replay clock's speed must be a finite number >= 0")
        with self._lock:
            self._now_ms = self._clock_ms_locked()
            self._wall_anchor = time.monotonic()
            self._speed = speed

    def _clock_ms(self) -> int:
        with self._lock:
            return self._clock_ms_locked()

    def _clock_ms_locked(self) -> int:
        if not self._speed:
            return self._now_ms
        return self._now_ms + int((time.monotonic() - self._wall_anchor) * self._speed * 1000)

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
        for name, market in self._spec.markets.items():
            endpoints = {
                self._spec.market_time(name).path: "time",
                market.candles.path: "klines",
            }
            if market.funding is not None:
                endpoints[market.funding.path] = "funding"
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

    def _respond(self, path: str, params: dict[str, str], fault: Fault | None) -> Response:
        route = self._route(path)
        if route is None:
            return Response(404, {"code": -1, "msg": f"Unknown endpoint {path}."})
        market, endpoint = route
        weight = 1
        candles = market.candles
        if endpoint == "klines":
            limit = int_param(params, "limit", candles.default_limit or candles.max_limit)
            if limit is not None and 1 <= limit <= candles.max_limit:
                weight = candles.weight_for(limit)
        elif endpoint == "funding" and market.funding is not None:
            weight = market.funding.weight
        allowed, used, retry_after = self._charge(market, weight)
        headers = {self._spec.used_weight_header or "X-MBX-USED-WEIGHT-1M": str(used)}
        if fault is not None and fault.kind == "status":
            body = fault.body if fault.body is not None else default_body(fault.code)
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return Response(fault.code, body, headers)
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            msg = (
                f"Too much request weight used; current limit is {self._weight_limit} request "
                "weight per 1 MINUTE. Please use WebSocket Streams for live updates."
            )
            return Response(429, {"code": -1003, "msg": msg}, headers)
        now_ms = self._clock_ms()
        try:
            if endpoint == "time":
                payload: Any = {"serverTime": now_ms}
            elif endpoint == "klines":
                payload = self._klines(market, params, now_ms, fault)
            else:
                payload = self._funding_rows(market, params, now_ms)
        except ApiError as exc:
            return Response(exc.status, {"code": exc.code, "msg": exc.msg}, headers)
        return Response(200, payload, headers)

    def _klines(
        self, market: MarketSpec, params: dict[str, str], now_ms: int, fault: Fault | None
    ) -> list[list[Any]]:
        symbol = required(params, "symbol")
        interval = required(params, "interval")
        candles = market.candles
        if interval not in candles.intervals:
            raise ApiError(400, -1120, "Invalid interval.")
        limit = limit_param(
            params, default=candles.default_limit or candles.max_limit, maximum=candles.max_limit
        )
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        if (market.market, symbol) not in self._symbols:
            raise ApiError(400, -1121, "Invalid symbol.")
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
        picked = apply_row_faults(picked, fault)
        return [binance_row(series, i, now_ms) for i in picked]

    def _funding_rows(
        self, market: MarketSpec, params: dict[str, str], now_ms: int
    ) -> list[dict[str, Any]]:
        funding = market.funding
        assert funding is not None
        symbol = params.get("symbol")
        limit = limit_param(
            params, default=funding.default_limit or funding.max_limit, maximum=funding.max_limit
        )
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        frame = self._funding.filter(pl.col("ts") <= now_ms)
        if symbol is not None:
            if symbol not in self._funding["symbol"]:
                raise ApiError(400, -1121, "Invalid symbol.")
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
                "fundingRate": dec(rate),
                "markPrice": "" if mark is None else dec(mark),
            }
            for sym, ts, rate, mark in frame.select("symbol", "ts", "rate", "mark").iter_rows()
        ]

    def _load_series(self, market: str, symbol: str, interval: str) -> Series | None:
        key = (market, symbol, interval)
        with self._lock:
            if key in self._series:
                return self._series[key]
        frame = self._candles.filter(
            (pl.col("market") == market)
            & (pl.col("symbol") == symbol)
            & (pl.col("interval") == interval)
        )
        series = series_from_frame(frame, interval)
        with self._lock:
            self._series[key] = series
        return series


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

    def do_POST(self) -> None:
        """The clock's admin endpoint: POST /_replay/clock {"advance_s": N} or {"now": ISO}."""
        replay = self.server.replay
        if urlsplit(self.path).path != CLOCK_PATH:
            self._send(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            command = json.loads(self.rfile.read(min(length, 4096)) or b"{}")
            if "now" in command:
                replay.set_now(parse_utc(str(command["now"])))
            if "advance_s" in command:
                replay.advance(timedelta(seconds=float(command["advance_s"])))
            if "speed" in command:
                replay.set_speed(float(command["speed"]))
        except (ValueError, TypeError, AttributeError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, {"now": replay.now().isoformat()})

    def _send(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        replay = self.server.replay
        if urlsplit(self.path).path == CLOCK_PATH:
            self._send(200, {"now": replay.now().isoformat()})
            return
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


class VenueReplay(ReplayExchange):
    """The replay exchange speaking a `VenueSpec` venue's wire format (Bybit, OKX, Coinbase,
    Kraken): its paths and parameter names, time units, exclusive bounds, page limits, row order
    and layout, open-candle marker, success and error envelopes, and rate budgets per endpoint
    group. Same data model, faults and clock as the Binance replay.
    """

    def __init__(
        self,
        spec: VenueSpec,
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
        self._routes: list[tuple[re.Pattern[str], str, MarketSpec, Any]] = []
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
    ) -> Response:
        status, code, message = table[self.venue]
        if detail:
            message = f"{message}: {detail}" if status != 403 else message
        return Response(status, self._error_body(code, message))

    def _error_body(self, code: str | None, message: str) -> Any:
        envelope = self.rest.envelope or Envelope()
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

    def _respond(self, path: str, params: dict[str, str], fault: Fault | None) -> Response:
        spec = self.rest
        if path == spec.time.path:
            route: tuple[str, MarketSpec | None, Any, str | None] = ("time", None, None, None)
            group = spec.time.rate_limit
        else:
            found = self._match(path, params)
            if found is None:
                return Response(404, {"message": f"Unknown endpoint {path}"})
            route = found
            group = found[2].rate_limit
        weight = 1 if route[0] == "time" else route[2].weight
        allowed = self._charge_group(group, weight)
        if fault is not None and fault.kind == "status":
            body = fault.body
            if body is None:
                if fault.code == 429:
                    _, code, message = OVER_BUDGET[self.venue]
                    body = self._error_body(code, message)
                else:
                    body = default_body(fault.code)
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return Response(fault.code, body, headers)
        if not allowed:
            return self._error(OVER_BUDGET)
        now_ms = self._clock_ms()
        kind, market, endpoint, symbol = route
        try:
            if kind == "time":
                return Response(200, self._time_body(now_ms))
            assert market is not None and symbol is not None
            if kind == "candles":
                return Response(
                    200, self._candle_page(market, endpoint, symbol, params, now_ms, fault)
                )
            return Response(200, self._funding_page(endpoint, symbol, params, now_ms))
        except WireError as exc:
            return self._error(exc.table, exc.detail)

    def _match(
        self, path: str, params: dict[str, str]
    ) -> tuple[str, MarketSpec, Any, str | None] | None:
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
            raise WireError(BAD_PARAM, "time") from None
        return lo, hi

    def _candle_page(
        self,
        market: MarketSpec,
        endpoint: CandleEndpoint,
        symbol: str,
        params: dict[str, str],
        now_ms: int,
        fault: Fault | None,
    ) -> Any:
        if (market.market, symbol) not in self._symbols:
            raise WireError(BAD_SYMBOL)
        by_wire = {wire: ours for ours, wire in endpoint.intervals.items()}
        interval = by_wire.get(params.get(endpoint.interval_param, ""))
        if interval is None:
            raise WireError(BAD_PARAM, endpoint.interval_param)
        limit = endpoint.max_limit
        if endpoint.limit_param and params.get(endpoint.limit_param):
            try:
                limit = int(params[endpoint.limit_param])
            except ValueError:
                raise WireError(BAD_PARAM, "limit") from None
            if not 1 <= limit <= endpoint.max_limit:
                raise WireError(BAD_PARAM, "limit")
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
            raise WireError(BAD_PARAM)
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
            picked = apply_row_faults(picked, fault)
            if endpoint.newest_first:
                picked = picked[::-1]
        layout = endpoint.rows
        if not isinstance(layout, Rows):
            raise TypeError(f"{endpoint.path}: the replay writes list rows (Rows) only")
        rows = [] if series is None else [venue_row(series, i, now_ms, layout) for i in picked]
        return self._wrap(endpoint.rows_path, rows, market, symbol, series, now_ms)

    def _wrap(
        self,
        rows_path: Sequence[Any],
        rows: list[Any],
        market: MarketSpec,
        symbol: str,
        series: Series | None,
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
            raise WireError(BAD_SYMBOL)
        if (
            endpoint.start_param
            and params.get(endpoint.start_param)
            and not params.get(endpoint.end_param)
        ):
            # Bybit: startTime alone is an error.
            raise WireError(BAD_PARAM, "startTime without endTime")
        limit = int(params.get(endpoint.limit_param) or endpoint.max_limit)
        if not 1 <= limit <= endpoint.max_limit:
            raise WireError(BAD_PARAM, "limit")
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
                "fundingRate": dec(rate),
                endpoint.rate_field: dec(rate),
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


def make_replay(
    venue: str,
    candles: pl.DataFrame,
    funding: pl.DataFrame | None = None,
    *,
    now: datetime,
    spec: VenueSpec | None = None,
    **options: Any,
) -> ReplayExchange:
    """A replay exchange speaking `venue`'s wire format ("binance", "bybit", "okx", ...)."""
    if venue == "binance":
        return ReplayExchange(candles, funding, now=now, spec=spec or BINANCE, **options)
    if spec is None:
        from hedgewatch.venues import VENUE_SPECS

        spec = VENUE_SPECS.get(venue)
    if spec is None:
        raise ValueError(f"no replay for venue {venue!r}")
    return VenueReplay(spec, candles, funding, now=now, **options)
