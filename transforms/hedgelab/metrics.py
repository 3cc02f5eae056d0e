"""Per-policy figures of a simulated hedge, side by side."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .costs import FloatArray
from .simulate import Simulation


@dataclass(frozen=True)
class PolicyMetrics:
    """What a policy did over the run; currency amounts in the legs' quote currency.

    - effectiveness = 1 - Var(hedged hourly P&L) / Var(unhedged hourly P&L), P&L in currency and
      net of costs, hours t0+1..end (Ederington's measure on value changes: returns over a base
      notional that collapses, as LUNA's did, would divide by almost nothing);
    - tracking_rmse: root mean square of (held ratio - min-variance target) over the hours that
      have a target; the same target for every policy;
    - max_drawdown: largest fall of the hedged book's cumulative net P&L from its running peak
      (starting at 0), and max_drawdown_pct of the base notional at t0;
    - turnover: traded hedge notional (opening trade included) / base notional at t0;
    - cost = fees + slippage, the transaction costs of the trades; cost_per_trade = cost / trades;
      funding is the carry the legs paid (negative: received), charged in the P&L but not a
      trade's cost;
    - eff_per_cost_bp: effectiveness bought per basis point of cost (cost / base notional at t0),
      the variance reduced per unit of cost. NaN when nothing was traded.
    - pnl_hedged / pnl_unhedged: net P&L over the run (costs and funding included).
    """

    hedge: str
    policy: str
    hours: int
    trades: int
    effectiveness: float
    tracking_rmse: float
    max_drawdown: float
    max_drawdown_pct: float
    turnover: float
    fees: float
    slippage: float
    funding: float
    cost: float
    cost_per_trade: float
    cost_bps: float
    eff_per_cost_bp: float
    pnl_hedged: float
    pnl_unhedged: float
    unhedged_max_drawdown: float
    final_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def policy_metrics(sim: Simulation) -> PolicyMetrics:
    t0 = sim.t0
    live = slice(t0 + 1, None)
    effectiveness = _effectiveness(sim.hedged_pnl[live], sim.unhedged_pnl[live])

    gap = (sim.ratio - sim.target)[t0:]
    gap = gap[np.isfinite(gap)]
    tracking = float(np.sqrt(np.mean(gap * gap))) if gap.size else float("nan")

    n = len(sim.base_notional_prev)
    start_notional = float(sim.base_notional_prev[t0 + 1]) if t0 + 1 < n else 0.0
    fees = float(sim.trades.fee.sum())
    slippage = float(sim.trades.slippage.sum())
    funding = float(sim.funding[t0:].sum())
    cost = fees + slippage
    n_trades = len(sim.trades.hour)
    nan = float("nan")
    cost_bps = cost / start_notional * 1e4 if start_notional > 0 else nan
    eff_per_bp = effectiveness / cost_bps if cost_bps > 0 else float("nan")
    finite_ratio = sim.ratio[np.isfinite(sim.ratio)]
    return PolicyMetrics(
        hedge=sim.book.name,
        policy=sim.policy.label,
        hours=int(max(len(sim.hedged_pnl) - t0 - 1, 0)),
        trades=n_trades,
        effectiveness=effectiveness,
        tracking_rmse=tracking,
        max_drawdown=max_drawdown(sim.hedged_pnl[t0:]),
        max_drawdown_pct=(
            max_drawdown(sim.hedged_pnl[t0:]) / start_notional if start_notional > 0 else nan
        ),
        turnover=float(sim.trades.notional.sum()) / start_notional if start_notional else nan,
        fees=fees,
        slippage=slippage,
        funding=funding,
        cost=cost,
        cost_per_trade=cost / n_trades if n_trades else float("nan"),
        cost_bps=cost_bps,
        eff_per_cost_bp=eff_per_bp,
        pnl_hedged=float(sim.hedged_pnl[t0:].sum()),
        pnl_unhedged=float(sim.unhedged_pnl[t0:].sum()),
        unhedged_max_drawdown=max_drawdown(sim.unhedged_pnl[t0:]),
        final_ratio=float(finite_ratio[-1]) if finite_ratio.size else float("nan"),
    )


def _effectiveness(hedged: FloatArray, unhedged: FloatArray) -> float:
    ok = np.isfinite(hedged) & np.isfinite(unhedged)
    if ok.sum() < 2:
        return float("nan")
    var_u = float(np.var(unhedged[ok], ddof=1))
    if var_u <= 0:
        return float("nan")
    return 1.0 - float(np.var(hedged[ok], ddof=1)) / var_u


def max_drawdown(pnl: FloatArray) -> float:
    """Largest drop of the cumulative sum of `pnl` below its running peak (which starts at 0)."""
    if len(pnl) == 0:
        return 0.0
    cum = np.concatenate(([0.0], np.cumsum(pnl)))
    return float(np.max(np.maximum.accumulate(cum) - cum))
