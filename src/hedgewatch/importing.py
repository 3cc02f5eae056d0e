"""Load candle files into the store through the same upsert as fetched candles.

Formats: Binance's public data archive (data.binance.vision klines: CSV without a header, or the
same inside a .zip; open times in ms, or µs in newer spot files), the normalised CSV(.gz) of the
shared data set (ts in ms, symbol, open..volume[, quote_volume, trades]), and Parquet with the
candle columns. What a file does not say (venue, market, interval, symbol) comes from options or
the file name.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from hedgewatch.venues.base import CANDLE_SCHEMA, UTC_US, interval_to_timedelta
from hedgewatch.venues.validate import Checked, check_candles

ARCHIVE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
# BTCUSDT-1h-2024-01.zip, BTCUSDT-1h-2024-01-15.csv
_ARCHIVE_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\d+[smhdwM])-\d{4}-\d{2}")
_INTERVAL_IN_NAME = re.compile(r"_(\d+[smhdw])_")
# Above this an epoch number is in microseconds (1e14 ms is the year 5138); below
# _S_THRESHOLD it is in seconds (1e11 ms is March 1973, 1e11 s the year 5138).
_US_THRESHOLD = 100_000_000_000_000
_S_THRESHOLD = 100_000_000_000


class CandleFileError(Exception):
    """A file that cannot be read as candles; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Defaults:
    venue: str | None = None
    market: str | None = None
    interval: str | None = None
    symbol: str | None = None


def read_candles(path: Path, defaults: Defaults) -> Iterator[pl.DataFrame]:
    """CANDLE_SCHEMA frames from one file (a zip yields one frame per member)."""
    name = path.name.lower()
    if not path.is_file():
        raise CandleFileError(f"{path}: no such file")
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
                if not members:
                    raise CandleFileError(f"{path}: the zip holds no .csv file")
                for member in members:
                    data = archive.read(member)
                    yield _from_csv(io.BytesIO(data), Path(member).name, path, defaults)
        elif name.endswith(".parquet"):
            yield _from_parquet(pl.read_parquet(path), path, defaults)
        elif name.endswith((".csv", ".csv.gz")):
            yield _from_csv(path, path.name, path, defaults)
        else:
            raise CandleFileError(
                f"{path}: unknown format (expected .csv, .csv.gz, .zip or .parquet)"
            )
    except (pl.exceptions.PolarsError, zipfile.BadZipFile, OSError) as exc:
        raise CandleFileError(f"{path}: cannot read: {exc}") from None
    except (ValueError, OverflowError, TypeError, KeyError, UnicodeError) as exc:
        raise CandleFileError(f"{path}: cannot read: {type(exc).__name__}: {exc}") from None


def read_checked(path: Path, defaults: Defaults, *, now: datetime) -> Iterator[Checked]:
    """The file's candles checked at the edge: the true, closed rows kept, the rest counted."""
    for frame in read_candles(path, defaults):
        try:
            yield check_candles(frame, now=now)
        except pl.exceptions.PolarsError as exc:
            raise CandleFileError(f"{path}: cannot check rows: {exc}") from None


_DATES = re.compile(r"[-_]?\d{4}-\d{2}(-\d{2})?")


def source_of(path: Path) -> str:
    """A name for where a file's candles came from, the same for every period of one source:
    Binance's archive files are one source; other files are named by their name without dates
    (`binance_spot_1h_2022-04-20_2022-05-16.csv.gz` → `binance_spot_1h`)."""
    name = path.name
    if name.lower().endswith(".zip") or _ARCHIVE_NAME.match(name):
        return "binance data archive"
    stem = re.sub(r"(\.(csv|gz|parquet|zip))+$", "", name, flags=re.I)
    return _DATES.sub("", stem).strip("-_.") or stem


def _first_line(source: Path | io.BytesIO) -> str:
    if isinstance(source, io.BytesIO):
        line = source.getvalue().split(b"\n", 1)[0]
    elif source.name.endswith(".gz"):
        import gzip

        with gzip.open(source, "rb") as handle:
            line = handle.readline()
    else:
        with source.open("rb") as handle:
            line = handle.readline()
    return line.decode("utf-8", "replace").strip()


def _from_csv(source: Path | io.BytesIO, name: str, path: Path, defaults: Defaults) -> pl.DataFrame:
    header = _first_line(source)
    first = header.split(",")[0].strip().strip('"')
    if first.isdigit():
        raw = pl.read_csv(source, has_header=False, new_columns=list(ARCHIVE_COLUMNS))
        return _from_archive(raw, name, path, defaults)
    raw = pl.read_csv(source, infer_schema_length=10_000)
    if "open_time" in raw.columns and "ts" not in raw.columns:
        # Newer futures archives carry the same columns with a header (count = trades).
        raw = raw.rename({"count": "trades"}) if "count" in raw.columns else raw
        return _from_archive(raw, name, path, defaults)
    if "ts" in raw.columns:
        return _from_normalised(raw, name, path, defaults)
    raise CandleFileError(
        f"{path}: unrecognised CSV header {header[:80]!r}; expected a Binance archive (no header) "
        "or ts,symbol,open,high,low,close,volume"
    )


def _epoch_to_utc(column: str) -> pl.Expr:
    value = pl.col(column).cast(pl.Int64)
    micros = (
        pl.when(value >= _US_THRESHOLD)
        .then(value)
        .when(value < _S_THRESHOLD)
        .then(value * 1_000_000)
        .otherwise(value * 1000)
    )
    return micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(UTC_US)


def _from_archive(raw: pl.DataFrame, name: str, path: Path, defaults: Defaults) -> pl.DataFrame:
    match = _ARCHIVE_NAME.match(name)
    symbol = defaults.symbol or (match.group("symbol") if match else None)
    interval = defaults.interval or (match.group("interval") if match else None)
    if symbol is None or interval is None:
        raise CandleFileError(
            f"{path}: cannot tell the symbol and interval from the name {name!r} "
            "(expected SYMBOL-INTERVAL-YYYY-MM…); pass --symbol and --interval"
        )
    frame = raw.select(
        pl.lit(defaults.venue or "binance").alias("venue"),
        pl.lit(defaults.market or "spot").alias("market"),
        pl.lit(symbol).alias("symbol"),
        pl.lit(interval).alias("interval"),
        _epoch_to_utc("open_time").alias("open_time"),
        *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")),
        pl.col("quote_volume").cast(pl.Float64),
        pl.col("trades").cast(pl.Int64),
    )
    return _checked(frame, path)


def _from_normalised(raw: pl.DataFrame, name: str, path: Path, defaults: Defaults) -> pl.DataFrame:
    market = defaults.market or ("perp" if re.search(r"usdm|perp", name, re.I) else "spot")
    found = _INTERVAL_IN_NAME.search(name)
    interval = defaults.interval or (found.group(1) if found else None)
    if interval is None:
        raise CandleFileError(f"{path}: the name does not say the interval; pass --interval")
    symbol = pl.col("symbol").cast(pl.Utf8) if "symbol" in raw.columns else None
    if symbol is None:
        if defaults.symbol is None:
            raise CandleFileError(f"{path}: no symbol column; pass --symbol")
        symbol = pl.lit(defaults.symbol)
    columns = [
        (
            pl.col("exchange")
            if "exchange" in raw.columns and not defaults.venue
            else pl.lit(defaults.venue or "binance")
        )
        .cast(pl.Utf8)
        .alias("venue"),
        pl.lit(market).alias("market"),
        symbol.alias("symbol"),
        pl.lit(interval).alias("interval"),
        _epoch_to_utc("ts").alias("open_time"),
    ]
    for column in ("open", "high", "low", "close", "volume", "quote_volume"):
        expr = pl.col(column) if column in raw.columns else pl.lit(None)
        columns.append(expr.cast(pl.Float64).alias(column))
    trades = pl.col("trades") if "trades" in raw.columns else pl.lit(None)
    columns.append(trades.cast(pl.Int64).alias("trades"))
    return _checked(raw.select(columns), path)


def _from_parquet(raw: pl.DataFrame, path: Path, defaults: Defaults) -> pl.DataFrame:
    if "open_time" not in raw.columns and "ts" in raw.columns:
        raw = raw.with_columns(_epoch_to_utc("ts").alias("open_time"))
    elif "open_time" in raw.columns and raw.schema["open_time"].is_integer():
        raw = raw.with_columns(_epoch_to_utc("open_time").alias("open_time"))
    elif "open_time" in raw.columns:
        dtype = raw.schema["open_time"]
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            raw = raw.with_columns(pl.col("open_time").dt.replace_time_zone("UTC"))
        raw = raw.with_columns(pl.col("open_time").dt.convert_time_zone("UTC").cast(UTC_US))
    else:
        raise CandleFileError(f"{path}: no open_time (or ts) column")
    for column, value in (
        ("venue", defaults.venue),
        ("market", defaults.market),
        ("interval", defaults.interval),
        ("symbol", defaults.symbol),
    ):
        if value is not None:
            raw = raw.with_columns(pl.lit(value).alias(column))
        elif column not in raw.columns:
            raise CandleFileError(f"{path}: no {column} column; pass --{column}")
    for column in ("quote_volume", "trades"):
        if column not in raw.columns:
            raw = raw.with_columns(pl.lit(None).alias(column))
    return _checked(raw.select(CANDLE_SCHEMA.names()).cast(CANDLE_SCHEMA), path)


def _checked(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    frame = frame.cast(CANDLE_SCHEMA)
    for interval in frame["interval"].unique().to_list():
        try:
            interval_to_timedelta(interval)
        except ValueError as exc:
            raise CandleFileError(f"{path}: {exc}") from None
    for market in frame["market"].unique().to_list():
        if market not in ("spot", "perp"):
            raise CandleFileError(f"{path}: market {market!r} is not spot or perp")
    bad = frame.filter(
        pl.any_horizontal(
            pl.col(c).is_null() for c in ("open_time", "open", "high", "low", "close")
        )
    )
    if bad.height:
        raise CandleFileError(f"{path}: {bad.height} rows lack a time or price")
    return frame
