"""A plain per-hour loop of the simulator, written for clarity rather than speed.

It re-estimates the min-variance ratio at every hour by least squares on the window's returns
(`numpy.linalg.lstsq`) and walks the book hour by hour. Tests hold the vectorised simulator to it
and the benchmark measures the speed-up against it.
"""

from __future__ import annotations

import math

import numpy as np

from .costs import BPS, CostModel, FloatArray
from .simulate import HedgeBook, LegSeries, Policy


def reference_run(
    book: HedgeBook,
    base: LegSeries,
    hedge: LegSeries,
    costs: CostModel,
    policy: Policy,
    start_at: int = 0,
) -> dict[str, FloatArray | list[int] | list[float]]:
    """hedged/unhedged P&L per hour, held ratio, target, trade hours, fees and slippage."""
    n = len(base.close)
    bc = [float(v) if math.isfinite(v) and v > 0 else math.nan for v in base.close]
    hc = [float(v) if math.isfinite(v) and v > 0 else math.nan for v in hedge.close]
    t0 = next(t for t in range(start_at, n) if math.isfinite(bc[t]) and math.isfinite(hc[t]))
    sign = book.base_side * book.hedge_side
    min_obs = policy.min_obs

    def ret(c: list[float], t: int) -> float:
        if t == 0 or not (math.isfinite(c[t]) and math.isfinite(c[t - 1])):
            return math.nan
        return c[t] / c[t - 1] - 1.0

    def target_at(t: int) -> float:
        xs, ys = [], []
        for s in range(max(0, t - policy.window_hours + 1), t + 1):
            rb, rh = ret(bc, s), ret(hc, s)
            if math.isfinite(rb) and math.isfinite(rh):
                xs.append(rh)
                ys.append(rb)
        if len(xs) < min_obs:
            return math.nan
        x = np.asarray(xs)
        y = np.asarray(ys)
        if np.var(x) <= 1e-12 * np.mean(x * x) or np.var(x) == 0:
            return math.nan
        design = np.column_stack((np.ones(len(x)), x))
        slope = float(np.linalg.lstsq(design, y, rcond=None)[0][1])
        return max(-sign * slope, 0.0)

    def vol_at(t: int) -> float:
        rs = [ret(hc, s) for s in range(max(0, t - costs.vol_hours + 1), t + 1)]
        rs = [r for r in rs if math.isfinite(r)]
        if len(rs) < max(2, costs.vol_hours // 2):
            return 0.0
        return float(np.std(rs, ddof=1))

    fee_rate = costs.hedge.fees.bps(costs.liquidity) * BPS
    last_b, last_h = bc[t0], hc[t0]
    units = 0.0
    hedged = np.zeros(n)
    unhedged = np.zeros(n)
    ratio = np.full(n, np.nan)
    target = np.full(n, np.nan)
    trade_hours: list[int] = []
    fees: list[float] = []
    slips: list[float] = []
    next_cadence = t0
    last_trade = t0  # the opening trade starts the band's gap even when it trades nothing
    for t in range(t0, n):
        pb = bc[t] if math.isfinite(bc[t]) else last_b
        ph = hc[t] if math.isfinite(hc[t]) else last_h
        pnl_base = 0.0
        pnl_hedge = 0.0
        if t > t0:
            fund_b = fund_h = 0.0
            if costs.base.perp and base.funding is not None and math.isfinite(base.funding[t]):
                fund_b = book.base_side * book.base_units * pb * float(base.funding[t])
            if costs.hedge.perp and hedge.funding is not None and math.isfinite(hedge.funding[t]):
                fund_h = book.hedge_side * units * ph * float(hedge.funding[t])
            pnl_base = book.base_side * book.base_units * (pb - last_b) - fund_b
            pnl_hedge = book.hedge_side * units * (ph - last_h) - fund_h
        tgt = target_at(t)
        target[t] = tgt
        goal = tgt if math.isfinite(tgt) else book.held_ratio
        tradeable = math.isfinite(bc[t]) and math.isfinite(hc[t])
        wanted: float | None = None
        if t == t0:
            wanted = book.held_ratio if policy.kind == "static" else goal
        elif tradeable and policy.kind == "cadence" and t >= next_cadence:
            wanted = goal
        elif (
            tradeable
            and policy.kind == "band"
            and math.isfinite(tgt)
            and t - last_trade >= policy.min_gap_hours
        ):
            held = units * ph / (book.base_units * pb)
            if abs(held - tgt) > policy.band * tgt:
                wanted = tgt
        if policy.kind == "cadence" and t >= next_cadence and tradeable:
            while next_cadence <= t:
                next_cadence += policy.cadence_hours
        cost = 0.0
        if wanted is not None:
            new_units = wanted * book.base_units * pb / ph
            traded = abs(new_units - units)
            if traded > 0:
                notional = traded * ph
                volume = float(hedge.quote_volume[t])
                share = notional / volume if math.isfinite(volume) and volume > 0 else 1.0
                slip = notional * costs.impact_coefficient * vol_at(t) * math.sqrt(min(share, 1.0))
                fee = notional * fee_rate
                cost = fee + slip
                trade_hours.append(t)
                last_trade = t
                fees.append(fee)
                slips.append(slip)
            units = new_units
        hedged[t] = pnl_base + pnl_hedge - cost
        unhedged[t] = pnl_base
        ratio[t] = units * ph / (book.base_units * pb)
        last_b, last_h = pb, ph
    return {
        "hedged": hedged,
        "unhedged": unhedged,
        "ratio": ratio,
        "target": target,
        "trade_hours": trade_hours,
        "fees": fees,
        "slippage": slips,
    }
