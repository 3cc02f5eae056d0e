"""Backtest: replay stored history hour by hour through the same metrics, rules and state machine.

Nothing is delivered and the database is only read: candles of the configured instruments are
copied into an in-memory DuckDB, `pipeline.compute` computes the metrics there exactly as an
hourly run would, and every rule walks its state machine over the hours in time order.
data_staleness rules see, for each hour, how old each series' newest candle was at that hour.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from hedgewatch import pipeline
from hedgewatch.alerts.inhibit import inhibit
from hedgewatch.alerts.rules import KINDS, SUBJECT_COLUMN, Observation, Rule, observe_rows
from hedgewatch.alerts.scorecard import LabelledEvent, Peak, alert_json, peak_in, watches
from hedgewatch.alerts.state import AlertEvent, AlertState, advance
from hedgewatch.settings import Settings
from hedgewatch.storage.store import Store, StoreError

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
    return HOUR * (longest + metrics.baseline_hours + 24 + 2) + daily


def _memory_store(settings: Settings, database: Path, start: datetime, end: datetime) -> Store:
    if not database.exists():
        raise StoreError(f"{database}: database not found")
    first = start - history_needed(settings)
    with Store.open(database, read_only=True, timeout_s=settings.storage.lock_timeout_s) as source:
        candles = source.candles_between(first, end)
        funding = source.funding_between(first - timedelta(days=1), end)
    store = Store.in_memory()
    store.insert_rows("candles", candles)
    store.insert_rows("funding", funding)
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
        times = store.series_open_times(inst.venue, inst.market, inst.symbol, inst.interval)
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


@dataclass
class History:
    """The metrics of a backtested range, computed once: rules only read them."""

    settings: Settings
    start: datetime
    end: datetime
    frames: dict[str, pl.DataFrame]
    timings: dict[str, float] = field(default_factory=dict)
    # Observations per rule (keyed by what observe_rows reads), shared by sweeps.
    observations: dict[tuple[object, ...], list[Observation]] = field(default_factory=dict)

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR) + 1


def compute_history(
    settings: Settings, start: datetime, end: datetime, database: Path | None = None
) -> History:
    """Copy the candles into memory and compute every metric over [start, end] once."""
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
        store.close()
    frames = {"hedge": hedges, "basket": baskets, "freshness": fresh}
    return History(settings, start, end, frames, timings)


def _observation_key(rule: Rule) -> tuple[object, ...]:
    """What `observe_rows` reads of a rule: rules equal in these see the same observations."""
    z = rule.z_metric_name if rule.z_fire_above is not None else None
    return (
        rule.name,
        rule.kind,
        rule.watched_metric,
        z,
        rule.window,
        rule.drift,
        tuple(rule.subjects),
    )


def observations(history: History, rule: Rule) -> list[Observation]:
    """The rule's observations over the history, in time order (cached on the history)."""
    key = _observation_key(rule)
    found = history.observations.get(key)
    if found is not None:
        return found
    source = KINDS[rule.kind].source
    frame = history.frames.get(source)
    if frame is None or frame.is_empty():
        found = []
    else:
        if source != "freshness":
            frame = _every_hour(
                frame.filter(pl.col("window_hours") == rule.window_hours),
                SUBJECT_COLUMN[source],
                history.end,
            )
        found = list(observe_rows(rule, frame.sort("open_time"), explain=False))
    history.observations[key] = found
    return found


def _every_hour(frame: pl.DataFrame, subject: str, end: datetime) -> pl.DataFrame:
    """One row per subject and hour from its first row to `end`; a missing hour is a row of
    nulls (no data), as the hourly run observes it."""
    if frame.is_empty():
        return frame
    firsts = frame.group_by(subject).agg(pl.col("open_time").min().alias("first"))
    grid = (
        firsts.with_columns(
            pl.datetime_ranges(
                pl.col("first"), pl.lit(end).cast(frame.schema["open_time"]), "1h"
            ).alias("open_time")
        )
        .explode("open_time")
        .drop("first")
    )
    window = frame.get_column("window_hours")[0]
    return grid.join(frame, on=[subject, "open_time"], how="left").with_columns(
        pl.lit(window, dtype=frame.schema["window_hours"]).alias("window_hours")
    )


def walk(rule: Rule, obs: list[Observation]) -> list[AlertEvent]:
    """The events of one rule's state machines over its observations.

    The same events as calling `advance` on every observation, faster: while a subject is ok,
    an hour that neither breaches nor (with `no_data = "alert"`) lacks data changes nothing
    but `last_value` and `no_data_since`, so those hours only note them, and the state catches
    up before the next hour that `advance` must see.
    """
    states: dict[str, AlertState] = {}
    quiet: dict[str, tuple[float | None, datetime | None]] = {}  # noted, not yet applied
    events: list[AlertEvent] = []
    fire = rule.fire_threshold
    above = rule.direction == "above"
    z_fire = rule.z_fire_above
    min_obs = rule.min_obs
    alert_on_no_data = rule.no_data == "alert"
    for one in obs:
        subject = one.subject
        state = states.get(subject)
        if state is not None and state.status == "ok":
            value = one.value
            if value is not None and one.n_obs >= min_obs:
                z = one.z
                if not (
                    (value > fire if above else value < fire)
                    or (z_fire is not None and z is not None and z > z_fire)
                ):
                    quiet[subject] = (value, None)
                    continue
            elif not alert_on_no_data:
                last, since = quiet.get(subject, (state.last_value, state.no_data_since))
                quiet[subject] = (last, since or one.ts)
                continue
        if subject in quiet and state is not None:
            last, since = quiet.pop(subject)
            state = _caught_up(state, last, since)
        state, new = advance(state, one, rule)
        states[subject] = state
        if new:
            events.extend(new)
    return events


def _caught_up(state: AlertState, last: float | None, since: datetime | None) -> AlertState:
    return AlertState(**{**state.__dict__, "last_value": last, "no_data_since": since})


def replay(
    history: History, rules: list[Rule], walked: dict[str, list[AlertEvent]] | None = None
) -> list[AlertEvent]:
    """Every rule's events over the history, inhibition applied, in time order.

    `walked` caches each rule's own events by name; pass the same dict to reuse the walks of
    rules that did not change (a sweep changes a few rules at a time).
    """
    events: list[AlertEvent] = []
    for rule in rules:
        if not KINDS[rule.kind].source:
            continue
        key = repr(rule)
        mine = walked.get(key) if walked is not None else None
        if mine is None:
            mine = walk(rule, observations(history, rule))
            if walked is not None:
                walked[key] = mine
        events.extend(mine)
    events.sort(key=lambda e: (e.ts, e.rule, e.subject, e.key))
    # Inhibition writes into the events' context: work on copies so cached walks stay clean.
    events = [_fresh(e) for e in events]
    by_name = {rule.name: rule for rule in rules}
    inhibit(events, by_name, pipeline.contains(history.settings))
    return events


def _fresh(event: AlertEvent) -> AlertEvent:
    context = {k: v for k, v in event.context.items() if k != "muted_by"}
    return AlertEvent(
        rule=event.rule,
        subject=event.subject,
        ts=event.ts,
        kind=event.kind,
        value=event.value,
        threshold=event.threshold,
        severity=event.severity,
        episode=event.episode,
        context=context,
    )


def run_backtest(
    settings: Settings, start: datetime, end: datetime, database: Path | None = None
) -> BacktestResult:
    history = compute_history(settings, start, end, database)
    return backtest_history(history)


def backtest_history(history: History, rules: list[Rule] | None = None) -> BacktestResult:
    rules = history.settings.alerts.rules if rules is None else rules
    clock = time.perf_counter()
    events = replay(history, rules)
    no_data: Counter[str] = Counter()
    subjects: dict[str, set[str]] = defaultdict(set)
    for rule in rules:
        if not KINDS[rule.kind].source:
            continue
        for obs in observations(history, rule):
            subjects[rule.name].add(obs.subject)
            if obs.value is None or obs.n_obs < rule.min_obs:
                no_data[rule.name] += 1
    timings = dict(history.timings)
    timings["rules"] = time.perf_counter() - clock
    summaries = summarise(rules, events, history.end, history.hours)
    for summary in summaries:
        summary.subjects = len(subjects.get(summary.rule, ()))
        summary.no_data_hours = no_data.get(summary.rule, 0)
    return BacktestResult(history.start, history.end, history.hours, events, summaries, timings)


def event_peaks(
    history: History, rules: list[Rule], labelled: list[LabelledEvent]
) -> dict[str, list[Peak]]:
    """For each labelled event, the peak of every rule watching its subject."""
    out: dict[str, list[Peak]] = {}
    for event in labelled:
        peaks = []
        for rule in rules:
            if not watches(rule, event):
                continue
            series = [o for o in observations(history, rule) if o.subject == event.subject]
            peak = peak_in(rule, [o.ts for o in series], [o.value for o in series], event)
            if peak is not None:
                peaks.append(peak)
        out[event.name] = peaks
    return out


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
    """Each event's numbers: the arm that fired and its threshold, z, window, n_obs, members."""
    for e in result.events:
        yield alert_json(e)
