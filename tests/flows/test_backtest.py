"""`hedgewatch backtest` on the bundled LUNA/UST candles with the example config's rules."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.demo import demo_data_dir, example_config
from flows.exchanges.replay import load_candle_files
from flows.store import Store


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
    if "--format" in extra:
        return [json.loads(line) for line in result.output.splitlines()]
    return [{"text": result.output}]


def test_luna_crash_fires_a_correlation_spike_and_a_hedge_alert(history: Path) -> None:
    rows = backtest(history, "--format", "jsonl")
    events = [r for r in rows if r["type"] == "event"]
    spikes = [
        e
        for e in events
        if e["rule"] == "correlation-spike"
        and e["state"] == "firing"
        and "2022-05-09" <= str(e["ts"]) < "2022-05-13"
    ]
    assert spikes, events
    hedges = [e for e in events if str(e["rule"]).startswith("hedge-") and e["state"] == "firing"]
    assert any(e["subject"] == "luna-vs-btc-perp" for e in hedges)
    # LUNA's spot market stops on 2022-05-13: its series goes stale within hours.
    stale = [e for e in events if e["rule"] == "data-staleness" and e["state"] == "firing"]
    assert [(e["subject"], str(e["ts"])[:10]) for e in stale] == [("LUNA", "2022-05-13")]
    summaries = {r["rule"]: r for r in rows if r["type"] == "summary"}
    assert summaries["correlation-spike"]["episodes"] >= 1
    assert set(summaries) >= {"hedge-decoupling", "correlation-spike", "data-staleness"}
    # Replaying twice gives the same events: nothing is stored, nothing depends on the clock.
    assert rows == backtest(history, "--format", "jsonl")


def test_table_output_lists_events_and_a_summary(history: Path) -> None:
    [out] = backtest(history)
    assert "correlation-spike" in str(out["text"]) and "per month" in str(out["text"])


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
