"""Rolling Pearson correlation over trailing windows of UTC hours, pairwise-complete and stable.

Window sums come from cumulative sums restarted every `window_hours` hours (chunks anchored on the
epoch), each centred on its chunk's mean; a window spans at most two chunks, merged with Chan's
parallel formula. Rounding error thus scales with two windows, never with the whole history, and a
tail computed with `since` is bit-identical to the same rows of a full computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
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

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# A centred sum of squares at or below this share of the sums it was computed from (two chunks)
# cannot be told apart from rounding noise of the cumulative sums: treat the series as constant.
RELATIVE_VARIANCE_FLOOR = 1e-9
# Hourly log returns with a standard deviation below this are far under any price tick
# (float64 resolves prices to ~2e-16): a pegged or frozen price, not a signal.
MIN_STD = 1e-12
# Upper bound on float64 elements per work array; pairs are processed in batches under it.
_BATCH_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class PairMoments:
    """Pairwise-complete centred moments over each trailing window; arrays are (pairs, rows).

    cxx, cyy, cxy are sums of centred squares/products (not divided by n); x_ok / y_ok say whether
    that leg's variance is distinguishable from zero.
    """

    open_time: pl.Series
    n_obs: IntArray
    cxx: FloatArray
    cyy: FloatArray
    cxy: FloatArray
    x_ok: BoolArray
    y_ok: BoolArray


def check_window(window_hours: int, min_obs: int) -> None:
    """Refuse windows that can never give a correlation."""
    if window_hours < 1:
        raise ValueError(f"window_hours must be >= 1, got {window_hours}")
    if not 2 <= min_obs <= window_hours:
        raise ValueError(
            f"min_obs must be between 2 and window_hours={window_hours}, got {min_obs}"
        )


def history_start(since: datetime, window_hours: int) -> datetime:
    """Earliest open_time to supply so that rows >= since equal those of a full computation.

    Returns need one more candle before this (the close the first return is taken from).
    """
    if window_hours < 1:
        raise ValueError(f"window_hours must be >= 1, got {window_hours}")
    first = since_hour(check_since(since) or since)
    return hour_start(((first - window_hours + 1) // window_hours) * window_hours)


def pair_moments(
    wide: pl.DataFrame,
    pairs: Sequence[tuple[str, str]],
    window_hours: int,
    *,
    since: datetime | None = None,
) -> PairMoments:
    """Centred window moments of each (x, y) pair for every open_time of `wide` (>= since).

    The window ending at open_time t holds the hours t - (window_hours - 1) h .. t; an hour counts
    when both columns are finite there. `wide` rows must sit on whole UTC hours; they need not be
    contiguous (absent hours are missing observations).
    """
    if window_hours < 1:
        raise ValueError(f"window_hours must be >= 1, got {window_hours}")
    since = check_since(since)
    columns = list(dict.fromkeys(name for pair in pairs for name in pair))
    unknown = [c for c in columns if c not in wide.columns or c == OPEN_TIME]
    if unknown:
        raise ValueError(f"wide has no column(s) {unknown} (columns: {wide.columns})")
    frame = utc_open_time(wide.select(OPEN_TIME, *columns), "wide").sort(OPEN_TIME)
    if frame[OPEN_TIME].null_count():
        raise ValueError("wide.open_time has nulls")
    hours_s, aligned = hour_index(frame[OPEN_TIME])
    if not aligned:
        raise ValueError("wide.open_time must fall on whole UTC hours")
    if hours_s.is_duplicated().any():
        raise ValueError("wide.open_time has duplicates")

    chunk = window_hours
    hours = hours_s.to_numpy().astype(np.int64)
    keep = np.ones(len(hours), dtype=bool)
    out = np.ones(len(hours), dtype=bool)
    if since is not None:
        first_out = since_hour(since)
        # Start at a chunk boundary so every chunk (and its mean) matches a full computation.
        keep = hours >= ((first_out - window_hours + 1) // chunk) * chunk
        out = hours >= first_out
    out_times = frame[OPEN_TIME].filter(pl.Series(out))
    n_pairs, n_rows = len(pairs), int(out.sum())
    if n_rows == 0 or n_pairs == 0:
        empty_f = np.zeros((n_pairs, n_rows))
        empty_b = np.zeros((n_pairs, n_rows), dtype=bool)
        empty_i = np.zeros((n_pairs, n_rows), dtype=np.int64)
        return PairMoments(out_times, empty_i, empty_f, empty_f, empty_f, empty_b, empty_b)

    hours_kept = hours[keep]
    base = (int(hours_kept[0]) // chunk) * chunk
    n_chunks = (int(hours_kept[-1]) - base) // chunk + 1
    flat = np.full((len(columns), n_chunks * chunk), np.nan)
    for i, name in enumerate(columns):
        flat[i, hours_kept - base] = frame[name].cast(pl.Float64).to_numpy()[keep]
    values = flat.reshape(len(columns), n_chunks, chunk)
    finite = np.isfinite(values)
    counts = finite.sum(axis=2)
    # cumsum is sequential, so each chunk's total is independent of what surrounds it.
    totals = np.cumsum(np.where(finite, values, 0.0), axis=2)[..., -1]
    shift = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)

    t = hours[out] - base
    g = _Geometry(t=t, s=np.maximum(t - window_hours + 1, 0), chunk=chunk)
    col_index = {name: i for i, name in enumerate(columns)}
    ia = np.array([col_index[a] for a, _ in pairs], dtype=np.int64)
    ib = np.array([col_index[b] for _, b in pairs], dtype=np.int64)
    centred = np.where(finite, values - shift[..., None], 0.0)

    # Pairs whose legs miss the same hours share each leg's sums; only the cross term is per pair.
    mask_id = _mask_ids(finite)
    same = mask_id[ia] == mask_id[ib]
    legs = _leg(centred, finite, shift, g)

    n_obs = np.zeros((n_pairs, n_rows), dtype=np.int64)
    cxx, cyy, cxy = (np.zeros((n_pairs, n_rows)) for _ in range(3))
    x_ok, y_ok = (np.zeros((n_pairs, n_rows), dtype=bool) for _ in range(2))
    batch = max(1, _BATCH_ELEMENTS // (n_chunks * chunk))
    for shared in (True, False):
        chosen = np.flatnonzero(same == shared)
        for lo in range(0, len(chosen), batch):
            rows = chosen[lo : lo + batch]
            sel_a, sel_b = ia[rows], ib[rows]
            if shared:
                leg_x, leg_y = legs.take(sel_a), legs.take(sel_b)
                u, v = centred[sel_a], centred[sel_b]
            else:
                both = finite[sel_a] & finite[sel_b]
                u = np.where(both, centred[sel_a], 0.0)
                v = np.where(both, centred[sel_b], 0.0)
                leg_x = _leg(u, both, shift[sel_a], g)
                leg_y = _leg(v, both, shift[sel_b], g)
            n_obs[rows] = leg_x.n
            cxx[rows], x_ok[rows] = leg_x.css, leg_x.ok
            cyy[rows], y_ok[rows] = leg_y.css, leg_y.ok
            cxy[rows] = _cross(leg_x, leg_y, _window_sums(u * v, g))
    return PairMoments(out_times, n_obs, cxx, cyy, cxy, x_ok, y_ok)


def _mask_ids(finite: BoolArray) -> IntArray:
    """Label each column by its pattern of present hours (equal labels = identical patterns)."""
    seen: dict[bytes, int] = {}
    return np.array(
        [seen.setdefault(np.packbits(col).tobytes(), len(seen)) for col in finite], dtype=np.int64
    )


@dataclass(frozen=True)
class _Geometry:
    """Where each output window starts (s) and ends (t) in the flattened (chunks, chunk) layout.

    Because chunk == window_hours, a window covers the tail of chunk s // chunk (part a) and, when
    it crosses a boundary, the head of chunk t // chunk (part b).
    """

    t: IntArray
    s: IntArray
    chunk: int

    @property
    def ks(self) -> IntArray:
        return self.s // self.chunk

    @property
    def kt(self) -> IntArray:
        return self.t // self.chunk

    @property
    def split(self) -> BoolArray:
        return self.ks != self.kt


@dataclass(frozen=True)
class _Sums:
    """Window sums split into part a (first chunk) and part b (second chunk, zero if none)."""

    a: FloatArray
    b: FloatArray
    scale: FloatArray  # sum over both whole chunks: the magnitude rounding errors scale with


def _window_sums(values: FloatArray, g: _Geometry) -> _Sums:
    """Sums of `values` (..., chunks, chunk) over each window, each part taken inside one chunk."""
    cum = np.cumsum(values, axis=-1)
    flat = cum.reshape(*cum.shape[:-2], -1)
    totals = cum[..., -1]
    split = g.split
    end_a = np.where(split, g.ks * g.chunk + g.chunk - 1, g.t)
    has_prev = g.s % g.chunk != 0
    before = np.where(has_prev, flat[..., np.where(has_prev, g.s - 1, 0)], 0.0)
    part_b = np.where(split, flat[..., g.t], 0.0)
    scale = totals[..., g.ks] + np.where(split, totals[..., g.kt], 0.0)
    return _Sums(a=flat[..., end_a] - before, b=part_b, scale=scale)


@dataclass(frozen=True)
class _Leg:
    """One leg over each window, in the factors its centred sums are built from.

    With part sums S_a, S_b over n_a, n_b hours and Chan's delta d between the parts' means:
    root_a = S_a / sqrt(n_a), root_b = S_b / sqrt(n_b), step = d * sqrt(n_a n_b / n), so that
    css = (SS_a - root_a^2) + (SS_b - root_b^2) + step^2 and the cross sums use the same factors.
    """

    n: IntArray
    root_a: FloatArray
    root_b: FloatArray
    step: FloatArray
    css: FloatArray
    ok: BoolArray

    def take(self, index: IntArray) -> _Leg:
        return _Leg(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def _leg(centred: FloatArray, present: BoolArray, shift: FloatArray, g: _Geometry) -> _Leg:
    # Counts in float64 are exact far beyond any realistic number of hours.
    counts = _window_sums(present.astype(np.float64), g)
    sums = _window_sums(centred, g)
    squares = _window_sums(centred * centred, g)
    n_a, n_b = counts.a, counts.b
    n = n_a + n_b
    safe_a, safe_b = np.maximum(n_a, 1.0), np.maximum(n_b, 1.0)
    both_parts = (n_a > 0) & (n_b > 0)
    # Chan et al.: merge the two parts' centred sums through the difference of their means.
    delta = (shift[..., g.kt] - shift[..., g.ks]) + (sums.b / safe_b - sums.a / safe_a)
    weight = n_a * n_b / np.maximum(n, 1.0)
    step = np.where(both_parts, delta * np.sqrt(weight), 0.0)
    root_a, root_b = sums.a / np.sqrt(safe_a), sums.b / np.sqrt(safe_b)
    css = np.maximum(_combine(squares, root_a, root_a, root_b, root_b, step, step), 0.0)
    ok = (css > RELATIVE_VARIANCE_FLOOR * squares.scale) & (css > n * MIN_STD**2)
    return _Leg(n.astype(np.int64), root_a, root_b, step, css, ok)


def _combine(
    products: _Sums,
    x_a: FloatArray,
    y_a: FloatArray,
    x_b: FloatArray,
    y_b: FloatArray,
    x_step: FloatArray,
    y_step: FloatArray,
) -> FloatArray:
    return (products.a - x_a * y_a) + (products.b - x_b * y_b) + x_step * y_step


def _cross(x: _Leg, y: _Leg, products: _Sums) -> FloatArray:
    """Centred cross-product sum; written symmetrically so cxy(a, b) == cxy(b, a) bit for bit."""
    return _combine(products, x.root_a, y.root_a, x.root_b, y.root_b, x.step, y.step)


def correlation_from_moments(m: PairMoments, min_obs: int) -> FloatArray:
    """Pearson r clipped to [-1, 1]; NaN where n_obs < min_obs or a variance is ~0."""
    valid = (m.n_obs >= min_obs) & m.x_ok & m.y_ok
    with np.errstate(invalid="ignore", divide="ignore"):
        r = m.cxy / (np.sqrt(m.cxx) * np.sqrt(m.cyy))
    return np.where(valid, np.clip(r, -1.0, 1.0), np.nan)


def rolling_correlation(
    wide: pl.DataFrame,
    a: str,
    b: str,
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
) -> pl.DataFrame:
    """Rolling Pearson correlation of columns a and b of `wide`: open_time, corr, n_obs.

    One row per open_time of `wide` (>= since); n_obs counts the hours of the trailing window
    where both are present; corr is null when n_obs < min_obs or either variance is ~0.
    """
    out = rolling_correlation_pairs(wide, [(a, b)], window_hours, min_obs, since=since)
    return out.select(OPEN_TIME, "corr", "n_obs")


def rolling_correlation_pairs(
    wide: pl.DataFrame,
    pairs: Sequence[tuple[str, str]],
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
) -> pl.DataFrame:
    """`rolling_correlation` for many pairs at once: long frame a, b, open_time, corr, n_obs.

    Rows are grouped by pair in the given order, then ascending open_time.
    """
    check_window(window_hours, min_obs)
    pairs = [(a, b) for a, b in pairs]
    m = pair_moments(wide, pairs, window_hours, since=since)
    corr = correlation_from_moments(m, min_obs)
    return long_frame(pairs, m.open_time, {"corr": corr}, m.n_obs)


def long_frame(
    pairs: Sequence[tuple[str, str]],
    open_time: pl.Series,
    values: dict[str, FloatArray],
    n_obs: IntArray,
) -> pl.DataFrame:
    """Stack (pairs, rows) arrays into a long frame a, b, open_time, <values>, n_obs."""
    n_rows = len(open_time)
    micros = np.tile(open_time.dt.epoch("us").to_numpy(), len(pairs))
    which = pl.Series(np.repeat(np.arange(len(pairs)), n_rows))
    frame = pl.DataFrame(
        {
            "a": pl.Series([a for a, _ in pairs], dtype=pl.Utf8).gather(which),
            "b": pl.Series([b for _, b in pairs], dtype=pl.Utf8).gather(which),
            OPEN_TIME: micros,
            **{name: arr.reshape(-1) for name, arr in values.items()},
            "n_obs": n_obs.reshape(-1),
        }
    )
    return frame.with_columns(
        pl.col(OPEN_TIME).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(TIME_DTYPE),
        *(pl.col(name).fill_nan(None) for name in values),
        pl.col("n_obs").cast(pl.Int64),
    )


__all__ = [
    "PairMoments",
    "check_window",
    "correlation_from_moments",
    "history_start",
    "long_frame",
    "pair_moments",
    "rolling_correlation",
    "rolling_correlation_pairs",
]
