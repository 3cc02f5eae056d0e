"""Market stress in a basket: the average pairwise correlation over trailing hourly windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import combinations

import numpy as np
import polars as pl

from transforms._time import OPEN_TIME
from transforms.correlation import check_window, correlation_from_moments, pair_moments

BASKET_COLUMNS = ("basket", "window_hours", OPEN_TIME, "n_obs", "n_pairs", "avg_corr")


@dataclass(frozen=True)
class BasketSpec:
    """A named set of instruments whose pairwise correlations are averaged."""

    name: str
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError(f"basket {self.name!r} needs at least 2 members, got {self.members}")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"basket {self.name!r} lists a member twice: {self.members}")

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(combinations(self.members, 2))


def basket_metrics(
    wide: pl.DataFrame,
    spec: BasketSpec,
    window_hours: int,
    min_obs: int,
    *,
    since: datetime | None = None,
) -> pl.DataFrame:
    """Average pairwise Pearson correlation per open_time of `wide` (>= since).

    avg_corr is the mean over the member pairs that have a correlation in that window (n_pairs
    of them; null when none). n_obs is the smallest pairwise-complete count among those pairs —
    or among all pairs when none has a correlation — so it bounds the evidence behind avg_corr.
    """
    check_window(window_hours, min_obs)
    m = pair_moments(wide, spec.pairs, window_hours, since=since)
    corr = correlation_from_moments(m, min_obs)
    has = ~np.isnan(corr)
    n_pairs = has.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(has, corr, 0.0).sum(axis=0) / n_pairs
    avg = np.where(n_pairs > 0, avg, np.nan)
    n_obs = np.where(
        n_pairs > 0,
        np.where(has, m.n_obs, np.iinfo(np.int64).max).min(axis=0),
        m.n_obs.min(axis=0),
    )
    rows = len(m.open_time)
    return pl.DataFrame(
        {
            "basket": pl.Series([spec.name] * rows, dtype=pl.Utf8),
            "window_hours": pl.Series([window_hours] * rows, dtype=pl.Int64),
            OPEN_TIME: m.open_time,
            "n_obs": pl.Series(n_obs, dtype=pl.Int64),
            "n_pairs": pl.Series(n_pairs, dtype=pl.Int64),
            "avg_corr": pl.Series(avg, dtype=pl.Float64).fill_nan(None),
        }
    )
