"""The replay exchange's wire formats: each venue's rows, envelopes and error bodies."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hedgewatch.replay.data import Series
from hedgewatch.venues.binance import KlineRows
from hedgewatch.venues.http import Envelope
from hedgewatch.venues.rest import RowFormat, Rows, VenueSpec


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


DEFAULT_BODIES: dict[int, Any] = {
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
TAKER = ("0", "0", "0")
SERVER_ERROR_BODY = {"code": -1001, "msg": "Internal error; unable to process your request."}


def dec(value: float | None) -> str:
    # Binance sends fixed 8-decimal strings.
    return "0" if value is None else f"{value:.8f}"


def default_body(code: int) -> Any:
    if code == 418:
        until = int(time.time() * 1000) + 120_000
        return {
            "code": -1003,
            "msg": f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        }
    if code >= 500:
        return SERVER_ERROR_BODY
    return DEFAULT_BODIES.get(code, {"code": -1000, "msg": "An unknown error occurred."})


# -- the other venues ------------------------------------------------------------------------------

# What each venue answers when a request is over its budget, and when a symbol or parameter is
# wrong: (HTTP status, error code or None, message). Kraken and OKX/Bybit send errors with 200.
OVER_BUDGET: dict[str, tuple[int, str | None, str]] = {
    "bybit": (403, None, "<html><body>403 Forbidden: access too frequent</body></html>"),
    "okx": (429, "50011", "Too Many Requests"),
    "coinbase": (429, None, "Public rate limit exceeded"),
    "kraken": (200, None, "EAPI:Rate limit exceeded"),
}
BAD_SYMBOL: dict[str, tuple[int, str | None, str]] = {
    "bybit": (200, "10001", "params error: symbol invalid"),
    "okx": (200, "51001", "Instrument ID does not exist"),
    "coinbase": (404, None, "NotFound"),
    "kraken": (200, None, "EQuery:Unknown asset pair"),
}
BAD_PARAM: dict[str, tuple[int, str | None, str]] = {
    "bybit": (200, "10001", "params error"),
    "okx": (200, "51000", "Parameter error"),
    "coinbase": (400, None, "granularity too small for the requested time range"),
    "kraken": (200, None, "EGeneral:Invalid arguments"),
}


class Refusal(Exception):
    """A request the venue refuses. `kind`: "missing", "malformed", "interval", "limit",
    "symbol", "range" (more rows than one request may ask for) or "start_only" (a start without
    an end); `name` is the parameter; `detail` what an envelope venue says about it."""

    def __init__(self, kind: str, name: str = "", detail: str | None = None) -> None:
        super().__init__(kind)
        self.kind, self.name = kind, name
        self.detail = name if detail is None else detail


class Wire(Protocol):
    """How one venue writes what is not rows: refusals, unknown paths, budget and fault bodies."""

    @property
    def funding_symbol_optional(self) -> bool:
        """Funding without a symbol answers every symbol's rows (Binance)."""
        ...

    @property
    def funding_start_needs_end(self) -> bool:
        """Funding with a start but no end is refused (Bybit; the replay holds OKX to it too)."""
        ...

    def refuse(self, refusal: Refusal) -> Response: ...

    def not_found(self, path: str) -> Response: ...

    def over_budget(self, budget: int, used: int, retry_after_s: float) -> Response: ...

    def fault(self, code: int, retry_after: float | None, used: int) -> Response: ...

    def headers(self, used: int) -> dict[str, str]: ...


_MANDATORY = "Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
_BINANCE_REFUSALS: dict[str, tuple[int, str]] = {
    "missing": (-1102, _MANDATORY),
    "malformed": (-1100, "Illegal characters found in parameter '{name}'."),
    "interval": (-1120, "Invalid interval."),
    "limit": (-1130, "Data sent for parameter '{name}' is not valid."),
    "symbol": (-1121, "Invalid symbol."),
    "range": (-1127, "More than the maximum rows requested."),
    "start_only": (
        -1102,
        "Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
    ),
}


@dataclass(frozen=True)
class BinanceWire:
    """Binance: `{"code", "msg"}` bodies with HTTP 4xx, the used weight in a header on every
    answer, and Retry-After on a 429."""

    used_weight_header: str = "X-MBX-USED-WEIGHT-1M"
    funding_symbol_optional: bool = True
    funding_start_needs_end: bool = False

    def refuse(self, refusal: Refusal) -> Response:
        code, msg = _BINANCE_REFUSALS[refusal.kind]
        return Response(400, {"code": code, "msg": msg.format(name=refusal.name)})

    def not_found(self, path: str) -> Response:
        return Response(404, {"code": -1, "msg": f"Unknown endpoint {path}."})

    def over_budget(self, budget: int, used: int, retry_after_s: float) -> Response:
        msg = (
            f"Too much request weight used; current limit is {budget} request "
            "weight per 1 MINUTE. Please use WebSocket Streams for live updates."
        )
        headers = {**self.headers(used), "Retry-After": str(max(1, math.ceil(retry_after_s)))}
        return Response(429, {"code": -1003, "msg": msg}, headers)

    def fault(self, code: int, retry_after: float | None, used: int) -> Response:
        headers = self.headers(used)
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        return Response(code, default_body(code), headers)

    def headers(self, used: int) -> dict[str, str]:
        return {self.used_weight_header: str(used)}


@dataclass(frozen=True)
class EnvelopeWire:
    """Bybit, OKX, Coinbase, Kraken: errors in the venue's envelope (often with HTTP 200), by
    the tables above; no weight header."""

    spec: VenueSpec
    funding_symbol_optional: bool = False
    funding_start_needs_end: bool = True

    def refuse(self, refusal: Refusal) -> Response:
        symbol_params = {
            p
            for m in self.spec.markets.values()
            for p in (m.candles.symbol_param, m.funding.symbol_param if m.funding else None)
            if p
        }
        if refusal.kind == "symbol" or (
            refusal.kind == "missing" and refusal.name in symbol_params
        ):
            return self._error(BAD_SYMBOL)
        return self._error(BAD_PARAM, refusal.detail)

    def not_found(self, path: str) -> Response:
        return Response(404, {"message": f"Unknown endpoint {path}"})

    def over_budget(self, budget: int, used: int, retry_after_s: float) -> Response:
        return self._error(OVER_BUDGET)

    def fault(self, code: int, retry_after: float | None, used: int) -> Response:
        if code == 429:
            _, error_code, message = OVER_BUDGET[self.spec.venue]
            body = self._body(error_code, message)
        else:
            body = default_body(code)
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return Response(code, body, headers)

    def headers(self, used: int) -> dict[str, str]:
        return {}

    def _error(
        self, table: Mapping[str, tuple[int, str | None, str]], detail: str = ""
    ) -> Response:
        status, code, message = table[self.spec.venue]
        if detail:
            message = f"{message}: {detail}" if status != 403 else message
        return Response(status, self._body(code, message))

    def _body(self, code: str | None, message: str) -> Any:
        envelope = self.spec.envelope or Envelope()
        if envelope.code_field is not None:
            body: dict[str, Any] = {envelope.code_field: code or "1"}
            if envelope.message_field:
                body[envelope.message_field] = message
            if (
                code is not None
                and code.isdigit()
                and self.spec.success_fields.get(envelope.code_field) == 0
            ):
                body[envelope.code_field] = int(code)  # Bybit sends retCode as a number
            top = self._top_keys()
            body["data" if "data" in top else "result"] = [] if "data" in top else {}
            return body
        if envelope.errors_field is not None:
            return {envelope.errors_field: [message]}
        if message.startswith("<html"):
            return message
        return {envelope.message_field or "message": message}

    def _top_keys(self) -> set[str]:
        keys = {str(self.spec.time.field_path[0])}
        for market in self.spec.markets.values():
            if market.candles.rows_path:
                keys.add(str(market.candles.rows_path[0]))
        return keys


def wire_for(spec: VenueSpec) -> Wire:
    """The venue's error dialect: Binance's own, or its envelope's."""
    if spec.venue == "binance":
        return BinanceWire(spec.used_weight_header or "X-MBX-USED-WEIGHT-1M")
    return EnvelopeWire(spec)


def candle_row(series: Series, i: int, now_ms: int, layout: RowFormat) -> list[Any]:
    """Row `i` of a series in the endpoint's row format."""
    if isinstance(layout, Rows):
        return venue_row(series, i, now_ms, layout)
    if isinstance(layout, KlineRows):
        return binance_row(series, i, now_ms)
    raise TypeError(f"the replay cannot write {type(layout).__name__} rows")


def binance_row(series: Series, i: int, now_ms: int) -> list[Any]:
    """Row `i` of a series as a Binance kline (the open candle as the replay synthesises it)."""
    open_ms, step = series.times[i], series.step_ms
    c = series.columns
    volume, quote_volume, trades = c["volume"][i], c["quote_volume"][i], c["trades"][i]
    if open_ms + step <= now_ms:
        prices = [c["open"][i], c["high"][i], c["low"][i], c["close"][i]]
    else:
        # The candle in progress (see ReplayExchange for how it is synthesised).
        fraction = (now_ms - open_ms) / step
        prices = [c["open"][i]] * 4
        volume = None if volume is None else volume * fraction
        quote_volume = None if quote_volume is None else quote_volume * fraction
        trades = None if trades is None else int(trades * fraction)
    return [
        open_ms,
        *map(dec, prices),
        dec(volume),
        open_ms + step - 1,
        dec(quote_volume),
        trades or 0,
        *TAKER,
    ]


def venue_row(series: Series, i: int, now_ms: int, layout: Rows) -> list[Any]:
    """Row `i` of a series in a REST venue's row layout."""
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
            return dec(value)
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
