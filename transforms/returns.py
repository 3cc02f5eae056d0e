"""Hourly log returns from closed candles, and their wide layout on the full UTC hourly grid."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from transforms._time import (
    OPEN_TIME,
    TIME_DTYPE,
    check_since,
    hour_index,
    hour_start,
    since_hour,
    utc_open_time,
)

INSTRUMENT = "instrument"
LOG_RETURN = "log_return"
RETURNS_SCHEMA: dict[str, pl.DataType] = {
    INSTRUMENT: pl.Utf8(),
    OPEN_TIME: TIME_DTYPE,
    LOG_RETURN: pl.Float64(),
}


def to_log_returns(candles: pl.DataFrame, *, since: datetime | None = None) -> pl.DataFrame:
    """One row per candle whose previous candle of the same instrument opened exactly 1 h earlier.

    log_return = ln(close / previous close); null when either close is missing, NaN or <= 0.
    Output: instrument, open_time, log_return, sorted by instrument then open_time; with `since`,
    only rows with open_time >= since (the candle before `since` is still used).
    """
    missing = {INSTRUMENT, "close"} - set(candles.columns)
    if missing:
        raise ValueError(f"candles lack column(s) {sorted(missing)} (columns: {candles.columns})")
    since = check_since(since)
    frame = utc_open_time(candles.select(INSTRUMENT, OPEN_TIME, "close"), "candles")
    if frame.select(pl.struct(INSTRUMENT, OPEN_TIME).is_duplicated().any()).item():
        raise ValueError("candles hold duplicate (instrument, open_time) rows; de-duplicate first")

    close = pl.col("close").cast(pl.Float64)
    # Non-positive or NaN closes would give -inf/NaN returns that poison every window sum.
    usable = pl.when(close.is_finite() & (close > 0)).then(close)
    out = (
        frame.with_columns(usable.alias("close"))
        .sort(INSTRUMENT, OPEN_TIME)
        .with_columns(
            (pl.col(OPEN_TIME).diff().over(INSTRUMENT) == timedelta(hours=1)).alias("_follows"),
            (pl.col("close") / pl.col("close").shift(1).over(INSTRUMENT)).log().alias(LOG_RETURN),
        )
        .filter(pl.col("_follows"))
        .select(INSTRUMENT, OPEN_TIME, LOG_RETURN)
    )
    if since is not None:
        out = out.filter(pl.col(OPEN_TIME) >= since)
    return out.select(pl.col(name).cast(dtype) for name, dtype in RETURNS_SCHEMA.items())


def to_wide(
    returns: pl.DataFrame, instruments: Sequence[str], *, since: datetime | None = None
) -> pl.DataFrame:
    """open_time plus one Float64 column per instrument (in the given order) on the hourly grid.

    The grid runs over every UTC hour from the earliest to the latest open_time in `returns`
    (all instruments); a missing return is null, an instrument without rows is an all-null column.
    With `since`, only grid rows with open_time >= since are returned.
    """
    names = list(instruments)
    if len(set(names)) != len(names):
        raise ValueError(f"instruments must be unique, got {names}")
    if OPEN_TIME in names:
        raise ValueError(f"'{OPEN_TIME}' cannot be an instrument name")
    since = check_since(since)
    frame = utc_open_time(returns.select(INSTRUMENT, OPEN_TIME, LOG_RETURN), "returns")
    _, aligned = hour_index(frame[OPEN_TIME])
    if not aligned:
        raise ValueError("returns.open_time must fall on whole UTC hours")
    frame = frame.filter(pl.col(OPEN_TIME).is_not_null())
    empty = pl.DataFrame(schema={OPEN_TIME: TIME_DTYPE, **dict.fromkeys(names, pl.Float64)})
    if frame.is_empty():
        return empty

    start, end = frame[OPEN_TIME].min(), frame[OPEN_TIME].max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    if since is not None:
        start = max(start, hour_start(since_hour(since)))
        if start > end:
            return empty
    grid = pl.datetime_range(start, end, "1h", time_unit="us", time_zone="UTC", eager=True).alias(
        OPEN_TIME
    )
    wide = grid.to_frame()
    if since is not None:
        frame = frame.filter(pl.col(OPEN_TIME) >= since)
    present = frame.filter(pl.col(INSTRUMENT).is_in(names))
    if present.select(pl.struct(INSTRUMENT, OPEN_TIME).is_duplicated().any()).item():
        raise ValueError("returns hold duplicate (instrument, open_time) rows")
    if not present.is_empty():
        pivoted = present.pivot(on=INSTRUMENT, index=OPEN_TIME, values=LOG_RETURN)
        wide = wide.join(pivoted, on=OPEN_TIME, how="left")
    return wide.select(
        pl.col(OPEN_TIME),
        *(
            pl.col(n).cast(pl.Float64) if n in wide.columns else pl.lit(None, pl.Float64).alias(n)
            for n in names
        ),
    )
