"""Migration 0015 on a store that already holds hedge rows: the new columns are null there, so
the metrics are marked stale from the first stored hedge hour and the next run recomputes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hedgewatch.storage.store import Store, migrations

T0 = datetime(2022, 5, 9, tzinfo=UTC)
VERSION = 15


def as_before_0015(store: Store) -> None:
    """Take the store back to the schema before migration 0015."""
    assert any(m.version == VERSION and "hedge_activity" in m.name for m in migrations())
    store.con.execute("DROP VIEW IF EXISTS hedge_status")
    for column in ("activity", "effectiveness_loss"):
        store.con.execute(f"ALTER TABLE hedge_metrics DROP COLUMN {column}")
    store.con.execute("DELETE FROM schema_migrations WHERE version = $v", {"v": VERSION})
    store.con.execute("DELETE FROM schema_fingerprint")  # a store of the older package


def add_hedge_rows(store: Store, hours: list[int]) -> None:
    for h in hours:
        store.con.execute(
            "INSERT INTO hedge_metrics (hedge, window_hours, open_time, n_obs, effectiveness) "
            "VALUES ('h', 24, $t, 24, 0.9)",
            {"t": T0 + timedelta(hours=h)},
        )


def test_stored_hedge_rows_are_marked_for_recompute(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    with Store.open(db) as store:
        as_before_0015(store)
        add_hedge_rows(store, [5, 3, 7])
        assert store.metrics_dirty_since() is None
    with Store.open(db) as store:  # opening applies the pending migration
        assert store.metrics_dirty_since() == T0 + timedelta(hours=3)
        nulls = store.con.execute(
            "SELECT count(*) FROM hedge_metrics "
            "WHERE activity IS NULL AND effectiveness_loss IS NULL"
        ).fetchall()
        assert nulls == [(3,)]


def test_an_earlier_mark_is_kept_and_a_later_one_moves_back(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    with Store.open(db) as store:
        as_before_0015(store)
        add_hedge_rows(store, [10, 12])
        store.mark_metrics_dirty(T0 + timedelta(hours=2))
    with Store.open(db) as store:
        assert store.metrics_dirty_since() == T0 + timedelta(hours=2)
    with Store.open(tmp_path / "later.duckdb") as store:
        as_before_0015(store)
        add_hedge_rows(store, [10, 12])
        store.mark_metrics_dirty(T0 + timedelta(hours=30))
    with Store.open(tmp_path / "later.duckdb") as store:
        assert store.metrics_dirty_since() == T0 + timedelta(hours=10)


def test_a_store_without_hedge_rows_is_not_marked(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    with Store.open(db) as store:
        as_before_0015(store)
    with Store.open(db) as store:
        assert store.metrics_dirty_since() is None


def test_migration_versions_are_unique() -> None:
    """Two files with one number would leave the second unapplied on every store."""
    versions = [m.version for m in migrations()]
    assert len(versions) == len(set(versions)), versions
