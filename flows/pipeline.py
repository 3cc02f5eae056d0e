"""The steps of an hourly run between fetching and delivery: load, compute, evaluate.

Each step is a plain function over a `Store` and the settings; the Prefect flow in
`flows/hourly.py` only wires them. Pure work is delegated to `transforms` and `alerts`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from alerts.rules import Rule, observe
from alerts.state import AlertEvent, AlertState, advance
from flows.fetching import VenueFetch
from flows.settings import Settings
from flows.store import Store
from transforms.correlation import history_start, rolling_correlation_pairs
from transforms.hedges import hedge_metrics
from transforms.returns import to_log_returns, to_wide
from transforms.stress import basket_metrics

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
EVALUATED_THROUGH = "alerts.evaluated_through"


@dataclass(frozen=True)
class LoadResult:
    candles: int
    funding: int
    earliest_new: datetime | None  # earliest candle open time written this run


@dataclass(frozen=True)
class ComputeResult:
    since: datetime | None
    through: datetime | None
    hedge_rows: int = 0
    basket_rows: int = 0
    pair_rows: int = 0


@dataclass(frozen=True)
class EvaluateResult:
    hours: list[datetime] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)


def instruments_frame(settings: Settings) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "instrument": i.id,
                "venue": i.venue,
                "market": i.market,
                "symbol": i.symbol,
                "interval": i.interval,
            }
            for i in settings.instruments
        ],
        schema={k: pl.Utf8 for k in ("instrument", "venue", "market", "symbol", "interval")},
    )


def load(store: Store, fetches: Sequence[VenueFetch], run_id: str) -> LoadResult:
    """Upsert everything fetched and log each series' request range."""
    candles = pl.concat([f.candles for f in fetches], how="vertical") if fetches else None
    funding = pl.concat([f.funding for f in fetches], how="vertical") if fetches else None
    n_candles = store.upsert_candles(candles) if candles is not None else 0
    n_funding = store.upsert_funding(funding) if funding is not None else 0
    store.log_fetches(
        [
            {
                "run_id": run_id,
                "venue": s.venue,
                "market": s.market,
                "symbol": s.symbol,
                "dataset": s.dataset,
                "start_time": s.start_time,
                "end_time": s.end_time,
                "rows": s.rows,
                "error": s.error,
            }
            for f in fetches
            for s in f.series
        ]
    )
    earliest = candles["open_time"].min() if candles is not None and candles.height else None
    return LoadResult(n_candles, n_funding, earliest)  # type: ignore[arg-type]


def metric_pairs(settings: Settings) -> list[tuple[str, str]]:
    """Every pair a basket or a hedge needs, each once, in a stable order."""
    pairs: dict[tuple[str, str], None] = {}
    for basket in settings.baskets:
        for a, b in itertools.combinations(basket.members, 2):
            pairs[(a, b)] = None
    for hedge in settings.hedges:
        pairs[(hedge.legs[0].instrument, hedge.legs[1].instrument)] = None
    return list(pairs)


def compute(store: Store, settings: Settings, since: datetime | None) -> ComputeResult:
    """Recompute metrics for the hours from `since` on (plus the window behind them)."""
    if since is None:
        return ComputeResult(since=None, through=None)
    windows = settings.metrics.window_hours
    # One candle before the longest window's first return: the tail then equals a full recompute.
    history_from = history_start(since, max(windows)) - HOUR
    closes = store.closes(instruments_frame(settings), history_from)
    if closes.is_empty():
        return ComputeResult(since=since, through=None)
    ids = [i.id for i in settings.instruments]
    wide = to_wide(to_log_returns(closes), ids)
    pairs: list[pl.DataFrame] = []
    hedges: list[pl.DataFrame] = []
    baskets: list[pl.DataFrame] = []
    for window in windows:
        min_obs = settings.metrics.min_obs(window)
        pairs.append(
            rolling_correlation_pairs(
                wide, metric_pairs(settings), window, min_obs, since=since
            ).with_columns(pl.lit(window, pl.Int32).alias("window_hours"))
        )
        hedges.extend(
            hedge_metrics(wide, h.spec(), window, min_obs, since=since) for h in settings.hedges
        )
        baskets.extend(
            basket_metrics(wide, b.spec(), window, min_obs, since=since) for b in settings.baskets
        )
    pair_frame = _concat(pairs)
    hedge_frame = _concat(hedges)
    basket_frame = _concat(baskets)
    store.replace_metrics(since, pair_frame, hedge_frame, basket_frame)
    through = wide["open_time"].max()
    return ComputeResult(
        since=since,
        through=through,  # type: ignore[arg-type]
        hedge_rows=hedge_frame.height,
        basket_rows=basket_frame.height,
        pair_rows=pair_frame.height,
    )


def _concat(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def hours_to_evaluate(store: Store, settings: Settings) -> list[datetime]:
    """Hours with metrics not yet evaluated, oldest first; a fresh database starts near now."""
    latest = store.latest_metric_hour()
    if latest is None:
        return []
    done = store.cursor(EVALUATED_THROUGH)
    first = done + HOUR if done else latest - HOUR * (settings.alerts.catch_up_hours - 1)
    hours = []
    hour = first
    while hour <= latest:
        hours.append(hour)
        hour += HOUR
    return hours


def evaluate(store: Store, settings: Settings, run_id: str) -> EvaluateResult:
    """Walk the rules' state machines through every new hour; queue notifications in the outbox.

    States, events, outbox rows and the cursor are written in one transaction, so a retried or
    killed run neither loses nor repeats a notification.
    """
    hours = hours_to_evaluate(store, settings)
    rules = settings.alerts.rules
    if not hours or not rules:
        return EvaluateResult(hours=hours)
    hedges = store.metrics_since("hedge_metrics", hours[0])
    baskets = store.metrics_since("basket_metrics", hours[0])
    states = load_states(store)
    events: list[AlertEvent] = []
    by_name = {rule.name: rule for rule in rules}
    for hour in hours:
        hedges_now = hedges.filter(pl.col("open_time") == hour)
        baskets_now = baskets.filter(pl.col("open_time") == hour)
        for obs in observe(rules, hedges_now, baskets_now, hour):
            rule = by_name[obs.rule]
            state, new_events = advance(states.get((obs.rule, obs.subject)), obs, rule)
            states[(obs.rule, obs.subject)] = state
            events.extend(new_events)
    digests = _digests(events, by_name, run_id)
    with store.transaction():
        save_states(store, states, hours[-1])
        save_events(store, events)
        for key, channel, event_keys in digests:
            store.con.execute(
                "INSERT INTO deliveries (key, channel, event_keys, created_run) "
                "VALUES ($k, $c, $e, $r) ON CONFLICT DO NOTHING",
                {"k": key, "c": channel, "e": event_keys, "r": run_id},
            ).fetchall()
        store.set_cursor(EVALUATED_THROUGH, hours[-1])
    return EvaluateResult(hours=hours, events=events, deliveries=[k for k, _, _ in digests])


def _digests(
    events: Sequence[AlertEvent], rules: dict[str, Rule], run_id: str
) -> list[tuple[str, str, list[str]]]:
    """One digest per channel: (delivery key, channel, event keys)."""
    per_channel: dict[str, list[str]] = {}
    for event in events:
        for channel in rules[event.rule].channels:
            per_channel.setdefault(channel, []).append(event.key)
    digests = []
    for channel, keys in sorted(per_channel.items()):
        digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
        digests.append((f"{digest}|{channel}", channel, keys))
    return digests


def load_states(store: Store) -> dict[tuple[str, str], AlertState]:
    rows = store.con.sql(
        "SELECT rule, subject, status, since, pending_since, last_fired_at, last_resolved_at,"
        " last_notified_at, last_value, episode FROM alert_state"
    ).fetchall()
    columns = (
        "rule",
        "subject",
        "status",
        "since",
        "pending_since",
        "last_fired_at",
        "last_resolved_at",
        "last_notified_at",
        "last_value",
        "episode",
    )
    states = {}
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        states[(values["rule"], values["subject"])] = AlertState(**values)
    return states


def save_states(
    store: Store, states: dict[tuple[str, str], AlertState], evaluated_at: datetime
) -> None:
    for state in states.values():
        store.con.execute(
            "INSERT OR REPLACE INTO alert_state VALUES"
            " ($rule, $subject, $status, $since, $pending_since, $last_fired_at,"
            "  $last_resolved_at, $last_notified_at, $last_value, $episode, $evaluated_at)",
            {
                "rule": state.rule,
                "subject": state.subject,
                "status": state.status,
                "since": state.since,
                "pending_since": state.pending_since,
                "last_fired_at": state.last_fired_at,
                "last_resolved_at": state.last_resolved_at,
                "last_notified_at": state.last_notified_at,
                "last_value": state.last_value,
                "episode": state.episode,
                "evaluated_at": evaluated_at,
            },
        ).fetchall()


def save_events(store: Store, events: Sequence[AlertEvent]) -> None:
    for event in events:
        store.con.execute(
            "INSERT INTO alert_events VALUES ($key, $rule, $subject, $ts, $kind, $value,"
            " $threshold, $severity, $episode, $context)"
            " ON CONFLICT DO NOTHING",
            {
                "key": event.key,
                "rule": event.rule,
                "subject": event.subject,
                "ts": event.ts,
                "kind": event.kind,
                "value": event.value,
                "threshold": event.threshold,
                "severity": event.severity,
                "episode": event.episode,
                "context": json.dumps(event.context, default=str, sort_keys=True),
            },
        ).fetchall()


def load_events(store: Store, keys: Sequence[str]) -> list[AlertEvent]:
    rows = store.con.sql(
        "SELECT rule, subject, ts, kind, value, threshold, severity, episode, context"
        " FROM alert_events WHERE list_contains($keys, key) ORDER BY ts, rule, subject",
        params={"keys": list(keys)},
    ).fetchall()
    events = []
    for rule, subject, ts, kind, value, threshold, severity, episode, context in rows:
        events.append(
            AlertEvent(
                rule=rule,
                subject=subject,
                ts=ts,
                kind=kind,
                value=value,
                threshold=threshold,
                severity=severity,
                episode=episode,
                context=json.loads(context) if context else {},
            )
        )
    return events
