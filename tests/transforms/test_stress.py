from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hedgewatch.transforms.correlation import rolling_correlation
from hedgewatch.transforms.stress import BASKET_COLUMNS, BasketSpec, basket_metrics

T0 = datetime(2022, 5, 1, tzinfo=UTC)


def wide_frame(columns: dict[str, np.ndarray]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pl.DataFrame({"open_time": [T0 + timedelta(hours=i) for i in range(n)], **columns})
    return frame.with_columns(pl.col(name).cast(pl.Float64).fill_nan(None) for name in columns)


def factor_returns(rng: np.random.Generator, n: int, members: int, load: float) -> np.ndarray:
    market = rng.normal(0, 0.01, n)
    return load * market[:, None] + rng.normal(0, 0.01, (n, members))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    members=st.integers(2, 6),
    window=st.integers(5, 40),
    load=st.floats(0.0, 3.0),
)
def test_average_equals_mean_of_corrcoef_off_diagonals(
    seed: int, members: int, window: int, load: float
) -> None:
    rng = np.random.default_rng(seed)
    data = factor_returns(rng, 60, members, load)
    names = [f"m{i}" for i in range(members)]
    spec = BasketSpec("b", tuple(names))
    out = basket_metrics(wide_frame(dict(zip(names, data.T, strict=True))), spec, window, 3)
    pairs = members * (members - 1) // 2
    for end in range(window - 1, 60):
        matrix = np.corrcoef(data[end - window + 1 : end + 1].T)
        expected = matrix[np.triu_indices(members, 1)].mean()
        assert out["avg_corr"][end] == pytest.approx(expected, abs=1e-9)
        assert out["n_pairs"][end] == pairs
        assert out["n_obs"][end] == window


def test_missing_member_leaves_the_average_of_available_pairs() -> None:
    rng = np.random.default_rng(1)
    data = factor_returns(rng, 100, 3, 1.0)
    wide = wide_frame(
        {"a": data[:, 0], "b": data[:, 1], "c": data[:, 2], "gone": np.full(100, np.nan)}
    )
    out = basket_metrics(wide, BasketSpec("b", ("a", "b", "c", "gone")), 24, 12)
    pair_corr = [
        rolling_correlation(wide, x, y, 24, 12)["corr"].alias(x + y)
        for x, y in combinations("abc", 2)
    ]
    expected = pl.DataFrame(pair_corr).mean_horizontal()
    last = out.row(-1, named=True)
    assert last["n_pairs"] == 3
    assert last["n_obs"] == 24
    assert last["avg_corr"] == pytest.approx(expected[-1], abs=1e-15)


def test_n_obs_is_the_smallest_count_among_pairs_with_a_value() -> None:
    nan = np.nan
    wide = wide_frame(
        {
            "a": np.array([1.0, 2.0, 3.0, 4.0, 2.0, 7.0]),
            "b": np.array([2.0, 1.0, 4.0, 3.0, 5.0, 1.0]),
            "c": np.array([nan, nan, 1.0, 3.0, 2.0, 5.0]),
        }
    )
    # coverage 0.5: two of the three members are enough for a value.
    out = basket_metrics(wide, BasketSpec("b", ("a", "b", "c")), 6, 3, coverage=0.5)
    # Before hour 4 only a-b has a value (from 3 hours on); with no value at all, n_obs falls
    # back to the weakest pair (a-c: 0 hours). Last window: a-b has 6 hours, a-c and b-c 4.
    assert out["n_pairs"].to_list() == [0, 0, 1, 1, 3, 3]
    assert out["n_obs"].to_list() == [0, 0, 3, 4, 3, 4]
    assert out["avg_corr"][:2].to_list() == [None, None]


def test_columns_follow_the_contract_and_since_matches_full_computation() -> None:
    rng = np.random.default_rng(2)
    data = factor_returns(rng, 300, 4, 1.0)
    data[rng.random(data.shape) < 0.1] = np.nan
    wide = wide_frame({f"m{i}": data[:, i] for i in range(4)})
    spec = BasketSpec("majors", tuple(f"m{i}" for i in range(4)))
    full = basket_metrics(wide, spec, 48, 24)
    assert tuple(full.columns) == BASKET_COLUMNS
    assert full["basket"].unique().to_list() == ["majors"]
    since = T0 + timedelta(hours=250)
    tail = basket_metrics(wide, spec, 48, 24, since=since)
    assert_frame_equal(tail, full.filter(pl.col("open_time") >= since), check_exact=True)


def test_spec_needs_two_distinct_members() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        BasketSpec("b", ("a",))
    with pytest.raises(ValueError, match="twice"):
        BasketSpec("b", ("a", "a"))


def stress_frame(seed: int, hours: int = 400, members: int = 5) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    load = np.where(np.arange(hours) > hours // 2, 2.0, 0.3)[:, None]  # a stress regime late on
    values = load * rng.normal(0, 0.01, (hours, 1)) + rng.normal(0, 0.01, (hours, members))
    names = [f"m{i}" for i in range(members)]
    return wide_frame({n: values[:, i] for i, n in enumerate(names)}), values


def test_absorption_ratio_equals_numpy_eigendecomposition() -> None:
    wide, values = stress_frame(1)
    spec = BasketSpec("b", tuple(f"m{i}" for i in range(5)), absorption_k=2)
    out = basket_metrics(wide, spec, 48, 36)
    assert tuple(out.columns) == BASKET_COLUMNS
    for t in range(60, 400, 13):
        eig = np.linalg.eigvalsh(np.corrcoef(values[t - 47 : t + 1].T))
        assert out["absorption_ratio"][t] == pytest.approx(eig[-2:].sum() / 5, abs=1e-9)
    assert BasketSpec("c", tuple("abcdefghij")).k == 2  # about a fifth by default


def test_forbes_rigobon_adjusts_by_the_basket_variance_ratio() -> None:
    wide, values = stress_frame(2)
    spec = BasketSpec("b", tuple(f"m{i}" for i in range(5)))
    out = basket_metrics(wide, spec, 24, 18, volatility_window_hours=168)
    market = values.mean(axis=1)
    for t in range(200, 400, 17):
        delta = np.var(market[t - 23 : t + 1], ddof=1) / np.var(market[t - 167 : t + 1], ddof=1) - 1
        rho = np.corrcoef(values[t - 23 : t + 1].T)[np.triu_indices(5, 1)]
        expected = np.mean(rho / np.sqrt(1 + delta * (1 - rho**2)))
        assert out["avg_corr_adj"][t] == pytest.approx(expected, abs=1e-9)
    # High volatility alone no longer reads as a rise in correlation.
    # While the stress regime is younger than the long window, volatility alone no longer reads
    # as a rise in correlation.
    young = out.filter(
        pl.col("open_time").is_between(T0 + timedelta(hours=225), T0 + timedelta(hours=330))
    )
    assert (young["avg_corr_adj"] < young["avg_corr"]).all()


def test_z_scores_are_against_the_trailing_baseline_and_a_stored_one_gives_the_same() -> None:
    wide, _ = stress_frame(3)
    spec = BasketSpec("b", tuple(f"m{i}" for i in range(5)))
    out = basket_metrics(wide, spec, 24, 18, baseline_hours=72)
    avg = out["avg_corr"].to_pandas()
    mean = avg.rolling(72, min_periods=36).mean().shift(1)
    std = avg.rolling(72, min_periods=36).std().shift(1)
    np.testing.assert_allclose(
        out["avg_corr_baseline"].fill_null(np.nan).to_numpy(), mean.to_numpy(), atol=1e-12
    )
    np.testing.assert_allclose(
        out["avg_corr_z"].fill_null(np.nan).to_numpy(), ((avg - mean) / std).to_numpy(), atol=1e-9
    )
    since = T0 + timedelta(hours=300)
    stored = out.filter(pl.col("open_time") < since).select(
        "open_time", "avg_corr", "absorption_ratio"
    )
    tail = basket_metrics(
        wide, spec, 24, 18, baseline_hours=72, since=since, baseline_history=stored
    )
    assert_frame_equal(tail, out.filter(pl.col("open_time") >= since), check_exact=True)
