"""The replay exchange's data: candle and funding files loaded into frames, and series by column."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from hedgewatch.venues.base import UTC_US, interval_ms


@dataclass
class Series:
    """One (market, symbol, interval): sorted open times and their values, column by column."""

    step_ms: int
    times: list[int]
    columns: dict[str, list[Any]]


def series_from_frame(frame: pl.DataFrame, interval: str) -> Series | None:
    """One series' rows (unique open times, sorted) as lists, or None when there are none."""
    frame = frame.unique(subset="open_time", keep="first", maintain_order=True)
    if frame.is_empty():
        return None
    names = ("open", "high", "low", "close", "volume", "quote_volume", "trades")
    return Series(
        interval_ms(interval),
        frame["open_time"].dt.epoch("ms").to_list(),
        {name: frame[name].to_list() for name in names},
    )


def prepare_funding(funding: pl.DataFrame | None, venue: str = "binance") -> pl.DataFrame:
    """One venue's rows of a load_funding_files frame as (symbol, ts ms, rate, mark)."""
    empty = pl.DataFrame(
        schema={"symbol": pl.Utf8, "ts": pl.Int64, "rate": pl.Float64, "mark": pl.Float64}
    )
    if funding is None or funding.is_empty():
        return empty
    if "exchange" in funding.columns:
        funding = funding.filter(pl.col("exchange") == venue)
    mark = pl.col("mark_price") if "mark_price" in funding.columns else pl.lit(None, pl.Float64)
    return funding.select(
        pl.col("symbol"),
        pl.col("funding_time").dt.epoch("ms").alias("ts"),
        pl.col("funding_rate").alias("rate"),
        mark.alias("mark"),
    ).unique(subset=["symbol", "ts"], keep="first")


# -- data files ------------------------------------------------------------------------------------

_INTERVAL_IN_NAME = re.compile(r"_(\d+[smhdw])_")


def load_candle_files(paths: Sequence[Path], market: str | None = None) -> pl.DataFrame:
    """Read candle CSV(.gz) files (ts in epoch ms = open time, symbol, open..volume[, quote_volume,
    trades]) into market, symbol, open_time, open..volume, quote_volume, trades, interval.

    `market` defaults to "perp" when the file name says usdm/perp, else "spot"; `interval` is read
    from the name (e.g. "_1h_"), else the smallest step found in the data.
    """
    frames = []
    for path in map(Path, paths):
        raw = pl.read_csv(path, infer_schema_length=10_000)
        file_market = market or ("perp" if re.search(r"usdm|perp", path.name, re.I) else "spot")
        match = _INTERVAL_IN_NAME.search(path.name)
        interval = match.group(1) if match else _smallest_step(raw)
        columns = [
            pl.lit(file_market).alias("market"),
            pl.col("symbol").cast(pl.Utf8),
            pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="ms")
            .dt.replace_time_zone("UTC")
            .cast(UTC_US)
            .alias("open_time"),
        ]
        for name in ("open", "high", "low", "close", "volume", "quote_volume"):
            expr = pl.col(name) if name in raw.columns else pl.lit(None)
            columns.append(expr.cast(pl.Float64).alias(name))
        trades = pl.col("trades") if "trades" in raw.columns else pl.lit(None)
        columns += [trades.cast(pl.Int64).alias("trades"), pl.lit(interval).alias("interval")]
        frames.append(raw.select(columns))
    return pl.concat(frames) if frames else pl.DataFrame()


def load_funding_files(paths: Sequence[Path]) -> pl.DataFrame:
    """Read funding CSV(.gz) files (ts, exchange, symbol, funding_rate) into exchange, symbol,
    funding_time (UTC), funding_rate."""
    frames = []
    for path in map(Path, paths):
        raw = pl.read_csv(path, infer_schema_length=10_000)
        exchange = pl.col("exchange") if "exchange" in raw.columns else pl.lit("binance")
        frames.append(
            raw.select(
                exchange.cast(pl.Utf8).alias("exchange"),
                pl.col("symbol").cast(pl.Utf8),
                pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="ms")
                .dt.replace_time_zone("UTC")
                .cast(UTC_US)
                .alias("funding_time"),
                pl.col("funding_rate").cast(pl.Float64),
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame()


def _smallest_step(raw: pl.DataFrame) -> str:
    diffs = raw.sort("symbol", "ts").select(pl.col("ts").diff().over("symbol")).to_series()
    smallest = diffs.filter(diffs > 0).min()
    step_s = (smallest if isinstance(smallest, int) else 3_600_000) // 1000
    for unit, seconds in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if step_s % seconds == 0:
            return f"{step_s // seconds}{unit}"
    return f"{step_s}s"
