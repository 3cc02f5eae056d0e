"""Rule kinds beyond the level crossing: drift, effectiveness drop, baseline z, escalation,
keep-firing, staleness, pipeline failure, and columns that are missing or null."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError

from hedgewatch.alerts.render import render, sparkline
from hedgewatch.alerts.rules import Observation, Rule, observe
from hedgewatch.alerts.state import AlertState, advance, pipeline_failure_event

T0 = datetime(2022, 5, 9, 0, tzinfo=UTC)


def rule(**fields: Any) -> Rule:
    base: dict[str, Any] = {"name": "r", "kind": "hedge_decoupling", "cooldown_hours": 0}
    base.update(fields)
    return Rule.model_validate(base)


def hedge_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    base = {
        "hedge": "h",
        "window_hours": 24,
        "open_time": T0,
        "n_obs": 24,
        "correlation": -0.8,
        "beta": 0.9,
        "min_var_ratio": 0.9,
        "held_ratio": 0.5,
        "ratio_drift": 0.4,
        "effectiveness": 0.6,
    }
    return pl.DataFrame([{**base, **r} for r in rows])


def walk(r: Rule, values: list[float | None], z: list[float | None] | None = None):
    state: AlertState | None = None
    trace = []
    for hour, value in enumerate(values):
        o = Observation(
            rule=r.name,
            subject="s",
            ts=T0 + timedelta(hours=hour),
            value=value,
            n_obs=24,
            threshold=r.fire_threshold,
            z=z[hour] if z else None,
        )
        state, events = advance(state, o, r)
        trace.append((state.status, ",".join(f"{e.kind}:{e.severity}" for e in events)))
    return trace, state


def test_effectiveness_drop_fires_below_and_clears_above() -> None:
    r = rule(kind="hedge_effectiveness", fire_below=0.3, clear_above=0.5)
    trace, _ = walk(r, [0.6, 0.2, 0.4, 0.6])
    assert [t[1] for t in trace] == ["", "firing:warning", "", "resolved:warning"]


def test_below_rules_need_their_pair_in_order() -> None:
    with pytest.raises(ValidationError, match="clear_above"):
        rule(kind="hedge_effectiveness", fire_below=0.5, clear_above=0.3)
    with pytest.raises(ValidationError, match="not both"):
        rule(kind="hedge_effectiveness", fire_below=0.3, clear_above=0.5, fire_above=0.9)


def test_severity_escalates_once_when_the_value_passes_critical_at() -> None:
    r = rule(kind="correlation_spike", fire_above=0.9, clear_below=0.85, critical_at=0.95)
    trace, state = walk(r, [0.91, 0.96, 0.97, 0.92, 0.8])
    assert [t[1] for t in trace] == [
        "firing:warning",
        "escalated:critical",
        "",
        "",
        "resolved:critical",
    ]
    assert state is not None and state.severity is None


def test_firing_straight_into_critical_needs_no_escalation() -> None:
    r = rule(kind="correlation_spike", fire_above=0.9, clear_below=0.85, critical_at=0.95)
    trace, _ = walk(r, [0.97, 0.97])
    assert [t[1] for t in trace] == ["firing:critical", ""]


def test_critical_at_must_lie_beyond_the_fire_threshold() -> None:
    with pytest.raises(ValidationError, match="critical_at"):
        rule(kind="correlation_spike", fire_above=0.9, clear_below=0.85, critical_at=0.8)


def test_keep_firing_waits_for_the_value_to_stay_clear() -> None:
    r = rule(fire_above=-0.3, clear_below=-0.5, keep_firing_hours=2)
    trace, _ = walk(r, [0.0, -0.6, -0.6, -0.4, -0.6, -0.6, -0.6])
    # Clear at h1, h2; back in between at h3 resets; clear again h4..h6 resolves at h6.
    assert [t[1] for t in trace] == ["firing:warning", "", "", "", "", "", "resolved:warning"]


def test_baseline_z_breaches_even_below_the_level() -> None:
    r = rule(fire_above=-0.2, clear_below=-0.5, z_fire_above=3.0, z_clear_below=1.0)
    trace, _ = walk(r, [-0.7, -0.6, -0.6, -0.6], z=[0.0, 4.0, 2.0, 0.5])
    # z fires at h1; between z thresholds at h2 (holds); value and z clear at h3.
    assert [t[1] for t in trace] == ["", "firing:warning", "", "resolved:warning"]


def test_ratio_drift_is_absolute_or_relative_to_the_held_ratio() -> None:
    frame = hedge_frame([{"ratio_drift": -0.4, "held_ratio": 0.5}])
    empty = pl.DataFrame()
    absolute = rule(kind="hedge_ratio_drift", fire_above=0.3, clear_below=0.1)
    relative = rule(
        name="rel", kind="hedge_ratio_drift", drift="relative", fire_above=0.5, clear_below=0.2
    )
    a, rel = observe([absolute, relative], frame, empty, T0)
    assert a.value == pytest.approx(0.4)
    assert rel.value == pytest.approx(0.8)
    assert "abs(ratio_drift) / held_ratio" in rel.context["sql"]


def test_a_metric_column_the_frame_lacks_is_no_data_not_a_fire() -> None:
    r = rule(kind="hedge_decoupling", metric="corr_ci_low", fire_above=-0.2, clear_below=-0.5)
    [o] = observe([r], hedge_frame([{}]), pl.DataFrame(), T0)
    assert o.value is None
    state, events = advance(None, o, r)
    assert events == [] and state.no_data_since == T0


def test_a_named_metric_is_read_with_its_z_when_present() -> None:
    frame = pl.DataFrame(
        {
            "basket": ["majors"],
            "window_hours": [24],
            "open_time": [T0],
            "n_obs": [24],
            "n_pairs": [28],
            "avg_corr": [0.8],
            "absorption_ratio": [0.9],
            "avg_corr_z": [3.5],
        }
    )
    r = rule(
        kind="correlation_spike",
        metric="absorption_ratio",
        fire_above=0.95,
        clear_below=0.9,
        z_fire_above=3.0,
        z_clear_below=1.0,
    )
    [o] = observe([r], pl.DataFrame(), frame, T0)
    assert (o.value, o.z) == (0.9, 3.5)
    assert o.context["z_metric"] == "avg_corr_z"
    _, [event] = advance(None, o, r)
    assert event.context["breach"] == "z"


def test_unknown_metric_name_shape_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="metric"):
        rule(metric="avg corr; drop", fire_above=0.5, clear_below=0.1)


def test_staleness_reads_the_freshness_frame_per_instrument() -> None:
    fresh = pl.DataFrame(
        {
            "instrument": ["BTC", "ETH"],
            "venue": ["binance"] * 2,
            "market": ["spot"] * 2,
            "symbol": ["BTCUSDT", "ETHUSDT"],
            "open_time": [T0] * 2,
            "last_open_time": [T0, T0 - timedelta(hours=5)],
            "age_hours": [0.0, 5.0],
            "missing_hours": [0.0, 5.0],
            "fetch_errors": [0.0, 3.0],
        }
    )
    r = rule(kind="data_staleness", fire_above=2, clear_below=1, min_obs=1)
    btc, eth = observe([r], pl.DataFrame(), pl.DataFrame(), T0, freshness=fresh)
    assert (btc.subject, btc.value, eth.subject, eth.value) == ("BTC", 0.0, "ETH", 5.0)
    _, events = advance(None, eth, r)
    assert [e.kind for e in events] == ["firing"]
    assert "candles" in events[0].context["sql"]
    text = render(events, "email").text
    assert "binance spot ETHUSDT" in text


def test_staleness_rules_see_nothing_without_a_freshness_frame() -> None:
    r = rule(kind="data_staleness", fire_above=2, clear_below=1)
    assert observe([r], pl.DataFrame(), pl.DataFrame(), T0) == []


def test_pipeline_failure_event_is_keyed_by_the_run_and_renders_everywhere() -> None:
    first = pipeline_failure_event(
        flow="hedgewatch-hourly", run_id="abc", started_at=T0, error="Boom:\n  disk full"
    )
    again = pipeline_failure_event(
        flow="hedgewatch-hourly", run_id="abc", started_at=T0, error="other text"
    )
    assert first.key == again.key and first.severity == "critical"
    for kind in ("email", "slack", "file", "webhook"):
        rendered = render([first], kind)  # type: ignore[arg-type]
        assert "Boom: disk full" in rendered.text or "Boom: disk full" in str(rendered.payload)


def test_pipeline_failure_needs_a_pipeline_failure_rule() -> None:
    with pytest.raises(ValueError, match="not pipeline_failure"):
        pipeline_failure_event(
            flow="f", run_id="x", started_at=T0, error="e", rule=rule(fire_above=0, clear_below=-1)
        )


def test_sparkline_scales_between_min_and_max_and_shows_gaps() -> None:
    assert sparkline([0.0, 0.5, 1.0, None, 1.0]) == "▁▅█ █"
    assert sparkline([0.3, 0.3]) == "▄▄"
    assert sparkline([None]) == ""
