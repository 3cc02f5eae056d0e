"""Two venues, one of them failing: the failing one is skipped and recorded, the other goes on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import tomli_w

from hedgewatch.fetching import fetch_venue
from hedgewatch.replay import Fault, load_candle_files, make_replay
from hedgewatch.settings import load_settings
from hedgewatch.storage.store import Store

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"  # real recorded data, vendored (tests/data/SOURCES.md)
SPOT = DATA / "candles" / "binance_spot_1h_BTCUSDT_2024-01_2026-01.csv.gz"
NOW = datetime(2024, 3, 1, 12, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def btc() -> pl.DataFrame:
    if not SPOT.exists():
        pytest.skip(f"real market data not found at {SPOT}")
    return load_candle_files([SPOT])


def config(tmp_path: Path, good: str, bad: str) -> Path:
    raw: dict[str, Any] = {
        "storage": {"database": str(tmp_path / "hw.duckdb")},
        "fetch": {"history_start": "2024-02-28T00:00:00Z", "max_workers": 1},
        "venues": [
            {"name": "binance", "kind": "binance", "base_urls": {"spot": good}},
            {"name": "bybit", "kind": "bybit", "base_urls": {"spot": bad}, "max_attempts": 2},
        ],
        "instruments": [
            {"id": "BTC", "venue": "binance", "symbol": "BTCUSDT"},
            {"id": "BTC-COPY", "venue": "binance", "symbol": "BTCCOPY"},
            {"id": "BTC-BYBIT", "venue": "bybit", "symbol": "BTCUSDT"},
            {"id": "ETH-BYBIT", "venue": "bybit", "symbol": "ETHUSDT"},
        ],
        # Metrics need something to compute; the pair is the same series under two labels.
        "hedges": [
            {
                "name": "copy",
                "legs": [
                    {"instrument": "BTC", "side": "long"},
                    {"instrument": "BTC-COPY", "side": "short"},
                ],
            }
        ],
        "baskets": [{"name": "btc", "members": ["BTC", "BTC-COPY"]}],
    }
    path = tmp_path / "hedgewatch.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def test_a_failing_venue_is_skipped_after_its_first_venue_level_error(
    btc: pl.DataFrame, tmp_path: Path
) -> None:
    bybit_rows = pl.concat([btc, btc.with_columns(pl.lit("ETHUSDT").alias("symbol"))])
    with make_replay("bybit", bybit_rows, now=NOW) as bad:
        bad.inject(Fault("status", path_prefix="/v5/market/kline", code=503, count=None))
        settings = load_settings(config(tmp_path, "http://127.0.0.1:9", bad.url))

        result = fetch_venue(settings, settings.venue("bybit"), {}, {})

    assert result.candles.is_empty()
    assert len(result.series) == 2 and all(s.error for s in result.series)
    assert sum("skipped, venue failing" in (s.error or "") for s in result.series) == 1
    # Two attempts for the first series, none for the second.
    assert len(bad.statuses("/v5/market/kline")) == 2


@pytest.mark.slow
def test_hourly_run_with_one_venue_down_stores_the_other_and_logs_the_failure(
    prefect_harness: None, btc: pl.DataFrame, tmp_path: Path
) -> None:
    from hedgewatch.flows.hourly import hourly

    both = pl.concat([btc, btc.with_columns(pl.lit("BTCCOPY").alias("symbol"))])
    with (
        make_replay("binance", both, now=NOW) as good,
        make_replay("bybit", btc, now=NOW) as bad,
    ):
        bad.inject(Fault("status", code=503, count=None))
        path = config(tmp_path, good.url, bad.url)

        summary = hourly(config_path=str(path))

    assert summary.status == "partial"
    assert any(f.startswith("bybit") for f in summary.failures)
    with Store.open(tmp_path / "hw.duckdb", read_only=True) as store:
        counts = dict(store.con.sql("SELECT venue, count(*) FROM candles GROUP BY ALL").fetchall())
        log = store.con.sql(
            "SELECT venue, symbol, rows, error IS NOT NULL FROM fetch_log ORDER BY ALL"
        ).fetchall()
        runs = store.con.sql("SELECT status, summary FROM runs").fetchall()
    assert counts == {"binance": 2 * (2 * 24 + 12)}  # 2024-02-28 00:00 .. 2024-03-01 11:00
    assert ("binance", "BTCUSDT", 60, False) in log
    assert {row[1] for row in log if row[0] == "bybit" and row[3]} == {"BTCUSDT", "ETHUSDT"}
    assert runs[0][0] == "partial"
    assert "bybit" in json.dumps(json.loads(runs[0][1])["failures"])
