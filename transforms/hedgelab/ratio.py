"""Rolling minimum-variance hedge ratio on simple hourly returns, by running sums."""

from __future__ import annotations

import numpy as np

from .costs import FloatArray, _window_sum


def simple_returns(close: FloatArray) -> FloatArray:
    """close[t] / close[t-1] - 1; NaN at t = 0 and wherever either close is missing."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = close[1:] / close[:-1] - 1.0
    out[~np.isfinite(out)] = np.nan
    return out


def min_var_ratio(
    base_returns: FloatArray,
    hedge_returns: FloatArray,
    sign: int,
    window_hours: int,
    min_obs: int,
) -> FloatArray:
    """The ratio k >= 0 minimising Var(r_b + sign * k * r_h) over the `window_hours` returns ending
    at each hour (inclusive), over the hours where both returns exist.

    sign = base_side * hedge_side. k = -sign * Cov(r_b, r_h) / Var(r_h), the OLS slope of r_b on
    r_h turned into a hedge size; clipped at 0 (a hedge that would have to flip sides holds
    nothing). NaN with fewer than `min_obs` joint returns or a hedge leg that did not move.
    """
    if window_hours < 2 or not 2 <= min_obs <= window_hours:
        raise ValueError(f"need 2 <= min_obs <= window_hours, got {min_obs} and {window_hours}")
    rb = np.asarray(base_returns, dtype=np.float64)
    rh = np.asarray(hedge_returns, dtype=np.float64)
    ok = np.isfinite(rb) & np.isfinite(rh)
    x = np.where(ok, rh, 0.0)
    y = np.where(ok, rb, 0.0)
    n = _window_sum(ok.astype(np.float64), window_hours)
    sx = _window_sum(x, window_hours)
    sy = _window_sum(y, window_hours)
    sxx = _window_sum(x * x, window_hours)
    sxy = _window_sum(x * y, window_hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_h = sxx - sx * sx / n
        cov = sxy - sx * sy / n
        k = -sign * cov / var_h
    # Relative floor: a hedge leg whose window variance is rounding noise has no slope.
    scale = np.maximum(sxx, 1e-300)
    good = (n >= min_obs) & (var_h > 1e-12 * scale) & (var_h > 0)
    return np.where(good, np.maximum(k, 0.0), np.nan)
