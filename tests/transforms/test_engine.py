"""The all-pairs correlation engine, Spearman and EWMA against numpy/pandas/scipy references."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from hedgewatch.transforms.correlation import rolling_correlation_all, rolling_correlation_pairs
from hedgewatch.transforms.ewma import ANCHOR_HALFLIVES, ewma_correlation_pairs
from hedgewatch.transforms.returns import to_log_returns, to_wide
from hedgewatch.transforms.spearman import average_ranks, rolling_spearman_pairs

T0 = datetime(2022, 5, 1, tzinfo=UTC)
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def wide_frame(values: np.ndarray, start: datetime = T0) -> pl.DataFrame:
    """Columns c0.. of a (hours, n) array on a contiguous grid; NaN becomes null."""
    opens = [start + timedelta(hours=i) for i in range(values.shape[0])]
    cols = {f"c{i}": values[:, i] for i in range(values.shape[1])}
    return pl.DataFrame({"open_time": opens, **cols}).with_columns(
        pl.col(c).fill_nan(None) for c in cols
    )


def factor_returns(rng: np.random.Generator, hours: int, n: int, gaps: float) -> np.ndarray:
    market = rng.normal(0, 0.01, (hours, 1))
    values = rng.uniform(0, 1, n) * market + rng.normal(0, 0.01, (hours, n))
    values[rng.random((hours, n)) < gaps] = np.nan
    return values


def as_array(series: pl.Series) -> np.ndarray:
    return series.cast(pl.Float64).fill_null(np.nan).to_numpy()


def windows(values: np.ndarray, window: int) -> list[np.ndarray]:
    return [values[max(0, t - window + 1) : t + 1] for t in range(len(values))]


@settings(max_examples=12, deadline=None)
@given(seed=SEEDS, window=st.integers(4, 40), gaps=st.sampled_from([0.0, 0.05, 0.3]))
def test_all_pairs_equal_per_window_corrcoef_on_data_with_gaps(
    seed: int, window: int, gaps: float
) -> None:
    # From four observations on. With two or three a correlation is (nearly) always ±1 and
    # rounding in the cancelling sums reaches ~1e-8; the product asks for far more (min_coverage).
    rng = np.random.default_rng(seed)
    values = factor_returns(rng, 100, 4, gaps) + rng.choice([0.0, 50.0, 1000.0])
    min_obs = max(4, window // 2)
    out = rolling_correlation_all(wide_frame(values), [f"c{i}" for i in range(4)], window, min_obs)
    for p, (i, j) in enumerate(combinations(range(4), 2)):
        for t, rows in enumerate(windows(values, window)):
            both = ~np.isnan(rows[:, i]) & ~np.isnan(rows[:, j])
            assert out.n_obs[t, p] == both.sum()
            x, y = rows[both, i], rows[both, j]
            moving = both.sum() >= min_obs and x.std() > 1e-12 and y.std() > 1e-12
            expected = np.corrcoef(x, y)[0, 1] if moving else np.nan
            np.testing.assert_allclose(out.corr[t, p], expected, rtol=0, atol=1e-9)


def test_all_pairs_equal_pandas_rolling_corr_matrices() -> None:
    rng = np.random.default_rng(3)
    values = factor_returns(rng, 400, 6, 0.0)
    names = [f"c{i}" for i in range(6)]
    out = rolling_correlation_all(wide_frame(values), names, 48, 36)
    expected = pd.DataFrame(values, columns=names).rolling(48, min_periods=36).corr()
    cube = expected.to_numpy().reshape(400, 6, 6)
    iu, ju = np.triu_indices(6, 1)
    np.testing.assert_allclose(out.corr, cube[:, iu, ju], rtol=0, atol=1e-9, equal_nan=True)
    full = out.matrices()[47:]  # pandas leaves the diagonal NaN below min_periods
    np.testing.assert_allclose(full, cube[47:], rtol=0, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, window=st.integers(3, 30), cut=st.integers(1, 119))
def test_a_value_depends_only_on_hours_up_to_its_own(seed: int, window: int, cut: int) -> None:
    rng = np.random.default_rng(seed)
    values = factor_returns(rng, 120, 4, 0.1)
    names = [f"c{i}" for i in range(4)]
    full = rolling_correlation_all(wide_frame(values), names, window, 2)
    early = rolling_correlation_all(wide_frame(values[:cut]), names, window, 2)
    # Bit for bit: an hourly run computing hour t before hour t+1 exists stores what a recompute
    # with all hours would.
    np.testing.assert_array_equal(early.corr, full.corr[:cut])
    np.testing.assert_array_equal(early.n_obs, full.n_obs[:cut])


@settings(max_examples=25, deadline=None)
@given(
    seed=SEEDS,
    window=st.integers(2, 30),
    batch=st.integers(2, 40),
    gaps=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_chunks_computed_together_give_the_bits_of_one_at_a_time(
    seed: int, window: int, batch: int, gaps: float
) -> None:
    # Short windows compute many chunks per numpy call; a value must not depend on which chunks
    # shared its call (that depends on the range asked for), nor on whether its pair had
    # different gaps in another chunk of the batch.
    rng = np.random.default_rng(seed)
    values = factor_returns(rng, 150, 5, gaps)
    values[rng.integers(0, 150) :, rng.integers(0, 5)] = np.nan  # a member stops trading
    names = [f"c{i}" for i in range(5)]
    one = rolling_correlation_all(wide_frame(values), names, window, 2, batch_chunks=1)
    many = rolling_correlation_all(wide_frame(values), names, window, 2, batch_chunks=batch)
    default = rolling_correlation_all(wide_frame(values), names, window, 2)
    for out in (many, default):
        np.testing.assert_array_equal(out.corr, one.corr)
        np.testing.assert_array_equal(out.n_obs, one.n_obs)
    assert np.isfinite(one.corr).any()


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, window=st.integers(3, 30), log_scale=st.floats(-8.0, 5.0))
def test_all_pairs_bounded_symmetric_and_scale_free(
    seed: int, window: int, log_scale: float
) -> None:
    rng = np.random.default_rng(seed)
    hours = 100
    prices = np.exp(np.cumsum(factor_returns(rng, hours, 3, 0.0), axis=0))
    opens = [T0 + timedelta(hours=h) for h in range(hours)]

    def wide(scale: float) -> pl.DataFrame:
        candles = pl.DataFrame(
            {
                "instrument": [name for name in "abc" for _ in range(hours)],
                "open_time": opens * 3,
                "close": np.concatenate([prices[:, 0] * scale, prices[:, 1], prices[:, 2]]),
            }
        )
        return to_wide(to_log_returns(candles), list("abc"))

    base = rolling_correlation_pairs(wide(1.0), [("a", "b"), ("b", "c")], window, 3)
    flipped = rolling_correlation_pairs(wide(1.0), [("b", "a"), ("c", "b")], window, 3)
    scaled = rolling_correlation_pairs(wide(10.0**log_scale), [("a", "b"), ("b", "c")], window, 3)
    np.testing.assert_array_equal(as_array(base["corr"]), as_array(flipped["corr"]))
    values = base["corr"].drop_nulls()
    assert values.is_between(-1.0, 1.0).all()
    np.testing.assert_allclose(as_array(scaled["corr"]), as_array(base["corr"]), atol=1e-9)


def test_near_constant_legs_give_null_in_every_variant() -> None:
    rng = np.random.default_rng(8)
    hours = 120
    pegged = 1.0 + 1e-15 * rng.standard_normal(hours)  # a stablecoin at its peg, rounding noise
    moving = np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    tiny = 1e-8 * np.exp(np.cumsum(rng.normal(0, 0.02, hours)))  # old LUNA, SHIB: tiny prices
    candles = pl.DataFrame(
        {
            "instrument": [n for n in ("peg", "btc", "shib") for _ in range(hours)],
            "open_time": [T0 + timedelta(hours=h) for h in range(hours)] * 3,
            "close": np.concatenate([pegged, moving * 1e5, tiny]),
        }
    )
    wide = to_wide(to_log_returns(candles), ["peg", "btc", "shib"])
    pairs = [("peg", "btc"), ("shib", "btc")]
    pearson = rolling_correlation_pairs(wide, pairs, 24, 12)
    ranks = rolling_spearman_pairs(wide, pairs, 24, 12)
    ewma = ewma_correlation_pairs(wide, pairs, 6, 12)
    for frame in (pearson, ranks, ewma):
        assert frame.filter(pl.col("a") == "peg")["corr"].null_count() == hours - 1
        assert frame.filter(pl.col("a") == "shib")["corr"].drop_nulls().len() > 50


def test_average_ranks_equal_scipy_rankdata_with_ties() -> None:
    from scipy.stats import rankdata

    rng = np.random.default_rng(2)
    values = rng.integers(0, 5, (20, 12)).astype(float)
    np.testing.assert_array_equal(average_ranks(values), rankdata(values, axis=1))


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, window=st.integers(4, 40), gaps=st.sampled_from([0.0, 0.2]))
def test_spearman_equals_scipy_per_window(seed: int, window: int, gaps: float) -> None:
    rng = np.random.default_rng(seed)
    values = factor_returns(rng, 90, 2, gaps)
    values[::7, 0] = 0.0  # ties, as flat hours of a quiet market give
    values[::5, 1] = 0.0
    out = rolling_spearman_pairs(wide_frame(values), [("c0", "c1")], window, 4)
    got, n_obs = as_array(out["corr"]), out["n_obs"].to_numpy()
    for t, rows in enumerate(windows(values, window)):
        both = ~np.isnan(rows[:, 0]) & ~np.isnan(rows[:, 1])
        assert n_obs[t] == both.sum()
        if both.sum() < 4:
            assert np.isnan(got[t])
            continue
        expected = spearmanr(rows[both, 0], rows[both, 1]).statistic
        np.testing.assert_allclose(got[t], expected, rtol=0, atol=1e-9, equal_nan=True)


@settings(max_examples=8, deadline=None)
@given(seed=SEEDS, halflife=st.integers(1, 6), gaps=st.sampled_from([0.0, 0.15]))
def test_ewma_equals_pandas_ewm_corr_from_the_anchor(seed: int, halflife: int, gaps: float) -> None:
    rng = np.random.default_rng(seed)
    span = ANCHOR_HALFLIVES * halflife
    values = factor_returns(rng, 3 * span, 2, gaps)
    out = ewma_correlation_pairs(wide_frame(values), [("c0", "c1")], halflife, 3)
    got = as_array(out["corr"])
    both = ~np.isnan(values[:, 0]) & ~np.isnan(values[:, 1])
    x = pd.Series(np.where(both, values[:, 0], np.nan))
    y = pd.Series(np.where(both, values[:, 1], np.nan))
    start_hour = int(T0.timestamp()) // 3600
    for t in range(len(values)):
        anchor = ((start_hour + t) // span - 1) * span - start_hour
        lo = max(0, anchor)
        ref = x[lo : t + 1].ewm(halflife=halflife).corr(y[lo : t + 1]).to_numpy()[-1]
        if both[lo : t + 1].sum() < 3 or not np.isfinite(ref):
            continue
        np.testing.assert_allclose(got[t], ref, rtol=0, atol=1e-9)


def test_rejects_a_pair_of_one_column() -> None:
    with pytest.raises(ValueError, match="two different"):
        rolling_correlation_pairs(wide_frame(np.zeros((5, 2))), [("c0", "c0")], 4, 2)


def test_correlation_matrix_at_an_hour_equals_corrcoef() -> None:
    from hedgewatch.transforms.correlation import correlation_matrix

    rng = np.random.default_rng(4)
    values = factor_returns(rng, 200, 4, 0.0)
    wide = wide_frame(values)
    names = [f"c{i}" for i in range(4)]
    at = T0 + timedelta(hours=150)
    matrix = correlation_matrix(wide, names, 48, 36, at)
    assert matrix["instrument"].to_list() == names
    expected = np.corrcoef(values[103:151].T)
    np.testing.assert_allclose(matrix.select(names).to_numpy(), expected, atol=1e-12)
    with pytest.raises(ValueError, match="no row"):
        correlation_matrix(wide, names, 48, 36, T0 + timedelta(days=30))
