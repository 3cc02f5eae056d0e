"""Backtest: replay stored history hour by hour through the same metrics, rules and state machine.

Nothing is delivered and the database is only read: candles of the configured instruments are
copied into an in-memory DuckDB, `pipeline.compute` computes the metrics there exactly as an
hourly run would, and every rule walks its state machine over the hours in time order.
data_staleness rules see, for each hour, how old each series' newest candle was at that hour.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from alerts.rules import KINDS, Rule, observe_rows
from alerts.state import AlertEvent, AlertState, advance
from flows import pipeline
from flows.settings import Settings
from flows.store import Store, StoreError, connect

HOUR = timedelta(hours=1)


@dataclass
class RuleSummary:
    rule: str
    kind: str
    subjects: int = 0
    episodes: int = 0
    hours_firing: float = 0.0
    notifications: int = 0
    alerts_per_month: float = 0.0
    no_data_hours: int = 0


@dataclass
class BacktestResult:
    start: datetime
    end: datetime
    hours: int
    events: list[AlertEvent] = field(default_factory=list)
    summaries: list[RuleSummary] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def history_needed(settings: Settings) -> timedelta:
    """How far before the first replayed hour the metrics read: the longest window, the z-score
    baseline, and a day for daily baskets (the same lookback `pipeline.compute` uses)."""
    metrics = settings.metrics
    longest = max(metrics.window_hours)
    daily = timedelta(days=longest // 24 + 3) if metrics.daily_baskets else timedelta(0)
    return HOUR * (longest + metrics.baseline_hours + 2) + daily


def _memory_store(settings: Settings, database: Path, start: datetime, end: datetime) -> Store:
    if not database.exists():
        raise StoreError(f"{database}: database not found")
    first = start - history_needed(settings)
    source = connect(database, read_only=True, timeout_s=settings.storage.lock_timeout_s)
    try:
        candles = source.sql(
            "SELECT * FROM candles WHERE open_time >= $a AND open_time <= $b",
            params={"a": first, "b": end},
        ).pl()
        funding = source.sql(
            "SELECT * FROM funding WHERE funding_time >= $a AND funding_time <= $b",
            params={"a": first - timedelta(days=1), "b": end},
        ).pl()
    finally:
        source.close()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    store = Store(con, Path(":memory:"))
    store.migrate()
    for table, frame in (("candles", candles), ("funding", funding)):
        if frame.height:
            con.register("copied", frame.to_arrow())
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM copied").fetchall()
            con.unregister("copied")
    return store


def freshness_history(
    store: Store, settings: Settings, start: datetime, end: datetime
) -> pl.DataFrame:
    """For every hour in [start, end] and instrument: the age of its newest candle at that hour."""
    frames = []
    hours = pl.datetime_range(start, end, "1h", time_zone="UTC", eager=True).cast(
        pl.Datetime("us", "UTC")
    )
    grid = pl.DataFrame({"open_time": hours})
    for inst in settings.instruments:
        times = store.con.sql(
            "SELECT open_time FROM candles WHERE venue = $v AND market = $m AND symbol = $s"
            " AND interval = $i ORDER BY open_time",
            params={"v": inst.venue, "m": inst.market, "s": inst.symbol, "i": inst.interval},
        ).pl()
        times = times.with_columns(
            pl.col("open_time").cast(pl.Datetime("us", "UTC")),
            pl.col("open_time").cast(pl.Datetime("us", "UTC")).alias("last_open_time"),
        )
        joined = grid.join_asof(times, on="open_time", strategy="backward")
        present = grid.join(
            times.select("open_time", pl.lit(1).alias("has")), on="open_time", how="left"
        ).with_columns(pl.col("has").fill_null(0))
        recent = present.select(
            (24 - pl.col("has").rolling_sum(24, min_samples=1)).alias("missing_hours")
        )
        frames.append(
            joined.hstack(recent).with_columns(
                pl.lit(inst.id).alias("instrument"),
                pl.lit(inst.venue).alias("venue"),
                pl.lit(inst.market).alias("market"),
                pl.lit(inst.symbol).alias("symbol"),
                ((pl.col("open_time") - pl.col("last_open_time")).dt.total_hours())
                .cast(pl.Float64)
                .alias("age_hours"),
                pl.col("missing_hours").cast(pl.Float64),
                pl.lit(0.0).alias("fetch_errors"),
            )
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="vertical_relaxed").sort("open_time", "instrument")


def run_backtest(
    settings: Settings, start: datetime, end: datetime, database: Path | None = None
) -> BacktestResult:
    import time

    if end <= start:
        raise ValueError("--to must be after --from")
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    store = _memory_store(settings, database or settings.storage.database, start, end)
    timings["load"] = time.perf_counter() - clock
    try:
        clock = time.perf_counter()
        pipeline.compute(store, settings, start)
        hedges = store.metrics_since("hedge_metrics", start).filter(pl.col("open_time") <= end)
        baskets = store.metrics_since("basket_metrics", start).filter(pl.col("open_time") <= end)
        stale = [r for r in settings.alerts.rules if r.kind == "data_staleness"]
        fresh = freshness_history(store, settings, start, end) if stale else pl.DataFrame()
        timings["metrics"] = time.perf_counter() - clock
    finally:
        store.con.close()
    clock = time.perf_counter()
    frames = {"hedge": hedges, "basket": baskets, "freshness": fresh}
    events: list[AlertEvent] = []
    no_data: Counter[str] = Counter()
    subjects: dict[str, set[str]] = defaultdict(set)
    for rule in settings.alerts.rules:
        source = KINDS[rule.kind].source
        frame = frames.get(source)
        if frame is None or frame.is_empty():
            continue
        if source != "freshness":
            frame = frame.filter(pl.col("window_hours") == rule.window_hours)
        states: dict[str, AlertState] = {}
        for obs in observe_rows(rule, frame.sort("open_time"), explain=False):
            subjects[rule.name].add(obs.subject)
            if obs.value is None or obs.n_obs < rule.min_obs:
                no_data[rule.name] += 1
            state, new = advance(states.get(obs.subject), obs, rule)
            states[obs.subject] = state
            events.extend(new)
    events.sort(key=lambda e: (e.ts, e.rule, e.subject, e.key))
    timings["rules"] = time.perf_counter() - clock
    hours = int((end - start) / HOUR) + 1
    summaries = summarise(settings.alerts.rules, events, end, hours)
    for summary in summaries:
        summary.subjects = len(subjects.get(summary.rule, ()))
        summary.no_data_hours = no_data.get(summary.rule, 0)
    return BacktestResult(start, end, hours, events, summaries, timings)


def summarise(
    rules: list[Rule], events: list[AlertEvent], end: datetime, hours: int
) -> list[RuleSummary]:
    months = max(hours / (24 * 365.25 / 12), 1e-9)
    out = []
    for rule in rules:
        if rule.kind == "pipeline_failure":
            continue
        mine = [e for e in events if e.rule == rule.name]
        open_since: dict[str, datetime] = {}
        firing_hours = 0.0
        for event in mine:
            if event.kind == "firing":
                open_since[event.subject] = event.ts
            elif event.kind == "resolved" and event.subject in open_since:
                firing_hours += (event.ts - open_since.pop(event.subject)) / HOUR
        firing_hours += sum((end - since) / HOUR + 1 for since in open_since.values())
        out.append(
            RuleSummary(
                rule=rule.name,
                kind=rule.kind,
                episodes=sum(e.kind == "firing" for e in mine),
                hours_firing=firing_hours,
                notifications=len(mine),
                alerts_per_month=len(mine) / months,
            )
        )
    return out


def event_rows(result: BacktestResult) -> Iterator[dict[str, object]]:
    for e in result.events:
        yield {
            "ts": e.ts.isoformat(),
            "rule": e.rule,
            "subject": e.subject,
            "state": e.kind,
            "value": None if not math.isfinite(e.value) else round(e.value, 6),
            "threshold": e.threshold,
            "severity": e.severity,
            "episode": e.episode,
        }
