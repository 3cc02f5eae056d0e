"""Fisher z intervals and tests for Pearson correlations: tell a real break from sampling noise."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]

Z_95 = 1.96  # two-sided 95 %


def fisher_ci(r: float | None, n: int | None, z: float = Z_95) -> tuple[float | None, float | None]:
    """Confidence interval (lo, hi) of a correlation r from n observations; (None, None) if n <= 3.

    tanh(atanh(r) -+ z / sqrt(n - 3)); |r| = 1 gives the degenerate interval (r, r).
    """
    if r is None or n is None or n <= 3 or math.isnan(r):
        return None, None
    r = max(-1.0, min(1.0, r))
    if abs(r) == 1.0:
        return r, r
    centre, half = math.atanh(r), z / math.sqrt(n - 3)
    return math.tanh(centre - half), math.tanh(centre + half)


def fisher_z_test(
    r1: float | None, n1: int | None, r2: float | None, n2: int | None
) -> float | None:
    """z statistic of r1 - r2 for two independent samples; None if either n <= 3 or |r| = 1."""
    if r1 is None or r2 is None or n1 is None or n2 is None or n1 <= 3 or n2 <= 3:
        return None
    if math.isnan(r1) or math.isnan(r2) or abs(r1) >= 1.0 or abs(r2) >= 1.0:
        return None
    return (math.atanh(r1) - math.atanh(r2)) / math.sqrt(1.0 / (n1 - 3) + 1.0 / (n2 - 3))


def _expr(value: str | pl.Expr) -> pl.Expr:
    return pl.col(value) if isinstance(value, str) else value


def fisher_ci_exprs(r: str | pl.Expr, n: str | pl.Expr, z: float = Z_95) -> tuple[pl.Expr, pl.Expr]:
    """Polars expressions (lo, hi) of `fisher_ci`; null where r is null or n <= 3.

    Name them with `.alias`, e.g. `df.with_columns(lo.alias("corr_lo"), hi.alias("corr_hi"))`.
    """
    r_e = _expr(r).clip(-1.0, 1.0)
    n_e = _expr(n)
    # atanh(+-1) is +-inf and tanh(+-inf) is +-1, so |r| = 1 needs no special case here.
    centre = r_e.arctanh()
    half = z / (n_e.cast(pl.Float64) - 3.0).sqrt()
    valid = (n_e > 3) & r_e.is_not_null() & r_e.is_not_nan()
    lo = pl.when(valid).then((centre - half).tanh())
    hi = pl.when(valid).then((centre + half).tanh())
    return lo, hi


def fisher_z_test_expr(
    r1: str | pl.Expr, n1: str | pl.Expr, r2: str | pl.Expr, n2: str | pl.Expr
) -> pl.Expr:
    """Polars expression of `fisher_z_test`; null where either n <= 3 or |r| = 1."""
    r1_e, r2_e, n1_e, n2_e = _expr(r1), _expr(r2), _expr(n1), _expr(n2)
    se = (1.0 / (n1_e.cast(pl.Float64) - 3.0) + 1.0 / (n2_e.cast(pl.Float64) - 3.0)).sqrt()
    valid = (n1_e > 3) & (n2_e > 3) & (r1_e.abs() < 1.0) & (r2_e.abs() < 1.0)
    return pl.when(valid).then((r1_e.arctanh() - r2_e.arctanh()) / se)


def fisher_ci_arrays(
    r: FloatArray, n: npt.ArrayLike, z: float = Z_95
) -> tuple[FloatArray, FloatArray]:
    """Vectorised `fisher_ci`: NaN where r is NaN or n <= 3."""
    n_f = np.asarray(n, dtype=np.float64)
    valid = ~np.isnan(r) & (n_f > 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.arctanh(np.clip(r, -1.0, 1.0))
        half = z / np.sqrt(n_f - 3.0)
        lo, hi = np.tanh(centre - half), np.tanh(centre + half)
    return np.where(valid, lo, np.nan), np.where(valid, hi, np.nan)


def fisher_z_arrays(
    r1: FloatArray, n1: npt.ArrayLike, r2: FloatArray, n2: npt.ArrayLike
) -> FloatArray:
    """Vectorised `fisher_z_test`: NaN where either n <= 3, an r is NaN or |r| = 1."""
    n1_f, n2_f = np.asarray(n1, dtype=np.float64), np.asarray(n2, dtype=np.float64)
    valid = (n1_f > 3) & (n2_f > 3) & (np.abs(r1) < 1.0) & (np.abs(r2) < 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = (np.arctanh(r1) - np.arctanh(r2)) / np.sqrt(1.0 / (n1_f - 3) + 1.0 / (n2_f - 3))
    return np.where(valid, stat, np.nan)
