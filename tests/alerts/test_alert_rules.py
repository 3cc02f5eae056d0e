"""Rule validation and observe(): which metric row each rule sees at an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from pydantic import ValidationError

from hedgewatch.alerts.rules import Rule, observe, parse_window

T0 = datetime(2024, 8, 5, 0, tzinfo=UTC)
HEDGE_SCHEMA: dict[str, pl.DataType] = {
    "hedge": pl.Utf8(),
    "window_hours": pl.Int64(),
    "open_time": pl.Datetime("us", "UTC"),
    "n_obs": pl.Int64(),
    "correlation": pl.Float64(),
    "beta": pl.Float64(),
    "min_var_ratio": pl.Float64(),
    "held_ratio": pl.Float64(),
    "ratio_drift": pl.Float64(),
    "effectiveness": pl.Float64(),
}
BASKET_SCHEMA: dict[str, pl.DataType] = {
    "basket": pl.Utf8(),
    "window_hours": pl.Int64(),
    "open_time": pl.Datetime("us", "UTC"),
    "n_obs": pl.Int64(),
    "n_pairs": pl.Int64(),
    "avg_corr": pl.Float64(),
}


def hedge_row(hedge: str, window: int, hour: int, corr: float | None, n_obs: int = 24) -> dict:
    return {
        "hedge": hedge,
        "window_hours": window,
        "open_time": T0 + timedelta(hours=hour),
        "n_obs": n_obs,
        "correlation": corr,
        "beta": 0.5,
        "min_var_ratio": 0.5,
        "held_ratio": 1.0,
        "ratio_drift": -0.5,
        "effectiveness": 0.3,
    }


def hedges(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=HEDGE_SCHEMA)


def baskets(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        [dict(zip(BASKET_SCHEMA, r, strict=True)) for r in rows], schema=BASKET_SCHEMA
    )


EMPTY_BASKETS = pl.DataFrame(schema=BASKET_SCHEMA)


def rule(**overrides) -> Rule:
    fields = {"name": "decouple", "kind": "hedge_decoupling", "fire_above": 0.0}
    fields["clear_below"] = -0.3
    fields.update(overrides)
    return Rule.model_validate(fields)


@pytest.mark.parametrize(("text", "hours"), [("24h", 24), ("7d", 168), ("168h", 168), ("1H", 1)])
def test_window_parses_hours_and_days(text: str, hours: int) -> None:
    assert parse_window(text) == hours
    assert rule(window=text).window_hours == hours


@pytest.mark.parametrize("text", ["24", "1w", "0h", "-3h", "h", "24 hours"])
def test_window_rejects_other_shapes_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValidationError, match="window"):
        rule(window=text)


def test_clear_below_must_be_lower_than_fire_above() -> None:
    with pytest.raises(ValidationError, match=r"clear_below \(0.2\) must be lower than fire_above"):
        rule(fire_above=0.2, clear_below=0.2)


def test_thresholds_outside_correlation_range_are_rejected() -> None:
    with pytest.raises(ValidationError, match="watch a correlation"):
        rule(fire_above=1.5, clear_below=0.5)


def test_unknown_rule_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="fire_abov"):
        rule(fire_abov=0.1)


@pytest.mark.parametrize(
    ("field", "value"), [("min_obs", 0), ("repeat_hours", 0), ("for_hours", -1)]
)
def test_counts_must_be_positive(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        rule(**{field: value})


def test_names_with_key_separator_are_rejected() -> None:
    with pytest.raises(ValidationError, match="'\\|'"):
        rule(name="a|b")


def test_observation_carries_the_fisher_ci_of_its_correlation() -> None:
    [obs] = observe([rule()], hedges(hedge_row("a", 24, 0, 0.5, n_obs=20)), EMPTY_BASKETS, T0)
    # r=0.5, n=20: tanh(atanh(0.5) ± 1.96/sqrt(17)), worked by hand.
    assert (obs.context["ci_low"], obs.context["ci_high"]) == pytest.approx(
        (0.0738, 0.7718), abs=1e-4
    )


def test_no_ci_with_three_observations_or_fewer() -> None:
    [obs] = observe([rule()], hedges(hedge_row("a", 24, 0, 0.5, n_obs=3)), EMPTY_BASKETS, T0)
    assert (obs.context["ci_low"], obs.context["ci_high"]) == (None, None)


def test_observe_picks_the_row_at_ts_for_the_rule_window() -> None:
    frame = hedges(
        hedge_row("btc-eth", 24, 0, -0.9),
        hedge_row("btc-eth", 24, 1, 0.15, n_obs=23),
        hedge_row("btc-eth", 168, 1, -0.7, n_obs=160),
        hedge_row("btc-eth", 24, 2, 0.4),
    )
    ts = T0 + timedelta(hours=1)
    [day] = observe([rule()], frame, EMPTY_BASKETS, ts)
    [week] = observe([rule(window="7d")], frame, EMPTY_BASKETS, ts)
    assert (day.subject, day.value, day.n_obs, day.ts) == ("btc-eth", 0.15, 23, ts)
    assert (week.value, week.n_obs) == (-0.7, 160)
    assert day.threshold == 0.0
    assert day.context["window_hours"] == 24
    assert day.context["beta"] == 0.5 and day.context["effectiveness"] == 0.3
    assert day.context["ci_low"] < 0.15 < day.context["ci_high"]


def test_star_expands_to_every_hedge_and_missing_rows_become_no_data() -> None:
    frame = hedges(
        hedge_row("zec-hedge", 24, 0, 0.1),
        hedge_row("btc-eth", 24, 0, 0.2),
        hedge_row("btc-eth", 24, 1, 0.3),
    )
    obs = observe([rule()], frame, EMPTY_BASKETS, T0 + timedelta(hours=1))
    assert [(o.subject, o.value, o.n_obs) for o in obs] == [
        ("btc-eth", 0.3, 24),
        ("zec-hedge", None, 0),
    ]


def test_named_subject_without_any_row_is_observed_as_no_data() -> None:
    [obs] = observe([rule(subjects=["ghost"])], hedges(), EMPTY_BASKETS, T0)
    assert (obs.subject, obs.value, obs.n_obs) == ("ghost", None, 0)
    assert obs.context["ci_low"] is None


def test_null_and_nan_values_are_no_data() -> None:
    frame = hedges(hedge_row("a", 24, 0, None), hedge_row("b", 24, 0, float("nan")))
    assert [o.value for o in observe([rule()], frame, EMPTY_BASKETS, T0)] == [None, None]


def test_correlation_spike_reads_avg_corr_and_pairs_from_baskets() -> None:
    frame = baskets(("majors", 24, T0, 22, 6, 0.93), ("majors", 168, T0, 150, 6, 0.6))
    spike = rule(name="spike", kind="correlation_spike", fire_above=0.85, clear_below=0.7)
    [obs] = observe([spike], hedges(hedge_row("x", 24, 0, 0.9)), frame, T0)
    assert (obs.rule, obs.subject, obs.value, obs.n_obs) == ("spike", "majors", 0.93, 22)
    assert obs.context["n_pairs"] == 6
    assert obs.context["metric"] == "avg_corr"


def test_observe_accepts_an_empty_frame_without_columns() -> None:
    assert observe([rule(kind="correlation_spike")], hedges(), pl.DataFrame(), T0) == []


def test_observe_names_missing_columns() -> None:
    frame = hedges(hedge_row("a", 24, 0, 0.1)).drop("beta")
    with pytest.raises(ValueError, match="hedge_metrics is missing columns: beta"):
        observe([rule()], frame, EMPTY_BASKETS, T0)


def test_observe_refuses_duplicate_rows_for_one_hour() -> None:
    frame = hedges(hedge_row("a", 24, 0, 0.1), hedge_row("a", 24, 0, 0.2))
    with pytest.raises(ValueError, match="several rows for 'a'"):
        observe([rule()], frame, EMPTY_BASKETS, T0)


def test_observe_requires_an_aware_timestamp() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        observe([rule()], hedges(), EMPTY_BASKETS, datetime(2024, 8, 5))
