"""The hedge lab from the command line, on a DuckDB file holding the bundled demo data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hedgewatch.alerts.state import AlertEvent
from hedgewatch.cli import app
from hedgewatch.hedgelab import attach_rebalance
from hedgewatch.replay import load_candle_files, load_funding_files
from hedgewatch.settings import ConfigError, HedgeSettings, LegSettings, load_settings
from hedgewatch.storage.store import Store
from hedgewatch.venues.base import CANDLE_SCHEMA, FUNDING_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "data"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config (the example's) and its database with the demo's candles and funding."""
    folder = tmp_path_factory.mktemp("lab")
    candles = (
        load_candle_files(sorted(DEMO.glob("binance_*_1h_*.csv.gz")))
        .with_columns(pl.lit("binance").alias("venue"))
        .select(list(CANDLE_SCHEMA))
    )
    funding = (
        load_funding_files(sorted(DEMO.glob("binance_funding_*.csv.gz")))
        .rename({"exchange": "venue"})
        .with_columns(pl.lit(None, pl.Float64).alias("mark_price"))
        .select(list(FUNDING_SCHEMA))
    )
    with Store.open(folder / "hw.duckdb") as store:
        store.upsert_candles(candles)
        store.upsert_funding(funding)
    example = (ROOT / "hedgewatch.example.toml").read_text(encoding="utf-8")
    config = folder / "hw.toml"
    config.write_text(
        example.replace('database = "var/hedgewatch.duckdb"', 'database = "hw.duckdb"'),
        encoding="utf-8",
    )
    return config


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def backtest_json(lab: Path, hedge: str, *extra: str) -> dict:  # type: ignore[type-arg]
    code, out, err = invoke(
        "hedges", "backtest", hedge, "--from", "2022-04-27", "--to", "2022-05-14",
        "-c", str(lab), "--format", "json", *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("hedge", ["luna-vs-btc-perp", "btc-vs-eth-perp"])
def test_backtest_of_the_demo_hedges_charges_costs_and_the_band_trades_less(
    lab: Path, hedge: str
) -> None:
    result = backtest_json(lab, hedge)
    by_policy = {p["policy"]: p for p in result["policies"]}
    assert list(by_policy) == ["static", "cadence 24h", "band 25%"]
    for p in by_policy.values():
        assert p["cost"] > 0 and p["fees"] > 0 and p["slippage"] >= 0
        assert -1.0 <= p["effectiveness"] <= 1.0
        assert p["hours"] == 17 * 24 - 1
        assert p["pnl_unhedged"] == by_policy["static"]["pnl_unhedged"]
    # A short perp hedge while longs paid shorts: funding is received, and counted.
    assert by_policy["static"]["funding"] < 0
    assert by_policy["band 25%"]["trades"] < by_policy["cadence 24h"]["trades"]
    # Daily rebalancing over 17 days: the opening trade and one a day after it.
    assert by_policy["cadence 24h"]["trades"] == 17


def test_backtest_table_puts_the_policies_side_by_side(lab: Path) -> None:
    code, out, err = invoke(
        "hedges", "backtest", "btc-vs-btcdown", "--from", "2022-05-01", "--to", "2022-05-14",
        "-c", str(lab), "--policy", "static", "--policy", "band",
    )  # fmt: skip
    assert code == 0, err
    assert "long 2 BTC, hedge long BTCDOWN at ratio 0.33" in out
    header = next(line for line in out.splitlines() if "static" in line)
    assert "band 25%" in header and "unhedged" in header and "cadence" not in header
    for row in ("effectiveness", "cost (fees + slippage)", "effectiveness per bp of cost"):
        assert row in out


def test_backtest_errors_exit_2_and_say_why(lab: Path) -> None:
    code, _, err = invoke("hedges", "backtest", "nope", "--from", "2022-05-01", "--to",
                          "2022-05-02", "-c", str(lab))  # fmt: skip
    assert code == 2 and "unknown hedge 'nope'" in err
    code, _, err = invoke("hedges", "backtest", "btc-vs-eth-perp", "--from", "2022-05-01",
                          "--to", "2022-05-02", "--policy", "weekly", "-c", str(lab))  # fmt: skip
    assert code == 2 and "unknown policy 'weekly'" in err
    code, _, err = invoke("hedges", "backtest", "btc-vs-eth-perp", "--from", "2022-05-02",
                          "--to", "2022-05-01", "-c", str(lab))  # fmt: skip
    assert code == 2 and "--to must be after --from" in err
    code, _, err = invoke("hedges", "backtest", "btc-vs-eth-perp", "--from", "2023-01-01",
                          "--to", "2023-02-01", "-c", str(lab))  # fmt: skip
    assert code == 2 and "no stored candles of both legs" in err


def test_stress_replays_a_named_crisis_and_reports_windows_without_data(lab: Path) -> None:
    code, out, err = invoke(
        "hedges", "stress", "btc-vs-btcdown", "--scenario", "luna-2022", "--scenario",
        "ftx-2022", "-c", str(lab), "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    luna, ftx = json.loads(out)
    assert luna["scenario"] == "luna-2022" and luna["hours"] == 7 * 24
    # Long BTC, long BTCDOWN: the legs move against each other and the hedge absorbs most of it.
    assert luna["correlation"] < -0.9
    assert 0 < luna["loss"] < luna["unhedged_loss"]
    assert 0.5 < luna["effectiveness"] <= 1
    assert luna["base_notional"] > 0 and luna["ratio_start"] == pytest.approx(0.33)
    assert ftx["scenario"] == "ftx-2022" and "no stored candles" in ftx["error"]


def test_a_shocked_window_toward_plus_one_breaks_an_inverse_token_hedge(lab: Path) -> None:
    def run(*shock: str) -> dict:  # type: ignore[type-arg]
        code, out, err = invoke(
            "hedges", "stress", "btc-vs-btcdown", "--window", "2022-05-07..2022-05-14",
            "-c", str(lab), "-f", "json", *shock,
        )  # fmt: skip
        assert code == 0, err
        (row,) = json.loads(out)
        return row  # type: ignore[no-any-return]

    plain, shocked = run(), run("--shock-corr", "1.5", "--vol-mult", "2")
    assert shocked["correlation"] > plain["correlation"]
    assert shocked["effectiveness"] < plain["effectiveness"]
    assert shocked["loss"] > plain["loss"]


def test_stress_usage_errors_exit_2(lab: Path) -> None:
    code, _, err = invoke("hedges", "stress", "--scenario", "nope", "-c", str(lab))
    assert code == 2 and "unknown 'nope'" in err
    code, _, err = invoke("hedges", "stress", "--scenario", "luna-2022", "--window",
                          "2022-05-07..2022-05-08", "-c", str(lab))  # fmt: skip
    assert code == 2 and "not both" in err
    code, _, err = invoke("hedges", "stress", "--window", "2022-05-07", "-c", str(lab))
    assert code == 2 and "expected A..B" in err
    code, _, err = invoke("hedges", "stress", "--shock-corr", "1", "-c", str(lab))
    assert code == 2 and "apply to a --window" in err


def test_every_shipped_scenario_on_every_hedge_in_one_table(lab: Path) -> None:
    code, out, err = invoke("hedges", "stress", "-c", str(lab))
    assert code == 0, err
    for name in ("luna-2022", "luna-2022-conve", "ftx-2022", "covid-2020", "yen-2024"):
        assert name in out
    code, out, _ = invoke("hedges", "scenarios", "-c", str(lab))
    assert "luna-2022-converge" in out and "corr z +1" in out


def test_ratio_drift_alerts_of_sized_hedges_carry_the_rebalance_trade(lab: Path) -> None:
    settings = load_settings(lab)
    rules = {r.name: r for r in settings.alerts.rules}

    def event(subject: str, kind: str = "firing") -> AlertEvent:
        return AlertEvent(
            rule="hedge-ratio-drift", subject=subject, ts=datetime(2022, 5, 10, 12, tzinfo=UTC),
            kind=kind, value=1.2, threshold=1.0, severity="info", episode=1, context={},
        )  # type: ignore[arg-type]  # fmt: skip

    sized, resolved = event("btc-vs-eth-perp"), event("btc-vs-eth-perp", "resolved")
    with Store.open(settings.storage.database, read_only=True) as store:
        attach_rebalance(store, settings, [sized, resolved], rules)
        advice = sized.context["rebalance"]
        assert "rebalance" not in resolved.context
        assert advice["instrument"] == "ETH-PERP" and advice["side"] in ("buy", "sell")
        assert advice["notional"] == pytest.approx(advice["units"] * advice["price"])
        assert advice["cost"] == pytest.approx(
            advice["fee"] + advice["slippage"] + advice["funding"]
        )
        assert advice["fee"] == pytest.approx(advice["notional"] * 5e-4)  # the perp's taker fee
        assert advice["variance_after"] <= advice["variance_before"]
        # Growing the short hedge sells; shrinking it buys.
        grows = advice["target_ratio"] > advice["held_ratio"]
        assert advice["side"] == ("sell" if grows else "buy")

        unsized = settings.model_copy(
            update={
                "hedges": [
                    HedgeSettings(
                        name="btc-vs-eth-perp",
                        legs=[
                            LegSettings(instrument="BTC", side="long"),
                            LegSettings(instrument="ETH-PERP", side="short", ratio=0.8),
                        ],
                    )
                ]
            }
        )
        bare = event("btc-vs-eth-perp")
        attach_rebalance(store, unsized, [bare], rules)
        assert "rebalance" not in bare.context


def test_lab_settings_errors_name_the_field(tmp_path: Path) -> None:
    base = (ROOT / "hedgewatch.example.toml").read_text(encoding="utf-8")

    def error(text: str) -> str:
        path = tmp_path / "bad.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load_settings(path)
        return str(info.value)

    both = base.replace(
        'side = "long", units = 2 },\n    { instrument = "ETH-PERP"',
        'side = "long", units = 2, notional = 5 },\n    { instrument = "ETH-PERP"',
    )
    assert "hedges.1.legs.0" in error(both) and "units or notional" in error(both)
    fees = base.replace(
        "fees = { maker_bps = 2, taker_bps = 5 }   #",
        "fees = { maker_bps = 2, taker_bps = 500 }   #",
    )
    assert "instruments.10.fees.taker_bps" in error(fees)
    window = base.replace(
        'window = "7d"             # of the min-variance',
        'window = "7 days"        # of the min-variance',
    )
    assert "hedge_lab.window" in error(window)
    scenario = base + (
        '\n[[hedge_lab.scenarios]]\nname = "x"\nstart = 2022-05-09T00:00:00Z\n'
        "end = 2022-05-08T00:00:00Z\n"
    )
    assert "hedge_lab.scenarios.0" in error(scenario) and "after start" in error(scenario)


def test_fees_come_from_the_instrument_else_the_venue(lab: Path) -> None:
    settings = load_settings(lab)
    assert settings.fees("BTC-PERP").taker_bps == 5
    assert settings.fees("BTC").taker_bps == 10


def test_report_charts_each_hedge_against_its_unhedged_position(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, _, err = invoke("report", "-c", str(lab), "-o", str(out), "--days", "10")
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert "Hedge lab: hedged vs unhedged P&amp;L and the ratio path" in page
    for hedge in ("luna-vs-btc-perp", "btc-vs-eth-perp", "btc-vs-btcdown"):
        assert f"{hedge}: policies against the unhedged position" in page
    assert page.count("min-variance target") == 3 and "band 25% ratio" in page


def test_a_missing_quote_volume_is_close_times_volume(lab: Path, tmp_path: Path) -> None:
    # The replay exchange sends "0" for a quote volume its files lack; slippage must not read
    # that as a market without volume.
    from hedgewatch.hedgelab import hedge_settings, load_legs

    settings = load_settings(lab)
    hedge = hedge_settings(settings, "btc-vs-eth-perp")
    with Store.open(settings.storage.database, read_only=True) as store:
        before = load_legs(store, settings, hedge, datetime(2022, 5, 1, tzinfo=UTC),
                           datetime(2022, 5, 1, 3, tzinfo=UTC))  # fmt: skip
    database = tmp_path / "zero.duckdb"
    row = {
        "venue": "binance", "market": "spot", "symbol": "BTCUSDT", "interval": "1h",
        "open_time": datetime(2022, 5, 1, 1, tzinfo=UTC), "open": 1.0, "high": 1.0, "low": 1.0,
        "close": 38_000.0, "volume": 2.0, "quote_volume": 0.0, "trades": 0,
    }  # fmt: skip
    with Store.open(database) as store:
        store.upsert_candles(pl.DataFrame([row], schema=CANDLE_SCHEMA))
        legs = load_legs(store, settings, hedge, datetime(2022, 5, 1, tzinfo=UTC),
                         datetime(2022, 5, 1, 3, tzinfo=UTC))  # fmt: skip
    assert legs.base.quote_volume[1] == pytest.approx(76_000.0)
    assert before.base.quote_volume[1] > 0


def test_the_evaluate_step_stores_and_queues_the_advice_with_the_alert(
    lab: Path, tmp_path: Path
) -> None:
    """The hourly run's evaluate step (without Prefect) through the LUNA collapse: the decoupling
    alert of the sized LUNA hedge carries its rebalance trade into the stored event."""
    import shutil

    from hedgewatch import pipeline

    settings = load_settings(lab)
    database = tmp_path / "run.duckdb"
    shutil.copy(settings.storage.database, database)
    settings = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"database": database})}
    )
    with Store.open(database) as store:
        pipeline.compute(store, settings, datetime(2022, 4, 20, tzinfo=UTC))
        store.set_cursor(pipeline.EVALUATED_THROUGH, datetime(2022, 5, 11, tzinfo=UTC))
        result = pipeline.evaluate(store, settings, "run-1")
        rows = store.con.execute(
            "SELECT rule, subject, kind, context FROM alert_events"
            " WHERE rule IN ('hedge-decoupling', 'hedge-ratio-drift') AND kind <> 'resolved'"
        ).fetchall()
    assert result.events and rows
    advised = [
        (rule, subject, json.loads(context)["rebalance"])
        for rule, subject, _, context in rows
        if "rebalance" in json.loads(context)
    ]
    assert any(subject == "luna-vs-btc-perp" for _, subject, _ in advised)
    for _, subject, advice in advised:
        assert advice["hedge"] == subject and advice["side"] in ("buy", "sell")
        assert advice["instrument"] == hedge_leg(settings, subject)


def hedge_leg(settings, name: str) -> str:  # type: ignore[no-untyped-def]
    return next(h for h in settings.hedges if h.name == name).legs[1].instrument
