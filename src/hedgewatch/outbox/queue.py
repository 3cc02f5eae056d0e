"""The outbox's rows: alert states and events recorded, one digest per channel queued, claimed
and marked. Everything the outbox keeps in the database goes through here.

May import: the alert core, settings, storage. The hourly run (pipeline.evaluate) and the failure
fallback write through `record`; `deliver` claims and marks rows through `pending`/`claim`/`mark`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hedgewatch.alerts.rules import Rule
from hedgewatch.alerts.state import AlertEvent, AlertState
from hedgewatch.settings import Settings
from hedgewatch.storage.store import Lake, Store

Digest = tuple[str, str, list[str]]  # (delivery key, channel, event keys)


@dataclass(frozen=True)
class Pending:
    """One queued notification: its key, channel and events; `interrupted` if a send was cut.

    `runs`: delivery runs that tried it so far; `uncertain`: its sends that may have reached the
    channel without an answer (unanswered or cut short); `sent_at`: when the last send began.
    """

    key: str
    channel: str
    events: list[AlertEvent]
    interrupted: bool = False
    runs: int = 0
    uncertain: int = 0
    sent_at: datetime | None = None


def active_silences(store: Store, settings: Settings) -> list[tuple[str, str, datetime]]:
    """(rule, subject, until) from the config and the alert_silences table."""
    return [(s.rule, s.subject, s.until) for s in settings.alerts.silences] + [
        (rule, subject, until) for rule, subject, until, _ in store.silences()
    ]


def is_silenced(event: AlertEvent, silences: Iterable[tuple[str, str, datetime]]) -> bool:
    return any(
        rule in ("*", event.rule) and subject in ("*", event.subject) and event.ts < until
        for rule, subject, until in silences
    )


def plan_outbox(
    store: Store,
    settings: Settings,
    events: Sequence[AlertEvent],
    rules: Mapping[str, Rule],
    run_id: str,
) -> tuple[set[str], list[Digest]]:
    """The events a silence or an inhibiting alert holds back, and one digest per channel for
    the rest."""
    silences = active_silences(store, settings)
    silenced = {e.key for e in events if e.context.get("muted_by") or is_silenced(e, silences)}
    return silenced, _digests([e for e in events if e.key not in silenced], rules, run_id)


def queue(store: Store, digests: Sequence[Digest], run_id: str) -> None:
    for key, channel, event_keys in digests:
        store.queue_delivery(key, channel, event_keys, run_id)


def _digests(events: Sequence[AlertEvent], rules: Mapping[str, Rule], run_id: str) -> list[Digest]:
    """One digest per channel: (delivery key, channel, event keys)."""
    per_channel: dict[str, list[str]] = {}
    for event in events:
        rule = rules.get(event.rule)
        for channel in rule.channels if rule is not None else []:
            per_channel.setdefault(channel, []).append(event.key)
    digests = []
    for channel, keys in sorted(per_channel.items()):
        digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
        digests.append((f"{digest}|{channel}", channel, keys))
    return digests


_STATE_COLUMNS = (
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
    "severity",
    "no_data_since",
    "clearing_since",
    "last_breach_at",
    "arm",
)


def load_states_with_times(
    store: Store,
) -> tuple[dict[tuple[str, str], AlertState], dict[tuple[str, str], datetime]]:
    states = {}
    times = {}
    for row in store.alert_states():
        key = (row["rule"], row["subject"])
        states[key] = AlertState(**{c: row[c] for c in _STATE_COLUMNS})
        times[key] = row["evaluated_at"]
    return states, times


def save_states(
    store: Store,
    states: Mapping[tuple[str, str], AlertState],
    evaluated_at: Mapping[tuple[str, str], datetime] | datetime,
) -> None:
    rows = []
    for key, state in states.items():
        at = evaluated_at if isinstance(evaluated_at, datetime) else evaluated_at.get(key)
        if at is None:
            continue
        values = {c: getattr(state, c) for c in _STATE_COLUMNS}
        values["evaluated_at"] = at
        rows.append(values)
    store.save_alert_states(rows)


def save_events(store: Store, events: Sequence[AlertEvent], silenced: Iterable[str] = ()) -> None:
    quiet = set(silenced)
    for event in events:
        store.save_alert_event(
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
                "silenced": event.key in quiet,
            }
        )


def load_events(store: Store, keys: Sequence[str]) -> list[AlertEvent]:
    events = []
    for rule, subject, ts, kind, value, threshold, severity, episode, context in store.alert_events(
        keys
    ):
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


def record(
    store: Store,
    events: Sequence[AlertEvent],
    silenced: Iterable[str],
    digests: Sequence[Digest],
    run_id: str,
    states: Mapping[tuple[str, str], AlertState] | None = None,
    evaluated_at: Mapping[tuple[str, str], datetime] | None = None,
) -> None:
    """Write states, events and queued digests; the caller holds the transaction."""
    if states is not None:
        save_states(store, states, evaluated_at or {})
    save_events(store, events, silenced)
    queue(store, digests, run_id)


def queue_events(
    store: Store,
    settings: Settings,
    events: Sequence[AlertEvent],
    run_id: str,
    rules: Mapping[str, Rule] | None = None,
) -> int:
    """Record events and queue one digest per channel (silences apply); returns rows queued."""
    rules = rules if rules is not None else {r.name: r for r in settings.alerts.rules}
    silenced, digests = plan_outbox(store, settings, events, rules, run_id)
    with store.transaction():
        record(store, events, silenced, digests, run_id)
    return len(digests)


def pending(store: Store) -> list[Pending]:
    """Every notification neither delivered nor given up, oldest key first."""
    return [
        Pending(
            row["key"],
            row["channel"],
            load_events(store, list(row["event_keys"])),
            row["status"] == "sending",
            runs=int(row["runs"]),
            uncertain=int(row["uncertain"]),
            sent_at=row["sending_since"],
        )
        for row in store.pending_deliveries()
    ]


def claim(database: Path | Lake, timeout_s: float, item: Pending, at: datetime) -> None:
    """Commit `status = 'sending'` before the channel is called."""
    params = {"key": item.key, "at": at, "interrupted": item.interrupted}
    Store.execute_once(database, "claim_delivery", params, timeout_s=timeout_s)


def mark(
    database: Path | Lake,
    timeout_s: float,
    key: str,
    error: str | None,
    tries: int,
    at: datetime,
    *,
    uncertain: bool = False,
    dead_reason: str | None = None,
) -> None:
    """Commit one run's outcome: `delivered`; back to `queued` with the (redacted) error; or
    `dead` with `dead_reason`. `uncertain`: the last send went out and got no answer."""
    params = {
        "key": key,
        "error": error,
        "tries": tries,
        "at": at,
        "uncertain": uncertain,
        "dead_reason": dead_reason,
    }
    Store.execute_once(database, "mark_delivery", params, timeout_s=timeout_s)


def bury(database: Path | Lake, timeout_s: float, key: str, reason: str, at: datetime) -> None:
    """Give a notification up without sending it (status `dead`)."""
    params = {"key": key, "reason": reason, "at": at}
    Store.execute_once(database, "bury_delivery", params, timeout_s=timeout_s)


def mark_dead_reported(
    database: Path | Lake, timeout_s: float, keys: Sequence[str], at: datetime
) -> None:
    params = {"keys": list(keys), "at": at}
    Store.execute_once(database, "mark_dead_reported", params, timeout_s=timeout_s)
