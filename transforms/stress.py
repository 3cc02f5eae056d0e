"""Market stress in a basket: average pairwise correlation, absorption ratio, the average
correlation adjusted for volatility (Forbes–Rigobon), and each against its trailing baseline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations

import numpy as np
import numpy.typing as npt
import polars as pl

from hedgewatch.transforms._time import OPEN_TIME, check_since, hour_index, utc_open_time
from hedgewatch.transforms.correlation import (
    MIN_STD,
    PairCorrelations,
    check_window,
    pair_moments,
    rolling_correlation_all,
)
from hedgewatch.transforms.market import (
    STRESS_COLUMNS,
    basket_stress,
    member_mask,
    robust_baseline,
    robust_z,
)

FloatArray = npt.NDArray[np.float64]

BASKET_COLUMNS = (
    "basket",
    "window_hours",
    OPEN_TIME,
    "n_obs",
    "n_pairs",
    "avg_corr",
    "absorption_ratio",
    "avg_corr_adj",
    "avg_corr_baseline",
    "avg_corr_z",
    "absorption_z",
    "corr_z",
    *STRESS_COLUMNS,
)
# A trailing baseline needs this share of its hours to have a value.
BASELINE_COVERAGE = 0.5
_MARKET = "__basket_market__"


@dataclass(frozen=True)
class BasketSpec:
    """A named set of instruments whose pairwise correlations are averaged.

    `absorption_k` eigenvectors make up the absorption ratio's numerator; by default about a fifth
    of the members (at least one).
    """

    name: str
    members: tuple[str, ...]
    absorption_k: int | None = None

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError(f"basket {self.name!r} needs at least 2 members, got {self.members}")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"basket {self.name!r} lists a member twice: {self.members}")
        if self.absorption_k is not None and not 1 <= self.absorption_k <= len(self.members):
            raise ValueError(
                f"basket {self.name!r}: absorption_k must be between 1 and "
                f"{len(self.members)}, got {self.absorption_k}"
            )

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(combinations(self.members, 2))

    @property
    def k(self) -> int:
        if self.absorption_k is not None:
            return self.absorption_k
        return max(1, round(len(self.members) / 5))


def absorption_ratio(matrices: FloatArray, k: int) -> FloatArray:
    """Share of total variance in the top k eigenvectors of each (n, n) correlation matrix.

    The correlation matrix is the covariance of standardised returns, so its trace is n and the
    ratio is the sum of the k largest eigenvalues over n. NaN where any entry is NaN.
    """
    rows, n, _ = matrices.shape
    out = np.full(rows, np.nan)
    complete = ~np.isnan(matrices).any(axis=(1, 2))
    if complete.any():
        eig = np.linalg.eigvalsh(matrices[complete])  # ascending
        out[complete] = eig[:, n - k :].sum(axis=1) / n
    return out


def forbes_rigobon(corr: FloatArray, delta: FloatArray) -> FloatArray:
    """rho / sqrt(1 + delta (1 - rho^2)), delta = Var(short window) / Var(baseline) - 1.

    Removes the rise of correlation that higher volatility alone produces (Forbes & Rigobon
    2002, "No contagion, only interdependence").
    """
    with np.errstate(invalid="ignore"):
        return corr / np.sqrt(1.0 + delta * (1.0 - corr * corr))


def trailing_sums(values: FloatArray, hours: int, origin: int = 0) -> FloatArray:
    """For each row i: the sum of the `hours` values before it (rows before the first are 0).

    O(rows), and each sum depends on its window's values only, not on where the array starts:
    rows are cut into blocks of `hours` anchored on absolute row numbers (`origin` is the
    absolute number of row 0), and a window is the suffix of one block plus the prefix of the
    next, each summed within its block. So an incremental run sums exactly as a full one.
    """
    n = len(values)
    lead = hours + origin % hours
    padded = np.concatenate([np.zeros(lead), values])
    padded = np.concatenate([padded, np.zeros(hours + (-len(padded)) % hours)])
    blocks = padded.reshape(-1, hours)
    prefix = np.zeros_like(blocks)  # sum of the block's rows before this one
    prefix[:, 1:] = np.cumsum(blocks, axis=1)[:, :-1]
    suffix = np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1]  # this row to the block's end
    ends = np.arange(n) + lead  # the window of row i is padded[ends - hours : ends]
    return suffix.ravel()[ends - hours] + prefix.ravel()[ends]


def trailing_zscore(
    values: FloatArray, hours: int, origin: int = 0
) -> tuple[FloatArray, FloatArray]:
    """(mean, z) of each value against the `hours` values before it (rows are consecutive hours;
    `origin` is the absolute hour of row 0, see `trailing_sums`).

    NaN without enough history (fewer than BASELINE_COVERAGE of the hours have a value) or when
    the baseline is constant.
    """
    n = len(values)
    if n == 0:
        return values.copy(), values.copy()
    have = ~np.isnan(values)
    known = np.where(have, values, 0.0)
    count = trailing_sums(have.astype(np.float64), hours, origin)
    s1 = trailing_sums(known, hours, origin)
    s2 = trailing_sums(known * known, hours, origin)
    enough = count >= max(2, int(np.ceil(BASELINE_COVERAGE * hours)))
    safe = np.maximum(count, 2)
    mean = s1 / safe
    std = np.sqrt(np.maximum(s2 - s1 * mean, 0.0) / (safe - 1))
    # Row t's window is prev[t - hours + 1 .. t]: a constant one has no z.
    prev = pl.Series(np.concatenate([[np.nan], values[:-1]])).fill_nan(None)
    spread = prev.rolling_max(hours, min_samples=1) - prev.rolling_min(hours, min_samples=1)
    varies = spread.fill_null(0.0).to_numpy() > 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (values - mean) / std
    return np.where(enough, mean, np.nan), np.where(enough & varies & (std > MIN_STD), z, np.nan)


def basket_metrics(
    wide: pl.DataFrame,
    spec: BasketSpec,
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
    baseline_hours: int = 720,
    volatility_window_hours: int | None = None,
    step_hours: int = 1,
    baseline_history: pl.DataFrame | None = None,
    coverage: float = 0.75,
) -> pl.DataFrame:
    """Basket stress per open_time of `wide` (>= since).

    Every value of a row is computed on the row's member set (`members`, see
    `transforms.market`): the members with at least min_obs hours in the window, when they are at
    least `coverage` of the basket; otherwise the row has no data. Pairs with a member outside
    the set do not count, so a member that stops trading cannot move avg_corr by itself.

    - avg_corr: mean Pearson correlation over the member pairs that have one (n_pairs of them);
      n_obs is the fewest pairwise-complete hours among those pairs (or among all when none);
    - absorption_ratio: share of variance in the top `spec.k` eigenvectors of the members'
      correlation matrix (null unless every pair has a correlation);
    - avg_corr_adj: mean of the Forbes–Rigobon adjusted pair correlations, with delta from the
      variance of the equal-weight basket return in this window against
      `volatility_window_hours` (the longest configured window; no adjustment when None or equal);
    - avg_corr_baseline, avg_corr_z, absorption_z: trailing mean of avg_corr over the previous
      `baseline_hours` hours, and z-scores of avg_corr and absorption_ratio against theirs;
    - corr_z: robust z of avg_corr on the Fisher z scale (arctanh) against the median and MAD of
      the `baseline_hours` before the row's UTC day (a bounded number's mean and standard deviation
      are dragged by the very spikes the z should find);
    - the stress columns of `transforms.market.basket_stress` (basket return, drawdown, realised
      volatility, dispersion and their robust z), which read the returns of `wide` directly:
      pass `wide` from `baseline_hours` plus a day and a window before `since` for them.
    `wide` must reach `baseline_hours` (plus a window) before `since` for the baseline columns.
    With daily rows (`to_daily`), pass step_hours=24 so the baseline counts days, not hours.
    `baseline_history` (open_time, avg_corr, absorption_ratio before `since`, e.g. as stored by an
    earlier run) replaces recomputing those hours, so the cost does not grow with baseline_hours.
    """
    check_window(window_hours, min_obs)
    if baseline_hours < 2:
        raise ValueError(f"baseline_hours must be >= 2, got {baseline_hours}")
    since = check_since(since)
    start = None if since is None else since - timedelta(hours=baseline_hours)
    if baseline_history is not None:
        start = since
    pc = rolling_correlation_all(wide, spec.members, window_hours, min_obs, since=start)
    corr = pc.corr
    in_set = member_mask(wide, spec.members, window_hours, min_obs, coverage, since=start)
    ia, ib = np.triu_indices(len(spec.members), 1)
    has = ~np.isnan(corr) & in_set[:, ia] & in_set[:, ib]
    n_pairs = has.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(has, corr, 0.0).sum(axis=1) / n_pairs
    avg = np.where(n_pairs > 0, avg, np.nan)
    counts = pc.n_obs.astype(np.int64)  # a basket has at least one pair
    n_obs = np.where(
        n_pairs > 0,
        np.where(has, counts, np.iinfo(np.int64).max).min(axis=1),
        counts.min(axis=1),
    )
    # The absorption ratio needs the whole matrix: only rows where every member is in.
    absorption = np.where(in_set.all(axis=1), absorption_ratio(pc.matrices(), spec.k), np.nan)
    adjusted = avg
    if volatility_window_hours is not None and volatility_window_hours != window_hours:
        delta = _variance_ratio(wide, spec, window_hours, volatility_window_hours, start) - 1.0
        fr = forbes_rigobon(corr, delta[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            adjusted = np.where(has, fr, 0.0).sum(axis=1) / n_pairs
        adjusted = np.where((n_pairs > 0) & ~np.isnan(delta), adjusted, np.nan)

    hours = _consecutive(pc)
    past_avg, past_abs = avg, absorption
    if baseline_history is not None and since is not None:
        earlier = utc_open_time(baseline_history, "baseline_history").filter(
            pl.col(OPEN_TIME) < since,
            # The robust baseline of a day reads the baseline_hours before that day's start.
            pl.col(OPEN_TIME) >= since - timedelta(hours=baseline_hours + 24),
        )
        past, _ = hour_index(earlier[OPEN_TIME])
        hours = np.concatenate([past.to_numpy().astype(np.int64), hours])
        past_avg = np.concatenate([_floats(earlier["avg_corr"]), avg])
        past_abs = np.concatenate([_floats(earlier["absorption_ratio"]), absorption])
    avg_base, avg_z = _baseline(past_avg, hours // step_hours, baseline_hours // step_hours)
    _, abs_z = _baseline(past_abs, hours // step_hours, baseline_hours // step_hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        fisher = np.arctanh(np.clip(past_avg, -1.0 + 1e-9, 1.0 - 1e-9))
    corr_med, corr_scale = robust_baseline(fisher, hours, baseline_hours)
    corr_z = robust_z(fisher, corr_med, corr_scale)
    if step_hours != 1:
        corr_z = np.full(len(corr_z), np.nan)  # daily rows: too few values for a robust baseline
    new_rows = len(avg)
    avg_base, avg_z, abs_z = avg_base[-new_rows:], avg_z[-new_rows:], abs_z[-new_rows:]
    corr_z = corr_z[-new_rows:]
    if new_rows == 0:
        avg_base = avg_z = abs_z = corr_z = np.zeros(0)
    frame = pl.DataFrame(
        {
            "basket": pl.Series([spec.name] * len(avg), dtype=pl.Utf8),
            "window_hours": pl.Series([window_hours] * len(avg), dtype=pl.Int64),
            OPEN_TIME: pc.open_time,
            "n_obs": pl.Series(n_obs, dtype=pl.Int64),
            "n_pairs": pl.Series(n_pairs, dtype=pl.Int64),
            "avg_corr": avg,
            "absorption_ratio": absorption,
            "avg_corr_adj": adjusted,
            "avg_corr_baseline": avg_base,
            "avg_corr_z": avg_z,
            "absorption_z": abs_z,
            "corr_z": corr_z,
        },
        schema_overrides={name: pl.Float64 for name in _CORR_FLOATS},
    ).with_columns(pl.col(name).fill_nan(None) for name in _CORR_FLOATS)
    if since is not None:
        frame = frame.filter(pl.col(OPEN_TIME) >= since)
    if step_hours == 1:
        stress = basket_stress(
            wide,
            spec.members,
            window_hours,
            min_obs,
            since=since,
            baseline_hours=baseline_hours,
            coverage=coverage,
        )
        frame = frame.join(stress, on=OPEN_TIME, how="left")
    else:
        frame = frame.with_columns(
            pl.lit(None, pl.Utf8).alias("members"),
            pl.lit(None, pl.Int64).alias("n_members"),
            *(pl.lit(None, pl.Float64).alias(name) for name in STRESS_COLUMNS[2:]),
        )
    return frame.select(BASKET_COLUMNS)


_CORR_FLOATS = BASKET_COLUMNS[5 : BASKET_COLUMNS.index("corr_z") + 1]


def _floats(series: pl.Series) -> FloatArray:
    return series.cast(pl.Float64).fill_null(np.nan).to_numpy()


def _consecutive(pc: PairCorrelations) -> npt.NDArray[np.int64]:
    hours, _ = hour_index(pc.open_time)
    return hours.to_numpy().astype(np.int64)


def _baseline(
    values: FloatArray, hours: npt.NDArray[np.int64], span: int
) -> tuple[FloatArray, FloatArray]:
    """`trailing_zscore` on the grid of steps, whatever rows `values` has."""
    if len(values) == 0:
        return values.copy(), values.copy()
    grid = np.full(int(hours[-1] - hours[0]) + 1, np.nan)
    grid[hours - hours[0]] = values
    mean, z = trailing_zscore(grid, span, origin=int(hours[0]))
    return mean[hours - hours[0]], z[hours - hours[0]]


def _variance_ratio(
    wide: pl.DataFrame,
    spec: BasketSpec,
    window_hours: int,
    long_hours: int,
    since: datetime | None,
) -> FloatArray:
    """Var(equal-weight basket return) over the window / over the long window, per row."""
    market = wide.select(
        OPEN_TIME, pl.mean_horizontal(*(pl.col(m) for m in spec.members)).alias(_MARKET)
    )
    pair = [(_MARKET, _MARKET)]
    short = pair_moments(market, pair, window_hours, since=since)
    long = pair_moments(market, pair, long_hours, since=since)
    with np.errstate(invalid="ignore", divide="ignore"):
        v_short = short.cxx[0] / (short.n_obs[0] - 1.0)
        v_long = long.cxx[0] / (long.n_obs[0] - 1.0)
        ratio = v_short / v_long
    ok = short.x_ok[0] & long.x_ok[0] & (short.n_obs[0] >= 2) & (long.n_obs[0] >= 2)
    return np.where(ok, ratio, np.nan)
