"""Hedge lab: simulate a hedged book under rebalancing policies with fees, slippage and funding;
stress it with historical and shocked scenarios; advise the trade back to the min-variance ratio.

Arrays in, dataclasses out: no I/O, no clock.
"""

from .advice import Moments, RebalanceAdvice, book_variance, moments, rebalance_advice
from .costs import (
    DEFAULT_IMPACT_COEFFICIENT,
    CostModel,
    FeeSchedule,
    LegCosts,
    impact_fraction,
    trailing_vol,
)
from .metrics import PolicyMetrics, max_drawdown, policy_metrics
from .ratio import min_var_ratio, simple_returns
from .scenarios import Position, Scenario, Shock, StressResult, replay, shock_returns
from .simulate import (
    POLICY_KINDS,
    HedgeBook,
    LegSeries,
    Market,
    Policy,
    Simulation,
    prepare,
    run_policies,
    simulate,
)

__all__ = [
    "DEFAULT_IMPACT_COEFFICIENT",
    "POLICY_KINDS",
    "CostModel",
    "FeeSchedule",
    "HedgeBook",
    "LegCosts",
    "LegSeries",
    "Market",
    "Moments",
    "Policy",
    "PolicyMetrics",
    "Position",
    "RebalanceAdvice",
    "Scenario",
    "Shock",
    "Simulation",
    "StressResult",
    "book_variance",
    "impact_fraction",
    "max_drawdown",
    "min_var_ratio",
    "moments",
    "policy_metrics",
    "prepare",
    "rebalance_advice",
    "replay",
    "run_policies",
    "shock_returns",
    "simple_returns",
    "simulate",
    "trailing_vol",
]
