"""The scorecard over hand-built alert events: lags, pages per month, calm months, file formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hedgewatch.alerts.rules import Rule
from hedgewatch.alerts.scorecard import (
    EventsFileError,
    LabelledEvent,
    parse_events,
    peak_in,
    score,
    scorecard_json,
)
from hedgewatch.alerts.state import AlertEvent

RULES = [
    Rule.model_validate(
        {"name": "stress", "kind": "correlation_spike", "fire_above": 0.9, "clear_below": 0.8}
    ),
    Rule.model_validate(
        {"name": "decoupling", "kind": "hedge_decoupling", "fire_above": -0.2, "clear_below": -0.45}
    ),
    Rule.model_validate(
        {"name": "stale", "kind": "data_staleness", "fire_above": 2, "clear_below": 1, "min_obs": 1}
    ),
]
START = datetime(2022, 1, 1, tzinfo=UTC)
END = datetime(2022, 6, 30, 23, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def page(rule: str, subject: str, ts: str, kind: str = "firing", **context: Any) -> AlertEvent:
    return AlertEvent(
        rule=rule,
        subject=subject,
        ts=at(ts),
        kind=kind,  # type: ignore[arg-type]
        value=0.95,
        threshold=0.9,
        severity="warning",
        episode=1,
        context={"arm": "level", **context},
    )


MARKET = LabelledEvent(name="crash", kind="market", subject="majors", onset=at("2022-03-10 00:00"))
HEDGE = LabelledEvent(
    name="hedge week", kind="hedge", subject="btc-vs-btcdown", window="2022-05-02..2022-05-08"
)


def test_lag_is_hours_from_onset_to_the_first_page_of_a_watching_rule() -> None:
    alerts = [
        page("stale", "BTC", "2022-03-10 01:00"),  # not a basket rule: does not alert the event
        page("stress", "other-basket", "2022-03-10 02:00"),  # another subject
        page("stress", "majors", "2022-03-10 05:00", kind="resolved"),  # not a page
        page("stress", "majors", "2022-03-10 07:00"),
        page("stress", "majors", "2022-03-10 09:00", kind="escalated"),
        page("decoupling", "btc-vs-btcdown", "2022-05-03 10:00"),
    ]
    card = score([MARKET, HEDGE], alerts, RULES, START, END, within_hours=6)
    market, hedge = card.events
    assert market.alerted and market.lag_hours == 7 and not market.caught
    assert market.first is not None and market.first.ts == at("2022-03-10 07:00")
    assert hedge.alerted and hedge.lag_hours == 24 + 10  # from the window's start
    assert score([MARKET], alerts, RULES, START, END, within_hours=7).events[0].caught


def test_an_alert_before_onset_within_the_window_has_a_negative_lag() -> None:
    card = score([MARKET], [page("stress", "majors", "2022-03-09 03:00")], RULES, START, END)
    assert card.events[0].lag_hours == -21 and card.events[0].caught


def test_pages_outside_the_window_do_not_alert_an_event() -> None:
    alerts = [
        page("stress", "majors", "2022-03-08 23:00"),  # onset - 25 h
        page("stress", "majors", "2022-03-17 01:00"),  # onset + 7 d + 1 h
    ]
    [event] = score([MARKET], alerts, RULES, START, END).events
    assert not event.alerted and event.lag_hours is None


def test_pages_per_month_outside_event_windows() -> None:
    alerts = [
        page("stress", "majors", "2022-01-05 00:00"),
        page("stress", "majors", "2022-01-20 00:00", kind="escalated"),
        page("stress", "majors", "2022-01-21 00:00", kind="repeat"),  # not a page
        page("stress", "majors", "2022-01-22 00:00", kind="resolved"),  # not a page
        page("stale", "BTC", "2022-02-01 00:00", muted_by="x/y"),  # muted: not a page
        page("stale", "BTC", "2022-02-02 00:00"),
        page("stale", "BTC", "2022-03-12 00:00"),  # in the market window: any rule belongs
        page("stress", "majors", "2022-03-20 00:00"),  # March, after the window
        page("stress", "majors", "2022-05-04 00:00"),  # in the hedge window, another subject
        page("decoupling", "btc-vs-btcdown", "2022-05-04 00:00"),  # belongs to the hedge event
    ]
    card = score([MARKET, HEDGE], alerts, RULES, START, END)
    months = {m.month: m for m in card.months}
    assert list(months) == ["2022-01", "2022-02", "2022-03", "2022-04", "2022-05", "2022-06"]
    assert [(m.month, m.calm, m.pages, m.pages_in_events) for m in card.months] == [
        ("2022-01", True, 2, 0),
        ("2022-02", True, 1, 0),
        ("2022-03", False, 1, 1),
        ("2022-04", True, 0, 0),
        ("2022-05", False, 1, 1),
        ("2022-06", True, 0, 0),
    ]
    assert months["2022-01"].by_rule == {"stress": 2}
    assert card.pages_per_calm_month == pytest.approx(3 / 4)
    worst = card.max_calm_month
    assert worst is not None and (worst.month, worst.pages) == ("2022-01", 2)
    totals = scorecard_json(card)["totals"]
    assert totals == {
        "events": 2,
        "alerted": 1,
        "caught": 0,
        "pages_outside_events": 5,
        "calm_months": 4,
        "pages_per_calm_month": 0.75,
        "max_calm_month": "2022-01",
        "max_calm_month_pages": 2,
    }


def test_a_window_spilling_into_the_next_month_makes_both_months_event_months() -> None:
    late = LabelledEvent(name="late", kind="market", subject="majors", onset=at("2022-01-28"))
    card = score([late], [], RULES, START, END)
    assert [m.month for m in card.months if not m.calm] == ["2022-01", "2022-02"]


def test_peak_is_the_extreme_in_the_rules_direction_within_the_window() -> None:
    below = Rule.model_validate(
        {"name": "eff", "kind": "hedge_effectiveness", "fire_below": 0.25, "clear_above": 0.5}
    )
    times = [at("2022-05-01 23:00"), at("2022-05-02 00:00"), at("2022-05-02 01:00")]
    values = [-5.0, 0.3, 0.1]
    peak = peak_in(below, times, values, HEDGE)
    assert peak is not None and (peak.value, peak.ts) == (0.1, times[2])
    peak = peak_in(RULES[1], times, [None, 0.3, float("nan")], HEDGE)
    assert peak is not None and peak.value == 0.3


def test_parse_toml_and_csv_events() -> None:
    toml = """
[[events]]
name = "crash"
kind = "market"
subject = "majors"
onset = 2022-03-10T00:00:00Z

[[events]]
name = "hedge week"
kind = "hedge"
subject = "btc-vs-btcdown"
window = "2022-05-02..2022-05-08"
"""
    csv = (
        "name,kind,subject,onset,window\n"
        "crash,market,majors,2022-03-10 00:00,\n"
        "hedge week,hedge,btc-vs-btcdown,,2022-05-02..2022-05-08\n"
    )
    assert parse_events(toml, "toml") == parse_events(csv, "csv") == [MARKET, HEDGE]
    assert HEDGE.span == (at("2022-05-02 00:00"), at("2022-05-08 23:00"))
    assert HEDGE.starts == at("2022-05-02 00:00")
    assert MARKET.span == (at("2022-03-09 00:00"), at("2022-03-17 00:00"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[events]]\nname='a'\nkind='market'\nsubject='majors'\n", "event a: .*onset"),
        ("[[events]]\nname='a'\nkind='hedge'\nsubject='h'\nonset=2022-01-01\n", "needs a window"),
        ("[[events]]\nname='a'\nkind='crash'\nsubject='m'\nonset=2022-01-01\n", "event a: kind"),
        (
            "[[events]]\nname='a'\nkind='hedge'\nsubject='h'\nwindow='2022-01-05..2022-01-01'\n",
            "ends before",
        ),
        ("[[events]]\nname='a'\nkind='market'\nsubject='m'\nonset='soon'\n", "event a: onset"),
        (
            "[[events]]\nname='a'\nkind='market'\nsubject='m'\nonset=2022-01-01\nwhen=1\n",
            "event a: when",
        ),
        ("[event]\nname='a'\n", "unknown top-level"),
        ("", "no events"),
        ("[[events]]\nname='a'\nkind='market'\nsubject='m'\nonset=2022-01-01\n" * 2, "unique"),
    ],
)
def test_bad_event_files_name_the_event_and_field(text: str, message: str) -> None:
    with pytest.raises(EventsFileError, match=message):
        parse_events(text, "toml")


def test_bad_csv_columns_are_named() -> None:
    with pytest.raises(EventsFileError, match=r"unknown column.*when"):
        parse_events("name,kind,subject,when\n", "csv")


def test_the_shipped_development_events_parse() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "events" / "development.toml"
    events = parse_events(path.read_text(encoding="utf-8"), "toml")
    assert [e.kind for e in events].count("market") == 6
    assert {e.subject for e in events if e.kind == "hedge"} == {"btc-vs-btcdown"}
    assert all(e.starts.tzinfo is not None for e in events)
    assert events[1].starts == at("2022-05-09 10:00") + timedelta(0)
