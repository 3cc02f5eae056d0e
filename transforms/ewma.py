"""EWMA correlation per pair: exponentially weighted moments with a half-life in hours.

Built on polars `ewm_mean` (adjust=True, weights by absolute hour, as pandas `ewm().corr()`).
To keep an hourly run's cost and result independent of how much history it reads, the weighted
history restarts at fixed anchors: hours are cut into chunks of ANCHOR_HALFLIVES half-lives from
the epoch, and the value at hour t weighs the hours from the start of the chunk before t's chunk,
so older hours (weight below 2**-ANCHOR_HALFLIVES) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from hedgewatch.transforms.correlation import (
    MIN_STD,
    RELATIVE_VARIANCE_FLOOR,
    _dense_hours,
    _past_shift,
    long_frame,
)

ANCHOR_HALFLIVES = 10


def ewma_correlation_pairs(
    wide: pl.DataFrame,
    pairs: Sequence[tuple[str, str]],
    halflife_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
) -> pl.DataFrame:
    """EWMA correlation per pair: long frame a, b, open_time, corr, n_obs.

    Each pair uses its pairwise-complete hours (an hour missing one leg is missing for both);
    n_obs counts them in the weighted history; corr is null below min_obs or on a ~constant leg.
    """
    if halflife_hours < 1:
        raise ValueError(f"halflife_hours must be >= 1, got {halflife_hours}")
    if min_obs < 2:
        raise ValueError(f"min_obs must be >= 2, got {min_obs}")
    pairs = [(a, b) for a, b in pairs]
    names = list(dict.fromkeys(name for pair in pairs for name in pair))
    span = ANCHOR_HALFLIVES * halflife_hours
    dense, out_hours, out_times = _dense_hours(wide, names, span, since)
    rows = len(out_hours)
    corr = np.full((len(pairs), rows), np.nan)
    n_obs = np.zeros((len(pairs), rows), dtype=np.int64)
    if rows:
        col = {name: i for i, name in enumerate(names)}
        ends = (out_hours - dense.base_hour).astype(np.int64)
        # Segment k holds chunks k-1 and k; output hours of chunk k read from it.
        chunks = np.unique(ends // span)
        starts = (chunks - 1) * span
        position = (np.arange(2 * span)[None, :] + starts[:, None]).reshape(-1)
        segment = np.repeat(chunks, 2 * span)
        ia = np.array([col[a] for a, _ in pairs], dtype=np.int64)
        ib = np.array([col[b] for _, b in pairs], dtype=np.int64)
        x, y = dense.rows[position][:, ia], dense.rows[position][:, ib]  # (rows, pairs)
        both = ~np.isnan(x) & ~np.isnan(y)
        pair = np.stack([np.where(both, x, np.nan), np.where(both, y, np.nan)], axis=1)
        pair = pair.reshape(len(chunks), 2 * span, 2 * len(pairs))
        # Centre each segment on values before its output hours, so that the moments do not
        # cancel catastrophically and no value depends on hours after it.
        shift = _past_shift(pair, ~np.isnan(pair), span)
        centred = (pair - shift[:, None, :]).reshape(-1, 2, len(pairs))
        r, n = _segment_ewma(centred[:, 0], centred[:, 1], segment, halflife_hours, min_obs)
        r = r.reshape(len(chunks), 2 * span, len(pairs))[:, span:]
        n = n.reshape(len(chunks), 2 * span, len(pairs))[:, span:]
        k = np.searchsorted(chunks, ends // span)
        corr = r[k, ends % span].T
        n_obs = n[k, ends % span].T
    return long_frame(pairs, out_times, {"corr": corr}, n_obs)


def _segment_ewma(
    x: np.ndarray, y: np.ndarray, segment: np.ndarray, halflife: int, min_obs: int
) -> tuple[np.ndarray, np.ndarray]:
    """EWMA correlation of each column pair of x, y (rows, pairs), restarting at each segment."""
    pairs = x.shape[1]
    frame = pl.DataFrame(
        {"seg": segment, **{f"x{p}": x[:, p] for p in range(pairs)}}
        | {f"y{p}": y[:, p] for p in range(pairs)}
    ).with_columns(pl.exclude("seg").fill_nan(None))

    def ewm(expr: pl.Expr) -> pl.Expr:
        # An hour without an observation scales every weight alike: the means stay as they were.
        mean = expr.ewm_mean(half_life=halflife, adjust=True, ignore_nulls=False)
        return mean.forward_fill().over("seg")

    exprs = []
    for p in range(pairs):
        xp, yp = pl.col(f"x{p}"), pl.col(f"y{p}")
        exprs += [
            ewm(xp).alias(f"mx{p}"),
            ewm(yp).alias(f"my{p}"),
            ewm(xp * xp).alias(f"mxx{p}"),
            ewm(yp * yp).alias(f"myy{p}"),
            ewm(xp * yp).alias(f"mxy{p}"),
            xp.is_not_null().cast(pl.Int64).cum_sum().over("seg").alias(f"n{p}"),
        ]
    out = frame.select(exprs)

    def block(name: str) -> np.ndarray:
        cols = out.select(f"{name}{p}" for p in range(pairs))
        return cols.to_numpy().astype(np.float64)

    mx, my, mxx, myy, mxy = (block(name) for name in ("mx", "my", "mxx", "myy", "mxy"))
    n = block("n").astype(np.int64)
    vx, vy = mxx - mx * mx, myy - my * my
    cov = mxy - mx * my
    with np.errstate(invalid="ignore"):
        ok = (
            (n >= min_obs)
            & (vx > MIN_STD**2)
            & (vy > MIN_STD**2)
            & (vx > RELATIVE_VARIANCE_FLOOR * mxx)
            & (vy > RELATIVE_VARIANCE_FLOOR * myy)
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(cov / np.sqrt(vx * vy), -1.0, 1.0)
    return np.where(ok, r, np.nan), n


__all__ = ["ANCHOR_HALFLIVES", "ewma_correlation_pairs"]
