"""The alert state machine per (rule, subject): ok -> pending -> firing -> ok, with hysteresis.

Escalation (a firing alert whose value reaches the rule's `critical_at`), keep-firing (a cleared
value must stay clear `keep_firing_hours` before the alert resolves), repeat, cooldown and the
rule's no-data policy all live here; `advance` spells out each of them.

Pure and deterministic: `advance` takes the previous state and one observation and returns the next
state plus the events to notify. The same inputs always give the same events and idempotency keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from .rules import SEVERITY_RANK, Arm, Observation, Rule, Severity

Status = Literal["ok", "pending", "firing"]
EventKind = Literal["firing", "escalated", "repeat", "resolved"]
# Notifications that page someone: a new alert, or one that got worse.
PAGE_KINDS = frozenset({"firing", "escalated"})
HOUR = timedelta(hours=1)


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
    last_breach_at: datetime | None = None  # while pending: the last hour of the breaching run
    arm: Arm | None = None  # while firing: the arm it fired (or last breached) on


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

    - Breaching: a value past the fire threshold, or a baseline z past `z_fire_above`. Clearing:
      back past the clear threshold (and the z below `z_clear_below`). Anything else is between.
    - ok/pending: `for_hours = N` fires at the N-th consecutive breaching hour (0 and 1 both fire
      at the first). The run of breaching hours is broken by any hour that does not breach — a
      value between the thresholds, a clearing value, an hour without data, or a missing hour —
      and the subject goes back to ok without an event.
    - Cooldown: within `cooldown_hours` of the last resolve, a run that reaches N stays pending
      without an event and fires on its first breaching hour after the cooldown — unless the
      value is at or past `critical_at`, which fires at once.
    - firing: a clearing value resolves (one "resolved" event) once it has stayed clear for
      `keep_firing_hours`; a value at or past `critical_at` escalates once ("escalated");
      otherwise it stays firing and, with `repeat_hours`, emits a "repeat" every `repeat_hours`
      since the last notification.
    - No data (value None or n_obs < rule.min_obs) sets `no_data_since`, ends a pending run and
      then follows the rule's `no_data` policy: "keep_state" (a firing alert stays firing),
      "resolve" (a firing alert resolves at the first hour without data) or "alert" (after
      `no_data_alert_after_hours` hours without data an alert fires on arm "no_data", regardless
      of cooldown; it resolves at the first hour with data that does not breach).

    Every event's context names the `arm` that fired — "level", "z", "critical" or "no_data" —
    and `threshold` is that arm's threshold (`fire_*`, `z_fire_above`, `critical_at`, or the
    no-data hours); a resolve carries the clear threshold.
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

    def event(
        kind: EventKind,
        episode: int,
        threshold: float,
        severity: Severity,
        value: float,
        arm: Arm,
    ) -> AlertEvent:
        context = dict(obs.context)
        context["direction"] = rule.direction
        context["arm"] = arm
        context["n_obs"] = obs.n_obs
        if obs.z is not None:
            context["z"] = obs.z
        if kind != "resolved":
            context["breach"] = "z" if arm == "z" else "value"
        if arm == "no_data":
            context["no_data"] = True
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

    if obs.value is None or obs.n_obs < rule.min_obs:
        no_data_since = state.no_data_since or ts
        state = _with(state, no_data_since=no_data_since)
        if state.status == "pending":
            state = _with(state, status="ok", since=ts, pending_since=None, last_breach_at=None)
        last = state.last_value if state.last_value is not None else math.nan
        if state.status == "firing":
            if rule.no_data != "resolve":
                return state, []
            severity = state.severity or rule.severity
            return _resolved(state, ts), [
                event("resolved", state.episode, rule.clear_threshold, severity, last, "no_data")
            ]
        if rule.no_data != "alert":
            return state, []
        hours = (ts - no_data_since) / HOUR + 1
        if hours < rule.no_data_alert_after_hours:
            return state, []
        episode = state.episode + 1
        after = float(rule.no_data_alert_after_hours)
        return _fired(state, ts, episode, rule.severity, "no_data"), [
            event("firing", episode, after, rule.severity, last, "no_data")
        ]

    value = obs.value
    breaching = rule.breaching(value, obs.z)
    clearing = rule.clearing(value, obs.z)
    state = _with(state, last_value=value, no_data_since=None)
    arm = rule.arm(value, obs.z) if breaching else None

    if state.status == "firing" and state.arm == "no_data":
        # Data is back after a no-data alert: a breaching value carries the alert on.
        if breaching:
            assert arm is not None
            return _with(state, arm=arm, clearing_since=None), []
        severity = state.severity or rule.severity
        return _resolved(state, ts), [
            event("resolved", state.episode, rule.clear_threshold, severity, value, "no_data")
        ]

    if state.status == "firing":
        if clearing:
            clearing_since = state.clearing_since or ts
            if ts - clearing_since < timedelta(hours=rule.keep_firing_hours):
                return _with(state, clearing_since=clearing_since), []
            severity = state.severity or rule.severity
            last_arm = state.arm if state.arm in ("level", "z", "critical") else "level"
            return _resolved(state, ts), [
                event("resolved", state.episode, rule.clear_threshold, severity, value, last_arm)
            ]
        state = _with(state, clearing_since=None)
        severity = rule.severity_for(value) if breaching else (state.severity or rule.severity)
        if SEVERITY_RANK[severity] > SEVERITY_RANK[state.severity or rule.severity]:
            threshold = rule.critical_at if rule.critical_at is not None else rule.fire_threshold
            return _with(state, last_notified_at=ts, severity=severity, arm="critical"), [
                event("escalated", state.episode, threshold, severity, value, "critical")
            ]
        if arm is not None and arm != state.arm:
            state = _with(state, arm=arm)
        due = rule.repeat_hours is not None and (
            state.last_notified_at is None
            or ts - state.last_notified_at >= timedelta(hours=rule.repeat_hours)
        )
        if due:
            current = state.severity or rule.severity
            shown = arm or (state.arm if state.arm in ("level", "z", "critical") else "level")
            return _with(state, last_notified_at=ts), [
                event("repeat", state.episode, rule.arm_threshold(shown), current, value, shown)
            ]
        return state, []

    if not breaching:
        if state.status == "pending":  # the run of breaching hours is broken
            return _with(state, status="ok", since=ts, pending_since=None, last_breach_at=None), []
        return state, []
    assert arm is not None

    consecutive = (
        state.status == "pending"
        and state.pending_since is not None
        and state.last_breach_at is not None
        and ts - state.last_breach_at == HOUR
    )
    if consecutive:
        state = _with(state, last_breach_at=ts)
    else:
        state = _with(state, status="pending", since=ts, pending_since=ts, last_breach_at=ts)
    assert state.pending_since is not None
    breaching_hours = (ts - state.pending_since) / HOUR + 1
    if breaching_hours < max(rule.for_hours, 1):
        return state, []
    cooling_down = state.last_resolved_at is not None and ts - state.last_resolved_at < timedelta(
        hours=rule.cooldown_hours
    )
    if cooling_down and arm != "critical":
        return state, []
    episode = state.episode + 1
    severity = rule.severity_for(value) if arm == "critical" else rule.severity
    return _fired(state, ts, episode, severity, arm), [
        event("firing", episode, rule.arm_threshold(arm), severity, value, arm)
    ]


def _fired(
    state: AlertState, ts: datetime, episode: int, severity: Severity, arm: Arm
) -> AlertState:
    return _with(
        state,
        status="firing",
        since=ts,
        last_fired_at=ts,
        last_notified_at=ts,
        episode=episode,
        severity=severity,
        clearing_since=None,
        arm=arm,
    )


def _resolved(state: AlertState, ts: datetime) -> AlertState:
    return _with(
        state,
        status="ok",
        since=ts,
        pending_since=None,
        last_breach_at=None,
        last_resolved_at=ts,
        last_notified_at=ts,
        severity=None,
        clearing_since=None,
        arm=None,
    )


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
