"""Frame builders and exact per-window references shared by the transforms tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

T0 = datetime(2022, 5, 1, tzinfo=UTC)


def hours(n: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(hours=i) for i in range(n)]


def wide_frame(columns: dict[str, np.ndarray], start: datetime = T0) -> pl.DataFrame:
    """A wide frame on a contiguous hourly grid; NaN in the arrays becomes null."""
    n = len(next(iter(columns.values())))
    frame = pl.DataFrame({"open_time": hours(n, start), **columns})
    return frame.with_columns(pl.col(name).fill_nan(None) for name in columns)


def window_slices(n_rows: int, window: int) -> list[slice]:
    return [slice(max(0, i - window + 1), i + 1) for i in range(n_rows)]


def reference_corr(
    x: np.ndarray, y: np.ndarray, window: int, min_obs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of each trailing window by np.corrcoef on its pairwise-complete rows."""
    corr, n_obs = [], []
    for w in window_slices(len(x), window):
        xs, ys = x[w], y[w]
        both = np.isfinite(xs) & np.isfinite(ys)
        n_obs.append(int(both.sum()))
        corr.append(np.corrcoef(xs[both], ys[both])[0, 1] if both.sum() >= min_obs else np.nan)
    return np.array(corr), np.array(n_obs)


def random_returns(
    rng: np.random.Generator, n: int, *, gap_share: float = 0.0, scale: float = 0.01
) -> np.ndarray:
    values = rng.normal(0.0, scale, n)
    values[rng.random(n) < gap_share] = np.nan
    return values


def as_array(series: pl.Series) -> np.ndarray:
    """Float array with null -> NaN."""
    return series.cast(pl.Float64).fill_null(np.nan).to_numpy()
