"""Fast market stress of a basket over short windows, on a member set fixed per window.

For the window of `window_hours` hours ending at each open_time:

- the member set is the members with a return in at least `min_obs` of the window's hours; the
  basket has data only when at least `coverage` of its configured members (and two) are in. A
  member that stops trading leaves the set; it never moves a value by itself (the value equals
  that of a basket configured without it);
- the basket's hourly return is the equal-weight mean of the set's log returns, taken only in
  hours where every member of the set has one (an hour missing for one member is missing for
  the basket, so the composition never changes inside a window);
- basket_return: the sum of those hourly returns; drawdown: the fall (log, >= 0) of the basket's
  level from its highest point inside the window to the window's end;
- vol: realised volatility, sqrt(mean r^2) of the basket's hourly returns (not de-meaned: over
  hours the mean is noise);
- dispersion: sqrt(mean over the hours of the cross-sectional variance of the members' returns).

Each is judged against its own normal with robust statistics, because the hours of a crisis are
exactly the outliers a mean and standard deviation would swallow: the baseline of day D is the
median and MAD (scaled by 1.4826 to a standard deviation under normality) of the series over the
`baseline_hours` before D's 00:00 UTC. It is refreshed once a day, so a shock never enters its
own baseline on the day it happens, and a value depends only on returns before it (an hourly run
reproduces a full recompute bit for bit).

- vol_z, dispersion_z: robust z of log(vol), log(dispersion) (volatility is log-normal-ish);
- drawdown_z: drawdown in units of a typical move over the window, sqrt(window) times the
  baseline's median hourly vol: "the basket fell 4 ordinary 12-hour moves from its high".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from ._time import OPEN_TIME, TIME_DTYPE, check_since, hour_index, hour_start, since_hour

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# 1 / Phi^-1(3/4): turns a median absolute deviation into a standard deviation under normality.
MAD_SCALE = 1.4826
# A baseline needs a value in at least this share of its hours.
BASELINE_COVERAGE = 0.5
# A robust scale below this (in log units or return units) is a frozen series, not a signal.
MIN_SCALE = 1e-12
DAY = 24

STRESS_COLUMNS = (
    "members",
    "n_members",
    "basket_return",
    "drawdown",
    "drawdown_z",
    "vol",
    "vol_z",
    "dispersion",
    "dispersion_z",
)
_FLOATS = STRESS_COLUMNS[2:]


def robust_baseline(
    values: FloatArray, hours: IntArray, baseline_hours: int, *, with_scale: bool = True
) -> tuple[FloatArray, FloatArray]:
    """(median, MAD scale) for each row: over the `baseline_hours` before its UTC day's start.

    `values` and `hours` (whole hours since the epoch, ascending, unique) describe one series;
    hours absent from `hours` count as missing. NaN without BASELINE_COVERAGE of the hours.
    All days at once: each day's window is a row of a sorted (days, baseline_hours) array.
    `with_scale=False` skips the MAD (the scale is all NaN) for callers that need the median only.
    """
    n = len(values)
    median = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    if n == 0:
        return median, scale
    first_day = int(hours[0]) // DAY
    last_day = int(hours[-1]) // DAY
    # Grid from baseline_hours before the first day's start to the last day's start.
    origin = first_day * DAY - baseline_hours
    grid = np.full((last_day - first_day) * DAY + baseline_hours, np.nan)
    inside = hours < last_day * DAY
    grid[hours[inside] - origin] = values[inside]
    step = np.lib.stride_tricks.sliding_window_view(grid, baseline_hours)[::DAY]
    med, mad = _nan_median_mad(step, with_mad=with_scale)
    need = max(2, math.ceil(BASELINE_COVERAGE * baseline_hours))
    enough = (~np.isnan(step)).sum(axis=1) >= need
    day_of_row = hours // DAY - first_day
    median = np.where(enough, med, np.nan)[day_of_row]
    scale = np.where(enough, MAD_SCALE * mad, np.nan)[day_of_row]
    return median, scale


def _nan_median_mad(windows: FloatArray, *, with_mad: bool = True) -> tuple[FloatArray, FloatArray]:
    """Median and median absolute deviation of each row, ignoring NaN (NaN for an empty row;
    the deviation all NaN when `with_mad` is False)."""

    def median(rows: FloatArray) -> FloatArray:
        count = (~np.isnan(rows)).sum(axis=1)
        out = np.full(len(rows), np.nan)
        width = rows.shape[1]
        # Full rows (most): a partition around the middle, not a sort.
        full = count == width
        if full.any():
            lo, hi = (width - 1) // 2, width // 2
            part = np.partition(rows[full], (lo, hi), axis=1)
            out[full] = 0.5 * (part[:, lo] + part[:, hi])
        some = ~full & (count > 0)
        if some.any():
            ordered = np.sort(rows[some], axis=1)  # NaN sort last
            n = count[some]
            at = np.arange(len(ordered))
            out[some] = 0.5 * (ordered[at, (n - 1) // 2] + ordered[at, n // 2])
        return out

    if windows.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    med = median(windows)
    if not with_mad:
        return med, np.full(len(med), np.nan)
    return med, median(np.abs(windows - med[:, None]))


def robust_z(values: FloatArray, median: FloatArray, scale: FloatArray) -> FloatArray:
    """(value - median) / scale; NaN where the scale is missing or ~0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (values - median) / scale
    return np.where(scale > MIN_SCALE, z, np.nan)


def window_members(present: BoolArray, window_hours: int, min_obs: int) -> BoolArray:
    """(rows, members): has the member a value in >= min_obs hours of the window ending here?"""
    counts = np.cumsum(present, axis=0, dtype=np.int64)
    counts[window_hours:] -= counts[:-window_hours].copy()
    return counts >= min_obs


def member_mask(
    wide: pl.DataFrame,
    members: Sequence[str],
    window_hours: int,
    min_obs: int,
    coverage: float,
    *,
    since: datetime | None = None,
) -> BoolArray:
    """(rows of `wide` >= since, members): the member set of each window (see the module doc).

    A row whose set is below `coverage` has no member in (the basket has no data there).
    """
    rows, hours, first = _dense(wide, list(members))
    if len(hours) == 0:
        return np.zeros((0, len(members)), dtype=bool)
    in_set = window_members(~np.isnan(rows), window_hours, min_obs)[hours - first]
    in_set &= enough_members(in_set, coverage)[:, None]
    since = check_since(since)
    if since is not None:
        in_set = in_set[hours >= since_hour(since)]
    return in_set


def enough_members(in_set: BoolArray, coverage: float) -> npt.NDArray[np.bool_]:
    """Rows whose set holds at least `coverage` of the configured members, and at least two."""
    need = max(2, math.ceil(coverage * in_set.shape[1] - 1e-9))
    return in_set.sum(axis=1) >= need


def basket_stress(
    wide: pl.DataFrame,
    members: Sequence[str],
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
    baseline_hours: int = 720,
    coverage: float = 0.75,
) -> pl.DataFrame:
    """Stress columns (STRESS_COLUMNS) per open_time of `wide` (>= since); see the module doc.

    `wide`: open_time plus one log-return column per member (missing = null), on whole UTC
    hours. For the baselines it must reach `baseline_hours` plus a day and a window before
    `since`. `members` lists the set in the configured order, comma-separated.
    """
    if window_hours < 1 or not 1 <= min_obs <= window_hours:
        raise ValueError(
            f"need window_hours >= 1 and 1 <= min_obs <= window_hours, "
            f"got {window_hours} and {min_obs}"
        )
    if baseline_hours < DAY:
        raise ValueError(f"baseline_hours must be at least {DAY}, got {baseline_hours}")
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    names = list(members)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"a basket needs at least two distinct members, got {names}")
    since = check_since(since)
    rows, hours, first = _dense(wide, names)
    out = {name: np.full(len(hours), np.nan) for name in _FLOATS}
    member_text: list[str | None] = [None] * len(hours)
    n_members = np.zeros(len(hours), dtype=np.int64)
    if len(hours):
        grid_rows = hours - first
        present = ~np.isnan(rows)
        in_set = window_members(present, window_hours, min_obs)[grid_rows]
        usable = enough_members(in_set, coverage)
        n_members = np.where(usable, in_set.sum(axis=1), 0)
        codes = in_set.astype(np.int64) @ (1 << np.arange(len(names), dtype=np.int64))
        codes = np.where(usable, codes, -1)
        for code in np.unique(codes[codes >= 0]):
            mask = (int(code) >> np.arange(len(names))) & 1 == 1
            series = _set_series(rows[:, mask], window_hours, min_obs)
            take = codes == code
            for name, values in series.items():
                out[name][take] = values[grid_rows][take]
            text = ",".join(n for n, m in zip(names, mask, strict=True) if m)
            for i in np.flatnonzero(take):
                member_text[i] = text
        out.update(_judged(out, hours, window_hours, baseline_hours))
    frame = pl.DataFrame(
        {
            OPEN_TIME: pl.Series((hours * 3_600_000_000).astype(np.int64))
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
            .cast(TIME_DTYPE),
            "members": pl.Series(member_text, dtype=pl.Utf8),
            "n_members": pl.Series(n_members, dtype=pl.Int64),
            **{name: pl.Series(out[name], dtype=pl.Float64) for name in _FLOATS},
        }
    ).with_columns(pl.col(name).fill_nan(None) for name in _FLOATS)
    if since is not None:
        frame = frame.filter(pl.col(OPEN_TIME) >= hour_start(since_hour(since)))
    return frame


def _dense(wide: pl.DataFrame, names: list[str]) -> tuple[FloatArray, IntArray, int]:
    """Member returns on a dense hourly grid, the hours of `wide`'s rows, and the grid's start."""
    missing = [n for n in names if n not in wide.columns]
    if missing:
        raise ValueError(f"wide has no column(s) {missing} (columns: {wide.columns})")
    dtype = wide.schema.get(OPEN_TIME)
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(f"wide.{OPEN_TIME} must be a time-zone aware Datetime, got {dtype}")
    frame = wide.select(OPEN_TIME, *names).sort(OPEN_TIME)
    hours_s, aligned = hour_index(frame[OPEN_TIME])
    if not aligned:
        raise ValueError("wide.open_time must fall on whole UTC hours")
    if hours_s.is_duplicated().any():
        raise ValueError("wide.open_time has duplicates")
    hours = hours_s.to_numpy().astype(np.int64)
    if len(hours) == 0:
        return np.zeros((0, len(names))), hours, 0
    first = int(hours[0])
    rows = np.full((int(hours[-1]) - first + 1, len(names)), np.nan)
    for i, name in enumerate(names):
        rows[hours - first, i] = frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
    rows[~np.isfinite(rows)] = np.nan
    return rows, hours, first


def _windows(x: FloatArray, w: int) -> FloatArray:
    """(rows, w) view: the w values ending at each row, zeros before the first row.

    Each window's sums are taken over its own values in the same order whatever rows come
    before it, so an hourly run reproduces a full recompute bit for bit (a running sum would
    carry the rounding of every earlier hour).
    """
    padded = np.concatenate([np.zeros(w - 1), x])
    return np.lib.stride_tricks.sliding_window_view(padded, w)


def _set_series(x: FloatArray, w: int, min_obs: int) -> dict[str, FloatArray]:
    """Window values of one fixed member set on the dense grid (rows = hours)."""
    complete: BoolArray = np.asarray(~np.isnan(x).any(axis=1))
    filled = np.where(complete[:, None], x, 0.0)
    r: FloatArray = np.where(complete, filled.mean(axis=1), 0.0)
    xs_var: FloatArray = np.where(complete, filled.var(axis=1), 0.0)
    n = _windows(complete.astype(np.float64), w).sum(axis=1)
    ok = n >= min_obs
    safe = np.maximum(n, 1.0)
    returns = _windows(r, w)
    ret = returns.sum(axis=1)
    vol = np.sqrt((returns * returns).sum(axis=1) / safe)
    dispersion = np.sqrt(_windows(xs_var, w).sum(axis=1) / safe)
    # The basket's level through the window, from 0 at its start: the fall from the highest
    # level (the start included) to the last one.
    level = np.cumsum(returns, axis=1)
    drawdown = np.maximum(level.max(axis=1), 0.0) - level[:, -1]
    nan = np.nan
    return {
        "basket_return": np.where(ok, ret, nan),
        "drawdown": np.where(ok, np.maximum(drawdown, 0.0), nan),
        "vol": np.where(ok, vol, nan),
        "dispersion": np.where(ok, dispersion, nan),
    }


def _judged(
    out: dict[str, FloatArray], hours: IntArray, w: int, baseline_hours: int
) -> dict[str, FloatArray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        log_vol = np.log(out["vol"])
        log_disp = np.log(out["dispersion"])
    log_vol[~np.isfinite(log_vol)] = np.nan
    log_disp[~np.isfinite(log_disp)] = np.nan
    vol_med, vol_scale = robust_baseline(log_vol, hours, baseline_hours)
    disp_med, disp_scale = robust_baseline(log_disp, hours, baseline_hours)
    typical_move = np.exp(vol_med) * math.sqrt(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown_z = out["drawdown"] / typical_move
    return {
        "vol_z": robust_z(log_vol, vol_med, vol_scale),
        "dispersion_z": robust_z(log_disp, disp_med, disp_scale),
        "drawdown_z": np.where(typical_move > MIN_SCALE, drawdown_z, np.nan),
    }


__all__ = [
    "STRESS_COLUMNS",
    "basket_stress",
    "enough_members",
    "member_mask",
    "robust_baseline",
    "robust_z",
    "window_members",
]
