"""The alert state machine per (rule, subject): ok -> pending -> firing -> ok, with hysteresis.

Escalation (a firing alert whose value passes the rule's `critical_at`), keep-firing (a cleared
value must stay clear `keep_firing_hours` before the alert resolves), repeat and cooldown all
live here. An hour without data changes nothing but `no_data_since`, which makes it visible.

Pure and deterministic: `advance` takes the previous state and one observation and returns the next
state plus the events to notify. The same inputs always give the same events and idempotency keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from alerts.rules import SEVERITY_RANK, Observation, Rule, Severity

Status = Literal["ok", "pending", "firing"]
EventKind = Literal["firing", "escalated", "repeat", "resolved"]


@dataclass(frozen=True)
class AlertState:
    """Where one (rule, subject) stands. All timestamps are candle open times (UTC).

    `since`: when the current status began. `pending_since`: first breaching hour of the current
    breach (kept while firing). `episode` counts firings; a resolve belongs to the episode it ends.
    """

    rule: str
    subject: str
    status: Status = "ok"
    since: datetime | None = None
    pending_since: datetime | None = None
    last_fired_at: datetime | None = None
    last_resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    last_value: float | None = None
    episode: int = 0
    severity: Severity | None = None  # while firing: the severity last announced
    no_data_since: datetime | None = None  # first hour of the current run of no-data hours
    clearing_since: datetime | None = None  # while firing: first hour of the current clear run


@dataclass(frozen=True)
class AlertEvent:
    """A notification to send. `threshold` is the one crossed: fire_above, or clear_below when
    resolved. `key` is the idempotency key, derived from the other fields."""

    rule: str
    subject: str
    ts: datetime
    kind: EventKind
    value: float
    threshold: float
    severity: Severity
    episode: int
    context: dict[str, Any] = field(default_factory=dict)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        key = event_key(self.rule, self.subject, self.episode, self.kind, self.ts)
        object.__setattr__(self, "key", key)


def event_key(rule: str, subject: str, episode: int, kind: str, ts: datetime) -> str:
    return f"{rule}|{subject}|{episode}|{kind}|{_utc(ts).isoformat()}"


def advance(
    state: AlertState | None, obs: Observation, rule: Rule
) -> tuple[AlertState, list[AlertEvent]]:
    """Next state and events after observing `obs` (observations must arrive in time order).

    - No data (value None or n_obs < rule.min_obs): nothing changes but `no_data_since`; no event.
    - ok/pending: a breaching value (past the fire threshold, or a baseline z past z_fire_above)
      starts (or continues) pending; once pending for `for_hours` hours it fires. A clearing
      value returns to ok silently. In between, the state holds.
    - Cooldown: within `cooldown_hours` of the last resolve, a would-be firing stays pending without
      an event and fires on the first breaching hour after the cooldown has passed.
    - firing: a clearing value resolves (one "resolved" event) once it has stayed clear for
      `keep_firing_hours`; a value past `critical_at` escalates once ("escalated"); otherwise it
      stays firing and, with `repeat_hours`, emits a "repeat" every `repeat_hours` since the last
      notification.
    """
    if obs.rule != rule.name:
        raise ValueError(f"observation is for rule {obs.rule!r}, not {rule.name!r}")
    if state is None:
        state = AlertState(rule=rule.name, subject=obs.subject)
    elif (state.rule, state.subject) != (obs.rule, obs.subject):
        raise ValueError(
            f"state is for {state.rule!r}/{state.subject!r}, "
            f"observation for {obs.rule!r}/{obs.subject!r}"
        )
    ts = _utc(obs.ts)
    if obs.value is None or obs.n_obs < rule.min_obs:
        if state.no_data_since is None:
            state = _with(state, no_data_since=ts)
        return state, []

    value = obs.value
    breaching = rule.breaching(value, obs.z)
    clearing = rule.clearing(value, obs.z)
    state = _with(state, last_value=value, no_data_since=None)

    def event(kind: EventKind, episode: int, threshold: float, severity: Severity) -> AlertEvent:
        context = dict(obs.context)
        context["direction"] = rule.direction
        if kind != "resolved":
            context["breach"] = "z" if not rule.beyond(value, rule.fire_threshold) else "value"
        return AlertEvent(
            rule=rule.name,
            subject=obs.subject,
            ts=ts,
            kind=kind,
            value=value,
            threshold=threshold,
            severity=severity,
            episode=episode,
            context=context,
        )

    if state.status == "firing":
        if clearing:
            clearing_since = state.clearing_since or ts
            if ts - clearing_since < timedelta(hours=rule.keep_firing_hours):
                return _with(state, clearing_since=clearing_since), []
            resolved = _with(
                state,
                status="ok",
                since=ts,
                pending_since=None,
                last_resolved_at=ts,
                last_notified_at=ts,
                severity=None,
                clearing_since=None,
            )
            severity = state.severity or rule.severity
            return resolved, [event("resolved", state.episode, rule.clear_threshold, severity)]
        state = _with(state, clearing_since=None)
        severity = rule.severity_for(value) if breaching else (state.severity or rule.severity)
        if SEVERITY_RANK[severity] > SEVERITY_RANK[state.severity or rule.severity]:
            threshold = rule.critical_at if rule.critical_at is not None else rule.fire_threshold
            return _with(state, last_notified_at=ts, severity=severity), [
                event("escalated", state.episode, threshold, severity)
            ]
        due = rule.repeat_hours is not None and (
            state.last_notified_at is None
            or ts - state.last_notified_at >= timedelta(hours=rule.repeat_hours)
        )
        if due:
            current = state.severity or rule.severity
            return _with(state, last_notified_at=ts), [
                event("repeat", state.episode, rule.fire_threshold, current)
            ]
        return state, []

    if clearing:
        if state.status == "pending":
            return _with(state, status="ok", since=ts, pending_since=None), []
        return state, []
    if not breaching:
        return state, []  # between the thresholds: hold

    pending_since = state.pending_since or ts
    if state.status != "pending":
        state = _with(state, status="pending", since=ts, pending_since=pending_since)
    held_long_enough = ts - pending_since >= timedelta(hours=rule.for_hours)
    cooling_down = state.last_resolved_at is not None and ts - state.last_resolved_at < timedelta(
        hours=rule.cooldown_hours
    )
    if not held_long_enough or cooling_down:
        return state, []
    episode = state.episode + 1
    severity = rule.severity_for(value)
    fired = _with(
        state,
        status="firing",
        since=ts,
        last_fired_at=ts,
        last_notified_at=ts,
        episode=episode,
        severity=severity,
        clearing_since=None,
    )
    return fired, [event("firing", episode, rule.fire_threshold, severity)]


def _with(state: AlertState, **changes: Any) -> AlertState:
    """`dataclasses.replace` without its per-call introspection (this runs for every hour)."""
    new = object.__new__(AlertState)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware (UTC), got naive {ts.isoformat()}")
    return ts.astimezone(UTC)


PIPELINE_FAILURE_RULE = "pipeline-failure"


def pipeline_failure_event(
    *,
    flow: str,
    run_id: str,
    started_at: datetime,
    error: str,
    rule: Rule | None = None,
) -> AlertEvent:
    """The notification for a failed run, rendered by the same templates as every other alert.

    `started_at` (the run's start) makes the key: calling this twice for the same run gives the
    same idempotency key, so a retried on-failure hook does not notify twice. `error` must already
    be free of secrets (it is shown as is). `rule` (kind pipeline_failure) gives the name,
    severity and channels; without one the rule is "pipeline-failure", critical.
    """
    if rule is not None and rule.kind != "pipeline_failure":
        raise ValueError(f"rule {rule.name!r} is a {rule.kind} rule, not pipeline_failure")
    message = " ".join(error.split())[:500] or "the run failed without a message"
    return AlertEvent(
        rule=rule.name if rule is not None else PIPELINE_FAILURE_RULE,
        subject=flow,
        ts=_utc(started_at),
        kind="firing",
        value=1.0,
        threshold=0.0,
        severity=rule.severity if rule is not None else "critical",
        episode=0,
        context={
            "rule_kind": "pipeline_failure",
            "metric": "failed",
            "run_id": run_id,
            "message": message,
            "sql": (
                "SELECT run_id, started_at, status, summary FROM runs "
                f"WHERE run_id = '{run_id.replace(chr(39), chr(39) * 2)}'"
            ),
        },
    )
