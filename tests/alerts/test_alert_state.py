"""The alert state machine, driven hour by hour through tables of observed values."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hedgewatch.alerts.rules import Observation, Rule
from hedgewatch.alerts.state import AlertEvent, AlertState, advance

T0 = datetime(2024, 8, 5, 0, tzinfo=UTC)
NO_DATA = None


def make_rule(**overrides: Any) -> Rule:
    fields: dict[str, Any] = {
        "name": "decouple",
        "kind": "hedge_decoupling",
        "fire_above": 0.0,
        "clear_below": -0.3,
        "cooldown_hours": 0,
        "min_obs": 12,
    }
    fields.update(overrides)
    return Rule.model_validate(fields)


def obs(hour: int, value: float | None, n_obs: int = 24, subject: str = "btc-eth") -> Observation:
    return Observation(
        rule="decouple",
        subject=subject,
        ts=T0 + timedelta(hours=hour),
        value=value,
        n_obs=n_obs,
        threshold=0.0,
        context={"window": "24h", "n_obs": n_obs},
    )


def run(
    rule: Rule, values: list[float | None], state: AlertState | None = None
) -> tuple[list[tuple[str, str]], AlertState | None, list[AlertEvent]]:
    """Feed one value per hour; return (status, event kinds) per hour, the final state, events."""
    trace: list[tuple[str, str]] = []
    events: list[AlertEvent] = []
    for hour, value in enumerate(values):
        state, new = advance(state, obs(hour, value), rule)
        events.extend(new)
        trace.append((state.status, ",".join(e.kind for e in new)))
    return trace, state, events


def test_for_zero_fires_on_the_first_breaching_hour() -> None:
    trace, state, events = run(make_rule(), [-0.6, 0.2])
    assert trace == [("ok", ""), ("firing", "firing")]
    assert state is not None and state.episode == 1
    [event] = events
    assert (event.value, event.threshold, event.severity, event.episode) == (0.2, 0.0, "warning", 1)
    assert event.ts == T0 + timedelta(hours=1)


def test_pending_until_the_breach_has_held_for_hours() -> None:
    trace, state, _ = run(make_rule(for_hours=3), [0.1, 0.1, 0.1, 0.1])
    assert trace == [("pending", ""), ("pending", ""), ("firing", "firing"), ("firing", "")]
    assert (
        state is not None
        and state.pending_since == T0
        and state.last_fired_at == T0 + timedelta(hours=2)
    )


def test_pending_drops_back_to_ok_silently_when_value_clears() -> None:
    trace, _, _ = run(make_rule(for_hours=2), [0.1, -0.5, 0.1, 0.1])
    assert trace == [("pending", ""), ("ok", ""), ("pending", ""), ("firing", "firing")]


def test_a_value_between_the_thresholds_breaks_the_breaching_run() -> None:
    # -0.1 is below fire_above but above clear_below: not a breaching hour, so the run restarts.
    trace, _, _ = run(make_rule(for_hours=2), [0.1, -0.1, 0.1, 0.1])
    assert trace == [("pending", ""), ("ok", ""), ("pending", ""), ("firing", "firing")]


def test_firing_holds_between_thresholds_and_resolves_once() -> None:
    trace, state, events = run(make_rule(), [0.2, -0.1, -0.2, -0.4, -0.5, -0.1])
    assert trace == [
        ("firing", "firing"),
        ("firing", ""),
        ("firing", ""),
        ("ok", "resolved"),
        ("ok", ""),
        ("ok", ""),
    ]
    resolved = events[-1]
    assert (resolved.kind, resolved.threshold, resolved.episode) == ("resolved", -0.3, 1)
    assert state is not None and state.last_resolved_at == T0 + timedelta(hours=3)


def test_breach_at_exactly_the_thresholds_neither_fires_nor_resolves() -> None:
    trace, _, _ = run(make_rule(), [0.0, 0.5, -0.3])
    assert trace == [("ok", ""), ("firing", "firing"), ("firing", "")]


def test_cooldown_keeps_a_new_breach_quiet_until_it_has_passed() -> None:
    rule = make_rule(cooldown_hours=3)
    # fire h0, resolve h1, breach again h2..h5: cooldown covers h1 + 3h, so it fires at h4.
    trace, state, events = run(rule, [0.2, -0.5, 0.2, 0.2, 0.2, 0.2])
    assert trace == [
        ("firing", "firing"),
        ("ok", "resolved"),
        ("pending", ""),
        ("pending", ""),
        ("firing", "firing"),
        ("firing", ""),
    ]
    assert [e.episode for e in events] == [1, 1, 2]
    assert state is not None and state.episode == 2


def test_cooldown_suppresses_a_short_flap_entirely() -> None:
    trace, _, events = run(make_rule(cooldown_hours=6), [0.2, -0.5, 0.2, -0.5, 0.2, -0.5])
    assert [t[1] for t in trace] == ["firing", "resolved", "", "", "", ""]
    assert len(events) == 2


def test_repeat_every_repeat_hours_while_firing() -> None:
    trace, _, events = run(make_rule(repeat_hours=2), [0.2, 0.2, 0.2, -0.1, 0.2, -0.5])
    assert [t[1] for t in trace] == ["firing", "", "repeat", "", "repeat", "resolved"]
    assert [e.episode for e in events] == [1, 1, 1, 1]


def test_no_repeat_without_repeat_hours() -> None:
    _, _, events = run(make_rule(), [0.2] * 48)
    assert [e.kind for e in events] == ["firing"]


@pytest.mark.parametrize("status_values", [[], [0.2], [0.2, -0.5], [-0.1]])
@pytest.mark.parametrize("gap", [(NO_DATA, 24), (0.9, 5), (-0.9, 5)])
def test_no_data_hours_never_fire_nor_resolve(
    status_values: list[float | None], gap: tuple[float | None, int]
) -> None:
    rule = make_rule(for_hours=1)
    _, before, _ = run(rule, status_values)
    value, n_obs = gap
    after, events = advance(before, obs(len(status_values), value, n_obs=n_obs), rule)
    assert events == []
    # Nothing changes but the visible no-data mark.
    assert after.no_data_since == T0 + timedelta(hours=len(status_values))
    if before is not None:
        assert replace(after, no_data_since=None) == before
    else:
        assert after.status == "ok" and after.episode == 0


def test_same_inputs_give_the_same_events_and_keys() -> None:
    values = [0.2, 0.2, -0.5, 0.3, None, -0.4]
    rule = make_rule(repeat_hours=1)
    _, first_state, first = run(rule, values)
    _, second_state, second = run(rule, values)
    assert first == second and first_state == second_state
    assert [e.key for e in first] == [
        "decouple|btc-eth|1|firing|2024-08-05T00:00:00+00:00",
        "decouple|btc-eth|1|repeat|2024-08-05T01:00:00+00:00",
        "decouple|btc-eth|1|resolved|2024-08-05T02:00:00+00:00",
        "decouple|btc-eth|2|firing|2024-08-05T03:00:00+00:00",
        "decouple|btc-eth|2|resolved|2024-08-05T05:00:00+00:00",
    ]


def test_rerunning_an_hour_from_the_same_state_repeats_the_same_key() -> None:
    rule = make_rule()
    _, state, _ = run(rule, [-0.5])
    _, once = advance(state, obs(1, 0.4), rule)
    _, again = advance(state, obs(1, 0.4), rule)
    assert [e.key for e in once] == [e.key for e in again]


def test_advance_does_not_mutate_the_given_state() -> None:
    rule = make_rule()
    state = AlertState(rule="decouple", subject="btc-eth")
    advance(state, obs(0, 0.5), rule)
    assert state == AlertState(rule="decouple", subject="btc-eth")


def test_events_carry_the_observation_context() -> None:
    _, _, [event] = run(make_rule(), [0.5])
    assert event.context == {
        "window": "24h",
        "n_obs": 24,
        "direction": "above",
        "breach": "value",
        "arm": "level",
    }


def test_state_for_another_subject_is_refused() -> None:
    other = AlertState(rule="decouple", subject="sol-hedge")
    with pytest.raises(ValueError, match="sol-hedge"):
        advance(other, obs(0, 0.5), make_rule())
