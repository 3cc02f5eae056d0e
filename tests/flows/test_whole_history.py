"""History is whole: every write of candles marks the hours it changes, and metrics follow.

Imports (like backfills) go through the store's one upsert; `hedgewatch recompute` computes what
they marked; changed metric settings are detected; imports say what they changed and refuse to
merge two sources into one series unless told.
"""

from __future__ import annotations

import gzip
import shutil
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import tomli_w
from typer.testing import CliRunner

from hedgewatch import pipeline
from hedgewatch.cli import app
from hedgewatch.demo import demo_data_dir, write_demo_config
from hedgewatch.settings import load_settings
from hedgewatch.storage.store import Store

H = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def candles(symbol: str, hours: range, close: float = 100.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "venue": "binance",
            "market": "spot",
            "symbol": symbol,
            "interval": "1h",
            "open_time": [T0 + h * H for h in hours],
            "open": close,
            "high": close,
            "low": close,
            "close": [close + h for h in hours],
            "volume": 1.0,
            "quote_volume": None,
            "trades": None,
        }
    ).cast({"open_time": pl.Datetime("us", "UTC"), "quote_volume": pl.Float64, "trades": pl.Int64})


def spot_file() -> Path:
    return next(demo_data_dir().glob("binance_spot_1h_*.csv.gz"))


def perp_file() -> Path:
    return next(demo_data_dir().glob("binance_usdm_perp_1h_*.csv.gz"))


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_the_upsert_marks_the_earliest_changed_hour_and_only_changes(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hw.duckdb") as store:
        first = store.import_candles(candles("BTCUSDT", range(10, 20)))
        assert (first.new, first.changed, first.unchanged) == (10, 0, 0)
        assert store.metrics_dirty_since() == T0 + 10 * H

        store.rows("clear_metrics_dirty", {"since": T0})
        again = store.import_candles(candles("BTCUSDT", range(10, 20)))
        assert (again.new, again.changed, again.unchanged) == (0, 0, 10)
        assert store.metrics_dirty_since() is None  # nothing changed, nothing to recompute

        late = store.import_candles(
            pl.concat([candles("BTCUSDT", range(15, 16), close=7.0), candles("ETHUSDT", range(3))])
        )
        assert (late.new, late.changed, late.unchanged) == (3, 1, 0)
        assert store.metrics_dirty_since() == T0  # the earliest of the two
        store.import_candles(candles("BTCUSDT", range(12, 13), close=1.0))
        assert store.metrics_dirty_since() == T0  # a later change keeps the earliest mark


def test_imported_history_gets_metrics_from_recompute(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path, "http://127.0.0.1:9")
    code, out = invoke("import", str(spot_file()), str(perp_file()), "-c", str(config))
    assert code == 0, out
    settings = load_settings(config)
    with Store.open(settings.storage.database, read_only=True) as store:
        first, last = store.first_candle_hour(), store.last_candle_hour()
        assert store.metrics_dirty_since() == first
        assert store.latest_metric_hour() is None

    code, out = invoke("recompute", "-c", str(config), "--no-progress")
    assert code == 0, out
    assert "recomputed" in out

    with Store.open(settings.storage.database, read_only=True) as store:
        assert store.metrics_dirty_since() is None
        hedges = store.metrics_since("hedge_metrics", first)
        baskets = store.metrics_since("basket_metrics", first)
    assert first is not None and last is not None
    for frame in (hedges, baskets):
        assert frame["open_time"].max() == last
        assert frame["open_time"].min() < first + timedelta(days=2)


def test_recompute_equals_the_incremental_metrics(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path, "http://127.0.0.1:9")
    settings = load_settings(config)
    assert invoke("import", str(spot_file()), str(perp_file()), "-c", str(config))[0] == 0
    with Store.open(settings.storage.database) as store:
        pipeline.compute(store, settings, pipeline.dirty_since(store, settings))
        whole = store.metrics_since("hedge_metrics", T0 - timedelta(days=3650))
        # In 90-day steps (more than one step here), and again in 5-day steps.
        pipeline.recompute(store, settings, step=timedelta(days=5))
        stepped = store.metrics_since("hedge_metrics", T0 - timedelta(days=3650))
    assert whole.height == stepped.height > 0
    assert (
        (whole["correlation"] - stepped["correlation"]).abs().fill_nan(0).fill_null(0).max() or 0
    ) < 1e-9


def test_a_changed_metric_setting_is_detected_and_recomputed(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path, "http://127.0.0.1:9")
    assert invoke("import", str(spot_file()), "-c", str(config))[0] == 0
    assert invoke("recompute", "-c", str(config), "--no-progress")[0] == 0
    settings = load_settings(config)
    with Store.open(settings.storage.database) as store:
        assert pipeline.settings_changed(store, settings) == []
        assert pipeline.dirty_since(store, settings) is None

    raw = tomllib.loads(config.read_text())
    raw["metrics"]["absorption_k"] = 2
    config.write_text(tomli_w.dumps(raw))
    changed = load_settings(config)
    with Store.open(changed.storage.database) as store:
        assert pipeline.settings_changed(store, changed) == ["metrics.absorption_k"]
        assert pipeline.dirty_since(store, changed) == store.first_candle_hour()

    code, out = invoke("recompute", "-c", str(config), "--no-progress")
    assert code == 0, out
    assert "metric settings changed: metrics.absorption_k" in out
    with Store.open(changed.storage.database) as store:
        assert pipeline.settings_changed(store, changed) == []


def test_import_says_what_is_new_changed_and_unchanged(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path, "http://127.0.0.1:9")
    code, out = invoke("import", str(spot_file()), "-c", str(config))
    assert code == 0, out
    assert "imported 6722 candles from 1 file(s): 6722 new, 0 changed, 0 unchanged" in out
    code, out = invoke("import", str(spot_file()), "-c", str(config))
    assert code == 0, out
    assert "imported 6722 candles from 1 file(s): 0 new, 0 changed, 6722 unchanged" in out
    assert "recomputed by the next run" not in out


def test_import_warns_about_symbols_no_instrument_names(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path, "http://127.0.0.1:9")
    doge = tmp_path / "binance_spot_1h_doge.csv"
    doge.write_text("ts,symbol,open,high,low,close,volume\n1704067200000,DOGEUSDT,1,1,1,1,1\n")
    code, out = invoke("import", str(doge), "-c", str(config))
    assert code == 0, out
    assert "warning: binance spot DOGEUSDT 1h is not an instrument" in out
    assert "1 new" in out


def test_import_refuses_a_second_source_in_one_series_unless_merged(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path, "http://127.0.0.1:9")
    other = tmp_path / "othervenue_spot_1h_2022-04-20_2022-05-16.csv.gz"
    with gzip.open(spot_file(), "rb") as src, gzip.open(other, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert invoke("import", str(spot_file()), "-c", str(config))[0] == 0

    code, out = invoke("import", str(other), "-c", str(config))
    assert code == 2
    assert "already holds candles imported from binance_spot_1h" in out
    assert "--merge" in out

    code, out = invoke("import", str(other), "--venue", "othervenue", "-c", str(config))
    assert code == 0, out  # stored as its own venue: a series of its own
    code, out = invoke("import", str(other), "--merge", "-c", str(config))
    assert code == 0, out
    assert "0 new, 0 changed, 6722 unchanged" in out
