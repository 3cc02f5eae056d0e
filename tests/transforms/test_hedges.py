from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hedgewatch.transforms.hedges import HEDGE_COLUMNS, HedgeSpec, hedge_metrics

T0 = datetime(2022, 5, 1, tzinfo=UTC)


def wide_frame(columns: dict[str, np.ndarray]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pl.DataFrame({"open_time": [T0 + timedelta(hours=i) for i in range(n)], **columns})
    return frame.with_columns(pl.col(name).fill_nan(None) for name in columns)


def column(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()


def test_long_btc_against_long_down_token_is_a_negative_correlation_and_positive_ratio() -> None:
    rng = np.random.default_rng(1)
    btc = rng.normal(0, 0.01, 400)
    down = -3.0 * btc + rng.normal(0, 0.002, 400)  # a 3x leveraged short token
    spec = HedgeSpec("btc-down", "BTC", "BTCDOWN", hedge_side=1, base_side=1, held_ratio=0.3)
    out = hedge_metrics(wide_frame({"BTC": btc, "BTCDOWN": down}), spec, 168, 100)
    last = out.row(-1, named=True)
    assert last["correlation"] < -0.95
    assert last["beta"] < 0
    assert last["min_var_ratio"] == pytest.approx(1 / 3, abs=0.02)
    assert last["ratio_drift"] == pytest.approx(last["min_var_ratio"] - 0.3, abs=1e-15)
    assert last["effectiveness"] > 0.9


def test_long_a_short_b_of_a_look_alike_is_negative_and_ratio_equals_beta() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0, 0.01, 300)
    b = a + rng.normal(0, 0.001, 300)
    spec = HedgeSpec("a-b", "A", "B", hedge_side=-1, base_side=1, held_ratio=1.0)
    out = hedge_metrics(wide_frame({"A": a, "B": b}), spec, 72, 48).drop_nulls("correlation")
    assert out.height > 0
    assert (out["correlation"] < -0.95).all()
    assert (out["beta"] - 1.0).abs().max() < 0.05
    assert_frame_equal(
        out.select(pl.col("min_var_ratio").alias("x")), out.select(pl.col("beta").alias("x"))
    )


def test_short_base_long_hedge_flips_the_signs_like_long_base_short_hedge() -> None:
    rng = np.random.default_rng(3)
    wide = wide_frame({"A": rng.normal(0, 0.01, 100), "B": rng.normal(0, 0.01, 100)})
    one = hedge_metrics(wide, HedgeSpec("h", "A", "B", -1, 1, 0.5), 24, 12)
    other = hedge_metrics(wide, HedgeSpec("h", "A", "B", 1, -1, 0.5), 24, 12)
    assert_frame_equal(one, other)


def test_columns_follow_the_contract() -> None:
    wide = wide_frame({"A": np.zeros(3), "B": np.zeros(3)})
    out = hedge_metrics(wide, HedgeSpec("h", "A", "B", -1, 1, 0.5), 24, 2)
    assert tuple(out.columns) == HEDGE_COLUMNS
    assert out["hedge"].to_list() == ["h"] * 3
    assert out["window_hours"].to_list() == [24] * 3
    assert out["held_ratio"].to_list() == [0.5] * 3


def ols_reference(base: np.ndarray, hedge: np.ndarray, window: int, min_obs: int) -> np.ndarray:
    """Slope of base on hedge (with intercept) by lstsq on each window's complete rows."""
    betas = []
    for end in range(len(base)):
        sl = slice(max(0, end - window + 1), end + 1)
        x, y = hedge[sl], base[sl]
        both = np.isfinite(x) & np.isfinite(y)
        if both.sum() < min_obs:
            betas.append(np.nan)
            continue
        design = np.column_stack([x[both], np.ones(both.sum())])
        betas.append(np.linalg.lstsq(design, y[both], rcond=None)[0][0])
    return np.array(betas)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    window=st.integers(4, 60),
    gaps=st.floats(0.0, 0.4),
    true_beta=st.floats(-3.0, 3.0),
)
def test_beta_equals_an_ols_fit_on_each_window(
    seed: int, window: int, gaps: float, true_beta: float
) -> None:
    rng = np.random.default_rng(seed)
    hedge = rng.normal(0, 0.01, 150)
    base = true_beta * hedge + rng.normal(0, 0.005, 150)
    hedge[rng.random(150) < gaps] = np.nan
    base[rng.random(150) < gaps] = np.nan
    min_obs = max(3, window // 2)
    out = hedge_metrics(
        wide_frame({"B": base, "H": hedge}), HedgeSpec("h", "B", "H", -1, 1, 1.0), window, min_obs
    )
    np.testing.assert_allclose(
        column(out, "beta"), ols_reference(base, hedge, window, min_obs), rtol=0, atol=1e-9
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    held_ratio=st.floats(0.0, 3.0),
    base_side=st.sampled_from([1, -1]),
    hedge_side=st.sampled_from([1, -1]),
)
def test_effectiveness_is_the_variance_reduction_of_the_held_position(
    seed: int, held_ratio: float, base_side: int, hedge_side: int
) -> None:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.01, 80)
    hedge = 0.8 * base + rng.normal(0, 0.004, 80)
    base[rng.random(80) < 0.1] = np.nan
    spec = HedgeSpec("h", "B", "H", hedge_side, base_side, held_ratio)
    out = hedge_metrics(wide_frame({"B": base, "H": hedge}), spec, 24, 12)
    for end in range(30, 80, 7):
        sl = slice(end - 23, end + 1)
        both = np.isfinite(base[sl]) & np.isfinite(hedge[sl])
        b, h = base[sl][both], hedge[sl][both]
        position = base_side * b + hedge_side * held_ratio * h
        expected = 1 - np.var(position) / np.var(b)
        assert out["effectiveness"][end] == pytest.approx(expected, abs=1e-9)
        signed = np.corrcoef(base_side * b, hedge_side * h)[0, 1]
        assert out["correlation"][end] == pytest.approx(signed, abs=1e-9)


def test_a_frozen_hedge_leg_has_no_beta_and_no_effect() -> None:
    rng = np.random.default_rng(4)
    wide = wide_frame({"B": rng.normal(0, 0.01, 50), "H": np.zeros(50)})
    out = hedge_metrics(wide, HedgeSpec("h", "B", "H", -1, 1, 1.0), 24, 12)
    assert out["beta"].null_count() == out["min_var_ratio"].null_count() == 50
    assert out["correlation"].null_count() == 50
    assert (out["effectiveness"].drop_nulls().abs() < 1e-12).all()
    assert out["effectiveness"].drop_nulls().len() == 50 - 11


def test_since_rows_equal_the_full_computation() -> None:
    rng = np.random.default_rng(5)
    base, hedge = rng.normal(0, 0.01, 500), rng.normal(0, 0.01, 500)
    hedge[rng.random(500) < 0.1] = np.nan
    wide = wide_frame({"B": base, "H": hedge})
    spec = HedgeSpec("h", "B", "H", -1, 1, 0.7)
    since = T0 + timedelta(hours=333)
    full = hedge_metrics(wide, spec, 48, 24)
    tail = hedge_metrics(wide, spec, 48, 24, since=since)
    assert_frame_equal(tail, full.filter(pl.col("open_time") >= since), check_exact=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hedge_side": 0}, "sides"),
        ({"base_side": 2}, "sides"),
        ({"hedge": "A"}, "both"),
        ({"held_ratio": -1.0}, "held_ratio"),
        ({"held_ratio": float("nan")}, "held_ratio"),
    ],
)
def test_spec_rejects_meaningless_hedges(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "name": "h",
        "base": "A",
        "hedge": "B",
        "hedge_side": -1,
        "base_side": 1,
        "held_ratio": 1.0,
    }
    with pytest.raises(ValueError, match=message):
        HedgeSpec(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_interval_baseline_break_residual_risk_and_rebalance_match_references() -> None:
    from hedgewatch.transforms.significance import fisher_ci, fisher_z_test

    rng = np.random.default_rng(12)
    n = 300
    base = rng.normal(0, 0.01, n)
    hedge = 0.8 * base + rng.normal(0, 0.006, n)
    base[rng.random(n) < 0.05] = np.nan
    spec = HedgeSpec("h", "B", "H", hedge_side=-1, base_side=1, held_ratio=0.7, base_units=3.0)
    wide = wide_frame({"B": base, "H": hedge})
    out = hedge_metrics(wide, spec, 24, 12, baseline_hours=96, baseline_min_obs=48)
    longest = hedge_metrics(wide, spec, 96, 48)
    assert tuple(out.columns) == HEDGE_COLUMNS
    np.testing.assert_array_equal(column(out, "corr_baseline"), column(longest, "correlation"))
    for t in range(30, n, 7):
        row = out.row(t, named=True)
        lo, hi = fisher_ci(row["correlation"], row["n_obs"])
        assert row["corr_ci_low"] == pytest.approx(lo, abs=1e-12)
        assert row["corr_ci_high"] == pytest.approx(hi, abs=1e-12)
        z = fisher_z_test(
            row["correlation"], row["n_obs"], row["corr_baseline"], longest["n_obs"][t]
        )
        if z is None:
            assert row["break_z"] is None
        else:
            assert row["break_z"] == pytest.approx(z, abs=1e-9)
        window = slice(t - 23, t + 1)
        both = ~np.isnan(base[window]) & ~np.isnan(hedge[window])
        position = base[window][both] - 0.7 * hedge[window][both]
        assert row["residual_vol"] == pytest.approx(np.std(position, ddof=1), rel=1e-9)
        assert row["rebalance"] == pytest.approx(3.0 * (row["min_var_ratio"] - 0.7), abs=1e-12)
    # The longest window is its own baseline: no test against itself.
    own = hedge_metrics(wide, spec, 96, 48, baseline_hours=96)
    assert own["break_z"].null_count() == own.height
    np.testing.assert_array_equal(column(own, "corr_baseline"), column(own, "correlation"))
