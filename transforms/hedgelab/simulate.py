"""Hour-by-hour simulation of a hedged book under a rebalancing policy, with costs.

The book holds `base_units` of the base leg for the whole run (the position the user keeps) and a
hedge leg whose size the policy sets. Conventions, shared with the reference loop in
`reference.py`:

- Arrays are on one hourly grid (index t = the candle of hour t); closes are forward-filled for
  valuation, so a missing hour moves nothing and its move lands when prices return. A hedge trade
  only happens at the close of an hour where both legs have a candle ("tradeable").
- The ratio is in notional: hedge notional / base notional (what the min-variance ratio on returns
  gives). A trade at the close of hour t to ratio k buys or sells hedge units so that
  units * hedge_close[t] = k * base_units * base_close[t].
- The first tradeable hour t0 opens the hedge (charged like any trade); P&L runs from t0 + 1.
- P&L of hour t = base_side * base_units * (base_close[t] - base_close[t-1])
  + hedge_side * units_held_during_t * (hedge_close[t] - hedge_close[t-1])
  - funding settled at the close of t on each perp leg (on the units held during t)
  - fees and slippage of the trade at the close of t.
- The target is the rolling minimum-variance ratio (`ratio.min_var_ratio`) known at each close;
  where it cannot be estimated yet, a policy that needs it holds the configured ratio.

Policies: `static` opens at the configured ratio and never trades again; `cadence` trades to the
target every `cadence_hours`; `band` checks every tradeable hour and trades to the target only when
the held ratio has drifted from it by more than `band` times the target, at least `min_gap_hours`
after its previous trade (without the gap, a band on a coin in free fall trades every hour: its
notional halves, the held ratio doubles, and every trade pays impact into a one-way market).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from .costs import BPS, CostModel, FloatArray, impact_fraction, trailing_vol
from .ratio import min_var_ratio, simple_returns

IntArray = npt.NDArray[np.int64]
PolicyKind = Literal["static", "cadence", "band"]
POLICY_KINDS: tuple[PolicyKind, ...] = ("static", "cadence", "band")


@dataclass(frozen=True)
class Policy:
    """A rebalancing rule. `window_hours` / `min_coverage` size the min-variance estimate."""

    kind: PolicyKind
    window_hours: int = 168
    cadence_hours: int = 24
    band: float = 0.25
    min_gap_hours: int = 8
    min_coverage: float = 0.75

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy must be one of {', '.join(POLICY_KINDS)}, got {self.kind!r}")
        if self.window_hours < 2:
            raise ValueError("window_hours must be >= 2")
        if self.cadence_hours < 1:
            raise ValueError("cadence_hours must be >= 1")
        if not math.isfinite(self.band) or self.band < 0:
            raise ValueError("band must be finite and >= 0")
        if self.min_gap_hours < 1:
            raise ValueError("min_gap_hours must be >= 1")
        if not 0 < self.min_coverage <= 1:
            raise ValueError("min_coverage must be in (0, 1]")

    @property
    def min_obs(self) -> int:
        return max(2, math.ceil(self.window_hours * self.min_coverage))

    @property
    def label(self) -> str:
        if self.kind == "cadence":
            return f"cadence {self.cadence_hours}h"
        if self.kind == "band":
            return f"band {self.band:.0%}"
        return "static"


@dataclass(frozen=True)
class HedgeBook:
    """Base leg held at `base_units`; the hedge opens at `held_ratio` (hedge / base notional)."""

    name: str
    base_side: int
    hedge_side: int
    base_units: float
    held_ratio: float

    def __post_init__(self) -> None:
        if self.base_side not in (1, -1) or self.hedge_side not in (1, -1):
            raise ValueError(f"hedge {self.name!r}: sides must be +1 or -1")
        if not math.isfinite(self.base_units) or self.base_units <= 0:
            raise ValueError(f"hedge {self.name!r}: base_units must be finite and > 0")
        if not math.isfinite(self.held_ratio) or self.held_ratio < 0:
            raise ValueError(f"hedge {self.name!r}: held_ratio must be finite and >= 0")


@dataclass(frozen=True)
class LegSeries:
    """One leg on the hourly grid: close (NaN = no candle), the hour's quote-currency volume and
    the funding rate settling at the hour's close (NaN or 0 = none; spot legs have none)."""

    close: FloatArray
    quote_volume: FloatArray
    funding: FloatArray | None = None

    def __post_init__(self) -> None:
        n = len(self.close)
        if len(self.quote_volume) != n or (self.funding is not None and len(self.funding) != n):
            raise ValueError("a leg's close, quote_volume and funding must have the same length")


@dataclass(frozen=True)
class Market:
    """Both legs, aligned, with what every policy shares (computed once per hedge and window)."""

    base: LegSeries
    hedge: LegSeries
    base_ff: FloatArray
    hedge_ff: FloatArray
    tradeable: npt.NDArray[np.bool_]
    t0: int
    base_returns: FloatArray
    hedge_returns: FloatArray
    hedge_vol: FloatArray
    _targets: dict[tuple[int, int, int], FloatArray] = field(default_factory=dict, compare=False)

    def target(self, sign: int, window_hours: int, min_obs: int) -> FloatArray:
        key = (sign, window_hours, min_obs)
        if key not in self._targets:
            self._targets[key] = min_var_ratio(
                self.base_returns, self.hedge_returns, sign, window_hours, min_obs
            )
        return self._targets[key]


def prepare(base: LegSeries, hedge: LegSeries, costs: CostModel, start_at: int = 0) -> Market:
    """Align both legs; the hedge opens at the first hour >= `start_at` where both trade (the
    hours before only feed the estimates). Raises ValueError when there is no such hour."""
    if len(base.close) != len(hedge.close):
        raise ValueError("base and hedge series must be on the same hourly grid")
    bc = np.asarray(base.close, dtype=np.float64)
    hc = np.asarray(hedge.close, dtype=np.float64)
    bc = np.where(np.isfinite(bc) & (bc > 0), bc, np.nan)
    hc = np.where(np.isfinite(hc) & (hc > 0), hc, np.nan)
    tradeable = np.isfinite(bc) & np.isfinite(hc)
    tradeable[: max(start_at, 0)] = False
    if not tradeable.any():
        raise ValueError("the two legs have no hour with a close on both")
    t0 = int(np.argmax(tradeable))
    return Market(
        base=base,
        hedge=hedge,
        base_ff=_ffill(bc),
        hedge_ff=_ffill(hc),
        tradeable=tradeable,
        t0=t0,
        base_returns=simple_returns(bc),
        hedge_returns=simple_returns(hc),
        hedge_vol=trailing_vol(hc, costs.vol_hours),
    )


@dataclass(frozen=True)
class Trades:
    hour: IntArray  # grid index of each trade's close
    units: FloatArray  # hedge units after the trade (>= 0; direction is hedge_side)
    delta: FloatArray  # units bought into the hedge leg's size (+ grows the hedge)
    notional: FloatArray  # |delta| * hedge close
    fee: FloatArray
    slippage: FloatArray


@dataclass(frozen=True)
class Simulation:
    """One policy's run. Per-hour arrays cover the whole grid; hours before t0 are 0 / NaN."""

    book: HedgeBook
    policy: Policy
    t0: int
    hedged_pnl: FloatArray  # net of costs
    unhedged_pnl: FloatArray
    base_notional_prev: FloatArray  # base notional at the previous close (return denominators)
    funding: FloatArray  # funding paid per hour by the whole book (negative: received)
    hedge_funding: FloatArray  # the hedge leg's part of it
    trade_cost: FloatArray  # fees + slippage charged per hour
    ratio: FloatArray  # held ratio after the hour's trade
    target: FloatArray  # min-variance ratio known at the close (NaN before it can be estimated)
    trades: Trades


def simulate(book: HedgeBook, market: Market, costs: CostModel, policy: Policy) -> Simulation:
    """Run `policy` over the grid (see the module docstring for the accounting)."""
    sign = book.base_side * book.hedge_side
    target = market.target(sign, policy.window_hours, policy.min_obs)
    goal = np.where(np.isfinite(target), target, book.held_ratio)
    bff, hff, t0 = market.base_ff, market.hedge_ff, market.t0
    n = len(bff)
    units_per_ratio = book.base_units * bff / hff  # hedge units per unit of ratio at each close

    if policy.kind == "static":
        hours = np.array([t0], dtype=np.int64)
        ratios = np.array([book.held_ratio])
        units = ratios * units_per_ratio[hours]
    elif policy.kind == "cadence":
        hours = _cadence_hours(market.tradeable, t0, policy.cadence_hours)
        units = goal[hours] * units_per_ratio[hours]
    else:
        hours, units = _band_trades(market, t0, goal, target, units_per_ratio, policy, n)

    prev = np.concatenate(([0.0], units[:-1]))
    delta = units - prev
    moved = np.abs(delta) > 0  # a trade to the size already held costs nothing and is no trade
    hours, units, delta = hours[moved], units[moved], delta[moved]

    notional = np.abs(delta) * hff[hours]
    fee = notional * costs.hedge.fees.bps(costs.liquidity) * BPS
    slip = notional * impact_fraction(
        notional,
        np.asarray(market.hedge.quote_volume, dtype=np.float64)[hours],
        market.hedge_vol[hours],
        costs.impact_coefficient,
    )
    trades = Trades(hours, units, delta, notional, fee, slip)
    return _account(book, market, costs, policy, target, trades)


def _account(
    book: HedgeBook,
    market: Market,
    costs: CostModel,
    policy: Policy,
    target: FloatArray,
    trades: Trades,
) -> Simulation:
    bff, hff, t0 = market.base_ff, market.hedge_ff, market.t0
    n = len(bff)
    # Units after the trades at each close: a step function over the grid.
    marker = np.zeros(n, dtype=np.int64)
    marker[trades.hour] = np.arange(1, len(trades.hour) + 1)
    last = np.maximum.accumulate(marker)
    after = np.concatenate(([0.0], trades.units))[last]
    during = np.concatenate(([0.0], after[:-1]))  # held through hour t: after the close of t-1

    dpb = np.zeros(n)
    dph = np.zeros(n)
    dpb[1:] = np.diff(bff)
    dph[1:] = np.diff(hff)
    live = np.arange(n) > t0
    dpb = np.where(live, dpb, 0.0)
    dph = np.where(live, dph, 0.0)

    base_pnl = book.base_side * book.base_units * dpb
    base_funding = _funding(market.base, costs.base.perp, book.base_side * book.base_units, bff)
    hedge_funding = _funding(market.hedge, costs.hedge.perp, book.hedge_side * during, hff)
    base_funding = np.where(live, base_funding, 0.0)
    hedge_funding = np.where(live, hedge_funding, 0.0)

    trade_cost = np.zeros(n)
    np.add.at(trade_cost, trades.hour, trades.fee + trades.slippage)
    unhedged = base_pnl - base_funding
    hedged = unhedged + book.hedge_side * during * dph - hedge_funding - trade_cost

    prev_notional = np.full(n, np.nan)
    prev_notional[1:] = book.base_units * bff[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = after * hff / (book.base_units * bff)
    ratio[:t0] = np.nan
    target = target.copy()
    target[:t0] = np.nan
    return Simulation(
        book=book,
        policy=policy,
        t0=t0,
        hedged_pnl=hedged,
        unhedged_pnl=unhedged,
        base_notional_prev=prev_notional,
        funding=base_funding + hedge_funding,
        hedge_funding=hedge_funding,
        trade_cost=trade_cost,
        ratio=ratio,
        target=target,
        trades=trades,
    )


def _funding(
    leg: LegSeries, perp: bool, signed_units: FloatArray | float, close: FloatArray
) -> FloatArray:
    """Funding paid at each hour's close by a position of `signed_units` (long > 0)."""
    if not perp or leg.funding is None:
        return np.zeros(len(close))
    rate = np.nan_to_num(np.asarray(leg.funding, dtype=np.float64), nan=0.0)
    return np.asarray(signed_units * close * rate, dtype=np.float64)


def _cadence_hours(tradeable: npt.NDArray[np.bool_], t0: int, cadence: int) -> IntArray:
    """t0, then the first tradeable hour at or after each t0 + j * cadence (deduplicated)."""
    n = len(tradeable)
    scheduled = np.arange(t0, n, cadence, dtype=np.int64)
    idx = np.flatnonzero(tradeable).astype(np.int64)
    pos = np.searchsorted(idx, scheduled)
    pos = pos[pos < len(idx)]
    return np.unique(idx[pos])


def _band_trades(
    market: Market,
    t0: int,
    goal: FloatArray,
    target: FloatArray,
    units_per_ratio: FloatArray,
    policy: Policy,
    n: int,
) -> tuple[IntArray, FloatArray]:
    """Trade at t0, then at each tradeable close at least min_gap_hours after the last trade
    where |held ratio - target| > band * target.

    Between trades the held ratio only moves with prices, so each search is vectorised over a
    block of hours ahead (doubling while nothing triggers).
    """
    hours = [t0]
    units = [goal[t0] * units_per_ratio[t0]]
    band, gap = policy.band, policy.min_gap_hours
    checkable = market.tradeable & np.isfinite(target)
    t = t0 + gap
    block = 256
    while t < n:
        end = min(n, t + block)
        held = units[-1] / units_per_ratio[t:end]
        tgt = target[t:end]
        hit = checkable[t:end] & (np.abs(held - tgt) > band * tgt)
        if hit.any():
            at = t + int(np.argmax(hit))
            hours.append(at)
            units.append(target[at] * units_per_ratio[at])
            t = at + gap
            block = 256
        else:
            t = end
            block *= 2
    return np.asarray(hours, dtype=np.int64), np.asarray(units, dtype=np.float64)


def _ffill(x: FloatArray) -> FloatArray:
    ok = np.isfinite(x)
    idx = np.where(ok, np.arange(len(x)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = x[idx]
    out[: int(np.argmax(ok)) if ok.any() else len(x)] = np.nan
    return np.asarray(out, dtype=np.float64)


def run_policies(
    book: HedgeBook,
    base: LegSeries,
    hedge: LegSeries,
    costs: CostModel,
    policies: Sequence[Policy],
    start_at: int = 0,
) -> list[Simulation]:
    """Every policy on one hedge, sharing the aligned legs and the target estimates."""
    market = prepare(base, hedge, costs, start_at)
    return [simulate(book, market, costs, p) for p in policies]
