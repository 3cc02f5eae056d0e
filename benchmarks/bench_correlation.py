"""Full rolling pairwise correlation: hedgewatch against pandas and a numpy cumulative-sum floor,
and the cost of an hourly incremental update against the length of the stored history.

    .venv/bin/python benchmarks/bench_correlation.py [--data DIR] [--repeat 3] [--pandas-all]
                                                     [--skip-incremental]

Real hourly returns of 20 Binance spot majors over 2022 (8,760 hours) are tiled to N columns:
copy c of a symbol is shifted by 97·c hours, so every column is a distinct real series. The few
exchange-downtime hours are set to a zero return so that all three methods see complete data
(their gap rules differ); one extra column times hedgewatch with gaps shaped like real ones
(venue-wide outages, and two-week listing gaps in 5 % of the columns: pairs whose legs miss
different hours of a block take the slower pairwise-complete path). pandas at
N = 200 takes tens of seconds and several GB, so by default it runs at N = 200 only for w = 168
(--pandas-all runs every window). Times are the best of --repeat runs (pandas: one run).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from hedgewatch.transforms.correlation import rolling_correlation_all

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
MAJORS = "candles/binance_spot_1h_majors_2021-04_2023-12.csv.gz"
YEAR = (datetime(2022, 1, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC))
SKIP = {"LUNAUSDT", "LUNCUSDT", "FTTUSDT"}  # not listed the whole year
SIZES = (20, 100, 200)
WINDOWS = (24, 168, 720)


def real_returns(data: Path) -> tuple[np.ndarray, list[str]]:
    """(8760, 20) hourly log returns of 2022 with NaN where a candle is missing."""
    candles = pl.read_csv(data / MAJORS).with_columns(
        pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC").alias("open_time")
    )
    candles = candles.filter(~pl.col("symbol").is_in(list(SKIP)))
    grid = (
        pl.datetime_range(
            YEAR[0] - timedelta(hours=1),
            YEAR[1] - timedelta(hours=1),
            "1h",
            eager=True,
            time_zone="UTC",
        )
        .alias("open_time")
        .cast(pl.Datetime("us", "UTC"))
    )
    wide = grid.to_frame().join(
        candles.pivot(on="symbol", index="open_time", values="close").with_columns(
            pl.col("open_time").cast(pl.Datetime("us", "UTC"))
        ),
        on="open_time",
        how="left",
    )
    symbols = sorted(c for c in wide.columns if c != "open_time")[:20]
    closes = wide.select(symbols).to_numpy().astype(np.float64)
    returns = np.log(closes[1:] / closes[:-1])
    return returns, symbols


def tiled(returns: np.ndarray, n: int) -> np.ndarray:
    cols = [
        np.roll(returns[:, k % returns.shape[1]], 97 * (k // returns.shape[1])) for k in range(n)
    ]
    return np.stack(cols, axis=1)


def with_gaps(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaps shaped like real ones: venue-wide outages (every column, 1-4 hours, 8 of them) and
    listing or delisting gaps (one column, two weeks, in 5 % of the columns)."""
    out = values.copy()
    hours, n = out.shape
    for start in rng.integers(0, hours - 4, 8):
        out[start : start + rng.integers(1, 5)] = np.nan
    for column in rng.choice(n, max(1, n // 20), replace=False):
        start = rng.integers(0, hours - 336)
        out[start : start + 336, column] = np.nan
    return out


def wide_frame(values: np.ndarray) -> tuple[pl.DataFrame, list[str]]:
    names = [f"c{i}" for i in range(values.shape[1])]
    opens = pl.datetime_range(
        YEAR[0], YEAR[0] + timedelta(hours=len(values) - 1), "1h", eager=True, time_zone="UTC"
    ).cast(pl.Datetime("us", "UTC"))
    frame = pl.DataFrame({"open_time": opens, **{n: values[:, i] for i, n in enumerate(names)}})
    return frame.with_columns(pl.col(n).fill_nan(None) for n in names), names


def numpy_floor(values: np.ndarray, window: int, min_obs: int) -> np.ndarray:
    """The textbook formulation on complete data: centre, cumulative sums, window differences.

    (T, pairs) Pearson correlations; pairs in combinations order, processed 256 at a time.
    """
    x = values - values.mean(axis=0)
    t, n = x.shape
    ia, ib = np.triu_indices(n, 1)
    out = np.empty((t, len(ia)))

    def window_sums(a: np.ndarray) -> np.ndarray:
        c = np.cumsum(a, axis=0)
        s = c.copy()
        s[window:] -= c[:-window]
        return s

    counts = np.minimum(np.arange(1, t + 1), window)[:, None].astype(np.float64)
    sx, sxx = window_sums(x), window_sums(x * x)
    var = sxx - sx * sx / counts
    for lo in range(0, len(ia), 256):
        i, j = ia[lo : lo + 256], ib[lo : lo + 256]
        sxy = window_sums(x[:, i] * x[:, j])
        cov = sxy - sx[:, i] * sx[:, j] / counts
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, lo : lo + 256] = cov / np.sqrt(var[:, i] * var[:, j])
    out[counts[:, 0] < min_obs] = np.nan
    return out


def pandas_corr(values: np.ndarray, window: int, min_obs: int) -> np.ndarray:
    frame = pd.DataFrame(values)
    result = frame.rolling(window, min_periods=min_obs).corr()
    n = values.shape[1]
    ia, ib = np.triu_indices(n, 1)
    return result.to_numpy().reshape(len(values), n, n)[:, ia, ib]


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    both = ~np.isnan(a) & ~np.isnan(b)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else float("nan")


def bench_full(data: Path, repeat: int, pandas_all: bool) -> None:
    returns, _ = real_returns(data)
    print(
        f"real returns: {returns.shape[0]} hours x {returns.shape[1]} symbols, "
        f"{int(np.isnan(returns).sum())} missing"
    )
    header = (
        f"{'N':>4} {'w':>4} {'hedgewatch s':>12} {'w/ gaps s':>11} {'numpy s':>8} "
        f"{'pandas s':>9} {'x pandas':>8} {'/ numpy':>8} {'|d| pandas':>10} {'|d| numpy':>10}"
    )
    print(header)
    for n in SIZES:
        values = np.nan_to_num(tiled(returns, n), nan=0.0)
        gappy = with_gaps(values, np.random.default_rng(n))
        wide, names = wide_frame(values)
        wide_gaps, _ = wide_frame(gappy)
        for w in WINDOWS:
            min_obs = max(3, int(0.75 * w))
            ours_s, ours = best_of(
                repeat, partial(rolling_correlation_all, wide, names, w, min_obs)
            )
            corr = ours.corr  # type: ignore[attr-defined]
            del ours
            gaps_s, _ = best_of(1, partial(rolling_correlation_all, wide_gaps, names, w, min_obs))
            floor_s, floor = best_of(repeat, partial(numpy_floor, values, w, min_obs))
            d_numpy = max_diff(corr, floor)  # type: ignore[arg-type]
            del floor
            if n < 200 or w == 168 or pandas_all:
                pandas_s, ref = best_of(1, partial(pandas_corr, values, w, min_obs))
                d_pandas = max_diff(corr, ref)  # type: ignore[arg-type]
                del ref
                ratio = f"{pandas_s / ours_s:8.1f}"
                pandas_txt, d_txt = f"{pandas_s:9.2f}", f"{d_pandas:10.1e}"
            else:
                ratio, pandas_txt, d_txt = f"{'-':>8}", f"{'-':>9}", f"{'-':>10}"
            del corr
            print(
                f"{n:>4} {w:>4} {ours_s:12.2f} {gaps_s:11.2f} {floor_s:8.2f} {pandas_txt} "
                f"{ratio} {ours_s / floor_s:8.2f} {d_txt} {d_numpy:10.1e}",
                flush=True,
            )


def bench_incremental(data: Path, repeat: int) -> None:
    """One hourly run's load + compute with 2 years against 1 month of stored history."""
    from hedgewatch.fetching import VenueFetch
    from hedgewatch.pipeline import compute, load
    from hedgewatch.settings import Settings
    from hedgewatch.storage.store import Store
    from hedgewatch.venues.base import CANDLE_SCHEMA

    candles = pl.read_csv(data / MAJORS).with_columns(
        pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC").alias("open_time")
    )
    symbols = sorted(set(candles["symbol"].unique()) - SKIP)[:20]
    end = datetime(2023, 12, 1, tzinfo=UTC)
    rows = (
        candles.filter(
            pl.col("symbol").is_in(symbols), pl.col("open_time") < end + timedelta(hours=24)
        )
        .select(
            pl.lit("binance").alias("venue"),
            pl.lit("spot").alias("market"),
            "symbol",
            pl.lit("1h").alias("interval"),
            "open_time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            pl.lit(None, pl.Float64).alias("quote_volume"),
            pl.lit(None, pl.Int64).alias("trades"),
        )
        .cast(dict(CANDLE_SCHEMA))  # type: ignore[arg-type]
    )

    def conf(db: Path) -> Settings:
        return Settings.model_validate(
            {
                "storage": {"database": db},
                "venues": [{"name": "binance", "kind": "binance"}],
                "instruments": [{"id": s[:-4], "venue": "binance", "symbol": s} for s in symbols],
                "hedges": [
                    {
                        "name": "btc-eth",
                        "legs": [
                            {"instrument": "BTC", "side": "long"},
                            {"instrument": "ETH", "side": "short"},
                        ],
                    },
                ],
                "baskets": [{"name": "majors", "members": [s[:-4] for s in symbols]}],
                "metrics": {"windows": ["24h", "7d", "30d"], "ewma_halflife_hours": [24]},
            }
        )

    print(
        "hourly update (load + compute one new hour), 20 instruments, windows 24h/7d/30d, "
        "basket of 20, 1 hedge, EWMA 24h, 30-day z baseline"
    )
    histories = {"1 month": 31, "2 years": 730}
    times: dict[str, list[float]] = {label: [] for label in histories}
    with tempfile.TemporaryDirectory() as tmp:
        settings = {label: conf(Path(tmp) / f"{days}.duckdb") for label, days in histories.items()}
        for label, days in histories.items():
            history = rows.filter(
                pl.col("open_time") >= end - timedelta(days=days), pl.col("open_time") < end
            )
            with Store.open(settings[label].storage.database) as store:
                loaded = load(store, [VenueFetch("binance", None, candles=history)], "history")
                start = time.perf_counter()
                compute(store, settings[label], loaded.earliest_new)  # every stored hour, once
            took = time.perf_counter() - start
            print(f"  {label:>8}: {history.height:,} candles, full recompute {took:.1f} s")
        # The two databases take turns hour by hour, so that load on the machine hits both alike.
        for h in range(max(repeat, 12)):
            new = rows.filter(pl.col("open_time") == end + timedelta(hours=h))
            for label in histories:
                with Store.open(settings[label].storage.database) as store:
                    start = time.perf_counter()
                    loaded = load(store, [VenueFetch("binance", None, candles=new)], f"h{h}")
                    compute(store, settings[label], loaded.earliest_new)
                    times[label].append(time.perf_counter() - start)
    median = {label: statistics.median(values) for label, values in times.items()}
    for label, value in median.items():
        print(
            f"  {label:>8} of history: median {value * 1e3:.0f} ms over {len(times[label])} hours"
        )
    print(f"  ratio 2 years / 1 month: {median['2 years'] / median['1 month']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pandas-all", action="store_true")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-incremental", action="store_true")
    args = parser.parse_args()
    if not (args.data / MAJORS).exists():
        raise SystemExit(f"real data not found: {args.data / MAJORS} (pass --data DIR)")
    if not args.skip_full:
        bench_full(args.data, args.repeat, args.pandas_all)
    if not args.skip_incremental:
        bench_incremental(args.data, args.repeat)


if __name__ == "__main__":
    main()
