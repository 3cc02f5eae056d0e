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
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt
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
    # The chunk before the first output's chunk: the all-pairs path centres on both.
    return hour_start((first // window_hours - 1) * window_hours)


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
    contiguous (absent hours are missing observations). Each value depends only on the hours up to
    its own, so a later run with more hours reproduces it bit for bit.
    """
    if window_hours < 1:
        raise ValueError(f"window_hours must be >= 1, got {window_hours}")
    columns = list(dict.fromkeys(name for pair in pairs for name in pair))
    dense, out_hours, out_times = _dense_hours(wide, columns, window_hours, since)
    n_pairs, n_rows, w = len(pairs), len(out_hours), window_hours
    if n_rows == 0 or n_pairs == 0:
        empty_f = np.zeros((n_pairs, n_rows))
        empty_b = np.zeros((n_pairs, n_rows), dtype=bool)
        empty_i = np.zeros((n_pairs, n_rows), dtype=np.int64)
        return PairMoments(out_times, empty_i, empty_f, empty_f, empty_f, empty_b, empty_b)
    pos = (out_hours - dense.base_hour).astype(np.int64)
    chunks, which = np.unique(pos // w, return_inverse=True)
    r = pos % w
    rows = dense.rows.reshape(-1, w, len(columns))
    blocks = np.concatenate([rows[chunks - 1], rows[chunks]], axis=1)  # (blocks, 2w, columns)
    present = ~np.isnan(blocks)
    u = np.where(present, blocks - _past_shift(blocks, present, w)[:, None, :], 0.0)
    col = {name: i for i, name in enumerate(columns)}
    out = {k: np.zeros((n_pairs, n_rows)) for k in ("cxx", "cyy", "cxy")}
    n_obs = np.zeros((n_pairs, n_rows), dtype=np.int64)
    x_ok, y_ok = (np.zeros((n_pairs, n_rows), dtype=bool) for _ in range(2))
    for p, (a, b) in enumerate(pairs):
        both = present[..., col[a]] & present[..., col[b]]
        x = np.where(both, u[..., col[a]], 0.0)
        y = np.where(both, u[..., col[b]], 0.0)
        n = _window_diff(np.cumsum(both, axis=1, dtype=np.int64), w, axis=1)
        nf = np.maximum(n, 1).astype(np.float64)
        sx = _window_diff(np.cumsum(x, axis=1), w, axis=1)
        sy = _window_diff(np.cumsum(y, axis=1), w, axis=1)
        sxx = _window_diff(np.cumsum(x * x, axis=1), w, axis=1)
        syy = _window_diff(np.cumsum(y * y, axis=1), w, axis=1)
        sxy = _window_diff(np.cumsum(x * y, axis=1), w, axis=1)
        cxx = np.maximum(sxx - sx * sx / nf, 0.0)
        cyy = np.maximum(syy - sy * sy / nf, 0.0)
        cxy = sxy - (sx * sy) / nf
        at = (which, r)
        n_obs[p], out["cxx"][p], out["cyy"][p], out["cxy"][p] = n[at], cxx[at], cyy[at], cxy[at]
        x_ok[p] = _moving(cxx, sxx, n)[at]
        y_ok[p] = _moving(cyy, syy, n)[at]
    return PairMoments(out_times, n_obs, out["cxx"], out["cyy"], out["cxy"], x_ok, y_ok)


def _moving(css: FloatArray, squares: FloatArray, n: IntArray) -> BoolArray:
    """Whether a centred sum of squares stands out from rounding noise and a pegged price."""
    return (css > RELATIVE_VARIANCE_FLOOR * squares) & (css > n * MIN_STD**2)


def _past_shift(blocks: FloatArray, present: BoolArray, w: int) -> FloatArray:
    """Per block and column, a value to centre on that only uses hours before each output.

    The mean of the first chunk (entirely before every window end in the second), or, when that
    chunk is empty, the first value of the second chunk (no window holds data before it).
    """
    first = present[..., :w, :]
    counts = first.sum(axis=-2)
    total = np.where(first, blocks[..., :w, :], 0.0).sum(axis=-2)
    mean = np.divide(total, counts, out=np.zeros(total.shape), where=counts > 0)
    second = present[..., w:, :]
    lead = np.argmax(second, axis=-2)
    lead_value = np.take_along_axis(blocks[..., w:, :], lead[..., None, :], axis=-2)[..., 0, :]
    fallback = np.where(second.any(axis=-2), lead_value, 0.0)
    return np.where(counts > 0, mean, fallback)


def _past_shift_hours(x: FloatArray, present: BoolArray, w: int) -> FloatArray:
    """`_past_shift` of blocks laid out hours first: x is (2w hours, blocks, columns)."""
    first = present[:w]
    counts = first.sum(axis=0)
    total = np.where(first, x[:w], 0.0).sum(axis=0)
    mean = np.divide(total, counts, out=np.zeros(total.shape), where=counts > 0)
    second = present[w:]
    lead = np.argmax(second, axis=0)
    lead_value = np.take_along_axis(x[w:], lead[None], axis=0)[0]
    fallback = np.where(second.any(axis=0), lead_value, 0.0)
    return np.where(counts > 0, mean, fallback)


def correlation_from_moments(m: PairMoments, min_obs: int) -> FloatArray:
    """Pearson r clipped to [-1, 1]; NaN where n_obs < min_obs or a variance is ~0."""
    valid = (m.n_obs >= min_obs) & m.x_ok & m.y_ok
    with np.errstate(invalid="ignore", divide="ignore"):
        r = m.cxy / (np.sqrt(m.cxx) * np.sqrt(m.cyy))
    return np.where(valid, np.clip(r, -1.0, 1.0), np.nan)


@dataclass(frozen=True)
class PairCorrelations:
    """Rolling correlation of every pair of `columns`, pairs in `itertools.combinations` order.

    corr and n_obs are (rows, pairs) arrays, one row per open_time; corr is NaN where invalid.
    """

    open_time: pl.Series
    columns: tuple[str, ...]
    corr: FloatArray
    n_obs: npt.NDArray[np.integer[Any]]  # uint16 for windows under 2**16 hours (less memory)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(combinations(self.columns, 2))

    def pair_index(self, a: str, b: str) -> int:
        """Position of the pair {a, b} (either order) in the pair axis."""
        i, j = sorted((self.columns.index(a), self.columns.index(b)))
        n = len(self.columns)
        return i * n - i * (i + 1) // 2 + (j - i - 1)

    def matrices(self) -> FloatArray:
        """(rows, n, n) correlation matrices with a unit diagonal (NaN where a pair is invalid)."""
        n = len(self.columns)
        out = np.empty((len(self.open_time), n, n))
        iu, ju = np.triu_indices(n, 1)
        out[:, iu, ju] = self.corr
        out[:, ju, iu] = self.corr
        out[:, np.arange(n), np.arange(n)] = 1.0
        return out


def rolling_correlation_all(
    wide: pl.DataFrame,
    columns: Sequence[str],
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
    batch_chunks: int | None = None,
) -> PairCorrelations:
    """Rolling Pearson correlation of all pairs of `columns`, vectorised across pairs.

    Same definition as `rolling_correlation` (pairwise-complete trailing windows of hours, null
    below min_obs or on a ~constant leg). The hours are cut into chunks of window_hours anchored
    on the epoch; every window ending in chunk k lies in chunks k-1 and k, so both are centred on
    their joint mean per column, and window sums of all cross products come from one cumulative
    sum over those 2 * window_hours rows for a block of column pairs at a time. Pairs whose legs
    miss different hours in a block are redone on their pairwise-complete hours. Chunks are
    computed `batch_chunks` at a time (default: as many as fit a few MB of work arrays); the
    result is the same bit for bit whatever the batch.
    """
    check_window(window_hours, min_obs)
    names = list(dict.fromkeys(columns))
    values, out_hours, out_times = _dense_hours(wide, names, window_hours, since)
    w = window_hours
    n_cols, n_rows = len(names), len(out_hours)
    n_pairs = n_cols * (n_cols - 1) // 2
    if n_rows == 0 or n_pairs == 0:
        return PairCorrelations(
            out_times,
            tuple(names),
            np.zeros((n_rows, n_pairs)),
            np.zeros((n_rows, n_pairs), dtype=_count_dtype(window_hours)),
        )
    # values rows are hours base .. base + len - 1 with base on a chunk boundary and chunk 0
    # never holding an output: outputs start in chunk 1 or later.
    first_grid = int(out_hours[0])
    grid_rows = int(out_hours[-1]) - first_grid + 1
    base = values.base_hour
    ia, ib = np.triu_indices(n_cols, 1)
    rows_per_strip = max(1, _BLOCK_ELEMENTS // (2 * w * n_cols))
    strips = [
        (i, min(i + rows_per_strip, n_cols - 1)) for i in range(0, n_cols - 1, rows_per_strip)
    ]
    biggest = max((i1 - i0) * (n_cols - 1 - i0) for i0, i1 in strips)
    # Chunks side by side: a short window's chunk holds few numbers, so one chunk at a time
    # would spend its time in numpy's call overhead. Every operation is elementwise across the
    # chunks, or a sum along the hours in an order set by the window alone: the bits do not
    # depend on how many chunks go together.
    per_batch = batch_chunks or max(1, _BLOCK_ELEMENTS // (2 * w * biggest))
    first_chunk = (first_grid - base) // w
    last_chunk = (int(out_hours[-1]) - base) // w
    per_batch = min(per_batch, last_chunk - first_chunk + 1)
    buffers = _Buffers(np.empty(2 * w * per_batch * biggest), np.empty(w * per_batch * biggest))
    # Results on the grid of whole chunks first_chunk .. last_chunk, cut to the outputs below.
    corr = np.empty(((last_chunk - first_chunk + 1) * w, n_pairs))
    n_obs = np.empty(((last_chunk - first_chunk + 1) * w, n_pairs), dtype=_count_dtype(w))
    chunked = values.rows.reshape(-1, w, n_cols)
    for k0 in range(first_chunk, last_chunk + 1, per_batch):
        k1 = min(k0 + per_batch, last_chunk + 1)
        # (2w hours, chunks, columns): chunk k's windows read chunks k - 1 and k.
        x = np.empty((2 * w, k1 - k0, n_cols))
        x[:w] = chunked[k0 - 1 : k1 - 1].transpose(1, 0, 2)
        x[w:] = chunked[k0:k1].transpose(1, 0, 2)
        dest = slice((k0 - first_chunk) * w, (k1 - first_chunk) * w)
        _chunk_correlations(x, w, min_obs, strips, ia, ib, corr[dest], n_obs[dest], buffers)
    skip = first_grid - base - first_chunk * w
    corr, n_obs = corr[skip : skip + grid_rows], n_obs[skip : skip + grid_rows]
    if grid_rows != n_rows:
        keep = (out_hours - first_grid).astype(np.int64)
        corr, n_obs = corr[keep], n_obs[keep]
    return PairCorrelations(out_times, tuple(names), corr, n_obs)


def _count_dtype(window_hours: int) -> type[np.integer[Any]]:
    return np.uint16 if window_hours < 2**16 else np.int32


@dataclass(frozen=True)
class _Buffers:
    products: FloatArray
    outer: FloatArray


# Work arrays of one strip of pairs hold about this many float64 values (~2 MB: fewer numpy
# calls per chunk, still close to the cache).
_BLOCK_ELEMENTS = 262_144


@dataclass(frozen=True)
class _Dense:
    rows: FloatArray  # (hours, columns), NaN where absent; row 0 is hour base_hour
    base_hour: int


def _dense_hours(
    wide: pl.DataFrame, names: list[str], window_hours: int, since: datetime | None
) -> tuple[_Dense, IntArray, pl.Series]:
    """Columns on a dense hourly grid from one chunk before the first output's chunk."""
    since = check_since(since)
    unknown = [c for c in names if c not in wide.columns or c == OPEN_TIME]
    if unknown:
        raise ValueError(f"wide has no column(s) {unknown} (columns: {wide.columns})")
    frame = utc_open_time(wide.select(OPEN_TIME, *names), "wide").sort(OPEN_TIME)
    if frame[OPEN_TIME].null_count():
        raise ValueError("wide.open_time has nulls")
    hours_s, aligned = hour_index(frame[OPEN_TIME])
    if not aligned:
        raise ValueError("wide.open_time must fall on whole UTC hours")
    if hours_s.is_duplicated().any():
        raise ValueError("wide.open_time has duplicates")
    hours = hours_s.to_numpy().astype(np.int64)
    out = np.ones(len(hours), dtype=bool) if since is None else hours >= since_hour(since)
    out_hours = hours[out]
    out_times = frame[OPEN_TIME].filter(pl.Series(out))
    w = window_hours
    if len(out_hours) == 0:
        return _Dense(np.zeros((0, len(names))), 0), out_hours, out_times
    base = (int(out_hours[0]) // w - 1) * w
    keep = hours >= base
    n_chunks = (int(hours[-1]) - base) // w + 1
    rows = np.full((n_chunks * w, len(names)), np.nan)
    at = hours[keep] - base
    for i, name in enumerate(names):
        rows[at, i] = frame[name].cast(pl.Float64).to_numpy()[keep]
    rows[~np.isfinite(rows)] = np.nan
    return _Dense(rows, base), out_hours, out_times


def _chunk_correlations(
    x: FloatArray,
    w: int,
    min_obs: int,
    strips: list[tuple[int, int]],
    ia: IntArray,
    ib: IntArray,
    corr: FloatArray,
    n_obs: npt.NDArray[np.integer[Any]],
    buffers: _Buffers,
) -> None:
    """Correlations of every pair for the windows ending in a run of chunks.

    x is (2w hours, chunks, columns): for each chunk k, chunks k-1 and k. corr and n_obs are the
    (chunks * w, pairs) rows of those chunks' windows, filled here.
    """
    present = ~np.isnan(x)
    u = np.where(present, x - _past_shift_hours(x, present, w), 0.0)
    n, sums, _, inv_sd = _legs(u, present, w, min_obs)  # (w, chunks, columns)
    batch, n_cols = x.shape[1], x.shape[2]
    # corr = Sxy/sqrt(Sxx Syy) - (Sx/sqrt(n Sxx)) (Sy/sqrt(n Syy)): each factor is a product of a
    # per-column term, so the expression is symmetric in the pair bit for bit.
    z = sums * inv_sd / np.sqrt(np.maximum(n, 1))
    # Output rows are chunk after chunk: (chunks, w, pairs) views of the results.
    corr_by_chunk = corr.reshape(batch, w, -1)
    n_obs_by_chunk = n_obs.reshape(batch, w, -1)
    n_rows = n.transpose(1, 0, 2)
    for i0, i1 in strips:
        # Rows i0..i1-1 against every later column: pairs of one row are contiguous in output.
        # Work arrays are views of two buffers reused for every strip: fresh arrays of this size
        # would each be mapped and faulted in by the allocator, which costs more than the maths.
        shape = (batch, i1 - i0, n_cols - 1 - i0)
        size = shape[0] * shape[1] * shape[2]
        prod = buffers.products[: 2 * w * size].reshape(2 * w, *shape)
        np.multiply(u[:, :, i0:i1, None], u[:, :, None, i0 + 1 :], out=prod)
        r = _cross_window_sums(prod, w)
        tmp = buffers.outer[: w * size].reshape(w, *shape)
        np.multiply(inv_sd[:, :, i0:i1, None], inv_sd[:, :, None, i0 + 1 :], out=tmp)
        r *= tmp
        np.multiply(z[:, :, i0:i1, None], z[:, :, None, i0 + 1 :], out=tmp)
        r -= tmp
        np.clip(r, -1.0, 1.0, out=r)
        by_chunk = r.transpose(1, 0, 2, 3)
        for i in range(i0, i1):
            start = i * n_cols - i * (i + 1) // 2
            corr_by_chunk[:, :, start : start + n_cols - 1 - i] = by_chunk[:, :, i - i0, i - i0 :]
            # Legs with the same present hours (the rest is redone below) share the count.
            n_obs_by_chunk[:, :, start : start + n_cols - 1 - i] = n_rows[:, :, i, None]
    # Pairs whose legs miss different hours of a chunk's block: redo them pairwise-complete
    # (for every chunk of the run, kept where the chunk needs it).
    if not present.all():
        pattern = np.packbits(present, axis=0)  # each column's present hours, 8 to a byte
        mixed_at = np.zeros((batch, len(ia)), dtype=bool)
        for lo in range(0, len(ia), _MIXED_BATCH):
            part = slice(lo, lo + _MIXED_BATCH)
            mixed_at[:, part] = (pattern[..., ia[part]] != pattern[..., ib[part]]).any(axis=0)
        mixed = np.flatnonzero(mixed_at.any(axis=0))
        step = max(1, _MIXED_BATCH // batch)
        for lo in range(0, len(mixed), step):
            sel = mixed[lo : lo + step]
            r, m = _pairwise_complete(u, present, ia[sel], ib[sel], w, min_obs)
            keep = mixed_at[:, None, sel]
            redone = corr_by_chunk[:, :, sel]
            corr_by_chunk[:, :, sel] = np.where(keep, r.transpose(1, 0, 2), redone)
            counts = n_obs_by_chunk[:, :, sel]
            n_obs_by_chunk[:, :, sel] = np.where(keep, m.transpose(1, 0, 2), counts)


_MIXED_BATCH = 512


def _cross_window_sums(prod: FloatArray, w: int) -> FloatArray:
    """Sums over rows r+1 .. r+w of the 2w rows of `prod` for r < w, in place in prod[w:].

    Window r = rows 0 .. w-1, plus what entered, minus what left: an accumulate costs several
    times an elementwise add, so it runs over w rows, not 2w. The first window is a tree of
    elementwise adds, whose order (unlike a numpy sum's) does not depend on the array's shape:
    both the all-pairs and the pairwise-complete paths give the same bits.
    """
    first = prod[:w]
    while len(first) > 1:
        half = len(first) // 2
        folded = first[:half] + first[half : 2 * half]
        if len(first) % 2:
            folded[0] += first[2 * half]
        first = folded
    moved = prod[w:]
    np.subtract(moved, prod[:w], out=moved)
    _prefix_sums(moved)
    moved += first[0]
    return moved


_SCAN_BLOCK = 8


def _running(a: FloatArray) -> FloatArray:
    """Running sums along axis 0 (a new array); see `_prefix_sums`."""
    out = np.array(a, dtype=np.float64, order="C", copy=True)
    _prefix_sums(out)
    return out


def _prefix_sums(a: FloatArray) -> None:
    """Running sums along axis 0, in place, of a C-contiguous array.

    numpy's accumulate adds one element after another (~3 ns each); here each step adds whole
    rows: running sums inside blocks of _SCAN_BLOCK rows, then each block gets the running total
    of the blocks before it. The order of additions depends on the row count only.
    """
    rows = len(a)
    full = rows // _SCAN_BLOCK * _SCAN_BLOCK
    if full:
        blocks = a[:full].reshape(rows // _SCAN_BLOCK, _SCAN_BLOCK, *a.shape[1:])
        for j in range(1, _SCAN_BLOCK):
            blocks[:, j] += blocks[:, j - 1]
        if len(blocks) > 1:
            carry = np.cumsum(blocks[:-1, -1], axis=0)
            blocks[1:] += carry[:, None]
    for j in range(max(full, 1), rows):
        a[j] += a[j - 1]


def _window_diff(cum: npt.NDArray[Any], w: int, axis: int = 0) -> npt.NDArray[Any]:
    """Sums over rows r+1 .. r+w of the 2w rows whose running sums are `cum`, for r < w."""
    if axis == 0:
        return cum[w:] - cum[:w]
    return cum[:, w:] - cum[:, :w]


def _legs(
    u: FloatArray, present: BoolArray, w: int, min_obs: int
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Per column and window: count, centred sum, centred sum of squares, 1/sqrt(css) or NaN."""
    counts = np.cumsum(present, axis=0, dtype=np.int64)
    n: IntArray = counts[w:] - counts[:w]
    squares = _running(u * u)
    sums = _window_diff(_running(u), w)
    nf = n.astype(np.float64)
    css = np.maximum(_window_diff(squares, w) - sums * sums / np.maximum(nf, 1.0), 0.0)
    ok = _moving(css, _window_diff(squares, w), n) & (n >= min_obs)
    with np.errstate(divide="ignore"):
        inv_sd = np.where(ok, 1.0 / np.sqrt(css), np.nan)
    return n, sums, css, inv_sd


def _pairwise_complete(
    u: FloatArray, present: BoolArray, ia: IntArray, ib: IntArray, w: int, min_obs: int
) -> tuple[FloatArray, IntArray]:
    both = present[..., ia] & present[..., ib]
    x = np.where(both, u[..., ia], 0.0)
    y = np.where(both, u[..., ib], 0.0)
    n, sx, _, isx = _legs(x, both, w, min_obs)
    _, sy, _, isy = _legs(y, both, w, min_obs)
    sxy = _cross_window_sums(x * y, w)
    # The same expression as the shared-mask path, so a value does not depend on which path a
    # block takes (that depends on hours after it).
    root_n = np.sqrt(np.maximum(n, 1))
    r = sxy * (isx * isy) - (sx * isx / root_n) * (sy * isy / root_n)
    return np.clip(r, -1.0, 1.0), n


def correlation_matrix(
    wide: pl.DataFrame,
    columns: Sequence[str],
    window_hours: int,
    min_obs: int,
    at: datetime,
) -> pl.DataFrame:
    """The correlation matrix of `columns` over the window ending at hour `at`.

    One row per column: `instrument`, then one Float64 column per instrument (unit diagonal, null
    where a pair has no correlation); `at` must be an open_time of `wide`.
    """
    names = list(dict.fromkeys(columns))
    every = rolling_correlation_all(wide, names, window_hours, min_obs, since=at)
    if len(every.open_time) == 0 or every.open_time[0] != check_since(at):
        raise ValueError(f"wide has no row at {at.isoformat()}")
    matrix = every.matrices()[0]
    return pl.DataFrame(
        {"instrument": names, **{name: matrix[:, i] for i, name in enumerate(names)}}
    ).with_columns(pl.col(names).fill_nan(None))


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
    pairs = [(a, b) for a, b in pairs]
    columns = list(dict.fromkeys(name for pair in pairs for name in pair))
    if any(a == b for a, b in pairs):
        raise ValueError(f"a pair needs two different columns, got {pairs}")
    every = rolling_correlation_all(wide, columns, window_hours, min_obs, since=since)
    index = np.array([every.pair_index(a, b) for a, b in pairs], dtype=np.int64)
    return long_frame(
        pairs,
        every.open_time,
        {"corr": every.corr[:, index].T},
        every.n_obs[:, index].T.astype(np.int64),
    )


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
    "PairCorrelations",
    "PairMoments",
    "check_window",
    "correlation_from_moments",
    "correlation_matrix",
    "history_start",
    "long_frame",
    "pair_moments",
    "rolling_correlation",
    "rolling_correlation_all",
    "rolling_correlation_pairs",
]
