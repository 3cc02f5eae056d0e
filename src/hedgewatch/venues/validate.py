"""Rows are checked at the edge, for API replies and imported files alike; rejects are counted.

A candle is kept only when its prices are finite and positive, low <= open, close <= high,
its volume is finite and not negative, its open time sits on the interval's grid, it has closed
by `now`, and its time is not before 2009 (a time in seconds read as milliseconds lands in 1970).
Nothing is floored onto the grid or repaired: a rejected row is counted with its reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from hedgewatch.venues.base import CANDLE_SCHEMA, interval_ms

# The first bitcoin block: no market's candle is older. Seconds read as ms land in 1970.
EARLIEST = datetime(2009, 1, 3, tzinfo=UTC)
_PRICES = ("open", "high", "low", "close")
_DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Checked:
    """The rows kept, and how many were rejected for which reason."""

    kept: pl.DataFrame
    rejects: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def summary(self) -> str | None:
        if not self.rejects:
            return None
        parts = [f"{n} {reason}" for reason, n in sorted(self.rejects.items())]
        return "rejected " + ", ".join(parts)


def check_candles(frame: pl.DataFrame, *, now: datetime) -> Checked:
    """Keep the true, closed candles of `frame` (CANDLE_SCHEMA); count the rest by reason."""
    if frame.is_empty():
        return Checked(frame)
    frame = frame.cast(CANDLE_SCHEMA)
    # Weeks open on a weekday the epoch does not: their grid is the day.
    steps = {i: _step_us(i) for i in frame["interval"].unique().to_list()}
    grids = {i: None if s is None else min(s, _DAY_US) for i, s in steps.items()}
    grid = pl.col("interval").replace_strict(grids, return_dtype=pl.Int64, default=None)
    step = pl.col("interval").replace_strict(steps, return_dtype=pl.Int64, default=None)
    epoch_us = pl.col("open_time").dt.epoch("us")
    finite_positive = pl.all_horizontal(
        pl.col(c).is_not_null() & pl.col(c).is_finite() & (pl.col(c) > 0) for c in _PRICES
    )
    reasons = (
        pl.when(~finite_positive)
        .then(pl.lit("prices not finite and positive"))
        .when(
            (pl.col("low") > pl.min_horizontal("open", "close"))
            | (pl.col("high") < pl.max_horizontal("open", "close"))
        )
        .then(pl.lit("outside low..high"))
        .when(pl.col("volume").is_null() | ~pl.col("volume").is_finite() | (pl.col("volume") < 0))
        .then(pl.lit("volume negative or not finite"))
        .when(pl.col("open_time").is_null() | (pl.col("open_time") < EARLIEST))
        .then(pl.lit("before 2009 (seconds read as milliseconds?)"))
        .when(grid.is_null() | ((epoch_us % grid) != 0))
        .then(pl.lit("off the interval grid"))
        .when(epoch_us + step > int(now.timestamp() * 1_000_000))
        .then(pl.lit("not closed yet or in the future"))
        .otherwise(pl.lit(None, pl.Utf8))
        .alias("_reason")
    )
    judged = frame.with_columns(reasons)
    kept = judged.filter(pl.col("_reason").is_null()).drop("_reason")
    counts = Counter(judged["_reason"].drop_nulls().to_list())
    return Checked(kept, dict(counts))


def _step_us(interval: str) -> int | None:
    try:
        return interval_ms(interval) * 1000
    except ValueError:
        return None
