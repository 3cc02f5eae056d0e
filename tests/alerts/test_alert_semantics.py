"""The semantics the README promises, at their edges: for_hours, critical in cooldown, no-data
policies, the arm that fired, and inhibition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hedgewatch.alerts.inhibit import inhibit
from hedgewatch.alerts.rules import Observation, Rule
from hedgewatch.alerts.state import AlertEvent, AlertState, advance

T0 = datetime(2024, 8, 5, 0, tzinfo=UTC)
GAP = "gap"  # no observation at all for that hour (a missing row)


def make_rule(**overrides: Any) -> Rule:
    fields: dict[str, Any] = {
        "name": "spike",
        "kind": "correlation_spike",
        "fire_above": 0.9,
        "clear_below": 0.8,
        "cooldown_hours": 0,
        "min_obs": 12,
    }
    fields.update(overrides)
    return Rule.model_validate(fields)


def walk(
    rule: Rule, values: list[Any], zs: list[float | None] | None = None
) -> tuple[list[tuple[str, str]], AlertState | None, list[AlertEvent]]:
    """One value per hour (None: no data, GAP: no observation); (status, events) per hour."""
    state: AlertState | None = None
    trace: list[tuple[str, str]] = []
    events: list[AlertEvent] = []
    for hour, value in enumerate(values):
        if value == GAP:
            trace.append(("gap", ""))
            continue
        ob = Observation(
            rule=rule.name,
            subject="majors",
            ts=T0 + timedelta(hours=hour),
            value=value,
            n_obs=24,
            threshold=rule.fire_threshold,
            context={"window": rule.window},
            z=zs[hour] if zs else None,
        )
        state, new = advance(state, ob, rule)
        events.extend(new)
        trace.append((state.status, ",".join(e.kind for e in new)))
    return trace, state, events


def fired_at(trace: list[tuple[str, str]]) -> list[int]:
    return [hour for hour, (_, kinds) in enumerate(trace) if "firing" in kinds.split(",")]


# --- for_hours = N: the N-th consecutive breaching hour fires ---------------------------------


@pytest.mark.parametrize(("for_hours", "first"), [(0, 0), (1, 0), (2, 1), (3, 2)])
def test_for_hours_fires_at_the_nth_consecutive_breaching_hour(for_hours: int, first: int) -> None:
    trace, _, _ = walk(make_rule(for_hours=for_hours), [0.95] * 5)
    assert fired_at(trace) == [first]


@pytest.mark.parametrize("breaker", [0.85, 0.5, None, GAP])
def test_any_hour_that_does_not_breach_restarts_the_count(breaker: Any) -> None:
    # between the thresholds, clearing, no data, a missing hour: each breaks the run.
    trace, _, _ = walk(make_rule(for_hours=2), [0.95, breaker, 0.95, 0.95])
    assert trace[0] == ("pending", "")
    assert trace[1][0] in ("ok", "gap")
    assert fired_at(trace) == [3]


def test_a_single_breaching_hour_never_fires_with_for_hours_two() -> None:
    trace, _, events = walk(make_rule(for_hours=2), [0.95, 0.85, 0.95, 0.85, 0.95, 0.5])
    assert events == [] and fired_at(trace) == []


def test_a_firing_alert_holds_between_the_thresholds() -> None:
    trace, _, events = walk(make_rule(), [0.95, 0.85, 0.85, 0.7])
    assert [t[0] for t in trace] == ["firing", "firing", "firing", "ok"]
    assert [e.kind for e in events] == ["firing", "resolved"]


# --- critical_at ignores cooldown -------------------------------------------------------------


def test_a_critical_value_fires_even_in_cooldown() -> None:
    rule = make_rule(cooldown_hours=24, critical_at=0.96)
    trace, _, events = walk(rule, [0.95, 0.7, 0.95, 0.95, 0.97, 0.97])
    # h0 fires, h1 resolves; h2-h3 breach in cooldown (silent); h4 reaches critical: fires.
    assert [e.kind for e in events] == ["firing", "resolved", "firing"]
    critical = events[-1]
    assert critical.ts == T0 + timedelta(hours=4)
    assert (critical.severity, critical.threshold, critical.context["arm"]) == (
        "critical",
        0.96,
        "critical",
    )
    assert trace[2:4] == [("pending", ""), ("pending", "")]


def test_exactly_critical_at_counts_as_critical() -> None:
    _, _, events = walk(make_rule(cooldown_hours=24, critical_at=0.96), [0.95, 0.7, 0.96])
    assert [e.kind for e in events] == ["firing", "resolved", "firing"]


def test_critical_still_needs_for_hours() -> None:
    rule = make_rule(cooldown_hours=24, critical_at=0.96, for_hours=2)
    trace, _, _ = walk(rule, [0.95, 0.95, 0.7, 0.97, 0.97])
    assert fired_at(trace) == [1, 4]


def test_firing_escalates_once_at_critical() -> None:
    _, _, events = walk(make_rule(critical_at=0.96), [0.92, 0.97, 0.98, 0.7])
    assert [(e.kind, e.threshold, e.context["arm"]) for e in events] == [
        ("firing", 0.9, "level"),
        ("escalated", 0.96, "critical"),
        ("resolved", 0.8, "critical"),
    ]


# --- the arm and its threshold ----------------------------------------------------------------


def test_a_z_breach_reports_the_z_arm_and_its_threshold() -> None:
    rule = make_rule(
        kind="hedge_decoupling",
        fire_above=-0.2,
        clear_below=-0.45,
        z_fire_above=5.0,
        z_clear_below=2.0,
    )
    _, _, [event] = walk(rule, [-0.86], zs=[6.2])
    assert (event.value, event.threshold) == (-0.86, 5.0)
    assert event.context["arm"] == "z" and event.context["z"] == 6.2
    assert event.context["n_obs"] == 24 and event.context["window"] == "24h"


# --- no-data policies -------------------------------------------------------------------------


def test_keep_state_keeps_a_firing_alert_through_no_data() -> None:
    trace, state, events = walk(make_rule(no_data="keep_state"), [0.95, None, None, 0.95])
    assert [t[0] for t in trace] == ["firing"] * 4
    assert [e.kind for e in events] == ["firing"]
    assert state is not None and state.no_data_since is None


def test_resolve_policy_resolves_at_the_first_hour_without_data() -> None:
    trace, _, events = walk(make_rule(no_data="resolve"), [0.95, 0.93, None, None])
    assert [t[1] for t in trace] == ["firing", "", "resolved", ""]
    resolved = events[-1]
    assert resolved.context["arm"] == "no_data" and resolved.value == 0.93


def test_alert_policy_fires_after_n_hours_without_data_and_resolves_on_data() -> None:
    rule = make_rule(no_data="alert", no_data_alert_after_hours=3, cooldown_hours=24)
    trace, state, events = walk(rule, [0.5, None, None, None, None, 0.5, 0.5])
    assert [t[1] for t in trace] == ["", "", "", "firing", "", "resolved", ""]
    fired = events[0]
    assert fired.context["arm"] == "no_data" and fired.threshold == 3.0
    assert fired.context["no_data"] is True
    assert state is not None and state.status == "ok"


def test_alert_policy_carries_on_when_data_returns_breaching() -> None:
    rule = make_rule(no_data="alert", no_data_alert_after_hours=1)
    trace, state, _ = walk(rule, [None, 0.95, 0.95, 0.5])
    assert [t[1] for t in trace] == ["firing", "", "", "resolved"]
    assert state is not None and state.episode == 1


def test_alert_policy_counts_only_consecutive_hours_without_data() -> None:
    rule = make_rule(no_data="alert", no_data_alert_after_hours=2)
    _, _, events = walk(rule, [None, 0.5, None, 0.5, None])
    assert events == []


def test_no_data_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="no_data"):
        make_rule(no_data="ignore")
    with pytest.raises(ValueError, match="no_data_alert_after_hours"):
        make_rule(no_data_alert_after_hours=0)


# --- inhibition -------------------------------------------------------------------------------


def _rules() -> dict[str, Rule]:
    base = {"cooldown_hours": 0}
    rules = [
        Rule.model_validate(
            {
                "name": "decoupling",
                "kind": "hedge_decoupling",
                "fire_above": -0.2,
                "clear_below": -0.45,
                **base,
            }
        ),
        Rule.model_validate(
            {
                "name": "drift",
                "kind": "hedge_ratio_drift",
                "fire_above": 1.0,
                "clear_below": 0.5,
                **base,
            }
        ),
        Rule.model_validate(
            {
                "name": "effectiveness",
                "kind": "hedge_effectiveness",
                "fire_below": 0.25,
                "clear_above": 0.5,
                **base,
            }
        ),
        Rule.model_validate(
            {
                "name": "stale",
                "kind": "data_staleness",
                "fire_above": 2,
                "clear_below": 1,
                "min_obs": 1,
                **base,
            }
        ),
        make_rule(),
    ]
    return {r.name: r for r in rules}


def ev(rule: str, subject: str, hour: int, kind: str = "firing", episode: int = 1) -> AlertEvent:
    return AlertEvent(
        rule=rule,
        subject=subject,
        ts=T0 + timedelta(hours=hour),
        kind=kind,  # type: ignore[arg-type]
        value=1.0,
        threshold=0.5,
        severity="warning",
        episode=episode,
    )


CONTAINS = {
    "btc-vs-btcdown": ["BTC", "BTCDOWN"],
    "eth-hedge": ["ETH", "ETHDOWN"],
    "majors": ["BTC", "ETH", "SOL"],
}


def test_decoupling_mutes_drift_and_effectiveness_on_the_same_hedge_only() -> None:
    events = [
        ev("decoupling", "btc-vs-btcdown", 0),
        ev("drift", "btc-vs-btcdown", 1),
        ev("effectiveness", "btc-vs-btcdown", 2),
        ev("drift", "eth-hedge", 2),
        ev("decoupling", "btc-vs-btcdown", 3, "resolved"),
        ev("drift", "btc-vs-btcdown", 3, "resolved"),  # ends a muted episode: muted too
        ev("drift", "btc-vs-btcdown", 5, "firing", 2),  # after the decoupling resolved
    ]
    muted = inhibit(events, _rules(), CONTAINS)
    assert [(e.rule, e.subject, e.kind, e.ts.hour) for e in muted] == [
        ("drift", "btc-vs-btcdown", "firing", 1),
        ("effectiveness", "btc-vs-btcdown", "firing", 2),
        ("drift", "btc-vs-btcdown", "resolved", 3),
    ]
    assert muted[0].context["muted_by"] == "decoupling/btc-vs-btcdown"
    assert "muted_by" not in events[3].context and "muted_by" not in events[-1].context


def test_inhibitor_firing_in_the_same_hour_counts_first() -> None:
    events = [ev("drift", "btc-vs-btcdown", 0), ev("decoupling", "btc-vs-btcdown", 0)]
    assert [e.rule for e in inhibit(events, _rules(), CONTAINS)] == ["drift"]


def test_staleness_mutes_metric_rules_on_holders_of_the_instrument() -> None:
    events = [
        ev("stale", "BTCDOWN", 0),
        ev("decoupling", "btc-vs-btcdown", 1),
        ev("spike", "majors", 1),  # majors does not hold BTCDOWN
        ev("stale", "ETH", 2),
        ev("spike", "majors", 3, "escalated"),
        ev("stale", "BTC", 4),  # staleness itself is never muted
    ]
    muted = inhibit(events, _rules(), CONTAINS)
    assert [(e.rule, e.subject, e.ts.hour) for e in muted] == [
        ("decoupling", "btc-vs-btcdown", 1),
        ("spike", "majors", 3),
    ]
    assert muted[1].context["muted_by"] == "stale/ETH"


def test_inhibitors_already_firing_before_the_run_count() -> None:
    events = [ev("drift", "btc-vs-btcdown", 0)]
    muted = inhibit(events, _rules(), CONTAINS, firing=[("decoupling", "btc-vs-btcdown")])
    assert muted == events
