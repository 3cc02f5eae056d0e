from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from hedgewatch.storage.store import (
    Store,
    StoreBusy,
    connect,
    migrations,
    schema_fingerprint,
    split_statements,
)
from hedgewatch.venues.base import CANDLE_SCHEMA

T0 = datetime(2022, 5, 9, tzinfo=UTC)


def candles(hours: list[int], close: float = 100.0, symbol: str = "BTCUSDT") -> pl.DataFrame:
    rows = [
        {
            "venue": "binance",
            "market": "spot",
            "symbol": symbol,
            "interval": "1h",
            "open_time": T0 + timedelta(hours=h),
            "open": close,
            "high": close,
            "low": close,
            "close": close + h,
            "volume": 1.0,
            "quote_volume": None,
            "trades": None,
        }
        for h in hours
    ]
    return pl.DataFrame(rows, schema=CANDLE_SCHEMA)


def table(store: Store, name: str) -> list[tuple[object, ...]]:
    return store.con.sql(f"SELECT * FROM {name} ORDER BY ALL").fetchall()


def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    with Store.open(db) as store:
        versions = store.con.sql("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert versions == [(m.version,) for m in migrations()]
        assert 1 in {v for (v,) in versions}
    with Store.open(db) as store:
        assert store.migrate() == []


def test_views_from_another_package_version_or_dropped_are_recreated(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    with Store.open(db) as store:
        store.con.execute("CREATE OR REPLACE VIEW hedge_status AS SELECT 1 AS stale").fetchall()
        # The fingerprint still matches: opening costs one query and changes nothing.
        assert store.migrate() == []
        assert store.con.sql("SELECT * FROM hedge_status").columns == ["stale"]
        # Another package version wrote the views: they are recreated from sql/views.
        store.con.execute("UPDATE schema_fingerprint SET fingerprint = 'older'").fetchall()
    with Store.open(db) as store:
        assert store.con.sql("SELECT * FROM hedge_status").columns != ["stale"]
        assert store.con.sql("SELECT fingerprint FROM schema_fingerprint").fetchall() == [
            (schema_fingerprint(),)
        ]
        names = [
            n
            for (n,) in store.con.sql(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
        for name in names:
            store.con.execute(f'DROP VIEW "{name}"').fetchall()
    with Store.open(db) as store:  # no views at all: recreated too
        assert store.con.sql(
            "SELECT count(*) FROM duckdb_views() WHERE NOT internal"
        ).fetchall() == [(len(names),)]


def test_upsert_is_idempotent_and_replaces_revised_candles(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hw.duckdb") as store:
        store.upsert_candles(candles([0, 1, 2]))
        before = table(store, "candles")
        store.upsert_candles(candles([0, 1, 2]))
        assert table(store, "candles") == before
        store.upsert_candles(candles([2], close=200.0))
        rows = store.con.sql("SELECT open_time, close FROM candles ORDER BY open_time").fetchall()
        assert [r[1] for r in rows] == [100.0, 101.0, 202.0]


def test_duplicate_keys_inside_one_batch_keep_one_row(tmp_path: Path) -> None:
    batch = pl.concat([candles([0, 1]), candles([1], close=50.0)])
    with Store.open(tmp_path / "hw.duckdb") as store:
        assert store.upsert_candles(batch) == 2
        assert store.con.sql("SELECT count(*) FROM candles").fetchall() == [(2,)]


def test_watermarks_and_gaps_view(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hw.duckdb") as store:
        store.upsert_candles(candles([0, 1, 4, 5]))
        marks = store.series_watermarks()
        assert marks[("binance", "spot", "BTCUSDT", "1h")] == T0 + timedelta(hours=5)
        gaps = store.con.sql(
            "SELECT first_missing, last_missing, missing_hours FROM gaps"
        ).fetchall()
        assert gaps == [(T0 + timedelta(hours=2), T0 + timedelta(hours=3), 2)]


def test_returns_view_never_spans_a_gap(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hw.duckdb") as store:
        store.upsert_candles(candles([0, 1, 4, 5]))
        hours = store.con.sql("SELECT open_time FROM returns ORDER BY 1").fetchall()
        assert [h[0] for h in hours] == [T0 + timedelta(hours=1), T0 + timedelta(hours=5)]


def test_split_statements_drops_comments() -> None:
    script = "-- a comment; with a semicolon\nSELECT 1;\n\nSELECT 2; -- trailing\n"
    assert split_statements(script) == ["SELECT 1", "SELECT 2"]


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def test_reader_waits_for_writer_then_reports_busy(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    with Store.open(db):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        waited: list[float] = []
        with pytest.raises(StoreBusy, match="another hedgewatch process is using the database"):
            connect(db, read_only=True, timeout_s=0.3, on_wait=waited.append)
        assert waited, "the reader should have waited before giving up"
        # Once the writer lets go, a patient reader gets in.
        con = connect(db, read_only=True, timeout_s=20)
        assert con.sql("SELECT count(*) FROM candles").fetchall() == [(0,)]
        con.close()
    finally:
        holder.wait(timeout=30)


def test_read_only_open_of_missing_database_says_what_to_do(tmp_path: Path) -> None:
    from hedgewatch.storage.store import StoreError

    with pytest.raises(StoreError, match="database not found"):
        connect(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()
