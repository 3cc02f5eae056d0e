"""`hedgewatch backtest` on the bundled LUNA/UST candles with the example config's rules."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.demo import demo_data_dir, example_config
from hedgewatch.replay import load_candle_files
from hedgewatch.storage.store import Store


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("bt") / "history.duckdb"
    candles = load_candle_files(sorted(demo_data_dir().glob("binance_*_1h_*.csv.gz")))
    with Store.open(database) as store:
        store.upsert_candles(candles.with_columns(pl.lit("binance").alias("venue")))
    return database


def backtest(database: Path, *extra: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--from",
            "2022-05-01T00:00",
            "--to",
            "2022-05-15T23:00",
            "-c",
            str(example_config()),
            "-d",
            str(database),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    if "jsonl" in extra:
        return [json.loads(line) for line in result.output.splitlines()]
    return [{"text": result.output}]


def test_luna_crash_fires_market_stress_and_a_hedge_alert(history: Path) -> None:
    rows = backtest(history, "--format", "jsonl")
    events = [r for r in rows if r["type"] == "event"]
    stress = [
        e
        for e in events
        if e["rule"] == "market-stress"
        and e["state"] == "firing"
        and "2022-05-09" <= str(e["ts"]) < "2022-05-13"
    ]
    assert stress, events
    # Every basket alert lists the members its value was computed on.
    assert all(e["members"] == "BTC,ETH,BNB,SOL,ADA,XRP,AVAX,DOT" for e in stress)
    hedges = [e for e in events if str(e["rule"]).startswith("hedge-") and e["state"] == "firing"]
    assert any(e["subject"] == "luna-vs-btc-perp" for e in hedges)
    # LUNA's spot market stops on 2022-05-13: its series goes stale within hours.
    stale = [e for e in events if e["rule"] == "data-staleness" and e["state"] == "firing"]
    assert [(e["subject"], str(e["ts"])[:10]) for e in stale] == [("LUNA", "2022-05-13")]
    summaries = {r["rule"]: r for r in rows if r["type"] == "summary"}
    assert summaries["market-stress"]["episodes"] >= 1
    assert set(summaries) >= {"hedge-decoupling", "market-stress", "data-staleness"}
    # Replaying twice gives the same events: nothing is stored, nothing depends on the clock.
    assert rows == backtest(history, "--format", "jsonl")


def test_table_output_lists_events_and_a_summary(history: Path) -> None:
    [out] = backtest(history)
    assert "market-stress" in str(out["text"]) and "per month" in str(out["text"])


def test_backtest_loads_no_scheduler_templates_or_delivery(
    history: Path, modules_after: Any
) -> None:
    args = ["--from", "2022-05-01T00:00", "--to", "2022-05-03T00:00", "-d", str(history)]
    loaded = modules_after("backtest", "-c", str(example_config()), *args)
    assert "hedgewatch.backtest" in loaded
    unused = ("prefect", "jinja2", "hedgewatch.outbox.deliver", "hedgewatch.report")
    assert not {m for m in loaded if m.startswith(unused)}


def test_backtest_reads_only(history: Path) -> None:
    with Store.open(history, read_only=True) as store:
        before = store.con.sql("SELECT count(*) FROM alert_events").fetchall()
    backtest(history, "--format", "jsonl")
    with Store.open(history, read_only=True) as store:
        assert store.con.sql("SELECT count(*) FROM alert_events").fetchall() == before
        assert store.con.sql("SELECT count(*) FROM hedge_metrics").fetchall() == [(0,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2022-05-10", "--to", "2022-05-01"], "--to must be after --from"),
        (["--from", "yesterday-ish", "--to", "2022-05-01"], "--from"),
    ],
)
def test_bad_ranges_exit_2(history: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["backtest", *args, "-c", str(example_config()), "-d", str(history)]
    )
    assert result.exit_code == 2 and message in result.output


def test_benchmark_config_uses_the_example_rules() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    bench = tomllib.loads((root / "benchmarks" / "backtest.toml").read_text())
    example = tomllib.loads(example_config().read_text())
    assert bench["alerts"]["rules"] == example["alerts"]["rules"]
    assert bench["metrics"] == example["metrics"]
    assert len(bench["instruments"]) == 20
    perps = tomllib.loads((root / "benchmarks" / "backtest-perps.toml").read_text())
    assert perps["alerts"]["rules"] == [
        r for r in example["alerts"]["rules"] if r["name"] != "hedge-decoupling-level"
    ]
    assert perps["metrics"] == example["metrics"]


EVENTS = """
[[events]]
name = "LUNA/UST collapse"
kind = "market"
subject = "majors"
onset = 2022-05-09T00:00:00Z

[[events]]
name = "LUNA hedge breaks"
kind = "hedge"
subject = "luna-vs-btc-perp"
window = "2022-05-09..2022-05-13"
"""


def test_scorecard_against_labelled_events(history: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.toml"
    events.write_text(EVENTS, encoding="utf-8")
    [out] = backtest(history, "--events", str(events), "--format", "json")
    doc = json.loads(str(out["text"]))
    card = doc["scorecard"]
    luna, hedge = card["events"]
    # The basket's 12h drawdown passes 4 typical moves at 2022-05-09 10:00: lag 10 h from the
    # labelled midnight (the development events move this onset to 10:00).
    first = luna["first_alert"]
    assert luna["alerted"] and first["rule"] == "market-stress"
    assert (
        luna["lag_hours"]
        == (
            datetime.fromisoformat(first["ts"]) - datetime.fromisoformat(luna["onset"])
        ).total_seconds()
        / 3600
    )
    assert not luna["caught"] and luna["lag_hours"] > 6
    assert first["arm"] in {"level", "z", "critical"} and first["n_obs"] >= 12
    assert first["window"] == "12h" and luna["lag_hours"] == 10
    assert {p["rule"] for p in luna["peaks"]} >= {"market-stress"}
    assert hedge["alerted"] and hedge["first_alert"]["subject"] == "luna-vs-btc-perp"
    # May 2022 holds both windows: an event month; the range has no calm month.
    assert [(m["month"], m["calm"]) for m in card["months"]] == [("2022-05", False)]
    assert card["totals"]["calm_months"] == 0 and card["totals"]["pages_per_calm_month"] is None
    # Every event's threshold is its arm's: a z breach shows the z threshold, not the level.
    rules = {r["rule"]: r for r in doc["events"] if r["state"] == "firing"}
    for row in doc["events"]:
        if row["arm"] == "z":
            assert row["threshold"] > 0 and row["z"] is not None and row["z"] > row["threshold"]
    assert rules
    # The table names each event, its lag and the calm-month totals.
    [out] = backtest(history, "--events", str(events), "--within", "48")
    text = str(out["text"])
    assert "LUNA/UST collapse" in text and "+10" in text and "2/2 within 48 h" in text


def test_sweep_scores_each_grid_point(history: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        "name,kind,subject,onset\nLUNA,market,majors,2022-05-09T10:00Z\n", encoding="utf-8"
    )
    [out] = backtest(
        history,
        "--events",
        str(events),
        "--rule",
        "market-stress",
        "--sweep",
        "market-stress.fire_above=1.5,4,5,20",
        "--sweep",
        "market-stress.for_hours=1,3",
        "--format",
        "json",
    )
    rows = json.loads(str(out["text"]))["sweep"]
    assert [(r["market-stress.fire_above"], r["market-stress.for_hours"]) for r in rows] == [
        (1.5, 1),
        (1.5, 3),
        (4, 1),
        (4, 3),
        (5, 1),
        (5, 3),
        (20, 1),
        (20, 3),
    ]
    by = {(r["market-stress.fire_above"], r["market-stress.for_hours"]): r for r in rows}
    # Impossible rules are reported, not scored: 1.5 is below clear_below (2), 20 beyond the
    # rule's critical_at (6).
    assert "clear_below" in by[(1.5, 1)]["error"]
    assert "critical_at" in by[(20, 1)]["error"]
    # A higher threshold never alerts sooner; a longer for_hours neither.
    assert by[(4, 1)]["alerted"] == by[(5, 1)]["alerted"] == 1
    assert by[(4, 1)]["median_lag_hours"] <= by[(5, 1)]["median_lag_hours"]
    assert by[(4, 1)]["median_lag_hours"] < by[(4, 3)]["median_lag_hours"]
    # The config's own values (4, 1) give the plain scorecard's lag.
    [plain] = backtest(history, "--events", str(events), "--rule", "market-stress", "-f", "json")
    [luna] = json.loads(str(plain["text"]))["scorecard"]["events"]
    assert luna["lag_hours"] == by[(4, 1)]["median_lag_hours"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "market-stress.fire_above=5"], "needs --events"),
        (["--events", "missing.toml"], "cannot read"),
        (["--rule", "nope"], "no rule named"),
    ],
)
def test_scorecard_usage_errors_exit_2(history: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--from",
            "2022-05-01",
            "--to",
            "2022-05-02",
            "-c",
            str(example_config()),
            "-d",
            str(history),
            *args,
        ],
    )
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_no_data_alert_fires_after_a_subject_stops_reporting(
    history: Path, tmp_path: Path
) -> None:
    # LUNA's spot market stops on 2022-05-13: the LUNA hedge's rows lose their observations.
    # A rule that alerts on no data says so after its hours.
    config = tmp_path / "hedgewatch.toml"
    config.write_text(
        example_config().read_text(encoding="utf-8")
        + """
[[alerts.rules]]
name = "hedge-silent"
kind = "hedge_decoupling"
subjects = ["luna-vs-btc-perp"]
fire_above = 0.99
clear_below = 0.98
no_data = "alert"
no_data_alert_after_hours = 4
""",
        encoding="utf-8",
    )
    (tmp_path / "var").mkdir()
    result = CliRunner().invoke(
        app,
        ["backtest", "--from", "2022-05-01T00:00", "--to", "2022-05-15T23:00", "-c",
         str(config), "-d", str(history), "--format", "jsonl"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    silent = [r for r in rows if r.get("rule") == "hedge-silent" and r["type"] == "event"]
    assert [(r["state"], r["arm"]) for r in silent][:1] == [("firing", "no_data")]
    assert "2022-05-13" <= str(silent[0]["ts"]) < "2022-05-14" and silent[0]["threshold"] == 4


def test_a_missing_row_is_an_hour_without_data_as_in_the_hourly_run() -> None:
    from datetime import UTC, timedelta

    from hedgewatch.alerts.rules import Rule
    from hedgewatch.backtest import History, observations, series, walk, walk_series
    from hedgewatch.settings import load_settings

    t0 = datetime(2022, 5, 1, tzinfo=UTC)
    hours = [0, 1, 5]  # rows at 00:00, 01:00 and 05:00 only; the range ends at 07:00
    frame = pl.DataFrame(
        {
            "basket": ["majors"] * 3,
            "window_hours": [24] * 3,
            "open_time": [t0 + timedelta(hours=h) for h in hours],
            "n_obs": [24] * 3,
            "n_pairs": [28] * 3,
            "avg_corr": [0.5, 0.5, 0.5],
        },
        schema_overrides={"open_time": pl.Datetime("us", "UTC")},
    )
    settings = load_settings(example_config())
    history = History(
        settings, t0, t0 + timedelta(hours=7), {"basket": frame, "hedge": pl.DataFrame()}
    )
    rule = Rule.model_validate(
        {"name": "quiet", "kind": "correlation_spike", "fire_above": 0.9, "clear_below": 0.8,
         "no_data": "alert", "no_data_alert_after_hours": 3}
    )  # fmt: skip
    seen = observations(history, rule)
    assert [(o.ts.hour, o.value) for o in seen] == [
        (0, 0.5), (1, 0.5), (2, None), (3, None), (4, None), (5, 0.5), (6, None), (7, None)
    ]  # fmt: skip
    assert [(e.kind, e.ts.hour) for e in walk(rule, seen)] == [("firing", 4), ("resolved", 5)]
    assert walk_series(rule, series(history, rule)) == walk(rule, seen)
