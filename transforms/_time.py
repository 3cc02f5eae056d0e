"""Shared checks for the UTC open_time column and the `since` cut-off of the transforms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

OPEN_TIME = "open_time"
TIME_DTYPE = pl.Datetime("us", "UTC")
HOUR_US = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_open_time(frame: pl.DataFrame, what: str) -> pl.DataFrame:
    """Return `frame` with open_time as Datetime(us, UTC); naive timestamps are refused."""
    if OPEN_TIME not in frame.columns:
        raise ValueError(f"{what} has no '{OPEN_TIME}' column (columns: {frame.columns})")
    dtype = frame.schema[OPEN_TIME]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(
            f"{what}.{OPEN_TIME} must be a time-zone aware Datetime (UTC), got {dtype}"
        )
    if dtype == TIME_DTYPE:
        return frame
    return frame.with_columns(pl.col(OPEN_TIME).dt.convert_time_zone("UTC").cast(TIME_DTYPE))


def check_since(since: datetime | None) -> datetime | None:
    """Refuse naive datetimes: comparing them with UTC open times would silently shift hours."""
    if since is None:
        return None
    if since.tzinfo is None:
        raise ValueError(f"since must be time-zone aware (UTC), got naive {since.isoformat()}")
    return since.astimezone(UTC)


def hour_index(open_time: pl.Series) -> tuple[pl.Series, bool]:
    """Whole hours since the epoch, and whether every value sits exactly on an hour boundary."""
    micros = open_time.dt.epoch("us")
    return micros // HOUR_US, bool((micros % HOUR_US == 0).all())


def since_hour(since: datetime) -> int:
    """First whole hour (since the epoch) whose open time is >= since."""
    micros = (since - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // HOUR_US)


def hour_start(hour: int) -> datetime:
    """UTC datetime of a whole hour since the epoch."""
    return _EPOCH + timedelta(hours=hour)
