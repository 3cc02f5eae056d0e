"""What a trade costs: venue fees, square-root market impact and perpetual funding carry.

All amounts are in the quote currency of the legs (USDT for the Binance instruments).

Slippage follows the square-root impact law (Almgren et al. 2005; Tóth et al. 2011):

    slippage / traded notional = Y * sigma_hour * sqrt(min(1, notional / quote_volume_hour))

with sigma_hour the leg's trailing hourly volatility (simple returns) and quote_volume_hour the
quote-currency volume of the hour the trade is sized against. Because sigma scales with
sqrt(horizon) and volume with the horizon, the hourly form equals the usual daily one
(sigma_day * sqrt(Q / V_day)). The coefficient Y is of order one in the empirical studies;
`DEFAULT_IMPACT_COEFFICIENT` = 1.0. The share of volume is capped at 1: an hour without volume
(a halted market) charges the full-share impact rather than an infinite one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Liquidity = Literal["taker", "maker"]

DEFAULT_IMPACT_COEFFICIENT = 1.0
DEFAULT_VOL_HOURS = 24
BPS = 1e-4


@dataclass(frozen=True)
class FeeSchedule:
    """A venue's (or one instrument's) trading fees, in basis points of traded notional."""

    maker_bps: float
    taker_bps: float

    def __post_init__(self) -> None:
        for name in ("maker_bps", "taker_bps"):
            value = getattr(self, name)
            # Maker rebates are negative fees; anything beyond 1 % is a typo, not a schedule.
            if not np.isfinite(value) or not -100.0 <= value <= 100.0:
                raise ValueError(f"{name} must be a number of basis points in [-100, 100]")

    def bps(self, liquidity: Liquidity) -> float:
        return self.taker_bps if liquidity == "taker" else self.maker_bps


@dataclass(frozen=True)
class LegCosts:
    """How a leg's trades and holdings are charged."""

    fees: FeeSchedule
    perp: bool = False  # pays or receives funding on its position


@dataclass(frozen=True)
class CostModel:
    """Fees and impact for the trades of a hedge leg, and the liquidity they take."""

    hedge: LegCosts
    base: LegCosts
    impact_coefficient: float = DEFAULT_IMPACT_COEFFICIENT
    vol_hours: int = DEFAULT_VOL_HOURS
    liquidity: Liquidity = "taker"

    def __post_init__(self) -> None:
        if not np.isfinite(self.impact_coefficient) or self.impact_coefficient < 0:
            raise ValueError("impact_coefficient must be finite and >= 0")
        if self.vol_hours < 2:
            raise ValueError("vol_hours must be >= 2")


def impact_fraction(
    notional: FloatArray | float,
    quote_volume: FloatArray | float,
    sigma: FloatArray | float,
    coefficient: float,
) -> FloatArray:
    """Slippage as a fraction of traded notional: coefficient * sigma * sqrt(share of volume).

    A missing or non-positive volume counts as share 1; a missing sigma as 0 (no estimate yet).
    """
    notional = np.abs(np.asarray(notional, dtype=np.float64))
    volume = np.asarray(quote_volume, dtype=np.float64)
    sig = np.nan_to_num(np.asarray(sigma, dtype=np.float64), nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(np.isfinite(volume) & (volume > 0), notional / volume, 1.0)
    share = np.minimum(np.where(notional > 0, share, 0.0), 1.0)
    return np.asarray(coefficient * sig * np.sqrt(share), dtype=np.float64)


def trailing_vol(close: FloatArray, hours: int) -> FloatArray:
    """Standard deviation (n - 1) of the simple hourly returns over the `hours` ending at each
    hour (inclusive); NaN until `hours` returns are available. Missing returns count as absent."""
    close = np.asarray(close, dtype=np.float64)
    ret = np.full(close.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ret[1:] = close[1:] / close[:-1] - 1.0
    ok = np.isfinite(ret)
    x = np.where(ok, ret, 0.0)
    s1 = _window_sum(x, hours)
    s2 = _window_sum(x * x, hours)
    n = _window_sum(ok.astype(np.float64), hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s1 * s1 / n) / (n - 1.0)
    out = np.sqrt(np.maximum(var, 0.0))
    return np.where(n >= max(2, hours // 2), out, np.nan)


def _window_sum(x: FloatArray, hours: int) -> FloatArray:
    """Sum of x over the `hours` values ending at each index (fewer at the start)."""
    c = np.concatenate(([0.0], np.cumsum(x)))
    idx = np.arange(1, len(x) + 1)
    return np.asarray(c[idx] - c[np.maximum(idx - hours, 0)], dtype=np.float64)


def funding_payment(side: int, units: float, price: float, rate: float) -> float:
    """What a position pays at one funding settlement (negative: it receives).

    A long pays a positive rate on its notional, a short receives it.
    """
    return float(side * units * price * rate)
