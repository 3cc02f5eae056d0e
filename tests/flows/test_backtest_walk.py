"""The backtest's columnar walk gives exactly the events of `advance` on every hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hedgewatch.alerts.rules import Observation, Rule
from hedgewatch.alerts.state import AlertEvent, AlertState, advance
from hedgewatch.backtest import SubjectSeries, walk_series

T0 = datetime(2022, 1, 1, tzinfo=UTC)

rules = st.builds(
    lambda for_hours, cooldown, keep, no_data, after, z, critical, repeat: Rule.model_validate(
        {
            "name": "r",
            "kind": "correlation_spike",
            "fire_above": 0.9,
            "clear_below": 0.8,
            "critical_at": 0.95 if critical else None,
            "for_hours": for_hours,
            "cooldown_hours": cooldown,
            "keep_firing_hours": keep,
            "no_data": no_data,
            "no_data_alert_after_hours": after,
            "z_fire_above": 3.0 if z else None,
            "z_clear_below": 1.0 if z else None,
            "repeat_hours": repeat,
        }
    ),
    st.integers(0, 3),
    st.integers(0, 4),
    st.integers(0, 2),
    st.sampled_from(["keep_state", "resolve", "alert"]),
    st.integers(1, 3),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, 2]),
)
hours = st.lists(
    st.tuples(
        st.sampled_from(["a", "a", "a", "b"]),
        st.one_of(st.none(), st.sampled_from([0.5, 0.85, 0.92, 0.97])),
        st.sampled_from([24, 5]),
        st.one_of(st.none(), st.sampled_from([0.0, 2.0, 4.0])),
        st.sampled_from([1, 1, 1, 2]),  # hours since the previous observation (2: a gap)
    ),
    max_size=60,
)


def observations(rule: Rule, rows: list[tuple[Any, ...]]) -> list[Observation]:
    out = []
    ts = T0
    for subject, value, n_obs, z, step in rows:
        ts += timedelta(hours=step)
        out.append(
            Observation(
                rule.name,
                subject,
                ts,
                value,
                n_obs,
                rule.fire_threshold,
                {"rule_kind": rule.kind, "metric": rule.watched_metric, "window": rule.window},
                z,
            )
        )
    return out


ALERT_ON_NO_DATA = Rule.model_validate(
    {"name": "r", "kind": "correlation_spike", "fire_above": 0.9, "clear_below": 0.8,
     "no_data": "alert", "no_data_alert_after_hours": 3}
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(rules, hours)
# An hour of data between no-data hours restarts their count, even when the walk skips it.
@example(
    ALERT_ON_NO_DATA,
    [("a", None, 24, None, 1)] * 2 + [("a", 0.5, 24, None, 1)] + [("a", None, 24, None, 1)],
)
def test_fast_walk_equals_advance_on_every_hour(rule: Rule, rows: list[tuple[Any, ...]]) -> None:
    obs = observations(rule, rows)
    states: dict[str, AlertState] = {}
    expected: list[AlertEvent] = []
    for one in obs:
        state, new = advance(states.get(one.subject), one, rule)
        states[one.subject] = state
        expected.extend(new)
    assert sorted(walk_series(rule, columns(obs)), key=order) == sorted(expected, key=order)


def order(event: AlertEvent) -> tuple[object, ...]:
    return (event.ts, event.subject, event.kind)


def columns(obs: list[Observation]) -> dict[str, SubjectSeries]:
    """The observations as the backtest's columns, one series per subject."""
    by_subject: dict[str, list[Observation]] = {}
    for one in obs:
        by_subject.setdefault(one.subject, []).append(one)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return {
        subject: SubjectSeries(
            subject=subject,
            micros=np.array([(o.ts - epoch) // timedelta(microseconds=1) for o in rows]),
            value=np.array([np.nan if o.value is None else o.value for o in rows], dtype=float),
            n_obs=np.array([o.n_obs for o in rows], dtype=np.int64),
            z=np.array([np.nan if o.z is None else o.z for o in rows], dtype=float),
            members=None,
        )
        for subject, rows in by_subject.items()
    }
