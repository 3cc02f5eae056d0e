"""Rolling Spearman (rank) correlation: Pearson on the ranks inside each trailing window.

Ranks change with every window, so there are no running sums here: each window is ranked on its
pairwise-complete hours (ties get their average rank, as scipy.stats.spearmanr does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from hedgewatch.transforms.correlation import (
    MIN_STD,
    RELATIVE_VARIANCE_FLOOR,
    _dense_hours,
    check_window,
    long_frame,
)

FloatArray = npt.NDArray[np.float64]
# Windows ranked per batch: bounds the (windows, window_hours) work arrays.
_BATCH_ELEMENTS = 1_000_000


def average_ranks(values: FloatArray) -> FloatArray:
    """Ranks 1..n along the last axis, ties averaged; NaN stays NaN and is not counted."""
    order = np.argsort(values, axis=-1, kind="stable")  # NaN sorts last
    ordered = np.take_along_axis(values, order, axis=-1)
    width = values.shape[-1]
    index = np.broadcast_to(np.arange(width), values.shape)
    new = np.ones(values.shape, dtype=bool)
    new[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    last = np.ones(values.shape, dtype=bool)
    last[..., :-1] = new[..., 1:]
    start = np.maximum.accumulate(np.where(new, index, 0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, index, width), -1), axis=-1), -1)
    ranks = np.empty(values.shape)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=-1)
    return np.where(np.isnan(values), np.nan, ranks)


def _window_spearman(x: FloatArray, y: FloatArray, min_obs: int) -> tuple[FloatArray, FloatArray]:
    """Spearman r and n per row of (windows, window_hours) arrays x, y (NaN = absent)."""
    both = ~np.isnan(x) & ~np.isnan(y)
    n = both.sum(axis=1)
    xm, ym = np.where(both, x, np.nan), np.where(both, y, np.nan)
    rx, ry = average_ranks(xm), average_ranks(ym)
    mid = (n + 1) / 2.0
    dx = np.where(both, rx - mid[:, None], 0.0)
    dy = np.where(both, ry - mid[:, None], 0.0)
    cxy, cxx, cyy = (dx * dy).sum(1), (dx * dx).sum(1), (dy * dy).sum(1)
    # A leg that does not move (a pegged price, rounding noise) has no meaningful ranks.
    moving = _moves(xm, both, n) & _moves(ym, both, n)
    valid = (n >= min_obs) & (cxx > 0) & (cyy > 0) & moving
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(cxy / np.sqrt(cxx * cyy), -1.0, 1.0)
    return np.where(valid, r, np.nan), n.astype(np.float64)


def _moves(
    values: FloatArray, present: npt.NDArray[np.bool_], n: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    safe = np.maximum(n, 1)
    mean = np.where(present, values, 0.0).sum(1) / safe
    dev = np.where(present, values - mean[:, None], 0.0)
    css = (dev * dev).sum(1)
    scale = np.where(present, values * values, 0.0).sum(1)
    return (css > n * MIN_STD**2) & (css > RELATIVE_VARIANCE_FLOOR * scale)


def rolling_spearman_pairs(
    wide: pl.DataFrame,
    pairs: Sequence[tuple[str, str]],
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
) -> pl.DataFrame:
    """Rolling Spearman correlation per pair: long frame a, b, open_time, corr, n_obs.

    Same windows, coverage rule and row order as `rolling_correlation_pairs`.
    """
    check_window(window_hours, min_obs)
    pairs = [(a, b) for a, b in pairs]
    names = list(dict.fromkeys(name for pair in pairs for name in pair))
    dense, out_hours, out_times = _dense_hours(wide, names, window_hours, since)
    w, rows = window_hours, len(out_hours)
    corr = np.full((len(pairs), rows), np.nan)
    n_obs = np.zeros((len(pairs), rows), dtype=np.int64)
    if rows:
        ends = (out_hours - dense.base_hour).astype(np.int64)
        view = np.lib.stride_tricks.sliding_window_view(dense.rows, w, axis=0)  # (R-w+1, N, w)
        batch = max(1, _BATCH_ELEMENTS // w)
        col = {name: i for i, name in enumerate(names)}
        for lo in range(0, rows, batch):
            at = ends[lo : lo + batch] - (w - 1)
            windows = view[at]
            for p, (a, b) in enumerate(pairs):
                r, n = _window_spearman(windows[:, col[a]], windows[:, col[b]], min_obs)
                corr[p, lo : lo + batch] = r
                n_obs[p, lo : lo + batch] = n
    return long_frame(pairs, out_times, {"corr": corr}, n_obs)


__all__ = ["average_ranks", "rolling_spearman_pairs"]
