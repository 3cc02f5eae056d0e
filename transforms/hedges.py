"""Rolling metrics of a two-leg hedge: signed correlation, hedge ratios, effectiveness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from transforms._time import OPEN_TIME
from transforms.correlation import check_window, pair_moments

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

    def __post_init__(self) -> None:
        if self.base_side not in (1, -1) or self.hedge_side not in (1, -1):
            raise ValueError(
                f"hedge {self.name!r}: sides must be +1 (long) or -1 (short), "
                f"got base_side={self.base_side}, hedge_side={self.hedge_side}"
            )
        if self.base == self.hedge:
            raise ValueError(f"hedge {self.name!r}: base and hedge are both {self.base!r}")
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
    Metrics are null when n_obs < min_obs or a variance they divide by is ~0.
    """
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
    corr = np.where(base_ok & hedge_ok, corr, np.nan)
    beta = np.where(hedge_ok, beta, np.nan)
    min_var_ratio = -sign * beta
    # A constant hedge leg adds no variance, so effectiveness only needs a moving base.
    effectiveness = np.where(base_ok, effectiveness, np.nan)

    return pl.DataFrame(
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
        }
    ).with_columns(pl.col(pl.Float64).fill_nan(None))
