"""Hourly log returns from closed candles, and their wide layout on the full UTC hourly grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import polars as pl

from hedgewatch.transforms._time import (
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


def to_daily(wide: pl.DataFrame) -> pl.DataFrame:
    """Daily log returns from a wide hourly frame, labelled by the UTC day's 00:00 open time.

    A day's return is the sum of its 24 hourly log returns (the close-to-close move over the day);
    null unless all 24 are present, so a gap never hides inside a daily figure.
    """
    frame = utc_open_time(wide, "wide")
    names = [c for c in frame.columns if c != OPEN_TIME]
    if frame.is_empty():
        return frame
    return (
        frame.group_by(pl.col(OPEN_TIME).dt.truncate("1d"))
        .agg(
            *(
                pl.when(pl.col(n).is_not_null().sum() == 24).then(pl.col(n).sum()).alias(n)
                for n in names
            )
        )
        .sort(OPEN_TIME)
        .select(OPEN_TIME, *names)
    )


def add_funding(
    wide: pl.DataFrame, funding: pl.DataFrame, perps: Mapping[str, tuple[str, str]]
) -> pl.DataFrame:
    """Add each funding payment to the hourly return of the perp it settles on, as a long holds it.

    `perps` maps a column of `wide` to its (venue, symbol) in `funding` (venue, symbol,
    funding_time, funding_rate). A payment settling at time T belongs to the hour whose candle
    closes at T (open_time = T - 1 h, T rounded to the minute: venues stamp settlements a few ms
    late). A long pays a positive rate, so the column gets -funding_rate; a short leg's sign flip
    in the hedge turns that into the income it is. A payment on an hour without a return is dropped.
    """
    if not perps or funding.is_empty():
        return wide
    frame = utc_open_time(wide, "wide")
    keys = pl.DataFrame(
        [(col, venue, symbol) for col, (venue, symbol) in perps.items()],
        schema={"column": pl.Utf8, "venue": pl.Utf8, "symbol": pl.Utf8},
        orient="row",
    )
    paid = (
        funding.join(keys, on=["venue", "symbol"])
        .with_columns(
            (
                pl.col("funding_time")
                .dt.convert_time_zone("UTC")
                .dt.round("1m")
                .dt.cast_time_unit("us")
                - timedelta(hours=1)
            )
            .dt.truncate("1h")
            .alias(OPEN_TIME),
        )
        .group_by("column", OPEN_TIME)
        .agg(pl.col("funding_rate").cast(pl.Float64).sum())
    )
    for column in perps:
        if column not in frame.columns:
            raise ValueError(f"wide has no column {column!r} (columns: {frame.columns})")
        rates = paid.filter(pl.col("column") == column).select(
            OPEN_TIME, pl.col("funding_rate").alias("_rate")
        )
        frame = (
            frame.join(rates, on=OPEN_TIME, how="left")
            .with_columns((pl.col(column) - pl.col("_rate").fill_null(0.0)).alias(column))
            .drop("_rate")
        )
    return frame
