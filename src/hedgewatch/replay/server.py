"""The replay exchange's HTTP server: any venue's API, built from its `VenueSpec`, on loopback.

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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

from hedgewatch.replay.data import Series, prepare_funding, series_from_frame
from hedgewatch.replay.faults import Fault, RequestLog, apply_row_faults
from hedgewatch.replay.wire import Refusal, Response, candle_row, dec, wire_for
from hedgewatch.venues.base import datetime_to_ms, interval_ms
from hedgewatch.venues.binance import BINANCE
from hedgewatch.venues.rest import (
    CandleEndpoint,
    FundingEndpoint,
    MarketSpec,
    TimeEndpoint,
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
    """Serves `candles` (columns as from load_candle_files, plus optional `interval`) and funding
    in the wire format of `spec` (Binance's by default): the spec's paths and parameter names,
    time units, exclusive bounds, page limits and weights, row order and layout, open-candle
    marker, success envelope and rate budgets per endpoint group; the venue's error dialect
    comes from `wire`.

    Only rows with open_time <= now are visible; the stored candle containing `now` is served as the
    open candle, synthesised as its first instant: open = high = low = close = the stored open,
    and volume, quote volume and trades scaled by the elapsed fraction of the interval. A flat
    price rather than the stored close keeps the future out of view and makes a client that keeps
    the open candle easy to spot. Values missing from a file (quote_volume, trades, the volume of
    a mark-price file) are sent as "0", since the wire format has no null.

    `weight_limit_per_minute` and `weight_window_s`, when given, replace every budget of the spec
    (tests and benchmarks scale budgets down).
    """

    def __init__(
        self,
        candles: pl.DataFrame,
        funding: pl.DataFrame | None = None,
        *,
        now: datetime,
        weight_limit_per_minute: int | None = None,
        weight_window_s: float | None = None,
        interval: str = "1h",
        weight_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        spec: VenueSpec = BINANCE,
    ) -> None:
        self.venue = spec.venue
        self._spec = spec
        self._wire = wire_for(spec)
        self._weight_limit = weight_limit_per_minute
        self._weight_window_s = weight_window_s
        self._weight_clock = weight_clock
        self._address = (host, port)
        self._lock = threading.Lock()
        self._now_ms = datetime_to_ms(now)
        self._speed = 0.0  # replay seconds per real second; 0 holds the clock
        self._wall_anchor = time.monotonic()
        self._faults: list[Fault] = []
        self._windows: dict[str, tuple[int, int]] = {}  # budget group -> (window, used)
        self.over_budget = 0
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
        self._times = {spec.time.path: spec.time}
        self._routes: list[tuple[re.Pattern[str], str, MarketSpec, Any]] = []
        for name, market in spec.markets.items():
            own = spec.market_time(name)
            self._times.setdefault(own.path, own)
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

    def _charge(self, group: str, weight: int) -> tuple[bool, int, float]:
        """Book `weight` in the group's current window: (allowed, used, seconds to next window)."""
        limit = self._spec.limits[group]
        budget = self._weight_limit if self._weight_limit is not None else limit.budget
        window_s = self._weight_window_s if self._weight_window_s is not None else limit.window_s
        now = self._weight_clock()
        window = math.floor(now / window_s)
        with self._lock:
            booked, used = self._windows.get(group, (window, 0))
            if booked != window:
                used = 0
            allowed = used + weight <= budget
            if allowed:
                used += weight
            else:
                self.over_budget += 1
            self._windows[group] = (window, used)
        return allowed, used, (window + 1) * window_s - now

    def _budget(self, group: str) -> int:
        limit = self._spec.limits[group].budget
        return self._weight_limit if self._weight_limit is not None else limit

    def _respond(self, path: str, params: dict[str, str], fault: Fault | None) -> Response:
        wire = self._wire
        if path in self._times:
            clock = self._times[path]
            route: tuple[str, MarketSpec | None, Any, str | None] = ("time", None, None, None)
            group, weight = clock.rate_limit, 1
        else:
            found = self._match(path, params)
            if found is None:
                return wire.not_found(path)
            route = found
            endpoint = found[2]
            group, weight = endpoint.rate_limit, endpoint.weight
            if isinstance(endpoint, CandleEndpoint) and endpoint.limit_weights:
                raw = params.get(endpoint.limit_param or "")
                limit = endpoint.default_limit or endpoint.max_limit
                if raw is not None and raw.strip().lstrip("-").isdigit():
                    limit = int(raw)
                if 1 <= limit <= endpoint.max_limit:
                    weight = endpoint.weight_for(limit)
        allowed, used, retry_after = self._charge(group, weight)
        if fault is not None and fault.kind == "status":
            answer = wire.fault(fault.code, fault.retry_after, used)
            if fault.body is not None:
                answer.body = fault.body
            return answer
        if not allowed:
            return wire.over_budget(self._budget(group), used, retry_after)
        now_ms = self._clock_ms()
        kind, market, endpoint, symbol = route
        try:
            if kind == "time":
                body = self._time_body(self._times[path], now_ms)
            elif kind == "candles":
                assert market is not None
                body = self._candle_page(market, endpoint, symbol, params, now_ms, fault)
            else:
                body = self._funding_page(endpoint, symbol, params, now_ms)
        except Refusal as refusal:
            answer = wire.refuse(refusal)
            answer.headers.update(wire.headers(used))
            return answer
        return Response(200, body, wire.headers(used))

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
        return candidates[0] if candidates else None

    def _time_body(self, spec: TimeEndpoint, now_ms: int) -> Any:
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
            value = {**self._spec.success_fields, **value}
        return value

    @staticmethod
    def _limit(params: dict[str, str], name: str | None, default: int, maximum: int) -> int:
        raw = params.get(name) if name else None
        if raw is None or raw == "":
            return default
        try:
            limit = int(raw)
        except ValueError:
            raise Refusal("malformed", name or "limit", "limit") from None
        if not 1 <= limit <= maximum:
            raise Refusal("limit", name or "limit", "limit")
        return limit

    @staticmethod
    def _bounds(
        params: dict[str, str],
        start_param: str | None,
        end_param: str | None,
        unit: Any,
        exclusive: bool,
    ) -> tuple[int | None, int | None]:
        """Inclusive [lo, hi] in ms from the wire parameters."""
        bounds: list[int | None] = []
        for name, shift in ((start_param, 1), (end_param, -1)):
            raw = params.get(name) if name else None
            if raw is None or raw == "":
                bounds.append(None)
                continue
            try:
                bounds.append(parse_wire_time(raw, unit) + (shift if exclusive else 0))
            except ValueError:
                raise Refusal("malformed", name or "", "time") from None
        return bounds[0], bounds[1]

    @staticmethod
    def _pick(
        times: Sequence[int],
        lo: int | None,
        hi: int | None,
        limit: int,
        *,
        newest_first: bool,
        first: int = 0,
        hidden: set[int] | frozenset[int] = frozenset(),
        fault: Fault | None = None,
    ) -> list[int]:
        """Indexes of the rows a page holds, in the venue's order: from a start the oldest
        `limit` (newest-first venues, and any venue asked without a start: the newest)."""
        a, b = first, len(times)
        if lo is not None:
            a = max(a, bisect.bisect_left(times, lo))
        if hi is not None:
            b = min(b, bisect.bisect_right(times, hi))
        picked = [i for i in range(a, b) if times[i] not in hidden]
        newest = newest_first or lo is None
        picked = picked[-limit:] if newest else picked[:limit]
        picked = apply_row_faults(picked, fault)
        return picked[::-1] if newest_first else picked

    def _candle_page(
        self,
        market: MarketSpec,
        endpoint: CandleEndpoint,
        symbol: str | None,
        params: dict[str, str],
        now_ms: int,
        fault: Fault | None,
    ) -> Any:
        if not symbol:
            raise Refusal("missing", endpoint.symbol_param or "symbol")
        raw_interval = params.get(endpoint.interval_param)
        if not raw_interval:
            raise Refusal("missing", endpoint.interval_param)
        by_wire = {wire: ours for ours, wire in endpoint.intervals.items()}
        interval = by_wire.get(raw_interval)
        if interval is None:
            raise Refusal("interval", endpoint.interval_param)
        limit = self._limit(
            params,
            endpoint.limit_param,
            endpoint.default_limit or endpoint.max_limit,
            endpoint.max_limit,
        )
        lo, hi = self._bounds(
            params,
            endpoint.start_param,
            endpoint.end_param,
            endpoint.time_unit,
            endpoint.exclusive_bounds,
        )
        if (market.market, symbol) not in self._symbols:
            raise Refusal("symbol", endpoint.symbol_param or "symbol")
        step = interval_ms(interval)
        if (
            endpoint.range_over_limit_is_error
            and lo is not None
            and hi is not None
            and (hi - lo) // step + 1 > endpoint.max_limit
        ):
            raise Refusal("range")
        series = self._load_series(market.market, symbol, interval)
        rows: list[Any] = []
        if series is not None:
            visible = series.times[: bisect.bisect_right(series.times, now_ms)]
            first = 0
            if endpoint.history_bars is not None:
                oldest = (now_ms // step - (endpoint.history_bars - 1)) * step
                first = bisect.bisect_left(visible, oldest)
            hidden: set[int] = set()
            if fault is not None and fault.kind == "drop_candles":
                hidden = {datetime_to_ms(t) for t in fault.open_times}
            picked = self._pick(
                visible,
                lo,
                hi,
                limit,
                newest_first=endpoint.newest_first,
                first=first,
                hidden=hidden,
                fault=fault,
            )
            rows = [candle_row(series, i, now_ms, endpoint.rows) for i in picked]
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
            **self._spec.success_fields,
            **value,
            **({"time": now_ms} if "retCode" in self._spec.success_fields else {}),
        }

    def _funding_page(
        self, endpoint: FundingEndpoint, symbol: str | None, params: dict[str, str], now_ms: int
    ) -> Any:
        if not symbol and not self._wire.funding_symbol_optional:
            raise Refusal("missing", endpoint.symbol_param)
        if (
            self._wire.funding_start_needs_end
            and endpoint.start_param
            and params.get(endpoint.start_param)
            and not params.get(endpoint.end_param)
        ):
            # Bybit: startTime alone is an error.
            raise Refusal("start_only", endpoint.end_param, "startTime without endTime")
        limit = self._limit(
            params,
            endpoint.limit_param,
            endpoint.default_limit or endpoint.max_limit,
            endpoint.max_limit,
        )
        lo, hi = self._bounds(
            params, endpoint.start_param, endpoint.end_param, "ms", endpoint.exclusive_bounds
        )
        if symbol and symbol not in set(self._funding["symbol"].to_list()):
            raise Refusal("symbol", endpoint.symbol_param)
        frame = self._funding.filter(pl.col("ts") <= now_ms)
        if symbol:
            frame = frame.filter(pl.col("symbol") == symbol)
        frame = frame.sort("ts", "symbol")
        picked = self._pick(
            frame["ts"].to_list(), lo, hi, limit, newest_first=endpoint.newest_first
        )
        symbols, stamps, rates, marks = (
            frame[column].to_list() for column in ("symbol", "ts", "rate", "mark")
        )
        rows = []
        for i in picked:
            sym, ts, rate, mark = symbols[i], stamps[i], rates[i], marks[i]
            row: dict[str, Any] = {}
            if endpoint.symbol_field:
                row[endpoint.symbol_field] = sym
            row[endpoint.time_field] = str(ts) if endpoint.time_as_string else ts
            row["fundingRate"] = dec(rate)
            row[endpoint.rate_field] = dec(rate)
            if endpoint.mark_field:
                row[endpoint.mark_field] = "" if mark is None else dec(mark)
            rows.append(row)
        if not endpoint.rows_path:
            return rows
        value: Any = rows
        for depth, step in enumerate(reversed(endpoint.rows_path)):
            if depth == 0 and step == "list":
                value = {"category": endpoint.fixed_params.get("category", ""), "list": value}
            else:
                value = {step: value}
        return {**self._spec.success_fields, **value}

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
    if spec is None:
        from hedgewatch.venues import VENUE_SPECS

        spec = VENUE_SPECS.get(venue)
    if spec is None:
        raise ValueError(f"no replay for venue {venue!r}")
    return ReplayExchange(candles, funding, now=now, spec=spec, **options)
