"""Thin hours for hedges: `activity` and `effectiveness_loss` (see transforms/hedges.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from hedgewatch.transforms.hedges import HedgeSpec, effectiveness_loss, hedge_metrics

T0 = datetime(2022, 5, 1, tzinfo=UTC)  # a UTC midnight
SPEC = HedgeSpec("h", "BTC", "DOWN", hedge_side=1, base_side=1, held_ratio=1 / 3)
NORMAL = 48  # two days of own normal keep the series short


def wide(base: np.ndarray, hedge: np.ndarray) -> pl.DataFrame:
    times = [T0 + timedelta(hours=i) for i in range(len(base))]
    return pl.DataFrame({"open_time": times, "BTC": base, "DOWN": hedge})


def day_six(base_scale: float, token_noise: float) -> pl.DataFrame:
    """Five normal days of a tight hedge (the token moves -3x the base, plus its own noise of
    0.002 an hour), then a sixth day on which the base moves `base_scale` times as much and the
    token's own noise is `token_noise`; the metrics of the sixth day's last hour (a 24 h window
    wholly inside it)."""
    rng = np.random.default_rng(11)
    hours = 24 * 6
    base = rng.normal(0, 0.01, hours)
    noise = rng.normal(0, 1.0, hours)
    base[24 * 5 :] *= base_scale
    hedge = -3 * base + 0.002 * noise
    hedge[24 * 5 :] = -3 * base[24 * 5 :] + token_noise * noise[24 * 5 :]
    out = hedge_metrics(wide(base, hedge), SPEC, 24, 18, normal_hours=NORMAL)
    return out.filter(pl.col("open_time") == T0 + timedelta(hours=hours - 1))


def test_a_quiet_day_with_the_same_token_noise_loses_little() -> None:
    """The weekend case: the base moves a tenth as much, the token's own noise stays. The plain
    drop says the hedge lost over 30 points; the book carries well under 1 % of its usual risk
    beyond what a normal hedge leaves, and that is what effectiveness_loss measures."""
    row = day_six(base_scale=0.1, token_noise=0.002).row(0, named=True)
    assert 0.005 < row["activity"] < 0.02  # about 0.1 ** 2 of the normal variance
    assert row["effectiveness"] > 0
    assert row["effectiveness_drop"] > 0.3
    assert row["effectiveness_loss"] == row["effectiveness_drop"] * row["activity"]
    assert row["effectiveness_loss"] < 0.01


def test_a_hedge_that_adds_variance_counts_in_full_however_quiet() -> None:
    row = day_six(base_scale=0.1, token_noise=0.006).row(0, named=True)
    assert row["activity"] < 0.02
    assert row["effectiveness"] < 0
    assert row["effectiveness_loss"] == row["effectiveness_drop"] > 1.0


def test_a_busy_day_counts_the_drop_in_full() -> None:
    row = day_six(base_scale=2.0, token_noise=0.045).row(0, named=True)
    assert row["activity"] > 1
    assert 0 < row["effectiveness"] < 0.7
    assert row["effectiveness_loss"] == row["effectiveness_drop"] > 0.3


def test_activity_is_the_window_variance_over_its_own_normal() -> None:
    """Against a slow loop: the position's 24 h sample variance divided by the median of that
    series over the NORMAL hours before the row's UTC day."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 0.01, 24 * 4) * np.repeat([1.0, 2.0, 0.5, 0.2], 24)
    hedge = -3 * base + rng.normal(0, 0.002, len(base))
    out = hedge_metrics(wide(base, hedge), SPEC, 24, 18, normal_hours=NORMAL)
    var = np.full(len(base), np.nan)
    for t in range(len(base)):
        window = base[max(0, t - 23) : t + 1]
        if len(window) >= 18:
            var[t] = np.var(window, ddof=1)
    got = out["activity"].to_numpy()
    for t in range(len(base)):
        start = (t // 24) * 24
        normal = var[max(0, start - NORMAL) : start]
        if np.isnan(normal).all() or np.sum(~np.isnan(normal)) < 0.5 * NORMAL:
            continue
        want = var[t] / np.nanmedian(normal)
        assert abs(got[t] - want) <= 1e-9 * max(1.0, abs(want)), t


def test_the_loss_at_its_edges() -> None:
    drop = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, np.nan])
    effectiveness = np.array([0.4, 0.4, 0.4, 0.0, -1e-12, 0.4, -0.5])
    activity = np.array([0.0, 1.0, 3.0, 0.2, 0.2, np.nan, 0.2])
    got = effectiveness_loss(drop, effectiveness, activity)
    # No movement: nothing lost; activity 1 and above: the drop itself (never amplified);
    # effectiveness exactly 0 still scales, below 0 counts in full; NaN in, NaN out.
    want = np.array([0.0, 0.5, 0.5, 0.1, 0.5, np.nan, np.nan])
    np.testing.assert_array_equal(got, want)


def test_the_new_columns_are_the_same_computed_from_any_hour() -> None:
    rng = np.random.default_rng(8)
    base = rng.normal(0, 0.01, 24 * 6) * np.repeat([1, 1, 1, 0.1, 0.1, 2], 24)
    hedge = -3 * base + rng.normal(0, 0.002, len(base))
    frame = wide(base, hedge)
    full = hedge_metrics(frame, SPEC, 24, 18, normal_hours=NORMAL)
    since = T0 + timedelta(days=4, hours=5)
    tail = hedge_metrics(frame, SPEC, 24, 18, normal_hours=NORMAL, since=since)
    assert tail["effectiveness_loss"].null_count() == 0
    assert_frame_equal(tail, full.filter(pl.col("open_time") >= since))
