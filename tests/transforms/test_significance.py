from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgewatch.transforms.significance import (
    fisher_ci,
    fisher_ci_exprs,
    fisher_z_test,
    fisher_z_test_expr,
)


def test_interval_is_tanh_of_atanh_plus_minus_z_standard_errors() -> None:
    lo, hi = fisher_ci(0.5, 28, z=1.96)
    half = 1.96 / 5.0  # sqrt(28 - 3) = 5
    assert lo == pytest.approx(math.tanh(math.atanh(0.5) - half), abs=1e-15)
    assert hi == pytest.approx(math.tanh(math.atanh(0.5) + half), abs=1e-15)


def test_interval_is_null_with_three_observations_or_fewer_or_no_value() -> None:
    assert fisher_ci(0.5, 3) == (None, None)
    assert fisher_ci(0.5, 0) == (None, None)
    assert fisher_ci(None, 100) == (None, None)
    assert fisher_ci(0.5, None) == (None, None)
    assert fisher_ci(float("nan"), 100) == (None, None)


def test_perfect_correlation_has_a_degenerate_interval() -> None:
    assert fisher_ci(1.0, 10) == (1.0, 1.0)
    assert fisher_ci(-1.0, 10) == (-1.0, -1.0)


@settings(max_examples=60, deadline=None)
@given(r=st.floats(-0.999, 0.999), n=st.integers(4, 10_000))
def test_interval_contains_r_and_narrows_with_more_observations(r: float, n: int) -> None:
    lo, hi = fisher_ci(r, n)
    lo_more, hi_more = fisher_ci(r, n * 4)
    assert lo is not None and hi is not None and lo_more is not None and hi_more is not None
    assert -1.0 <= lo <= r <= hi <= 1.0
    assert hi_more - lo_more <= hi - lo


def test_expressions_match_the_scalar_helper_row_by_row() -> None:
    frame = pl.DataFrame(
        {"corr": [0.5, -0.9, None, 0.2, 1.0, 0.3], "n_obs": [28, 168, 50, 3, 10, None]}
    )
    lo, hi = fisher_ci_exprs("corr", "n_obs")
    out = frame.with_columns(lo.alias("lo"), hi.alias("hi"))
    for row in out.iter_rows(named=True):
        expected = fisher_ci(row["corr"], row["n_obs"])
        assert (row["lo"], row["hi"]) == pytest.approx(expected, abs=1e-15)


def test_z_test_separates_a_break_from_noise() -> None:
    # -0.9 -> -0.2 over a week of hours is a real break; -0.9 -> -0.88 is noise.
    assert fisher_z_test(-0.2, 168, -0.9, 168) == pytest.approx(
        (math.atanh(-0.2) - math.atanh(-0.9)) / math.sqrt(2 / 165)
    )
    z_break = fisher_z_test(-0.2, 168, -0.9, 168)
    z_noise = fisher_z_test(-0.88, 168, -0.9, 168)
    assert z_break is not None and z_break > 3
    assert z_noise is not None and abs(z_noise) < 1
    assert fisher_z_test(0.5, 3, 0.1, 100) is None
    assert fisher_z_test(1.0, 30, 0.1, 100) is None


def test_z_test_expression_matches_the_scalar_helper() -> None:
    frame = pl.DataFrame(
        {"r1": [-0.2, 0.5, 1.0], "n1": [168, 3, 30], "r2": [-0.9, 0.1, 0.1], "n2": [168, 99, 99]}
    )
    out = frame.select(fisher_z_test_expr("r1", "n1", "r2", "n2").alias("z"))["z"].to_list()
    assert out[0] == pytest.approx(fisher_z_test(-0.2, 168, -0.9, 168), abs=1e-14)
    assert out[1:] == [None, None]
