"""Shared shapes for exchange clients: candle/funding schemas, the Exchange protocol, time helpers.

Every venue client returns frames in these schemas, so the shell never sees a wire format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import polars as pl

UTC_US = pl.Datetime("us", "UTC")

CANDLE_SCHEMA = pl.Schema(
    {
        "venue": pl.Utf8(),
        "market": pl.Utf8(),  # "spot" | "perp"
        "symbol": pl.Utf8(),  # the venue's own symbol, e.g. "BTCUSDT"
        "interval": pl.Utf8(),  # e.g. "1h"
        "open_time": UTC_US,  # candles are labelled by their open time
        "open": pl.Float64(),  # quote currency
        "high": pl.Float64(),
        "low": pl.Float64(),
        "close": pl.Float64(),
        "volume": pl.Float64(),  # base units
        "quote_volume": pl.Float64(),  # quote units, nullable
        "trades": pl.Int64(),  # nullable
    }
)

FUNDING_SCHEMA = pl.Schema(
    {
        "venue": pl.Utf8(),
        "symbol": pl.Utf8(),
        "funding_time": UTC_US,
        "funding_rate": pl.Float64(),  # decimal per funding period: 0.0001 = 0.01 %
        "mark_price": pl.Float64(),  # quote currency, nullable
    }
)

MARKETS = ("spot", "perp")


@runtime_checkable
class Exchange(Protocol):
    """A venue's public market data: closed candles and funding, as CANDLE/FUNDING_SCHEMA frames."""

    venue: str

    def server_time(self) -> datetime: ...

    def page_size(self, market: str) -> int:
        """Candles per request on `market` (the venue's largest page); backfill chunks by it."""
        ...

    @property
    def history_bars(self) -> int | None:
        """Most recent candles the venue serves at all; None when it serves back to listing."""
        ...

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
        """Closed candles in [start, end). `now`: the venue's time if the caller already read it
        (an older value is safe: it only holds back candles that closed since)."""
        ...

    def fetch_funding(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame: ...

    def close(self) -> None: ...


_INTERVAL_RE = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def interval_to_timedelta(interval: str) -> timedelta:
    """Parse a fixed-length interval such as "1m", "15m", "1h", "4h", "1d", "1w".

    Calendar months ("1M") have no fixed length and are rejected.
    """
    match = _INTERVAL_RE.match(interval)
    if match is None:
        raise ValueError(
            f"unsupported interval {interval!r}: "
            "expected a number and one of s, m, h, d, w (e.g. '1h')"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])


def interval_ms(interval: str) -> int:
    return int(interval_to_timedelta(interval) / timedelta(milliseconds=1))


def ms_to_datetime(ms: int) -> datetime:
    """Unix milliseconds -> aware UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int:
    """Aware datetime -> Unix milliseconds. Naive datetimes are refused: their zone is a guess."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} has no time zone; pass an aware one")
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def empty_candles() -> pl.DataFrame:
    return pl.DataFrame(schema=CANDLE_SCHEMA)


def empty_funding() -> pl.DataFrame:
    return pl.DataFrame(schema=FUNDING_SCHEMA)


def base_url_overrides(
    base_urls: Mapping[str, str] | None, markets: Iterable[str]
) -> dict[str, str]:
    """The per-market host overrides a client was given, refusing markets the venue lacks."""
    overrides = dict(base_urls or {})
    known = sorted(markets)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"base_urls has unknown markets {unknown}; expected {known}")
    return overrides
