"""Stress scenarios for the current hedged book: replay a window's joint returns, or shock them.

A replay holds today's units through the window's hourly moves (no rebalancing) and reports what
the book would lose. A shock replays a window re-coloured to a stressed covariance: the legs'
correlation moved on the Fisher-z scale (z' = atanh(rho) + corr_shift; > 0 pushes it toward +1,
where a long/short hedge of positively correlated legs holds and a hedge built on a negative
correlation fails) and both volatilities multiplied by vol_mult. The re-colouring whitens the
window's demeaned returns with their own covariance and colours them with the stressed one, so
the hours keep their order and fat tails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .costs import FloatArray


@dataclass(frozen=True)
class Position:
    """The book now: units held of each leg and their last prices."""

    name: str
    base_side: int
    hedge_side: int
    base_units: float
    hedge_units: float
    base_price: float
    hedge_price: float

    def __post_init__(self) -> None:
        if self.base_side not in (1, -1) or self.hedge_side not in (1, -1):
            raise ValueError(f"hedge {self.name!r}: sides must be +1 or -1")
        for name in ("base_units", "base_price", "hedge_price"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"hedge {self.name!r}: {name} must be finite and > 0")
        if not math.isfinite(self.hedge_units) or self.hedge_units < 0:
            raise ValueError(f"hedge {self.name!r}: hedge_units must be finite and >= 0")

    @property
    def base_notional(self) -> float:
        return self.base_units * self.base_price

    @property
    def hedge_notional(self) -> float:
        return self.hedge_units * self.hedge_price

    @property
    def ratio(self) -> float:
        return self.hedge_notional / self.base_notional


@dataclass(frozen=True)
class Shock:
    corr_shift: float = 0.0
    vol_mult: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.corr_shift):
            raise ValueError("corr_shift must be finite")
        if not math.isfinite(self.vol_mult) or self.vol_mult <= 0:
            raise ValueError("vol_mult must be finite and > 0")


@dataclass(frozen=True)
class Scenario:
    """A named window [start, end) of stored history, optionally shocked."""

    name: str
    start: datetime
    end: datetime
    shock: Shock | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"scenario {self.name!r}: start and end must be time-zone aware")
        if self.end <= self.start:
            raise ValueError(f"scenario {self.name!r}: end must be after start")


@dataclass(frozen=True)
class StressResult:
    """The book through a scenario; amounts in the quote currency, P&L as held (no trades).

    loss = -(lowest cumulative P&L) >= 0; effectiveness as in the backtest (1 - the variance of
    the book's hourly P&L over that of the base leg alone); ratio_end is the held ratio after
    the moves (the drift prices cause); min_var_ratio the scenario's own min-variance ratio and
    ratio_gap = min_var_ratio - ratio_start, what the hedge should have held.
    """

    hedge: str
    scenario: str
    hours: int
    correlation: float
    pnl: float
    loss: float
    unhedged_pnl: float
    unhedged_loss: float
    effectiveness: float
    ratio_start: float
    ratio_end: float
    min_var_ratio: float
    ratio_gap: float
    path: FloatArray  # cumulative hedged P&L after each hour
    unhedged_path: FloatArray

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, np.ndarray):
                continue
            out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        return out


def shocked_correlation(rho: float, corr_shift: float) -> float:
    """tanh(atanh(rho) + corr_shift), kept strictly inside (-1, 1)."""
    edge = 1.0 - 1e-9
    z = math.atanh(min(max(rho, -edge), edge)) + corr_shift
    return min(max(math.tanh(z), -edge), edge)


def shock_returns(
    base_returns: FloatArray, hedge_returns: FloatArray, shock: Shock
) -> tuple[FloatArray, FloatArray]:
    """The joint hours of both legs re-coloured to the shocked covariance (means kept)."""
    rb = np.asarray(base_returns, dtype=np.float64)
    rh = np.asarray(hedge_returns, dtype=np.float64)
    ok = np.isfinite(rb) & np.isfinite(rh)
    x = np.column_stack((rb[ok], rh[ok]))
    if len(x) < 3:
        raise ValueError("a shock needs at least 3 hours where both legs have a return")
    mean = x.mean(axis=0)
    d = x - mean
    s = np.cov(d, rowvar=False)
    sd = np.sqrt(np.diag(s))
    if not (sd > 0).all():
        raise ValueError("a shock needs both legs to move in the window")
    rho = float(s[0, 1] / (sd[0] * sd[1]))
    rho_new = shocked_correlation(rho, shock.corr_shift)
    chol = np.linalg.cholesky(s)
    white = np.linalg.solve(chol, d.T).T  # identity covariance
    sd_new = sd * shock.vol_mult
    target = np.array(
        [[sd_new[0], 0.0], [sd_new[1] * rho_new, sd_new[1] * math.sqrt(1.0 - rho_new**2)]]
    )
    y = white @ target.T + mean
    return np.asarray(y[:, 0]), np.asarray(y[:, 1])


def replay(
    position: Position,
    base_returns: FloatArray,
    hedge_returns: FloatArray,
    scenario: str,
) -> StressResult:
    """Hold today's units through the hourly simple returns given (missing = no move)."""
    rb = np.nan_to_num(np.asarray(base_returns, dtype=np.float64), nan=0.0)
    rh = np.nan_to_num(np.asarray(hedge_returns, dtype=np.float64), nan=0.0)
    if len(rb) != len(rh):
        raise ValueError("base and hedge returns must have the same length")
    if len(rb) == 0:
        raise ValueError(f"scenario {scenario!r}: no hours to replay")
    gb = np.cumprod(1.0 + rb)
    gh = np.cumprod(1.0 + rh)
    vb = position.base_notional * np.concatenate(([1.0], gb))
    vh = position.hedge_notional * np.concatenate(([1.0], gh))
    base_pnl = position.base_side * np.diff(vb)
    pnl = base_pnl + position.hedge_side * np.diff(vh)
    effectiveness = float("nan")
    if len(rb) >= 2:
        var_u = float(np.var(base_pnl, ddof=1))
        var_book = float(np.var(pnl, ddof=1))
        if var_u > 0 and math.isfinite(var_book):
            effectiveness = 1.0 - var_book / var_u
    path = np.cumsum(pnl)
    unhedged_path = np.cumsum(base_pnl)
    sign = position.base_side * position.hedge_side
    var_h = float(np.var(rh, ddof=1)) if len(rh) > 1 else 0.0  # the hedge leg's returns
    cov = float(np.cov(rb, rh)[0, 1]) if len(rb) > 1 else 0.0
    min_var = max(-sign * cov / var_h, 0.0) if var_h > 0 else float("nan")
    var_b = float(np.var(rb, ddof=1)) if len(rb) > 1 else 0.0
    corr = cov / math.sqrt(var_b * var_h) if var_b > 0 and var_h > 0 else float("nan")
    return StressResult(
        hedge=position.name,
        scenario=scenario,
        hours=len(rb),
        correlation=corr,
        pnl=float(path[-1]),
        loss=float(max(0.0, -path.min())),
        unhedged_pnl=float(unhedged_path[-1]),
        unhedged_loss=float(max(0.0, -unhedged_path.min())),
        effectiveness=float(effectiveness),
        ratio_start=position.ratio,
        ratio_end=float(vh[-1] / vb[-1]) if vb[-1] > 0 else float("nan"),
        min_var_ratio=min_var,
        ratio_gap=min_var - position.ratio,
        path=path,
        unhedged_path=unhedged_path,
    )
