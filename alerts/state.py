"""The alert state machine per (rule, subject): ok -> pending -> firing -> ok, with hysteresis.

Pure and deterministic: `advance` takes the previous state and one observation and returns the next
state plus the events to notify. The same inputs always give the same events and idempotency keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from alerts.rules import Observation, Rule, Severity

Status = Literal["ok", "pending", "firing"]
EventKind = Literal["firing", "resolved", "repeat"]


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

    - No data (value None or n_obs < rule.min_obs): the state is returned unchanged, no event.
    - ok/pending: a value above fire_above starts (or continues) pending; once it has been pending
      for `for_hours` hours it fires. A value below clear_below returns to ok silently. In between,
      the state holds.
    - Cooldown: within `cooldown_hours` of the last resolve, a would-be firing stays pending without
      an event and fires on the first breaching hour after the cooldown has passed.
    - firing: below clear_below resolves (one "resolved" event); otherwise it stays firing and, with
      `repeat_hours`, emits a "repeat" event every `repeat_hours` since the last notification.
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
    if obs.value is None or obs.n_obs < rule.min_obs:
        return state, []

    ts = _utc(obs.ts)
    value = obs.value
    breaching = value > rule.fire_above
    clearing = value < rule.clear_below
    state = replace(state, last_value=value)

    def event(kind: EventKind, episode: int, threshold: float) -> AlertEvent:
        return AlertEvent(
            rule=rule.name,
            subject=obs.subject,
            ts=ts,
            kind=kind,
            value=value,
            threshold=threshold,
            severity=rule.severity,
            episode=episode,
            context=dict(obs.context),
        )

    if state.status == "firing":
        if clearing:
            resolved = replace(
                state,
                status="ok",
                since=ts,
                pending_since=None,
                last_resolved_at=ts,
                last_notified_at=ts,
            )
            return resolved, [event("resolved", state.episode, rule.clear_below)]
        due = rule.repeat_hours is not None and (
            state.last_notified_at is None
            or ts - state.last_notified_at >= timedelta(hours=rule.repeat_hours)
        )
        if due:
            return replace(state, last_notified_at=ts), [
                event("repeat", state.episode, rule.fire_above)
            ]
        return state, []

    if clearing:
        if state.status == "pending":
            return replace(state, status="ok", since=ts, pending_since=None), []
        return state, []
    if not breaching:
        return state, []  # between the thresholds: hold

    pending_since = state.pending_since or ts
    if state.status != "pending":
        state = replace(state, status="pending", since=ts, pending_since=pending_since)
    held_long_enough = ts - pending_since >= timedelta(hours=rule.for_hours)
    cooling_down = state.last_resolved_at is not None and ts - state.last_resolved_at < timedelta(
        hours=rule.cooldown_hours
    )
    if not held_long_enough or cooling_down:
        return state, []
    episode = state.episode + 1
    fired = replace(
        state,
        status="firing",
        since=ts,
        last_fired_at=ts,
        last_notified_at=ts,
        episode=episode,
    )
    return fired, [event("firing", episode, rule.fire_above)]


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware (UTC), got naive {ts.isoformat()}")
    return ts.astimezone(UTC)
