"""The command line as users call it: real processes, real files, exit codes that mean something."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.storage.store import Store
from hedgewatch.venues.base import CANDLE_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2022, 5, 9, tzinfo=UTC)


@pytest.fixture()
def database(tmp_path: Path) -> Path:
    path = tmp_path / "hw.duckdb"
    frame = pl.DataFrame(
        [
            {
                "venue": "binance",
                "market": "spot",
                "symbol": "BTCUSDT",
                "interval": "1h",
                "open_time": T0 + timedelta(hours=h),
                "open": 1.0,
                "high": 1.0,
                "low": 1.0,
                "close": 30000.0 + h,
                "volume": 2.0,
                "quote_volume": None,
                "trades": None,
            }
            for h in range(3)
        ],
        schema=CANDLE_SCHEMA,
    )
    with Store.open(path) as store:
        store.upsert_candles(frame)
    return path


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_query_prints_a_table_json_and_csv(database: Path) -> None:
    sql = "select symbol, close from candles order by open_time"
    code, out, _ = invoke("query", sql, "-d", str(database))
    assert code == 0 and "BTCUSDT" in out and "(3 rows)" in out
    code, out, _ = invoke("query", sql, "-d", str(database), "--format", "json")
    assert json.loads(out) == [{"symbol": "BTCUSDT", "close": 30000.0 + h} for h in range(3)]
    code, out, _ = invoke("query", sql, "-d", str(database), "-f", "csv")
    assert out.splitlines() == ["symbol,close", "BTCUSDT,30000", "BTCUSDT,30001", "BTCUSDT,30002"]


def test_query_reads_sql_from_a_file_or_stdin(database: Path, tmp_path: Path) -> None:
    file = tmp_path / "q.sql"
    file.write_text("select count(*) as n from candles")
    assert json.loads(invoke("query", "-F", str(file), "-d", str(database), "-f", "json")[1]) == [
        {"n": 3}
    ]
    code, out, _ = invoke("query", "-", "-d", str(database), "-f", "csv", input="select 7 as x")
    assert (code, out) == (0, "x\n7\n")


def test_query_is_read_only_and_errors_exit_2(database: Path) -> None:
    code, _, err = invoke("query", "delete from candles", "-d", str(database))
    assert code == 2 and "read-only" in err
    with Store.open(database, read_only=True) as store:
        assert store.con.sql("select count(*) from candles").fetchall() == [(3,)]
    code, _, err = invoke("query", "select nonsense from nowhere", "-d", str(database))
    assert code == 2 and "query failed" in err
    code, _, err = invoke("query", "select 1", "-d", str(database.parent / "absent.duckdb"))
    assert code == 2 and "database not found" in err


def test_every_example_query_runs_on_the_schema(database: Path) -> None:
    for example in sorted((ROOT / "sql" / "examples").glob("*.sql")):
        code, _, err = invoke("query", "-F", str(example), "-d", str(database), "-f", "json")
        assert code == 0, f"{example.name}: {err}"


def test_replay_serve_takes_data_a_b_moves_its_clock_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    spot = ROOT / "demo" / "data" / "binance_spot_1h_2022-04-20_2022-05-16.csv.gz"
    perp = ROOT / "demo" / "data" / "binance_usdm_perp_1h_2022-04-20_2022-05-16.csv.gz"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hedgewatch",
            "replay",
            "serve",
            "--data",
            str(spot),
            str(perp),  # `--data A B`, as the README writes it
            "--now",
            "2022-05-09T12:30:00Z",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = next(word for word in line.split() if word.startswith("http://127.0.0.1:"))
        server_time = httpx.get(f"{url}/api/v3/time", timeout=5).json()["serverTime"]
        assert server_time == int(datetime(2022, 5, 9, 12, 30, tzinfo=UTC).timestamp() * 1000)
        klines = httpx.get(
            f"{url}/api/v3/klines",
            params={"symbol": "BTCUSDT", "interval": "1h", "limit": 3},
            timeout=5,
        ).json()
        assert len(klines) == 3 and klines[-1][0] == int(
            datetime(2022, 5, 9, 12, tzinfo=UTC).timestamp() * 1000
        )
        perp_klines = httpx.get(
            f"{url}/fapi/v1/klines",
            params={"symbol": "BTCUSDT", "interval": "1h", "limit": 1},
            timeout=5,
        ).json()
        assert len(perp_klines) == 1

        code, out, _ = invoke("replay", "advance", "12h", "--url", url)
        assert code == 0 and "2022-05-10T00:30:00+00:00" in out
        server_time = httpx.get(f"{url}/api/v3/time", timeout=5).json()["serverTime"]
        assert server_time == int(datetime(2022, 5, 10, 0, 30, tzinfo=UTC).timestamp() * 1000)
        code, out, _ = invoke("replay", "advance", "--to", "2022-05-11T00:00:00Z", "--url", url)
        assert code == 0 and "2022-05-11T00:00:00+00:00" in out
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.strip().endswith("stopped")


def test_replay_advance_without_an_exchange_exits_1_and_bad_input_exits_2() -> None:
    code, _, err = invoke("replay", "advance", "1h", "--url", "http://127.0.0.1:9")
    assert code == 1 and "no replay exchange answers" in err
    code, _, err = invoke("replay", "advance", "soon", "--url", "http://127.0.0.1:9")
    assert code == 2 and "not a duration" in err


def test_replay_serve_rejects_missing_files_and_bad_times(tmp_path: Path) -> None:
    code, _, err = invoke("replay", "serve", "--data", str(tmp_path / "nope.csv"))
    assert code == 2 and "no such file" in err
    data = ROOT / "demo" / "data" / "binance_spot_1h_2022-04-20_2022-05-16.csv.gz"
    code, _, err = invoke("replay", "serve", "--data", str(data), "--now", "yesterday")
    assert code == 2 and "not an ISO 8601 time" in err
