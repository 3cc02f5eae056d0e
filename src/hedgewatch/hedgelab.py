"""The hedge lab in the shell: load a hedge's legs from the store, build the core's inputs from
the settings, and run backtests, stress scenarios and rebalance advice (`transforms.hedgelab`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from hedgewatch.alerts.rules import Rule, parse_window
from hedgewatch.alerts.state import AlertEvent
from hedgewatch.settings import HedgeSettings, ScenarioSettings, Settings
from hedgewatch.storage.store import Store
from hedgewatch.transforms.hedgelab import (
    CostModel,
    FeeSchedule,
    HedgeBook,
    LegCosts,
    LegSeries,
    Policy,
    PolicyMetrics,
    Position,
    RebalanceAdvice,
    Shock,
    Simulation,
    StressResult,
    min_var_ratio,
    moments,
    policy_metrics,
    rebalance_advice,
    replay,
    run_policies,
    shock_returns,
    simple_returns,
    trailing_vol,
)
from hedgewatch.transforms.hedgelab.simulate import POLICY_KINDS, PolicyKind

HOUR = timedelta(hours=1)
_FAR = datetime(3000, 1, 1, tzinfo=UTC)  # "no end" for the range queries
log = logging.getLogger(__name__)
_INSTRUMENT_COLUMNS = ("instrument", "venue", "market", "symbol", "interval")


def _utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


# Crises in the bundled demo data (May 2022) and in the shared history; a window without stored
# candles for a hedge's legs is reported as such.
SHIPPED_SCENARIOS: tuple[ScenarioSettings, ...] = (
    ScenarioSettings(
        name="luna-2022",
        start=_utc(2022, 5, 7),
        end=_utc(2022, 5, 14),
        description="UST de-peg and LUNA collapse (7-14 May 2022)",
    ),
    ScenarioSettings(
        name="luna-2022-converge",
        start=_utc(2022, 5, 7),
        end=_utc(2022, 5, 14),
        shock_corr=1.0,
        vol_mult=2.0,
        description="the LUNA week with the legs' correlation pushed toward +1 (z + 1) "
        "and volatility doubled",
    ),
    ScenarioSettings(
        name="ftx-2022",
        start=_utc(2022, 11, 6),
        end=_utc(2022, 11, 12),
        description="FTX/FTT collapse (6-12 Nov 2022)",
    ),
    ScenarioSettings(
        name="covid-2020",
        start=_utc(2020, 3, 12),
        end=_utc(2020, 3, 14),
        description="Black Thursday COVID crash (12-13 Mar 2020)",
    ),
    ScenarioSettings(
        name="yen-2024",
        start=_utc(2024, 8, 5),
        end=_utc(2024, 8, 6),
        description="yen carry-trade unwind (5 Aug 2024)",
    ),
)


class LabError(ValueError):
    """A hedge lab request the stored data or the config cannot answer (exit 2 in the CLI)."""


@dataclass(frozen=True)
class Legs:
    """A hedge's two legs on the hourly grid [start, end)."""

    times: pl.Series  # open times, UTC
    base: LegSeries
    hedge: LegSeries


@dataclass(frozen=True)
class Backtest:
    hedge: str
    start: datetime
    end: datetime
    times: pl.Series  # the hourly grid, warm-up hours included (simulations start at t0)
    simulations: list[Simulation]
    metrics: list[PolicyMetrics]


def hedge_settings(settings: Settings, name: str) -> HedgeSettings:
    for hedge in settings.hedges:
        if hedge.name == name:
            return hedge
    known = ", ".join(h.name for h in settings.hedges) or "none configured"
    raise LabError(f"unknown hedge {name!r} (hedges: {known})")


def cost_model(settings: Settings, hedge: HedgeSettings) -> CostModel:
    base, leg = hedge.legs

    def leg_costs(instrument: str) -> LegCosts:
        fees = settings.fees(instrument)
        perp = settings.instrument(instrument).market == "perp"
        return LegCosts(FeeSchedule(fees.maker_bps, fees.taker_bps), perp=perp)

    lab = settings.hedge_lab
    return CostModel(
        hedge=leg_costs(leg.instrument),
        base=leg_costs(base.instrument),
        impact_coefficient=lab.impact_coefficient,
        vol_hours=lab.vol_hours,
        liquidity=lab.liquidity,
    )


def policies(settings: Settings, kinds: Sequence[str] | None = None) -> list[Policy]:
    lab = settings.hedge_lab
    chosen = list(kinds) if kinds else list(POLICY_KINDS)
    out = []
    for kind in chosen:
        if kind not in POLICY_KINDS:
            raise LabError(f"unknown policy {kind!r} (policies: {', '.join(POLICY_KINDS)})")
        policy_kind: PolicyKind = kind
        out.append(
            Policy(
                policy_kind,
                window_hours=parse_window(lab.window),
                cadence_hours=parse_window(lab.cadence),
                band=lab.band,
                min_gap_hours=parse_window(lab.min_gap),
                min_coverage=lab.min_coverage,
            )
        )
    return out


def _staged(settings: Settings, hedges: Sequence[HedgeSettings]) -> pl.DataFrame:
    ids = sorted({leg.instrument for hedge in hedges for leg in hedge.legs})
    rows = []
    for instrument in ids:
        inst = settings.instrument(instrument)
        rows.append(
            {
                "instrument": inst.id,
                "venue": inst.venue,
                "market": inst.market,
                "symbol": inst.symbol,
                "interval": inst.interval,
            }
        )
    return pl.DataFrame(rows, schema={k: pl.Utf8 for k in _INSTRUMENT_COLUMNS})


def load_legs(
    store: Store,
    settings: Settings,
    hedge: HedgeSettings,
    start: datetime,
    end: datetime | None,
) -> Legs:
    """Closes, quote volumes and funding of both legs on the hourly grid [start, end); without
    `end`, up to the last stored candle of either leg."""
    return load_many_legs(store, settings, [hedge], start, end)[hedge.name]


def load_many_legs(
    store: Store,
    settings: Settings,
    hedges: Sequence[HedgeSettings],
    start: datetime,
    end: datetime | None,
) -> dict[str, Legs]:
    """`load_legs` for several hedges with one read of the candles and one of the funding."""
    start = _floor(start)
    query_end = _floor(end - timedelta(microseconds=1)) + HOUR if end is not None else _FAR
    params = {"start": start, "end": query_end}
    with store.staged(instruments_staged=_staged(settings, hedges)):
        candles = store.query("hedge_lab_candles", params).with_columns(
            pl.col("open_time").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
            pl.col("close").cast(pl.Float64),
            pl.col("quote_volume").cast(pl.Float64),
        )
        funding = store.query("hedge_lab_funding", params)
    paid_all = (
        funding.with_columns(
            (
                pl.col("funding_time")
                .dt.convert_time_zone("UTC")
                .dt.round("1m")
                .dt.cast_time_unit("us")
                - HOUR
            )
            .dt.truncate("1h")
            .alias("open_time")
        )
        .group_by("instrument", "open_time")
        .agg(pl.col("funding_rate").cast(pl.Float64).sum().alias("rate"))
    )
    out = {}
    for hedge in hedges:
        ids = [leg.instrument for leg in hedge.legs]
        rows_all = candles.filter(pl.col("instrument").is_in(ids))
        hedge_end = query_end
        if end is None:
            last = rows_all["open_time"].max() if rows_all.height else None
            hedge_end = last + HOUR if isinstance(last, datetime) else start + HOUR
        grid = pl.datetime_range(
            start, hedge_end - HOUR, "1h", time_unit="us", time_zone="UTC", eager=True
        ).alias("open_time")
        frame = grid.to_frame()
        series = []
        for instrument in ids:
            rows = rows_all.filter(pl.col("instrument") == instrument).select(
                "open_time", "close", "quote_volume"
            )
            paid = paid_all.filter(pl.col("instrument") == instrument).select("open_time", "rate")
            joined = frame.join(rows, on="open_time", how="left").join(
                paid, on="open_time", how="left"
            )
            perp = settings.instrument(instrument).market == "perp"
            series.append(
                LegSeries(
                    close=joined["close"].fill_null(np.nan).to_numpy().astype(np.float64),
                    quote_volume=joined["quote_volume"].fill_null(np.nan).to_numpy(),
                    funding=joined["rate"].fill_null(0.0).to_numpy() if perp else None,
                )
            )
        out[hedge.name] = Legs(times=grid, base=series[0], hedge=series[1])
    return out


def _index(legs: Legs, moment: datetime) -> int:
    """Index of the first grid hour at or after `moment` (len(times) when past the end)."""
    if len(legs.times) == 0:
        return 0
    first = legs.times[0]
    steps = -(-(moment.astimezone(UTC) - first) // HOUR)
    return int(min(max(steps, 0), len(legs.times)))


def _floor(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def hedge_book(settings: Settings, hedge: HedgeSettings, base_price: float) -> HedgeBook:
    """The base leg's units (its configured size, else hedge_lab.notional at `base_price`)."""
    base = hedge.legs[0]
    spec = hedge.spec()
    if base.units is not None:
        units = base.units
    else:
        notional = base.notional if base.notional is not None else settings.hedge_lab.notional
        units = notional / base_price
    return HedgeBook(
        name=hedge.name,
        base_side=spec.base_side,
        hedge_side=spec.hedge_side,
        base_units=units,
        held_ratio=spec.held_ratio,
    )


def backtest(
    store: Store,
    settings: Settings,
    name: str,
    start: datetime,
    end: datetime,
    kinds: Sequence[str] | None = None,
) -> Backtest:
    """Every chosen policy over [start, end), the target's estimation window loaded before it."""
    result = backtest_many(store, settings, [name], start, end, kinds)[name]
    if isinstance(result, LabError):
        raise result
    return result


def backtest_many(
    store: Store,
    settings: Settings,
    names: Sequence[str],
    start: datetime,
    end: datetime,
    kinds: Sequence[str] | None = None,
) -> dict[str, Backtest | LabError]:
    """`backtest` for several hedges from one read of the stored history."""
    hedges = [hedge_settings(settings, name) for name in names]
    chosen = policies(settings, kinds)
    # One estimation window before the first hour, so the min-variance target exists from the start.
    warmup = max(p.window_hours for p in chosen) * HOUR
    many = load_many_legs(store, settings, hedges, start - warmup, end)
    out: dict[str, Backtest | LabError] = {}
    for hedge in hedges:
        name = hedge.name
        legs = many[name]
        first = _index(legs, start)
        # Trading starts at `start`: before it, the legs only feed the estimates.
        lead = _cut(legs, first)
        if not np.isfinite(lead.base.close).any() or not np.isfinite(lead.hedge.close).any():
            out[name] = LabError(
                f"hedge {name!r}: no stored candles of both legs in {start:%Y-%m-%d %H:%M} – "
                f"{end:%Y-%m-%d %H:%M} UTC (backfill or import them first)"
            )
            continue
        costs = cost_model(settings, hedge)
        base_price = float(lead.base.close[np.isfinite(lead.base.close)][0])
        book = hedge_book(settings, hedge, base_price)
        try:
            sims = run_policies(book, legs.base, legs.hedge, costs, chosen, start_at=first)
        except ValueError as exc:
            out[name] = LabError(f"hedge {name!r}: {exc}")
            continue
        out[name] = Backtest(
            hedge=name,
            start=start,
            end=end,
            times=legs.times,
            simulations=sims,
            metrics=[policy_metrics(s) for s in sims],
        )
    return out


def _cut(legs: Legs, first: int) -> Legs:
    def cut(leg: LegSeries) -> LegSeries:
        return LegSeries(
            leg.close[first:],
            leg.quote_volume[first:],
            None if leg.funding is None else leg.funding[first:],
        )

    return Legs(legs.times[first:], cut(legs.base), cut(legs.hedge))


# -- stress ---------------------------------------------------------------------------------------


def scenarios(settings: Settings) -> dict[str, ScenarioSettings]:
    """Shipped scenarios, then the config's (a config scenario replaces a shipped one by name)."""
    out = {s.name: s for s in SHIPPED_SCENARIOS}
    out.update({s.name: s for s in settings.hedge_lab.scenarios})
    return out


@dataclass(frozen=True)
class StressRun:
    scenario: ScenarioSettings
    result: StressResult | None  # None: no stored data for this hedge in the window
    reason: str = ""


def last_hour(store: Store, settings: Settings, hedge: HedgeSettings) -> datetime | None:
    with store.staged(instruments_staged=_staged(settings, [hedge])):
        value = store.query("hedge_lab_last_hour")["last_hour"][0]
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def position_now(
    store: Store, settings: Settings, hedge: HedgeSettings, at: datetime | None = None
) -> tuple[Position, Legs]:
    """The book at the last hour both legs traded (or `at`): configured sizes, last closes.

    A leg without a size takes it from the base leg: hedge_lab.notional for the base, the held
    ratio for the hedge. Returns the position and the last 30 days of both legs.
    """
    if at is None:
        at = last_hour(store, settings, hedge)
        if at is None:
            raise LabError(f"hedge {hedge.name!r}: no hour with a stored candle of both legs")
    legs = load_legs(store, settings, hedge, at - 30 * 24 * HOUR, at + HOUR)
    position = _position_at_last_hour(settings, hedge, legs)
    if position is None:
        raise LabError(f"hedge {hedge.name!r}: no hour with a stored candle of both legs")
    return position, legs


def _position_at_last_hour(settings: Settings, hedge: HedgeSettings, legs: Legs) -> Position | None:
    bc, hc = legs.base.close, legs.hedge.close
    both = np.flatnonzero(np.isfinite(bc) & np.isfinite(hc))
    if both.size == 0:
        return None
    i = int(both[-1])
    base_price, hedge_price = float(bc[i]), float(hc[i])
    book = hedge_book(settings, hedge, base_price)
    leg = hedge.legs[1]
    if leg.units is not None:
        hedge_units = leg.units
    elif leg.notional is not None:
        hedge_units = leg.notional / hedge_price
    else:
        hedge_units = book.held_ratio * book.base_units * base_price / hedge_price
    return Position(
        name=hedge.name,
        base_side=book.base_side,
        hedge_side=book.hedge_side,
        base_units=book.base_units,
        hedge_units=hedge_units,
        base_price=base_price,
        hedge_price=hedge_price,
    )


def window_returns(
    legs: Legs, start: datetime, end: datetime
) -> tuple[np.ndarray, np.ndarray, int]:
    """Both legs' simple hourly returns over [start, end) on forward-filled closes (a missing
    hour moves nothing, its move lands when the leg trades again); and the hours with data.
    `legs` must start before `start` - 1 h for the first return."""
    if len(legs.times) == 0:
        return np.empty(0), np.empty(0), 0
    lo = _index(legs, _floor(start) - HOUR)
    hi = max(lo, _index(legs, end))
    out = []
    for leg in (legs.base, legs.hedge):
        close = leg.close[lo:hi].copy()
        ok = np.isfinite(close) & (close > 0)
        idx = np.where(ok, np.arange(len(close)), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = np.where(ok.any(), close[idx], np.nan)
        filled[: int(np.argmax(ok)) if ok.any() else len(close)] = np.nan
        out.append(simple_returns(filled)[1:])
    both = int((np.isfinite(out[0]) & np.isfinite(out[1])).sum())
    return out[0], out[1], both


def stress(
    store: Store,
    settings: Settings,
    name: str,
    chosen: Sequence[ScenarioSettings],
) -> tuple[Position, list[StressRun]]:
    """The current book of hedge `name` through each scenario."""
    result = stress_many(store, settings, [name], chosen)[name]
    if isinstance(result, LabError):
        raise result
    return result


def stress_many(
    store: Store,
    settings: Settings,
    names: Sequence[str],
    chosen: Sequence[ScenarioSettings],
) -> dict[str, tuple[Position, list[StressRun]] | LabError]:
    """Each hedge's current book through each scenario, from one read of the stored history:
    from the earliest scenario to the last stored candle (which also gives today's prices)."""
    hedges = [hedge_settings(settings, name) for name in names]
    earliest = min((s.start for s in chosen), default=None)
    if earliest is None:
        earliest = max(s.start for s in SHIPPED_SCENARIOS)
    many = load_many_legs(store, settings, hedges, earliest - HOUR, None)
    out: dict[str, tuple[Position, list[StressRun]] | LabError] = {}
    for hedge in hedges:
        legs = many[hedge.name]
        position = _position_at_last_hour(settings, hedge, legs)
        if position is None:
            try:
                position = position_now(store, settings, hedge)[0]
            except LabError as exc:
                out[hedge.name] = exc
                continue
        runs = []
        for scenario in chosen:
            rb, rh, n = window_returns(legs, scenario.start, scenario.end)
            if n < 2:
                runs.append(
                    StressRun(scenario, None, "no stored candles of both legs in the window")
                )
                continue
            if scenario.shock_corr != 0.0 or scenario.vol_mult != 1.0:
                try:
                    rb, rh = shock_returns(rb, rh, Shock(scenario.shock_corr, scenario.vol_mult))
                except ValueError as exc:
                    runs.append(StressRun(scenario, None, str(exc)))
                    continue
            runs.append(StressRun(scenario, replay(position, rb, rh, scenario.name)))
        out[hedge.name] = (position, runs)
    return out


# -- rebalance advice -----------------------------------------------------------------------------


def advice_for(
    store: Store, settings: Settings, name: str, at: datetime, window_hours: int
) -> RebalanceAdvice | None:
    """The trade back to the min-variance ratio over `window_hours` ending at `at`, for a hedge
    with sizes; None for a hedge without sizes or without data."""
    hedge = hedge_settings(settings, name)
    if not hedge.legs[0].sized:
        return None
    try:
        position, legs = position_now(store, settings, hedge, at)
    except LabError:
        return None
    hours = min(window_hours, len(legs.times))
    rb = simple_returns(legs.base.close)[-hours:]
    rh = simple_returns(legs.hedge.close)[-hours:]
    m = moments(rb, rh)
    min_obs = max(2, math.ceil(hours * settings.metrics.min_coverage))
    sign = position.base_side * position.hedge_side
    target = min_var_ratio(rb, rh, sign, hours, min(min_obs, hours))[-1]
    if not math.isfinite(target) or m.n_obs < 2:
        return None
    costs = cost_model(settings, hedge)
    volume = legs.hedge.quote_volume[np.isfinite(legs.hedge.quote_volume)]
    sigma = trailing_vol(legs.hedge.close, costs.vol_hours)
    sigma = sigma[np.isfinite(sigma)]
    rate = 0.0
    if legs.hedge.funding is not None:
        paid = legs.hedge.funding[legs.hedge.funding != 0]
        rate = float(paid[-1]) if paid.size else 0.0
    return rebalance_advice(
        position,
        float(target),
        m,
        costs.hedge,
        impact_coefficient=costs.impact_coefficient,
        quote_volume=float(volume[-1]) if volume.size else float("nan"),
        sigma=float(sigma[-1]) if sigma.size else 0.0,
        next_funding_rate=rate,
        liquidity=costs.liquidity,
    )


ADVICE_KINDS = ("hedge_ratio_drift", "hedge_decoupling")


def attach_rebalance(
    store: Store, settings: Settings, events: Sequence[AlertEvent], rules: Mapping[str, Rule]
) -> None:
    """Put the rebalance trade into each new ratio-drift or decoupling event of a hedge with
    sizes (`context["rebalance"]`), priced at the event's hour. Advice is a courtesy: when it
    cannot be computed the alert goes out without it."""
    for event in events:
        rule = rules.get(event.rule)
        if rule is None or rule.kind not in ADVICE_KINDS or event.kind == "resolved":
            continue
        try:
            hedge = hedge_settings(settings, event.subject)
            advice = advice_for(store, settings, event.subject, event.ts, rule.window_hours)
        except Exception as exc:  # never let advice stop an alert
            log.warning(
                "no rebalance advice for %s: %s: %s", event.subject, type(exc).__name__, exc
            )
            continue
        if advice is not None:
            event.context["rebalance"] = {
                **advice.as_dict(),
                "instrument": hedge.legs[1].instrument,
            }
