"""Backtest: replay stored history hour by hour through the same metrics, rules and state machine.

Nothing is delivered and the database is only read: candles of the configured instruments are
copied into an in-memory DuckDB, `pipeline.compute` computes the metrics there exactly as an
hourly run would, and every rule walks its state machine over the hours in time order.
data_staleness rules see, for each hour, how old each series' newest candle was at that hour.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from hedgewatch import pipeline
from hedgewatch.alerts.inhibit import inhibit
from hedgewatch.alerts.rules import KINDS, SUBJECT_COLUMN, Observation, Rule
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


def _inputs(
    settings: Settings, database: Path, start: datetime, end: datetime
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The closes (instrument, open_time, close) and funding the metrics of [start, end] read."""
    if not database.exists():
        raise StoreError(f"{database}: database not found")
    first = pipeline.history_from(settings, start)
    with Store.open(database, read_only=True, timeout_s=settings.storage.lock_timeout_s) as source:
        closes = source.closes(pipeline.instruments_frame(settings), first)
        funded = settings.metrics.funding and pipeline._funded_perps(settings)
        funding = source.funding_since(first) if funded else None
    closes = closes.filter(pl.col("open_time") <= end)
    if funding is not None:
        funding = funding.filter(pl.col("funding_time") <= end)
    return closes, funding


def freshness_history(
    closes: pl.DataFrame, settings: Settings, start: datetime, end: datetime
) -> pl.DataFrame:
    """For every hour in [start, end] and instrument: the age of its newest candle at that hour
    and the hours missing in the 24 before it, from the closes (instrument, open_time)."""
    if not settings.instruments:
        return pl.DataFrame()
    first, last = _micros(start) // _HOUR_US, _micros(end) // _HOUR_US
    grid = np.arange(first, last + 1, dtype=np.int64)
    by_id = {
        key[0]: part["hour"].to_numpy()
        for key, part in closes.select(
            "instrument", (pl.col("open_time").dt.epoch("us") // _HOUR_US).alias("hour")
        )
        .sort("instrument", "hour")
        .partition_by("instrument", as_dict=True)
        .items()
    }
    # Rows hour by hour, instruments by id within an hour: built in that order, not sorted.
    instruments = sorted(settings.instruments, key=lambda inst: inst.id)
    newest = np.empty((len(grid), len(instruments)), dtype=np.int64)
    recent = np.empty((len(grid), len(instruments)), dtype=np.int64)
    for c, inst in enumerate(instruments):
        hours = by_id.get(inst.id, np.zeros(0, dtype=np.int64))  # sorted
        hours = hours[np.concatenate(([True], hours[1:] != hours[:-1]))] if len(hours) else hours
        at = np.searchsorted(hours, grid, side="right")  # candles at or before each hour
        newest[:, c] = np.where(at > 0, hours[np.maximum(at - 1, 0)], -1)
        # Candles in the 24 hours ending at each hour: those <= h minus those <= h - 24.
        recent[:, c] = at - np.searchsorted(hours, grid - 24, side="right")
    seen = newest >= 0
    which = pl.Series(np.tile(np.arange(len(instruments)), len(grid)))

    def label(values: list[str]) -> pl.Series:
        return pl.Series(values, dtype=pl.Utf8).gather(which)

    hour = pl.Datetime("us", "UTC")
    frame = pl.DataFrame(
        {
            "open_time": pl.Series(np.repeat(grid * _HOUR_US, len(instruments))).cast(hour),
            "last_open_time": pl.Series((newest * _HOUR_US).ravel()).cast(hour),
            "missing_hours": (24 - recent).astype(np.float64).ravel(),
            "age_hours": np.where(seen, grid[:, None] - newest, np.nan).astype(np.float64).ravel(),
            "instrument": label([inst.id for inst in instruments]),
            "venue": label([inst.venue for inst in instruments]),
            "market": label([inst.market for inst in instruments]),
            "symbol": label([inst.symbol for inst in instruments]),
            "fetch_errors": np.zeros(len(grid) * len(instruments)),
        }
    )
    return frame.with_columns(
        pl.when(pl.Series(seen.ravel())).then(pl.col("last_open_time")),
        pl.col("age_hours").fill_nan(None),
    )


_HOUR_US = 3_600_000_000


@dataclass
class History:
    """The metrics of a backtested range, computed once: rules only read them."""

    settings: Settings
    start: datetime
    end: datetime
    frames: dict[str, pl.DataFrame]
    timings: dict[str, float] = field(default_factory=dict)
    # Each rule's series (keyed by what it depends on), shared by sweeps.
    series: dict[tuple[object, ...], dict[str, SubjectSeries]] = field(default_factory=dict)
    # Each source's rows of one window on the hour grid, shared by the rules that read it.
    grids: dict[tuple[str, int], pl.DataFrame] = field(default_factory=dict)

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR) + 1


def compute_history(
    settings: Settings, start: datetime, end: datetime, database: Path | None = None
) -> History:
    """Read the closes and compute every metric over [start, end] once, in memory.

    The same `pipeline.metric_frames` as an hourly run, with the basket baselines computed from
    the closes (not read from stored rows), for the windows the rules read, and without the
    pair-level rows no rule reads.
    """
    if end <= start:
        raise ValueError("--to must be after --from")
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    closes, funding = _inputs(settings, database or settings.storage.database, start, end)
    timings["load"] = time.perf_counter() - clock
    clock = time.perf_counter()
    windows: dict[str, set[int]] = defaultdict(set)
    for rule in settings.alerts.rules:
        source = KINDS[rule.kind].source
        if source in ("hedge", "basket"):
            windows[source].add(rule.window_hours)
    frames = pipeline.metric_frames(
        settings, closes, funding, start, end, pairs=False, only=windows
    )
    empty = pl.DataFrame()
    hedges = frames.hedges if frames is not None else empty
    baskets = frames.baskets if frames is not None else empty
    stale = [r for r in settings.alerts.rules if r.kind == "data_staleness"]
    fresh = freshness_history(closes, settings, start, end) if stale else empty
    timings["metrics"] = time.perf_counter() - clock
    frames_by_source = {"hedge": hedges, "basket": baskets, "freshness": fresh}
    return History(settings, start, end, frames_by_source, timings)


def _observation_key(rule: Rule) -> tuple[object, ...]:
    """What a rule's series depends on: rules equal in these see the same observations."""
    z = rule.z_metric_name if rule.z_fire_above is not None else None
    return (
        rule.kind,
        rule.watched_metric,
        z,
        rule.window,
        rule.drift,
        tuple(rule.subjects),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SubjectSeries:
    """What one rule sees of one subject, hour by hour, as columns (NaN: no value, no z).

    The same numbers `observe_rows` puts into each `Observation`, computed for every hour at
    once; `observation(rule, i)` builds the one of row i only when the state machine needs it.
    """

    subject: str
    micros: npt.NDArray[np.int64]  # open_time, microseconds since the epoch (UTC)
    value: npt.NDArray[np.float64]
    n_obs: npt.NDArray[np.int64]
    z: npt.NDArray[np.float64]
    members: list[Any] | None  # per row, for sources that record a member set

    def __len__(self) -> int:
        return len(self.micros)

    def ts(self, i: int) -> datetime:
        return _EPOCH + timedelta(microseconds=int(self.micros[i]))

    def observation(self, rule: Rule, i: int) -> Observation:
        value = float(self.value[i])
        z = float(self.z[i])
        context: dict[str, Any] = {
            "rule_kind": rule.kind,
            "metric": rule.watched_metric,
            "window": rule.window,
        }
        if self.members is not None:
            context["members"] = self.members[i]
        return Observation(
            rule.name,
            self.subject,
            self.ts(i),
            None if math.isnan(value) else value,
            int(self.n_obs[i]),
            rule.fire_threshold,
            context,
            None if math.isnan(z) else z,
        )

    def has_data(self, min_obs: int) -> npt.NDArray[np.bool_]:
        """Hours with a value from at least `min_obs` observations."""
        return ~np.isnan(self.value) & (self.n_obs >= min_obs)


def rule_series(rule: Rule, frame: pl.DataFrame) -> dict[str, SubjectSeries]:
    """The rule's series per subject from a time-ordered metrics frame (one window): the
    values of `observe_rows(rule, frame, explain=False)`, computed column-wise."""
    spec = KINDS[rule.kind]
    subject_col = SUBJECT_COLUMN[spec.source]
    if frame.is_empty():
        return {}
    if "*" not in rule.subjects:
        frame = frame.filter(pl.col(subject_col).is_in(sorted(set(rule.subjects))))

    def finite(name: str) -> pl.Expr:
        if name not in frame.columns:
            return pl.lit(None, pl.Float64)
        col = pl.col(name).cast(pl.Float64)
        return pl.when(col.is_finite()).then(col)

    value = finite(rule.watched_metric)
    if rule.kind == "hedge_ratio_drift":
        value = value.abs()
        if rule.drift == "relative":
            held = finite("held_ratio")
            value = pl.when(held.is_not_null() & (held != 0)).then(value / held)
    if spec.source == "freshness":
        n_obs = pl.lit(rule.min_obs, pl.Int64)  # freshness is a count, not a sample
    elif "n_obs" in frame.columns:
        n_obs = pl.col("n_obs").fill_null(0).cast(pl.Int64)
    else:
        n_obs = pl.lit(0, pl.Int64)
    z_col = rule.z_metric_name if rule.z_fire_above is not None else None
    z = finite(z_col) if z_col is not None else pl.lit(None, pl.Float64)
    has_members = "members" in frame.columns
    columns = frame.select(
        pl.col(subject_col).alias("subject"),
        pl.col("open_time").dt.epoch("us").alias("micros"),
        value.fill_null(np.nan).alias("value"),
        n_obs.alias("n_obs"),
        z.fill_null(np.nan).alias("z"),
        *([pl.col("members")] if has_members else []),
    )
    out: dict[str, SubjectSeries] = {}
    parts = columns.partition_by("subject", as_dict=True, maintain_order=True)
    for (subject,), part in parts.items():
        out[str(subject)] = SubjectSeries(
            subject=str(subject),
            micros=part["micros"].to_numpy(),
            value=part["value"].to_numpy(),
            n_obs=part["n_obs"].to_numpy(),
            z=part["z"].to_numpy(),
            members=part["members"].to_list() if has_members else None,
        )
    return out


def series(history: History, rule: Rule) -> dict[str, SubjectSeries]:
    """The rule's series over the history, per subject (cached on the history)."""
    key = _observation_key(rule)
    found = history.series.get(key)
    if found is not None:
        return found
    source = KINDS[rule.kind].source
    frame = history.frames.get(source)
    if frame is None or frame.is_empty():
        found = {}
    else:
        if source != "freshness":
            grid_key = (source, rule.window_hours)
            gridded = history.grids.get(grid_key)
            if gridded is None:
                gridded = _every_hour(
                    frame.filter(pl.col("window_hours") == rule.window_hours),
                    SUBJECT_COLUMN[source],
                    history.end,
                ).sort("open_time", maintain_order=True)
                history.grids[grid_key] = gridded
            frame = gridded
        else:
            frame = frame.sort("open_time", maintain_order=True)
        found = rule_series(rule, frame)
    history.series[key] = found
    return found


def observations(history: History, rule: Rule) -> list[Observation]:
    """The rule's observations over the history, every subject, in time order."""
    built = [
        one.observation(rule, i) for one in series(history, rule).values() for i in range(len(one))
    ]
    return sorted(built, key=lambda o: o.ts)


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
    """The events of `advance` on every observation, by subject (the reference `walk_series`
    is checked against)."""
    states: dict[str, AlertState] = {}
    events: list[AlertEvent] = []
    for one in obs:
        state, new = advance(states.get(one.subject), one, rule)
        states[one.subject] = state
        events.extend(new)
    return events


def walk_series(rule: Rule, by_subject: dict[str, SubjectSeries]) -> list[AlertEvent]:
    """The events of one rule's state machines over its series: the same events as `advance`
    on every hour, faster.

    While a subject is ok, an hour that neither breaches nor (with `no_data = "alert"`) lacks
    data changes nothing but `last_value` and `no_data_since`; such hours are found for all
    hours at once, jumped over, and the state catches up on them before the next hour that
    `advance` must see. Pending, firing and cooldown hours all go through `advance`.
    """
    fire = rule.fire_threshold
    z_fire = rule.z_fire_above
    events: list[AlertEvent] = []
    for one in by_subject.values():
        n = len(one)
        has = one.has_data(rule.min_obs)
        with np.errstate(invalid="ignore"):
            beyond = one.value > fire if rule.direction == "above" else one.value < fire
            if z_fire is not None:
                beyond |= one.z > z_fire
        must = has & beyond
        if rule.no_data == "alert":
            must |= ~has
        hot = np.flatnonzero(must)
        data = np.flatnonzero(has)
        state: AlertState | None = None
        i = 0
        while i < n:
            if state is not None and state.status == "ok":
                k = int(np.searchsorted(hot, i))
                j = int(hot[k]) if k < len(hot) else n
                if j > i:
                    state = _caught_up(state, one, data, i, j)
                    i = j
                    if i == n:
                        break
            state, new = advance(state, one.observation(rule, i), rule)
            events.extend(new)
            i += 1
    return events


def _caught_up(
    state: AlertState, one: SubjectSeries, data: npt.NDArray[np.intp], i: int, j: int
) -> AlertState:
    """The state after the quiet hours [i, j): the last value seen and the start of the
    no-data run they end in, as `advance` would have left them."""
    k = int(np.searchsorted(data, j)) - 1
    last_data = int(data[k]) if k >= 0 else -1
    if last_data >= i:
        last: float | None = float(one.value[last_data])
        since = one.ts(last_data + 1) if last_data + 1 < j else None
    else:
        last = state.last_value
        since = state.no_data_since or one.ts(i)
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
            mine = walk_series(rule, series(history, rule))
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
        for subject, one in series(history, rule).items():
            subjects[rule.name].add(subject)
            no_data[rule.name] += int((~one.has_data(rule.min_obs)).sum())
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
            one = series(history, rule).get(event.subject)
            if one is None:
                continue
            first, last = event.span
            lo = np.searchsorted(one.micros, _micros(first))
            hi = np.searchsorted(one.micros, _micros(last), side="right")
            values = [None if math.isnan(v) else float(v) for v in one.value[lo:hi]]
            peak = peak_in(rule, [one.ts(i) for i in range(lo, hi)], values, event)
            if peak is not None:
                peaks.append(peak)
        out[event.name] = peaks
    return out


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


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
