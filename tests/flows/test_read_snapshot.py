"""Readers never block the writer, and the writer never breaks a reader, by construction.

The writer's DuckDB file is private; each writing command ends by publishing a read snapshot
(a generation of Parquet files and a views file swapped in with `os.replace`). A reader holding a
connection across writes keeps the generation it opened; the writer never waits for it. No sleeps
or timings: the reader process is told when to look again through its stdin.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.storage.store import Store, StoreError, reader_path, snapshot_path

H = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)

# Opens the file the way an analyst would (plain duckdb, read-only or not), holds the connection
# until a line arrives on stdin, then counts again on the same connection.
HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print(con.execute("SELECT count(*) FROM candles").fetchall()[0][0], flush=True)
sys.stdin.readline()
print(con.execute("SELECT count(*) FROM candles").fetchall()[0][0], flush=True)
con.close()
"""


def candles(hours: range) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "venue": "binance",
            "market": "spot",
            "symbol": "BTCUSDT",
            "interval": "1h",
            "open_time": [T0 + h * H for h in hours],
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 1.0,
            "quote_volume": 1.0,
            "trades": 1,
        }
    ).cast({"open_time": pl.Datetime("us", "UTC")})


def count(path: Path) -> int:
    with Store.open(path, read_only=True) as store:
        return int(store.rows("demo_counts")[0][0])


@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_a_reader_holding_the_snapshot_never_blocks_the_writer(tmp_path: Path, mode: str) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(10)))
    assert reader_path(database) == snapshot_path(database)

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(snapshot_path(database)), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "10"  # the connection is open now
        # The writer opens its file and publishes while the reader holds its connection; a lock
        # would make it wait and fail (StoreBusy) after the short timeout. More publications
        # than the generations kept by number: the held one is kept by its age.
        for step in range(5):
            with Store.open(database, timeout_s=5) as store:
                store.upsert_candles(candles(range(10 + step * 5, 15 + step * 5)))
        assert count(database) == 35  # a new reader sees the last publication
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "10"  # the held one: the state it opened
    finally:
        _out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err


def test_query_answers_while_the_writer_holds_its_file(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(4)))
    with Store.open(database, publish=False) as writer:  # a run in the middle of a step
        writer.upsert_candles(candles(range(4, 8)))
        result = CliRunner().invoke(
            app,
            [
                "query",
                "-d",
                str(database),
                "--wait",
                "1",
                "-f",
                "csv",
                "select count(*) n from candles",
            ],
        )
        assert result.exit_code == 0, result.output
        assert result.output.split() == ["n", "4"]  # the last published state, not half a step
    assert count(database) == 4  # publish=False: the step's rows wait for the command's end


def test_a_failed_write_publishes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(4)))
    with pytest.raises(StoreError), Store.open(database) as store:
        store.upsert_candles(candles(range(4, 8)))
        raise StoreError("the step failed")
    assert count(database) == 4


def test_a_database_without_a_snapshot_is_read_directly(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database, publish=False) as store:
        store.upsert_candles(candles(range(3)))
    assert reader_path(database) == database
    assert count(database) == 3
