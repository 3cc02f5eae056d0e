"""Rolling metrics of a two-leg hedge: signed correlation and its interval, hedge ratios,
effectiveness, residual risk and the rebalance back to the min-variance ratio."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from hedgewatch.transforms._time import OPEN_TIME, check_since, hour_index
from hedgewatch.transforms.correlation import check_window, pair_moments
from hedgewatch.transforms.market import robust_baseline, robust_z
from hedgewatch.transforms.significance import Z_95, fisher_ci_arrays, fisher_z_arrays

HEDGE_COLUMNS = (
    "hedge",
    "window_hours",
    OPEN_TIME,
    "n_obs",
    "correlation",
    "beta",
    "min_var_ratio",
    "held_ratio",
    "ratio_drift",
    "effectiveness",
    "corr_ci_low",
    "corr_ci_high",
    "corr_baseline",
    "break_z",
    "residual_vol",
    "rebalance",
    "corr_z",
    "effectiveness_drop",
    "residual_vol_z",
    "activity",
    "effectiveness_loss",
)


@dataclass(frozen=True)
class HedgeSpec:
    """A held position: `base_side` units of base against `hedge_side * held_ratio` units of hedge.

    Sides are +1 (long) or -1 (short); `held_ratio` is the size of the hedge leg per unit of base
    (>= 0), its direction is given by `hedge_side`.
    """

    name: str
    base: str
    hedge: str
    hedge_side: int
    base_side: int
    held_ratio: float
    base_units: float = 1.0  # size of the base leg; `rebalance` is in hedge units for this size

    def __post_init__(self) -> None:
        if self.base_side not in (1, -1) or self.hedge_side not in (1, -1):
            raise ValueError(
                f"hedge {self.name!r}: sides must be +1 (long) or -1 (short), "
                f"got base_side={self.base_side}, hedge_side={self.hedge_side}"
            )
        if self.base == self.hedge:
            raise ValueError(f"hedge {self.name!r}: base and hedge are both {self.base!r}")
        if not np.isfinite(self.base_units) or self.base_units <= 0:
            raise ValueError(
                f"hedge {self.name!r}: base_units must be finite and > 0, got {self.base_units}"
            )
        if not np.isfinite(self.held_ratio) or self.held_ratio < 0:
            raise ValueError(
                f"hedge {self.name!r}: held_ratio must be finite and >= 0, got {self.held_ratio}"
            )


def hedge_metrics(
    wide: pl.DataFrame,
    spec: HedgeSpec,
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
    baseline_hours: int | None = None,
    baseline_min_obs: int | None = None,
    z: float = Z_95,
    normal_hours: int = 720,
) -> pl.DataFrame:
    """Rolling hedge metrics, one row per open_time of `wide` (>= since).

    With r_b, r_h the log returns of base and hedge over the pairwise-complete hours of the window:
    - correlation = corr(base_side * r_b, hedge_side * r_h): the legs as held, so a working hedge is
      strongly negative (long BTC / long a BTC DOWN token, or long A / short B with A ~ B);
    - beta = Cov(r_b, r_h) / Var(r_h) on the raw (unsigned) returns, the OLS slope of r_b on r_h;
    - min_var_ratio = -base_side * hedge_side * beta: the held_ratio that minimises the variance
      of base_side * r_b + hedge_side * ratio * r_h (positive when the hedge offsets the base);
    - ratio_drift = min_var_ratio - held_ratio;
    - effectiveness = 1 - Var(base_side * r_b + hedge_side * held_ratio * r_h) / Var(r_b): 1 is a
      perfect hedge, 0 no reduction, negative when the hedge adds risk.
    - corr_ci_low/high: Fisher z interval of correlation (two-sided, `z` standard errors);
    - residual_vol: standard deviation (n - 1) of the held position's hourly log return,
      base_side * r_b + hedge_side * held_ratio * r_h: the risk the hedge leaves;
    - rebalance = base_units * ratio_drift: hedge units to add (+) or take off (-) so the hedge
      leg holds the min-variance ratio again;
    - corr_baseline: correlation over `baseline_hours` (the longest configured window) at the same
      hour, and break_z the Fisher z statistic of correlation against it (null when this window is
      the baseline, or without one).
    The hedge against its own normal: the median and MAD of its own series over the
    `normal_hours` before the row's UTC day (refreshed daily; see `transforms.market`). `wide`
    must reach that far before `since` for these:
    - corr_z: rise of the correlation on the Fisher z scale, in the larger of its robust scale
      and the window's sampling error 1/sqrt(n_obs - 3) (a near-perfect hedge's tiny scale alone
      would make noise look like a break); positive = decoupling;
    - effectiveness_drop: the normal (median) effectiveness minus this one: the share of the
      position's variance the hedge no longer removes (0.3 = 30 points less than usual);
    - residual_vol_z: robust z of log(residual_vol);
    - activity: the position's variance over the window (base_side * r_b, unhedged) divided by
      its normal (median) one: 0.1 on a weekend when the position moves a tenth as much as usual;
    - effectiveness_loss: effectiveness_drop x min(1, activity), or the plain effectiveness_drop
      when effectiveness < 0. The scaled drop is the variance the hedge lets through beyond what
      it normally leaves, as a share of the position's normal variance: in a window that moves a
      tenth as much as usual, the token's own noise (tick size, rebalancing, premium) can take
      30 points off effectiveness while the book carries a few points of its usual risk, so the
      drop counts in proportion to how much the position moves (never more than in full). A
      hedge whose effectiveness is below zero adds variance instead of removing it: that is a
      broken hedge however quiet the market, so its drop counts in full.
    Metrics are null when n_obs < min_obs or a variance they divide by is ~0.
    """
    check_window(window_hours, min_obs)
    since = check_since(since)
    corr, n_obs, frame = _core(wide, spec, window_hours, min_obs, None)
    normal = _against_normal(frame, normal_hours)
    if since is not None:
        keep = (frame[OPEN_TIME] >= since).to_numpy()
        corr, n_obs, frame = corr[keep], n_obs[keep], frame.filter(pl.Series(keep))
        normal = {name: values[keep] for name, values in normal.items()}
    lo, hi = fisher_ci_arrays(corr, n_obs, z)
    baseline = np.full(len(corr), np.nan)
    break_z = np.full(len(corr), np.nan)
    if baseline_hours is not None:
        base_min = baseline_min_obs if baseline_min_obs is not None else min_obs
        if baseline_hours == window_hours:
            baseline = corr
        else:
            baseline, base_n, _ = _core(wide, spec, baseline_hours, base_min, since)
            break_z = fisher_z_arrays(corr, n_obs, baseline, base_n)
    return frame.with_columns(
        pl.Series("corr_ci_low", lo),
        pl.Series("corr_ci_high", hi),
        pl.Series("corr_baseline", baseline),
        pl.Series("break_z", break_z),
        *(pl.Series(name, values, dtype=pl.Float64) for name, values in normal.items()),
    ).select(
        pl.col(name).fill_nan(None) if frame.schema.get(name, pl.Float64) == pl.Float64 else name
        for name in HEDGE_COLUMNS
    )


def _against_normal(frame: pl.DataFrame, normal_hours: int) -> dict[str, npt.NDArray[np.float64]]:
    """corr_z, effectiveness_drop, residual_vol_z, activity and effectiveness_loss of `_core`'s
    rows (see hedge_metrics)."""
    hours_s, _ = hour_index(frame[OPEN_TIME])
    hours = hours_s.to_numpy().astype(np.int64)

    def values(name: str) -> npt.NDArray[np.float64]:
        return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    with np.errstate(invalid="ignore", divide="ignore"):
        fisher = np.arctanh(np.clip(values("correlation"), -1.0 + 1e-9, 1.0 - 1e-9))
        log_resid = np.log(values("residual_vol"))
    log_resid[~np.isfinite(log_resid)] = np.nan
    effectiveness = values("effectiveness")
    n_obs = frame["n_obs"].to_numpy().astype(np.float64)
    med, scale = robust_baseline(fisher, hours, normal_hours)
    sampling = 1.0 / np.sqrt(np.maximum(n_obs - 3.0, 1.0))
    eff_med, _ = robust_baseline(effectiveness, hours, normal_hours, with_scale=False)
    res_med, res_scale = robust_baseline(log_resid, hours, normal_hours)
    position = values(_POSITION_VAR)
    var_med, _ = robust_baseline(position, hours, normal_hours, with_scale=False)
    drop = eff_med - effectiveness
    with np.errstate(invalid="ignore", divide="ignore"):
        activity = np.where(var_med > 0, position / var_med, np.nan)
    return {
        "corr_z": robust_z(
            fisher, med, np.where(np.isnan(scale), np.nan, np.maximum(scale, sampling))
        ),
        "effectiveness_drop": drop,
        "residual_vol_z": robust_z(log_resid, res_med, res_scale),
        "activity": activity,
        "effectiveness_loss": effectiveness_loss(drop, effectiveness, activity),
    }


def effectiveness_loss(
    drop: npt.NDArray[np.float64],
    effectiveness: npt.NDArray[np.float64],
    activity: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The effectiveness drop weighed by how much the position moves (see hedge_metrics):
    drop x min(1, activity), or the plain drop where effectiveness < 0 (the hedge adds variance).
    NaN where an input it needs is NaN."""
    with np.errstate(invalid="ignore"):
        scaled = drop * np.minimum(activity, 1.0)
        return np.where(effectiveness < 0, drop, scaled)


# The position's (unhedged) variance per hour over the window: `_core` computes it for
# `_against_normal`; it is not one of HEDGE_COLUMNS.
_POSITION_VAR = "_position_var"


def _core(
    wide: pl.DataFrame,
    spec: HedgeSpec,
    window_hours: int,
    min_obs: int,
    since: datetime | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], pl.DataFrame]:
    check_window(window_hours, min_obs)
    m = pair_moments(wide, [(spec.base, spec.hedge)], window_hours, since=since)
    n_obs, vb, vh, cov = m.n_obs[0], m.cxx[0], m.cyy[0], m.cxy[0]
    enough = n_obs >= min_obs
    base_ok, hedge_ok = enough & m.x_ok[0], enough & m.y_ok[0]
    sign = spec.base_side * spec.hedge_side
    ratio = spec.held_ratio

    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip(sign * cov / (np.sqrt(vb) * np.sqrt(vh)), -1.0, 1.0)
        beta = cov / vh
        # Var(b*r_b + h*k*r_h) = Var(r_b) + k^2 Var(r_h) + 2*b*h*k Cov; the sides square away.
        hedged = np.maximum(vb + ratio * ratio * vh + 2.0 * sign * ratio * cov, 0.0)
        effectiveness = 1.0 - hedged / vb
        residual_vol = np.sqrt(hedged / (n_obs - 1.0))
        position_var = vb / (n_obs - 1.0)
    corr = np.where(base_ok & hedge_ok, corr, np.nan)
    beta = np.where(hedge_ok, beta, np.nan)
    min_var_ratio = -sign * beta
    # A constant hedge leg adds no variance, so effectiveness only needs a moving base.
    effectiveness = np.where(base_ok, effectiveness, np.nan)
    position_var = np.where(base_ok, position_var, np.nan)
    # The held position's variance needs both legs' sums, not their variances to be non-zero.
    residual_vol = np.where(enough, residual_vol, np.nan)

    frame = pl.DataFrame(
        {
            "hedge": pl.Series([spec.name] * len(n_obs), dtype=pl.Utf8),
            "window_hours": pl.Series([window_hours] * len(n_obs), dtype=pl.Int64),
            OPEN_TIME: m.open_time,
            "n_obs": pl.Series(n_obs, dtype=pl.Int64),
            "correlation": corr,
            "beta": beta,
            "min_var_ratio": min_var_ratio,
            "held_ratio": pl.Series([ratio] * len(n_obs), dtype=pl.Float64),
            "ratio_drift": min_var_ratio - ratio,
            "effectiveness": effectiveness,
            "residual_vol": residual_vol,
            "rebalance": spec.base_units * (min_var_ratio - ratio),
            _POSITION_VAR: position_var,
        }
    )
    return corr, n_obs, frame
