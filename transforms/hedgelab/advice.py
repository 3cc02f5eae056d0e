"""The trade that restores a hedge's minimum-variance ratio, what it costs and what it removes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from .costs import BPS, FloatArray, LegCosts, Liquidity, impact_fraction
from .scenarios import Position

HOURS_PER_DAY = 24


@dataclass(frozen=True)
class Moments:
    """Hourly simple-return moments of the two legs over a window (sample, n - 1)."""

    var_base: float
    var_hedge: float
    cov: float
    n_obs: int


def moments(base_returns: FloatArray, hedge_returns: FloatArray) -> Moments:
    """Moments over the hours where both legs have a return."""
    rb = np.asarray(base_returns, dtype=np.float64)
    rh = np.asarray(hedge_returns, dtype=np.float64)
    ok = np.isfinite(rb) & np.isfinite(rh)
    n = int(ok.sum())
    if n < 2:
        return Moments(float("nan"), float("nan"), float("nan"), n)
    c = np.cov(rb[ok], rh[ok])
    return Moments(float(c[0, 0]), float(c[1, 1]), float(c[0, 1]), n)


def book_variance(position: Position, hedge_units: float, m: Moments) -> float:
    """Hourly variance (currency^2) of the book's P&L with `hedge_units` in the hedge leg."""
    nb = position.base_notional
    nh = hedge_units * position.hedge_price
    sign = position.base_side * position.hedge_side
    return max(nb * nb * m.var_base + nh * nh * m.var_hedge + 2.0 * sign * nb * nh * m.cov, 0.0)


@dataclass(frozen=True)
class RebalanceAdvice:
    """Trade `units` of the hedge leg (`side` buy/sell) to move from held_ratio to target_ratio.

    cost = fee + slippage + funding (funding: the one settlement after the trade on the units
    added, negative when the change receives it). Variances are of the book's daily P&L
    (24 x the hourly variance, currency^2); vol_* their square roots.
    """

    hedge: str
    side: Literal["buy", "sell"]
    units: float
    notional: float
    price: float
    held_ratio: float
    target_ratio: float
    fee: float
    slippage: float
    funding: float
    cost: float
    variance_before: float
    variance_after: float
    variance_removed: float
    variance_removed_pct: float
    vol_before: float
    vol_after: float

    def as_dict(self) -> dict[str, object]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def rebalance_advice(
    position: Position,
    target_ratio: float,
    m: Moments,
    costs: LegCosts,
    *,
    impact_coefficient: float,
    quote_volume: float,
    sigma: float,
    next_funding_rate: float = 0.0,
    liquidity: Liquidity = "taker",
) -> RebalanceAdvice | None:
    """The trade to `target_ratio` (hedge notional / base notional); None if nothing to trade.

    `quote_volume` and `sigma` are the hedge leg's last-hour volume (quote currency) and trailing
    hourly volatility, for the square-root impact (see `costs`).
    """
    if not math.isfinite(target_ratio) or target_ratio < 0:
        return None
    target_units = target_ratio * position.base_notional / position.hedge_price
    delta = target_units - position.hedge_units
    if delta == 0:
        return None
    grows = delta > 0
    # Growing a long hedge buys; growing a short hedge sells (and the reverse to shrink it).
    buys = grows == (position.hedge_side == 1)
    notional = abs(delta) * position.hedge_price
    fee = notional * costs.fees.bps(liquidity) * BPS
    slip = notional * float(impact_fraction(notional, quote_volume, sigma, impact_coefficient))
    rate = next_funding_rate if costs.perp and math.isfinite(next_funding_rate) else 0.0
    funding = position.hedge_side * delta * position.hedge_price * rate
    before = HOURS_PER_DAY * book_variance(position, position.hedge_units, m)
    after = HOURS_PER_DAY * book_variance(position, target_units, m)
    removed = before - after
    return RebalanceAdvice(
        hedge=position.name,
        side="buy" if buys else "sell",
        units=abs(delta),
        notional=notional,
        price=position.hedge_price,
        held_ratio=position.ratio,
        target_ratio=target_ratio,
        fee=fee,
        slippage=slip,
        funding=funding,
        cost=fee + slip + funding,
        variance_before=before,
        variance_after=after,
        variance_removed=removed,
        variance_removed_pct=removed / before if before > 0 else float("nan"),
        vol_before=math.sqrt(before),
        vol_after=math.sqrt(after),
    )
