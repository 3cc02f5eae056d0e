"""Field parsers shared by every venue: a typed value, or a BadResponse naming row and field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from hedgewatch.venues.base import UTC_US
from hedgewatch.venues.errors import BadResponse

# Ints past this are no time or count a venue sends (10^15 ms is the year 33658; in µs it
# still fits 64 bits): a huge timestamp is a malformed payload, not an overflow later.
_INT_LIMIT = 10**15
# The latest time in milliseconds a frame can hold as microseconds (about the year 33,600).
MAX_MS = _INT_LIMIT
_TOO_LARGE = _INT_LIMIT + 1


def utc_from_ms(values: Sequence[int]) -> pl.Series:
    return pl.Series(values=values, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")).cast(UTC_US)


def int_field(
    value: Any, row: int, name: str, venue: str, endpoint: str, *, digit_strings: bool = True
) -> int:
    # Times come as ints (Binance, Kraken, Coinbase) or digit strings (Bybit, OKX); a venue whose
    # wire format has ints passes digit_strings=False, so a string there is a malformed payload.
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif digit_strings and isinstance(value, str) and value.strip().isdigit():
        number = int(value) if len(value.strip()) <= 20 else _TOO_LARGE
    if number is not None:
        if abs(number) <= _INT_LIMIT:
            return number
        raise BadResponse(
            venue, endpoint, f"row {row} field '{name}': {preview(value)} is out of range"
        )
    raise BadResponse(
        venue, endpoint, f"row {row} field '{name}': expected an integer, got {preview(value)}"
    )


def decimal_field(value: Any, row: int, name: str, venue: str, endpoint: str) -> float:
    # Venues send decimals as strings to keep precision; JSON numbers are accepted too.
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise BadResponse(
        venue, endpoint, f"row {row} field '{name}': expected a decimal, got {preview(value)}"
    )


def preview(value: Any, limit: int = 80) -> str:
    """A short repr for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
