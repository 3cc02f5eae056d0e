from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hedgewatch.transforms.hedges import HedgeSpec, hedge_metrics
from hedgewatch.transforms.market import STRESS_COLUMNS, basket_stress, robust_baseline
from hedgewatch.transforms.stress import BasketSpec, basket_metrics

T0 = datetime(2022, 5, 1, tzinfo=UTC)  # a UTC midnight: rows 0, 24, 48 ... start days


def wide_frame(columns: dict[str, np.ndarray]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pl.DataFrame({"open_time": [T0 + timedelta(hours=i) for i in range(n)], **columns})
    return frame.with_columns(pl.col(name).fill_nan(None) for name in columns)


def returns(seed: int, hours: int, members: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.01, (hours, 1))
    return common + rng.normal(0, 0.006, (hours, members))


def reference(x: np.ndarray, w: int, min_obs: int, coverage: float, baseline: int) -> dict:
    """Slow loop over hours of the definitions in transforms.market's module doc."""
    hours, k = x.shape
    out = {name: np.full(hours, np.nan) for name in STRESS_COLUMNS[2:]}
    members: list[str | None] = [None] * hours
    for t in range(hours):
        lo = max(0, t - w + 1)
        block = x[lo : t + 1]
        in_set = [j for j in range(k) if np.sum(~np.isnan(block[:, j])) >= min_obs]
        if len(in_set) < max(2, math.ceil(coverage * k)):
            continue
        sub = block[:, in_set]
        rows = [row for row in sub if not np.isnan(row).any()]
        if len(rows) < min_obs:
            continue
        members[t] = ",".join(f"m{j}" for j in in_set)
        r = [float(np.mean(row)) for row in rows]
        level, peak = 0.0, 0.0
        for v in r:
            level += v
            peak = max(peak, level)
        out["basket_return"][t] = sum(r)
        out["drawdown"][t] = peak - level
        out["vol"][t] = math.sqrt(sum(v * v for v in r) / len(r))
        out["dispersion"][t] = math.sqrt(sum(float(np.var(row)) for row in rows) / len(rows))
    for name, z in (("vol", "vol_z"), ("dispersion", "dispersion_z")):
        logs = np.log(out[name])
        for t in range(hours):
            start = t // 24 * 24
            past = logs[max(0, start - baseline) : start]
            past = past[~np.isnan(past)]
            if len(past) < max(2, math.ceil(0.5 * baseline)):
                continue
            med = np.median(past)
            mad = 1.4826 * np.median(np.abs(past - med))
            out[z][t] = (logs[t] - med) / mad
            if name == "vol":
                out["drawdown_z"][t] = out["drawdown"][t] / (math.exp(med) * math.sqrt(w))
    return {"members": members, **out}


def test_stress_columns_match_a_slow_reference_loop() -> None:
    x = returns(1, 24 * 6, 4)
    x[30:40, 2] = np.nan  # one member missing for a while: it leaves the set
    x[70, :] = np.nan  # an exchange-wide gap
    x[100:103, 0] = np.nan  # a short hole: still in the set, its hours missing for the basket
    wide = wide_frame({f"m{j}": x[:, j] for j in range(4)})
    out = basket_stress(wide, [f"m{j}" for j in range(4)], 12, 9, baseline_hours=48)
    want = reference(x, 12, 9, 0.75, 48)
    assert out["members"].to_list() == want["members"]
    for name in STRESS_COLUMNS[2:]:
        got = out[name].fill_null(np.nan).to_numpy()
        np.testing.assert_allclose(got, want[name], rtol=1e-9, atol=1e-12, err_msg=name)
    assert out["drawdown_z"].drop_nulls().len() > 24


def test_robust_baseline_uses_the_hours_before_the_day_only() -> None:
    values = np.arange(24 * 3, dtype=float)
    hours = np.arange(24 * 3, dtype=np.int64) + 24 * 1000
    med, scale = robust_baseline(values, hours, 24)
    assert np.isnan(med[:24]).all()
    # Day 2 (rows 24..47) sees day 1's 0..23; a shock on day 2 does not enter it.
    assert med[24] == med[47] == pytest.approx(11.5)
    assert scale[30] == pytest.approx(1.4826 * 6.0)
    assert med[48] == pytest.approx(35.5)


def test_an_hourly_tail_equals_the_full_computation() -> None:
    x = returns(2, 24 * 5, 5)
    x[50:60, 1] = np.nan
    wide = wide_frame({f"m{j}": x[:, j] for j in range(5)})
    names = [f"m{j}" for j in range(5)]
    full = basket_stress(wide, names, 6, 5, baseline_hours=48)
    since = T0 + timedelta(hours=100)
    tail = basket_stress(
        wide.filter(pl.col("open_time") >= since - timedelta(hours=48 + 24 + 6)),
        names,
        6,
        5,
        baseline_hours=48,
        since=since,
    )
    assert_frame_equal(tail, full.filter(pl.col("open_time") >= since), check_exact=True)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    gone=st.integers(0, 4),
    stop=st.integers(0, 24 * 4 - 1),
    window=st.sampled_from([6, 12, 24]),
)
def test_a_member_that_stops_trading_does_not_move_the_basket(
    seed: int, gone: int, stop: int, window: int
) -> None:
    """Once a member has no data in a window, every basket value of that window is the value of
    the basket configured without it: its absence alone changes nothing, and it is not listed."""
    x = returns(seed, 24 * 4, 5)
    names = [f"m{j}" for j in range(5)]
    x[stop:, gone] = np.nan
    wide = wide_frame({n: x[:, j] for j, n in enumerate(names)})
    rest = [n for n in names if n != names[gone]]
    min_obs = max(3, int(0.75 * window))
    spec_all = BasketSpec("b", tuple(names))
    spec_rest = BasketSpec("b", tuple(rest))
    kwargs = {"baseline_hours": 24, "coverage": 0.75}
    with_gone = basket_metrics(wide, spec_all, window, min_obs, **kwargs)  # type: ignore[arg-type]
    without = basket_metrics(wide.drop(names[gone]), spec_rest, window, min_obs, **kwargs)  # type: ignore[arg-type]
    # Windows that lie wholly after the stop (past the baselines' reach for the z columns).
    after = pl.col("open_time") >= T0 + timedelta(hours=stop + window - 1)
    raw = ["members", "n_members", "avg_corr", "n_pairs", *STRESS_COLUMNS[2:]]
    raw = [c for c in raw if not c.endswith("_z")]
    got = with_gone.filter(after).select(raw)
    want = without.filter(after).select(raw)
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12, abs_tol=1e-14)
    assert all(names[gone] not in (m or "").split(",") for m in got["members"].to_list())


def test_hedge_against_its_own_normal() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(0, 0.01, 24 * 6)
    hedge = -3 * base + rng.normal(0, 0.002, len(base))
    hedge[24 * 5 + 6 :] = rng.normal(0, 0.03, len(base) - 24 * 5 - 6)  # the hedge breaks on day 6
    wide = wide_frame({"BTC": base, "DOWN": hedge})
    spec = HedgeSpec("h", "BTC", "DOWN", hedge_side=1, base_side=1, held_ratio=1 / 3)
    out = hedge_metrics(wide, spec, 24, 18, normal_hours=48)
    day5 = out.filter(pl.col("open_time") < T0 + timedelta(days=5, hours=6))
    broken = out.filter(pl.col("open_time") >= T0 + timedelta(days=5, hours=23))
    assert day5["effectiveness_drop"].drop_nulls().abs().max() < 0.1  # type: ignore[operator]
    assert broken["effectiveness_drop"].min() > 0.3  # type: ignore[operator]
    assert broken["corr_z"].min() > 3  # type: ignore[operator]
    assert broken["residual_vol_z"].min() > 3  # type: ignore[operator]
    tail = hedge_metrics(wide, spec, 24, 18, normal_hours=48, since=T0 + timedelta(days=5))
    assert_frame_equal(tail, out.filter(pl.col("open_time") >= T0 + timedelta(days=5)))
