from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hedgewatch.transforms.correlation import (
    history_start,
    rolling_correlation,
    rolling_correlation_pairs,
)
from hedgewatch.transforms.returns import to_log_returns, to_wide

T0 = datetime(2022, 5, 1, tzinfo=UTC)
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def wide_frame(columns: dict[str, np.ndarray], start: datetime = T0) -> pl.DataFrame:
    """A wide frame on a contiguous hourly grid; NaN in the arrays becomes null."""
    n = len(next(iter(columns.values())))
    opens = [start + timedelta(hours=i) for i in range(n)]
    frame = pl.DataFrame({"open_time": opens, **columns})
    return frame.with_columns(pl.col(name).fill_nan(None) for name in columns)


def window_slices(n_rows: int, window: int) -> list[slice]:
    return [slice(max(0, i - window + 1), i + 1) for i in range(n_rows)]


def reference_corr(
    x: np.ndarray, y: np.ndarray, window: int, min_obs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of each trailing window by np.corrcoef on its pairwise-complete rows."""
    corr, n_obs = [], []
    for w in window_slices(len(x), window):
        xs, ys = x[w], y[w]
        both = np.isfinite(xs) & np.isfinite(ys)
        n_obs.append(int(both.sum()))
        corr.append(np.corrcoef(xs[both], ys[both])[0, 1] if both.sum() >= min_obs else np.nan)
    return np.array(corr), np.array(n_obs)


def random_returns(
    rng: np.random.Generator, n: int, *, gap_share: float = 0.0, scale: float = 0.01
) -> np.ndarray:
    values = rng.normal(0.0, scale, n)
    values[rng.random(n) < gap_share] = np.nan
    return values


def as_array(series: pl.Series) -> np.ndarray:
    """Float array with null -> NaN."""
    return series.cast(pl.Float64).fill_null(np.nan).to_numpy()


def correlated(rng: np.random.Generator, n: int, rho: float, gap_share: float) -> pl.DataFrame:
    x = random_returns(rng, n)
    y = rho * x + np.sqrt(1 - rho**2) * random_returns(rng, n)
    x[rng.random(n) < gap_share] = np.nan
    y[rng.random(n) < gap_share] = np.nan
    return wide_frame({"x": x, "y": y})


@pytest.mark.parametrize(("window", "min_obs"), [(6, 3), (24, 12), (168, 100)])
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_equals_exact_per_window_reference_on_data_with_gaps(
    window: int, min_obs: int, offset: float
) -> None:
    rng = np.random.default_rng(window)
    wide = correlated(rng, 1500, 0.6, gap_share=0.15)
    # An offset far above the spread breaks naive cumulative sums; centring must absorb it.
    wide = wide.with_columns(pl.col("x") + offset)
    out = rolling_correlation(wide, "x", "y", window, min_obs)
    expected, n_obs = reference_corr(as_array(wide["x"]), as_array(wide["y"]), window, min_obs)
    assert out["open_time"].to_list() == wide["open_time"].to_list()
    np.testing.assert_array_equal(out["n_obs"].to_numpy(), n_obs)
    np.testing.assert_allclose(as_array(out["corr"]), expected, rtol=0, atol=1e-9)


def test_equals_pandas_rolling_corr_on_gap_free_data() -> None:
    rng = np.random.default_rng(7)
    wide = correlated(rng, 2000, -0.4, gap_share=0.0)
    out = rolling_correlation(wide, "x", "y", 72, 30)
    frame = wide.to_pandas()
    expected = frame["x"].rolling(72, min_periods=30).corr(frame["y"]).to_numpy()
    np.testing.assert_allclose(as_array(out["corr"]), expected, rtol=0, atol=1e-9)


def test_nulls_below_min_obs_and_counts_pairwise_complete_hours() -> None:
    nan = np.nan
    wide = wide_frame(
        {
            "x": np.array([1.0, 2.0, nan, 4.0, 3.0, 5.0, 1.0]),
            "y": np.array([2.0, 4.0, 1.0, nan, 5.0, 9.0, 3.0]),
        }
    )
    out = rolling_correlation(wide, "x", "y", 4, 3)
    # Hours 2 and 3 miss one leg each, so no window of 4 hours holds 3 complete pairs until hour 6.
    assert out["n_obs"].to_list() == [1, 2, 2, 2, 2, 2, 3]
    assert out["corr"].to_list()[:6] == [None] * 6
    assert out["corr"][6] == pytest.approx(np.corrcoef([3.0, 5.0, 1.0], [5.0, 9.0, 3.0])[0, 1])


def test_window_is_measured_in_hours_not_rows() -> None:
    full = wide_frame({"x": np.arange(10.0) ** 2, "y": np.sin(np.arange(10.0))})
    absent = pl.col("open_time").dt.hour().is_in([3, 4, 5])
    sparse = full.filter(absent.not_())
    # Leaving hours out of the frame must equal keeping them as nulls.
    nulled = full.with_columns(pl.when(absent.not_()).then(pl.col(c)) for c in ("x", "y"))
    out = rolling_correlation(sparse, "x", "y", 4, 2)
    expected = rolling_correlation(nulled, "x", "y", 4, 2).join(
        sparse.select("open_time"), on="open_time"
    )
    assert_frame_equal(out, expected)
    # Hour 6's window (hours 3..6) holds hour 6 only; a window of 4 rows would hold 4.
    assert out["n_obs"].to_list() == [1, 2, 3, 1, 2, 3, 4]


def test_constant_stretch_after_volatile_history_gives_null_not_garbage() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 0.05, 200), np.zeros(100)])
    y = random_returns(rng, 300)
    out = rolling_correlation(wide_frame({"x": x, "y": y}), "x", "y", 24, 12)
    tail = out.filter(pl.col("open_time") >= T0 + timedelta(hours=223))
    assert tail["corr"].null_count() == tail.height
    assert tail["n_obs"].to_list() == [24] * tail.height


def test_pegged_stablecoin_prices_give_null_correlation() -> None:
    closes = [1.0] * 30
    candles = pl.DataFrame(
        {
            "instrument": ["USDC"] * 30 + ["BTC"] * 30,
            "open_time": [T0 + timedelta(hours=h) for h in range(30)] * 2,
            "close": closes + list(np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 30)))),
        }
    )
    wide = to_wide(to_log_returns(candles), ["USDC", "BTC"])
    out = rolling_correlation(wide, "USDC", "BTC", 24, 12)
    assert out["corr"].null_count() == out.height


def test_many_pairs_equal_one_call_per_pair() -> None:
    rng = np.random.default_rng(11)
    cols = {name: random_returns(rng, 400, gap_share=0.05) for name in "abcd"}
    # Same missing hours for c and d exercise the shared-mask path; a, b differ.
    cols["d"][np.isnan(cols["c"])] = np.nan
    cols["c"][np.isnan(cols["d"])] = np.nan
    wide = wide_frame(cols)
    pairs = [("a", "b"), ("c", "d"), ("d", "a"), ("b", "c")]
    out = rolling_correlation_pairs(wide, pairs, 24, 10)
    assert out.columns == ["a", "b", "open_time", "corr", "n_obs"]
    for a, b in pairs:
        one = rolling_correlation(wide, a, b, 24, 10)
        got = out.filter((pl.col("a") == a) & (pl.col("b") == b)).drop("a", "b")
        assert_frame_equal(got, one)


def test_rejects_impossible_windows_and_unknown_columns() -> None:
    wide = wide_frame({"x": np.zeros(5), "y": np.zeros(5)})
    with pytest.raises(ValueError, match="min_obs"):
        rolling_correlation(wide, "x", "y", 24, 1)
    with pytest.raises(ValueError, match="min_obs"):
        rolling_correlation(wide, "x", "y", 24, 25)
    with pytest.raises(ValueError, match="no column"):
        rolling_correlation(wide, "x", "z", 24, 2)


def test_empty_frame_gives_empty_result() -> None:
    wide = wide_frame({"x": np.zeros(5), "y": np.zeros(5)}).head(0)
    out = rolling_correlation(wide, "x", "y", 24, 2)
    assert out.is_empty()
    assert out.schema == pl.Schema(
        {"open_time": pl.Datetime("us", "UTC"), "corr": pl.Float64, "n_obs": pl.Int64}
    )


@settings(max_examples=30, deadline=None)
@given(
    seed=SEEDS,
    window=st.integers(min_value=2, max_value=60),
    since_offset=st.integers(min_value=-10, max_value=400),
    minutes=st.integers(min_value=0, max_value=59),
)
def test_tail_since_is_identical_to_the_full_computation(
    seed: int, window: int, since_offset: int, minutes: int
) -> None:
    rng = np.random.default_rng(seed)
    wide = correlated(rng, 300, 0.3, gap_share=0.2).with_columns(pl.col("y") * 1e-3 + 5.0)
    since = T0 + timedelta(hours=since_offset, minutes=minutes)
    min_obs = max(2, window // 2)
    full = rolling_correlation(wide, "x", "y", window, min_obs)
    tail = rolling_correlation(wide, "x", "y", window, min_obs, since=since)
    assert_frame_equal(tail, full.filter(pl.col("open_time") >= since), check_exact=True)
    # Loading only from history_start gives the same bits, so an hourly run can read a short tail.
    trimmed = wide.filter(pl.col("open_time") >= history_start(since, window))
    again = rolling_correlation(trimmed, "x", "y", window, min_obs, since=since)
    assert_frame_equal(again, tail, check_exact=True)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, window=st.integers(min_value=3, max_value=48), gaps=st.floats(0.0, 0.5))
def test_correlation_is_bounded_and_exactly_symmetric(seed: int, window: int, gaps: float) -> None:
    rng = np.random.default_rng(seed)
    wide = correlated(rng, 200, float(rng.uniform(-1, 1)), gap_share=gaps)
    ab = rolling_correlation(wide, "x", "y", window, 3)
    ba = rolling_correlation(wide, "y", "x", window, 3)
    assert_frame_equal(ab, ba, check_exact=True)
    values = ab["corr"].drop_nulls()
    assert values.is_between(-1.0, 1.0).all()


@settings(max_examples=40, deadline=None)
@given(
    seed=SEEDS,
    log_scale=st.floats(min_value=-8.0, max_value=5.0),
    window=st.integers(min_value=4, max_value=48),
)
def test_rescaling_a_price_series_leaves_correlation_unchanged(
    seed: int, log_scale: float, window: int
) -> None:
    rng = np.random.default_rng(seed)
    n = 150
    prices = np.exp(np.cumsum(rng.normal(0, 0.01, (2, n)), axis=1))
    opens = [T0 + timedelta(hours=h) for h in range(n)]

    def corr_for(scale: float) -> pl.DataFrame:
        candles = pl.DataFrame(
            {
                "instrument": ["a"] * n + ["b"] * n,
                "open_time": opens * 2,
                "close": np.concatenate([prices[0] * scale, prices[1]]),
            }
        )
        wide = to_wide(to_log_returns(candles), ["a", "b"])
        return rolling_correlation(wide, "a", "b", window, 3)

    base, scaled = corr_for(1.0), corr_for(10.0**log_scale)
    assert_frame_equal(scaled, base, check_exact=False, rel_tol=0, abs_tol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    seed=SEEDS,
    level=st.floats(min_value=1e-8, max_value=1e5),
    noise=st.sampled_from([0.0, 1e-15, 1e-14]),
)
def test_near_constant_price_gives_null(seed: int, level: float, noise: float) -> None:
    rng = np.random.default_rng(seed)
    n = 100
    flat = level * (1.0 + noise * rng.standard_normal(n))
    moving = np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    candles = pl.DataFrame(
        {
            "instrument": ["flat"] * n + ["moving"] * n,
            "open_time": [T0 + timedelta(hours=h) for h in range(n)] * 2,
            "close": np.concatenate([flat, moving]),
        }
    )
    wide = to_wide(to_log_returns(candles), ["flat", "moving"])
    out = rolling_correlation(wide, "flat", "moving", 24, 5)
    assert out["corr"].null_count() == out.height


def test_equals_pandas_on_a_frame_built_from_to_wide() -> None:
    rng = np.random.default_rng(5)
    n = 500
    opens = [T0 + timedelta(hours=h) for h in range(n)]
    candles = pl.DataFrame(
        {
            "instrument": ["a"] * n + ["b"] * n,
            "open_time": opens * 2,
            "close": np.exp(np.cumsum(rng.normal(0, 0.01, 2 * n))),
        }
    ).filter(pl.col("open_time") != T0 + timedelta(hours=100))
    wide = to_wide(to_log_returns(candles), ["a", "b"])
    frame = wide.to_pandas().set_index("open_time")
    expected = frame["a"].rolling(48, min_periods=40).corr(frame["b"])
    out = rolling_correlation(wide, "a", "b", 48, 40)
    np.testing.assert_allclose(as_array(out["corr"]), pd.Series(expected).to_numpy(), atol=1e-9)
