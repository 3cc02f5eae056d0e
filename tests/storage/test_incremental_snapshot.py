"""The read snapshot is published incrementally and stays equal to the writer's state.

Each publication writes a new generation: a manifest of Parquet partitions (month, or day in a
table's newest month) and a views file over them. Only partitions that writes touched are written,
into the generation's own folder; the manifest names the earlier generations' files for the rest.
Whatever the writes were (upserts, a backfill of old months, metric replacements, raw SQL that
bypasses the marks, a migration adding a column), a fresh reader sees exactly the writer's rows,
and a file goes only once no kept generation names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from hedgewatch.storage.snapshot import PARTITIONED, data_dir, materialize, publish
from hedgewatch.storage.store import Store, reader_path, snapshot_path

H = timedelta(hours=1)
T0 = datetime(2024, 1, 30, tzinfo=UTC)


def candles(hours: range, close: float = 1.0, symbol: str = "BTCUSDT") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "venue": "binance",
            "market": "spot",
            "symbol": symbol,
            "interval": "1h",
            "open_time": [T0 + h * H for h in hours],
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": close,
            "volume": 1.0,
            "quote_volume": 1.0,
            "trades": 1,
        }
    ).cast({"open_time": pl.Datetime("us", "UTC")})


def hedges(hours: range, value: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "hedge": "btc_eth",
            "window_hours": 24,
            "open_time": [T0 + h * H for h in hours],
            "n_obs": 24,
            "correlation": value,
        }
    ).cast({"open_time": pl.Datetime("us", "UTC"), "window_hours": pl.Int32, "n_obs": pl.Int32})


def tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
        " AND table_name NOT LIKE 'snapshot_%' ORDER BY 1"
    ).fetchall()
    return [name for (name,) in rows]


def assert_snapshot_equals_writer(database: Path) -> None:
    """Every table the writer has, with the same columns and the same rows, in the snapshot
    (read by a fresh connection on the views file, as an analyst's would)."""
    writer = duckdb.connect(str(database), read_only=True)
    reader = duckdb.connect(str(snapshot_path(database)), read_only=True)
    try:
        for table in tables(writer):
            mine = writer.execute(f"SELECT * FROM {table} ORDER BY ALL")
            names = [d[0] for d in mine.description or []]
            expected = mine.fetchall()
            theirs = reader.execute(f"SELECT * FROM {table} ORDER BY ALL")
            assert [d[0] for d in theirs.description or []] == names, table
            assert theirs.fetchall() == expected, table
            types = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $t"
            assert sorted(reader.execute(types, {"t": table}).fetchall()) == sorted(
                writer.execute(types, {"t": table}).fetchall()
            ), table
    finally:
        writer.close()
        reader.close()


def manifest(database: Path) -> dict[str, Any]:
    root = data_dir(database)
    newest = max(p for p in root.iterdir() if p.name.startswith("g"))
    loaded: dict[str, Any] = json.loads((newest / "manifest.json").read_text())
    return loaded


def test_the_snapshot_follows_every_kind_of_write(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(72)))  # Jan 30 .. Feb 1
        store.upsert_funding(
            pl.DataFrame(
                {
                    "venue": "binance",
                    "symbol": "BTCUSDT",
                    "funding_time": [T0 + 8 * h * H for h in range(6)],
                    "funding_rate": 0.0001,
                    "mark_price": 1.0,
                }
            ).cast({"funding_time": pl.Datetime("us", "UTC")})
        )
        store.replace_metrics(T0, pl.DataFrame(), hedges(range(72), 0.5), pl.DataFrame())
    assert_snapshot_equals_writer(database)

    steps = [
        # the next hour, as a run stores it
        lambda s: s.upsert_candles(candles(range(72, 73))),
        # a backfill of an older month (a new partition before the others)
        lambda s: s.upsert_candles(candles(range(-24 * 40, -24 * 38), symbol="ETHUSDT")),
        # a revised candle in an old partition
        lambda s: s.upsert_candles(candles(range(5, 6), close=9.0)),
        # metrics replaced from an hour on, fewer rows than before (rows go away)
        lambda s: s.replace_metrics(
            T0 + 50 * H, pl.DataFrame(), hedges(range(50, 60), -0.7), pl.DataFrame()
        ),
        # metrics replaced in a closed range (a recompute step)
        lambda s: s.replace_metrics(
            T0, pl.DataFrame(), hedges(range(0, 10), 0.1), pl.DataFrame(), until=T0 + 9 * H
        ),
        # raw SQL on the writer's file, which records no mark
        lambda s: s.con.execute(
            "INSERT INTO candles SELECT * REPLACE (open_time + INTERVAL 400 HOUR AS open_time)"
            " FROM candles WHERE symbol = 'BTCUSDT'"
        ).fetchall(),
        # the small tables
        lambda s: s.set_cursor("example", T0),
    ]
    for step in steps:
        with Store.open(database) as store:
            step(store)
        assert_snapshot_equals_writer(database)


def test_a_publication_writes_only_touched_partitions_and_names_the_rest_again(
    tmp_path: Path,
) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(-24 * 60, 70)))  # Dec .. Feb 1, 21:00
    first = manifest(database)["tables"]["candles"]["parts"]
    assert sorted(first) == ["2023-12", "2024-01", "2024-02-01"]  # days in the newest month

    with Store.open(database, publish=False) as store:
        store.upsert_candles(candles(range(70, 72)))  # the last two hours of Feb 1
        published = publish(store.con, database)
    second = manifest(database)["tables"]["candles"]["parts"]
    assert second["2024-02-01"]["rows"] == first["2024-02-01"]["rows"] + 2
    assert published.written == 1  # the one day; the other tables had no change
    root = data_dir(database)
    new = root / f"g{published.generation:06d}"
    for key in ("2023-12", "2024-01"):
        assert second[key]["files"] == first[key]["files"]  # the first generation's files
    (rel,) = second["2024-02-01"]["files"]
    assert (root / rel).parent == new / "candles"  # the one file this generation wrote
    assert sorted(p.name for p in (new / "candles").iterdir()) == ["2024-02-01.parquet"]

    # A new month: the finished month's days become one month partition.
    with Store.open(database) as store:
        store.upsert_candles(candles(range(24 * 31, 24 * 31 + 1)))  # Mar 1
    third = manifest(database)["tables"]["candles"]["parts"]
    assert sorted(third) == ["2023-12", "2024-01", "2024-02", "2024-03-01"]
    assert_snapshot_equals_writer(database)


def test_a_migration_adding_a_column_republishes_the_table(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(48)))
    with Store.open(database) as store:
        store.con.execute("ALTER TABLE candles ADD COLUMN taker_volume DOUBLE").fetchall()
    with duckdb.connect(str(snapshot_path(database)), read_only=True) as reader:
        assert reader.execute("SELECT count(taker_volume), count(*) FROM candles").fetchall() == [
            (0, 48)
        ]
    assert_snapshot_equals_writer(database)


def test_old_generations_go_once_superseded_past_the_retention(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    for step in range(5):
        with Store.open(database) as store:
            store.upsert_candles(candles(range(step, step + 1)))
    root = data_dir(database)
    assert len([p for p in root.iterdir() if p.name.startswith("g")]) == 5  # all within 1 h

    with Store.open(database, publish=False) as store:
        store.upsert_candles(candles(range(5, 6)))
        publish(store.con, database, keep=2, retention=timedelta(0))
    assert sorted(p.name for p in root.iterdir()) == ["g000005", "g000006"]
    assert_snapshot_equals_writer(database)


def test_a_retired_generation_keeps_only_the_files_newer_ones_still_name(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(-24 * 40, 1)))  # Dec 21 .. Jan 30: Dec as a month
    root = data_dir(database)
    for step in range(1, 4):  # runs that touch only Jan 30; nothing kept but the newest
        with Store.open(database, publish=False) as store:
            store.upsert_candles(candles(range(step, step + 1)))
            publish(store.con, database, keep=1, retention=timedelta(0))
    assert sorted(p.name for p in root.iterdir()) == ["g000001", "g000004"]
    first = root / "g000001"
    left = sorted(p.relative_to(first).as_posix() for p in first.rglob("*.parquet"))
    # December and January's first 29 days are still named by g000004; its Jan 30 went.
    assert left == ["candles/2023-12.parquet"] + [
        f"candles/2024-01-{day:02d}.parquet" for day in range(1, 30)
    ]
    assert not (first / "manifest.json").exists()
    assert_snapshot_equals_writer(database)

    with Store.open(database, publish=False) as store:  # a revision in December
        store.upsert_candles(candles(range(-24 * 35, -24 * 35 + 1), close=7.0))
        publish(store.con, database, keep=1, retention=timedelta(0))
    assert sorted(p.name for p in root.iterdir()) == ["g000001", "g000004", "g000005"]
    assert not (first / "candles" / "2023-12.parquet").exists()  # g000005 wrote December anew
    assert not (root / "g000004" / "manifest.json").exists()  # retired, its Jan 30 still named
    assert_snapshot_equals_writer(database)


def test_a_snapshot_of_the_older_layout_is_published_whole_then_retired(tmp_path: Path) -> None:
    """A manifest without the layout mark named files relative to its own folder: the next
    publication writes every partition afresh, and the old folder goes once retired."""
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(-24 * 40, 1)))
    root = data_dir(database)
    old = root / "g000001" / "manifest.json"
    legacy = json.loads(old.read_text())
    del legacy["layout"]
    old.write_text(json.dumps(legacy))
    with Store.open(database, publish=False) as store:
        store.upsert_candles(candles(range(1, 2)))
        published = publish(store.con, database, keep=1, retention=timedelta(0))
    assert (published.written, published.kept) == (31, 0)  # December and 30 days, all anew
    assert sorted(p.name for p in root.iterdir()) == ["g000002"]
    assert_snapshot_equals_writer(database)


def test_publications_that_died_before_the_swap_never_cost_a_reader_its_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs die building the views file, hours pass, a third publishes: the generation
    readers still have open stays among those kept (the dead folders, which nobody opened, count
    for nothing and go), and a reader holding it reads on."""
    from hedgewatch.storage import snapshot

    database = tmp_path / "hw.duckdb"
    root = data_dir(database)
    for step in range(2):  # g1, g2: g2 is what readers open
        with Store.open(database) as store:
            store.upsert_candles(candles(range(step, step + 1)))

    def age(hours: float) -> None:
        for manifest_file in root.glob("g*/manifest.json"):
            then = manifest_file.stat().st_mtime - hours * 3600
            os.utime(manifest_file, (then, then))

    age(5)
    held = duckdb.connect()
    held.execute(f"ATTACH '{snapshot_path(database)}' AS snap (READ_ONLY)")
    assert held.execute("SELECT count(*) FROM snap.candles").fetchall() == [(2,)]

    def dies(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    real = snapshot._build_views
    monkeypatch.setattr(snapshot, "_build_views", dies)
    for step in (2, 3):  # g3, g4 die before their views file is swapped in
        with pytest.raises(OSError), Store.open(database) as store:
            store.upsert_candles(candles(range(step, step + 1)))
    age(2)
    monkeypatch.setattr(snapshot, "_build_views", real)
    with Store.open(database) as store:  # g5
        store.upsert_candles(candles(range(4, 5)))
    assert sorted(p.name for p in root.iterdir()) == ["g000001", "g000002", "g000005"]
    assert held.execute("SELECT count(*) FROM snap.candles").fetchall() == [(2,)]
    held.close()
    assert_snapshot_equals_writer(database)


def test_leftovers_of_a_publication_that_died_are_cleared(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(3)))
    root = data_dir(database)
    (root / ".g000002.tmp" / "candles").mkdir(parents=True)
    stale = snapshot_path(database).with_name(f".{snapshot_path(database).name}.999.tmp")
    stale.write_bytes(b"half a file")
    with Store.open(database) as store:
        store.upsert_candles(candles(range(3, 4)))
    assert not stale.exists()
    assert sorted(p.name for p in root.iterdir()) == ["g000001", "g000002"]
    assert_snapshot_equals_writer(database)


def test_the_views_file_needs_nothing_but_duckdb(tmp_path: Path) -> None:
    """Any DuckDB client opens it: the views, the partitioned tables and the small ones."""
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(30)))
    script = (
        "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True);"
        "print(con.execute('select count(*) from series').fetchall()[0][0],"
        " con.execute('select count(*) from candles').fetchall()[0][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(reader_path(database))],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path.parent,  # paths in the views are absolute: any working directory
    )
    assert out.stdout.split() == ["1", "30"]


def test_a_copy_of_the_snapshot_is_a_writable_store(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(30)))
    copy = tmp_path / "scratch" / "copy.duckdb"
    copy.parent.mkdir()
    materialize(snapshot_path(database), copy)
    with Store.open(copy) as store:
        store.upsert_candles(candles(range(30, 32)))
        assert store.con.execute("SELECT count(*) FROM candles").fetchall() == [(32,)]
    with Store.open(database, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM candles").fetchall() == [(30,)]


@pytest.mark.parametrize("table", sorted(PARTITIONED))
def test_every_partitioned_table_exists_in_the_store(tmp_path: Path, table: str) -> None:
    with Store.open(tmp_path / "hw.duckdb", publish=False) as store:
        columns = store.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = $t", {"t": table}
        ).fetchall()
    assert (PARTITIONED[table],) in columns


def test_the_writer_connection_draws_no_progress_bar(tmp_path: Path) -> None:
    """DuckDB draws a bar on stdout for a statement over 2 s (a whole publication of a big
    store, a recompute): into the worker's log and under the CLI's own output. The store turns
    it off on every connection it opens (setting `progress_bar_time` would turn it back on, so
    this checks the setting rather than a two-second publication)."""
    database = tmp_path / "hw.duckdb"
    with Store.open(database) as store:
        store.upsert_candles(candles(range(3)))
        setting = "SELECT current_setting('enable_progress_bar')"
        assert store.con.execute(setting).fetchall() == [(False,)]
    with Store.open(database, read_only=True) as reader:
        assert reader.con.execute(setting).fetchall() == [(False,)]
