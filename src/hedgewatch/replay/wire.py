"""The replay exchange's wire formats: each venue's rows, envelopes and error bodies."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hedgewatch.replay.data import Series
from hedgewatch.venues.rest import Rows


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


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise ApiError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def limit_param(params: dict[str, str], *, default: int, maximum: int) -> int:
    limit = int_param(params, "limit", default)
    assert limit is not None
    if not 1 <= limit <= maximum:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return limit


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


class WireError(Exception):
    def __init__(self, table: Mapping[str, tuple[int, str | None, str]], detail: str = "") -> None:
        super().__init__(detail)
        self.table, self.detail = table, detail


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
