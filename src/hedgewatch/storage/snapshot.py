"""The read snapshot, published incrementally: immutable Parquet partitions and a small views file.

Readers never open the writer's DuckDB file. After each writing command the writer publishes a
*generation*: every large table as Parquet partitions (one file per month, and per day in the
table's newest month, where the hourly run writes), listed in the generation's manifest
`<name>.read/g000042/manifest.json`, and a small DuckDB file `<name>.read.duckdb` with one view
per large table over those files, a copy of the small tables (alert state, runs, the outbox, ...)
and the public views.

A publication writes only the partitions that writes touched since the previous one, into its own
folder (`g000042/candles/2026-11-30.parquet`): every write of a partitioned table records the
time range it touched (`snapshot_dirty`) in its own transaction. Its manifest names the previous
generation's files for every other partition, wherever an earlier generation wrote them: nothing
is copied or linked, so a publication's file work is the partitions it writes. The new views file
is built under a temporary name and swapped in with `os.replace`, so a new connection sees the
newest whole state and a connection held open keeps the generation it opened: files are never
changed in place, and a file is removed only once no kept generation names it. A generation is
kept while it is among the newest `KEEP_GENERATIONS` or was superseded less than `RETENTION` ago.

A write that bypasses the marks (raw SQL on the writer's file) is caught when a table's row count
differs from its partitions' sum: that table is then published whole.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

# Large tables published as partitions, by the time column they are partitioned on. Every other
# table is small and copied into the views file whole.
PARTITIONED = {
    "candles": "open_time",
    "funding": "funding_time",
    "pair_correlations": "open_time",
    "hedge_metrics": "open_time",
    "basket_metrics": "open_time",
    "ewma_correlations": "open_time",
    "fetch_log": "end_time",
}
# The writer's bookkeeping: published empty (a copy of the snapshot stays a valid store).
BOOKKEEPING = frozenset({"snapshot_dirty", "snapshot_published"})
KEEP_GENERATIONS = 3
RETENTION = timedelta(hours=1)
_MANIFEST = "manifest.json"
_LAYOUT = 2  # manifests name files relative to the data folder (1: to their generation's folder)
_VIEWS_BLOCK_SIZE = 16384  # the smallest DuckDB allows
_PART = "hw_part"


def snapshot_path(database: Path) -> Path:
    """The views file readers open: `var/hedgewatch.duckdb` → `var/hedgewatch.read.duckdb`."""
    return database.with_name(f"{database.stem}.read{database.suffix or '.duckdb'}")


def data_dir(database: Path) -> Path:
    """The folder of generations beside the views file: `var/hedgewatch.read/`."""
    return Path(os.path.abspath(database.with_name(f"{database.stem}.read")))


# -- partition keys: 'YYYY-MM' for a month, 'YYYY-MM-DD' for a day (the newest month) --------


def _month_start(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(t: datetime) -> datetime:
    return (t.replace(day=28) + timedelta(days=4)).replace(day=1)


def key_of(t: datetime, boundary: datetime) -> str:
    """The partition of time `t`: its day from `boundary` (the newest month) on, else its month."""
    t = t.astimezone(UTC)
    return f"{t:%Y-%m-%d}" if t >= boundary else f"{t:%Y-%m}"


@functools.lru_cache(maxsize=4096)
def span_of(key: str) -> tuple[datetime, datetime]:
    """[start, end) of a partition key. Cached: a publication asks for every partition of every
    table several times, and `strptime` made that a tenth of its cost."""
    if len(key) not in (7, 10) or key[4] != "-" or (len(key) == 10 and key[7] != "-"):
        raise ValueError(f"not a partition key: {key!r}")
    year, month = int(key[:4]), int(key[5:7])
    if len(key) == 7:
        start = datetime(year, month, 1, tzinfo=UTC)
        return start, _next_month(start)
    start = datetime(year, month, int(key[8:10]), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _fits(key: str, boundary: datetime) -> bool:
    """Whether `key` is still a partition under `boundary` (a month became days, or back)."""
    start, end = span_of(key)
    return end <= boundary if len(key) == 7 else start >= boundary


Interval = tuple[datetime | None, datetime | None]  # [lo, hi); None: unbounded


def _aligned(lo: datetime | None, hi: datetime | None, boundary: datetime) -> Interval:
    """[lo, hi] (hi inclusive) widened to whole partitions."""
    start = None if lo is None else span_of(key_of(lo, boundary))[0]
    end = None if hi is None else span_of(key_of(hi, boundary))[1]
    return start, end


def _covers(intervals: list[Interval], key: str) -> bool:
    start, end = span_of(key)
    return any((lo is None or lo < end) and (hi is None or start < hi) for lo, hi in intervals)


_FEW = 12  # up to this many partitions are written one COPY each, more in one partitioned COPY


def _keys_in(intervals: list[Interval], boundary: datetime, top: datetime) -> list[str] | None:
    """The partitions the intervals cover up to the newest row (None: unbounded or many)."""
    last = span_of(key_of(top, boundary))[1]
    keys: list[str] = []
    for lo, hi in intervals:
        if lo is None:
            return None
        end = last if hi is None else min(hi, last)
        key = key_of(lo, boundary)
        while span_of(key)[0] < end:
            if key not in keys:
                keys.append(key)
                if len(keys) > _FEW:
                    return None
            key = key_of(span_of(key)[1], boundary)
    return keys


def _write_partitioned(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    intervals: list[Interval],
    boundary: datetime,
    work: Path,
) -> dict[str, Any]:
    """Write every partition the intervals cover in one partitioned COPY, as
    `<table>/<key>.parquet` (or `<key>.<n>.parquet` when DuckDB splits one)."""
    col = _quote(column)
    conditions = []
    for lo, hi in intervals:
        terms = [f"{col} >= {_literal(lo)}" if lo is not None else "true"]
        if hi is not None:
            terms.append(f"{col} < {_literal(hi)}")
        conditions.append("(" + " AND ".join(terms) + ")")
    part = (
        f"CASE WHEN {col} >= {_literal(boundary)} THEN strftime({col}, '%Y-%m-%d')"
        f" ELSE strftime({col}, '%Y-%m') END"
    )
    staging = work / f".{table}.partitioned"
    stats = con.execute(
        f"COPY (SELECT *, {part} AS {_PART} FROM {_quote(table)}"
        f" WHERE {' OR '.join(conditions)}) TO {_string(str(staging))}"
        f" (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({_PART}), RETURN_STATS)"
    ).fetchall()
    parts: dict[str, Any] = {}
    for row in sorted(stats, key=lambda r: str(r[0])):
        filename, rows, keys = row[0], int(row[1]), row[-1]
        key = keys[_PART]
        entry = parts.setdefault(key, {"files": [], "rows": 0})
        name = f"{key}.parquet" if not entry["files"] else f"{key}.{len(entry['files'])}.parquet"
        os.rename(filename, work / table / name)
        entry["files"].append(f"{table}/{name}")
        entry["rows"] += rows
    shutil.rmtree(staging, ignore_errors=True)
    return parts


def _literal(t: datetime) -> str:
    return f"TIMESTAMPTZ '{t.astimezone(UTC).isoformat()}'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Published:
    """What one publication did: the generation, and partitions written and kept as they were."""

    generation: int
    views: Path
    written: int
    kept: int


def _columns(
    con: duckdb.DuckDBPyConnection, previous: dict[str, Any] | None
) -> tuple[dict[str, list[list[str]]], dict[str, str]]:
    """Every table of the main schema with its [column, type] pairs, in order, and each table's
    DDL. The DDL is one cheap catalog read; the columns are read again only when it differs from
    the previous publication's (a migration, or DDL run on the writer's file), since reading
    them costs a fifth of a publication on a fresh connection."""
    where = "WHERE database_name = current_database() AND schema_name = 'main'"
    ddl = dict(con.execute(f"SELECT table_name, sql FROM duckdb_tables() {where}").fetchall())
    if previous is not None and previous.get("ddl") == ddl:
        columns: dict[str, list[list[str]]] = previous["columns"]
        return columns, ddl
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns()"
        f" {where} ORDER BY table_name, column_index"
    ).fetchall()
    found: dict[str, list[list[str]]] = {}
    for table, name, kind in rows:
        if table in ddl:  # not a view
            found.setdefault(table, []).append([name, kind])
    return found, ddl


def _generations(root: Path) -> list[int]:
    found = []
    for entry in root.iterdir() if root.exists() else []:
        if entry.name.startswith("g") and entry.name[1:].isdigit() and entry.is_dir():
            found.append(int(entry.name[1:]))
    return sorted(found)


def _gen_dir(root: Path, generation: int) -> Path:
    return root / f"g{generation:06d}"


def _load_manifest(root: Path, generation: int | None) -> dict[str, Any] | None:
    if generation is None:
        return None
    file = _gen_dir(root, generation) / _MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("layout") != _LAYOUT:
        return None  # written by an older version: the next publication is whole
    return manifest


def _files_of(manifest: dict[str, Any]) -> set[str]:
    """Every file a manifest names, relative to the data folder."""
    return {
        rel
        for table in manifest["tables"].values()
        for part in table["parts"].values()
        for rel in part["files"]
    }


def _publish_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    schema: list[list[str]],
    extent: tuple[datetime | None, int],
    previous: dict[str, Any] | None,
    marks: list[tuple[datetime, datetime | None]],
    work: Path,
    generation: str,
) -> tuple[dict[str, Any], int, int]:
    """Write one table's changed partitions into `work` (the folder that becomes `generation`):
    (its manifest entry, partitions written, partitions kept from the previous generation)."""
    top, total = extent
    if top is None or total == 0:
        return {"schema": schema, "parts": {}}, 0, 0
    boundary = _month_start(top)
    old: dict[str, Any] = {}
    whole = previous is None or previous.get("schema") != schema
    if not whole:
        assert previous is not None
        old = previous["parts"]
    dirty: list[Interval] = []
    if whole:
        dirty.append((None, None))
    else:
        dirty.extend(_aligned(since, until, boundary) for since, until in marks)
        for key in old:
            if not _fits(key, boundary):
                start, end = span_of(key)
                dirty.append(_aligned(start, end - timedelta(microseconds=1), boundary))
    kept = {k: v for k, v in old.items() if _fits(k, boundary) and not _covers(dirty, k)}
    parts: dict[str, Any] = {}
    folder = work / table
    folder.mkdir()
    if dirty:
        keys = None if whole else _keys_in(dirty, boundary, top)
        if keys is not None:
            for key in keys:  # a run's few partitions: one plain COPY each
                lo, hi = span_of(key)
                file = folder / f"{key}.parquet"
                ((rows,),) = con.execute(
                    f"COPY (SELECT * FROM {_quote(table)} WHERE {_quote(column)} >= {_literal(lo)}"
                    f" AND {_quote(column)} < {_literal(hi)}) TO {_string(str(file))}"
                    " (FORMAT parquet, COMPRESSION zstd)"
                ).fetchall()
                if rows:
                    parts[key] = {"files": [f"{generation}/{table}/{file.name}"], "rows": int(rows)}
                else:
                    file.unlink()
        else:
            written = _write_partitioned(con, table, column, dirty, boundary, work)
            for key, entry in written.items():
                entry["files"] = [f"{generation}/{rel}" for rel in entry["files"]]
                parts[key] = entry
    parts.update(kept)  # the previous generation's files, named again
    if sum(e["rows"] for e in parts.values()) != total and not whole:
        # Rows written without a mark (raw SQL on the writer's file): publish the table whole.
        shutil.rmtree(folder)
        return _publish_table(con, table, column, schema, extent, None, [], work, generation)
    entry = {"schema": schema, "top": top.isoformat(), "parts": parts}
    return entry, len(parts) - len(kept), len(kept)


def _build_views(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    root: Path,
    manifest: dict[str, Any],
    published_at: datetime,
    tables: list[str],
) -> None:
    """Write the views file for `manifest` (files under `root`) to `target` (a new, temporary
    file), in one transaction (one commit for the whole file)."""
    source = con.execute("SELECT current_database()").fetchall()[0][0]
    snap = "hedgewatch_snapshot.main."
    script = [f"COPY FROM DATABASE {_quote(source)} TO hedgewatch_snapshot (SCHEMA)"]
    for table in tables:
        entry = manifest["tables"].get(table)
        if entry is None:
            if table not in BOOKKEEPING:
                script.append(f"INSERT INTO {snap}{_quote(table)} SELECT * FROM {_quote(table)}")
            continue
        files = [os.path.join(root, rel) for p in entry["parts"].values() for rel in p["files"]]
        if not files:
            continue  # the empty table the schema copy made
        listed = ", ".join(_string(f) for f in sorted(files))
        columns = ", ".join(
            f"CAST({_quote(col)} AS {kind}) AS {_quote(col)}" for col, kind in entry["schema"]
        )
        script.append(f"DROP TABLE {snap}{_quote(table)}")
        script.append(
            f"CREATE VIEW {snap}{_quote(table)} AS SELECT {columns}"
            f" FROM read_parquet([{listed}], hive_partitioning = false)"
        )
    script.append(
        f"INSERT INTO {snap}snapshot_published VALUES ({int(manifest['generation'])},"
        f" {_literal(published_at)}, {_string(str(root))})"
    )
    # Small blocks: the file holds a few small tables and the views, and every table takes at
    # least a block, so DuckDB's default 256 KB blocks would write a 4 MB file for 150 KB of rows.
    # No write-ahead log: the file is nobody's until it is swapped in, after DETACH has written
    # and synced it whole, so a log would protect nothing and cost a write and a sync.
    con.execute(
        f"ATTACH {_string(str(target))} AS hedgewatch_snapshot"
        f" (BLOCK_SIZE {_VIEWS_BLOCK_SIZE}, RECOVERY_MODE no_wal_writes)"
    ).fetchall()
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in script:
                con.execute(statement).fetchall()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.execute("DETACH hedgewatch_snapshot").fetchall()


def _named_by(root: Path, generation: int) -> set[str] | None:
    """The files generation `generation` names, relative to `root` (None: its manifest is
    unreadable). A manifest of the older layout names only files in its own folder: an empty set
    here, since only a retired generation's folder loses files."""
    try:
        manifest = json.loads((_gen_dir(root, generation) / _MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()  # retired by an earlier publication
    except (OSError, ValueError):
        return None
    return _files_of(manifest) if manifest.get("layout") == _LAYOUT else set()


def _prune(
    root: Path, current: int, manifest: dict[str, Any], keep: int, retention: timedelta
) -> None:
    """Retire the generations not among the newest `keep` and superseded more than `retention`
    ago, and remove every file of a retired folder that no kept generation names (the folder
    stays while a newer generation still names one of its files).

    Only folders with a manifest count: a folder without one is a publication that died before
    its views file was swapped in (nobody opened it), or a generation retired earlier. A
    generation was superseded when the next one with a manifest wrote it."""
    folders = [g for g in _generations(root) if g <= current]
    published: list[tuple[int, float]] = []  # (generation, when its manifest was written)
    retired: list[int] = []
    for generation in folders:
        try:
            written = (_gen_dir(root, generation) / _MANIFEST).stat().st_mtime
        except FileNotFoundError:
            if generation != current:
                retired.append(generation)
            continue
        published.append((generation, written))
    horizon = time.time() - retention.total_seconds()
    kept: list[int] = []
    for i, (generation, _) in enumerate(published):
        newest = i >= len(published) - keep or generation == current
        if newest or published[i + 1][1] >= horizon:
            kept.append(generation)
        else:
            retired.append(generation)
    if not retired:
        return
    named = _files_of(manifest)
    for generation in kept:
        if generation != current:
            other = _named_by(root, generation)
            if other is None:  # unreadable: keep every file rather than guess
                return
            named |= other
    # Every retired manifest goes first: one that outlived some of its files (a pruning that
    # died half way) could otherwise be read as a whole generation.
    for generation in retired:
        (_gen_dir(root, generation) / _MANIFEST).unlink(missing_ok=True)
    for generation in retired:
        folder = _gen_dir(root, generation)
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            if path.is_dir():
                with contextlib.suppress(OSError):  # not empty: a file is still named
                    path.rmdir()
            elif path.relative_to(root).as_posix() not in named:
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def _extent_sql(table: str, previous: dict[str, Any] | None) -> str:
    column = _quote(PARTITIONED[table])
    before = (previous or {}).get("tables", {}).get(table, {}).get("top")
    if before is None:
        newest = f"(SELECT max({column}) FROM {_quote(table)})"
    else:
        since = _literal(datetime.fromisoformat(before))
        newest = (
            f"coalesce((SELECT max({column}) FROM {_quote(table)} WHERE {column} >= {since}),"
            f" {since})"
        )
    return f"{newest}, (SELECT count(*) FROM {_quote(table)})"


def publish(
    con: duckdb.DuckDBPyConnection,
    database: Path,
    *,
    keep: int = KEEP_GENERATIONS,
    retention: timedelta = RETENTION,
) -> Published:
    """Publish the writer's current state (connection `con` on `database`) as a new generation."""
    root = data_dir(database)
    root.mkdir(parents=True, exist_ok=True)
    views = snapshot_path(database)
    # Leftovers of a publication that died half way (the writer is the only publisher).
    for stale in root.glob(".g*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in views.parent.glob(f".{views.name}.*.tmp"):
        stale.unlink(missing_ok=True)

    previous_gen = con.execute("SELECT max(generation) FROM snapshot_published").fetchall()[0][0]
    previous = _load_manifest(root, previous_gen)
    generation = max([*_generations(root), previous_gen or 0]) + 1
    gen_dir = _gen_dir(root, generation)
    marks: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for table, since, until in con.execute(
        "SELECT table_name, since, until FROM snapshot_dirty"
    ).fetchall():
        marks.setdefault(table, []).append((since, until))

    work = root / f".g{generation:06d}.tmp"
    work.mkdir()
    manifest: dict[str, Any] = {"layout": _LAYOUT, "generation": generation, "tables": {}}
    written = kept = 0
    schemas, ddl = _columns(con, previous)
    manifest["ddl"], manifest["columns"] = ddl, schemas
    tables = [t for t in PARTITIONED if t in schemas]
    # Each table's newest row time and row count, in one statement. The newest time only sets
    # where day partitions start: searched from the last publication's on (a short scan), it
    # may stay there if rows were deleted, which is as good a layout.
    listed = ", ".join(_extent_sql(t, previous) for t in tables)
    extents = con.execute(f"SELECT {listed}").fetchall() if tables else []
    for i, table in enumerate(tables):
        before = previous["tables"].get(table) if previous is not None else None
        extent = (extents[0][2 * i], int(extents[0][2 * i + 1])) if extents else (None, 0)
        entry, w, n = _publish_table(
            con,
            table,
            PARTITIONED[table],
            schemas[table],
            extent,
            before,
            marks.get(table, []),
            work,
            gen_dir.name,
        )
        manifest["tables"][table] = entry
        written, kept = written + w, kept + n
    os.rename(work, gen_dir)

    published_at = datetime.now(UTC)
    tmp = views.with_name(f".{views.name}.{os.getpid()}.tmp")
    _build_views(con, tmp, root, manifest, published_at, list(schemas))
    # The manifest goes in last, just before the swap: a folder without one is a publication
    # that died before any reader could open it, and its time is when it superseded the last.
    (gen_dir / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    os.replace(tmp, views)
    # The marks are cleared only once the generation is in place: a publication that dies
    # before this point is redone whole from the previous generation by the next one.
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM snapshot_dirty").fetchall()
        con.execute("DELETE FROM snapshot_published").fetchall()
        con.execute(
            "INSERT INTO snapshot_published VALUES ($g, $at, $path)",
            {"g": generation, "at": published_at, "path": str(root)},
        ).fetchall()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    _prune(root, generation, manifest, max(keep, 1), retention)
    return Published(generation, views, written, kept)


def allowed_directory(con: duckdb.DuckDBPyConnection) -> str | None:
    """The folder of Parquet files a views file reads (None: a plain database, no Parquet).
    Stores published before the shared folder name their generation's folder, inside it."""
    try:
        rows = con.execute("SELECT data_path FROM snapshot_published").fetchall()
    except duckdb.Error:
        return None
    return rows[0][0] if rows else None


def materialize(views: Path, target: Path) -> None:
    """Copy the published state in the views file `views` into a new, standalone database file
    `target` (its partitioned tables become tables again): a scratch store to write on."""
    con = duckdb.connect(str(target))
    try:
        con.execute("SET TimeZone = 'UTC'")
        name = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f"ATTACH {_string(str(views))} AS published (READ_ONLY)").fetchall()
        con.execute(f"COPY FROM DATABASE published TO {_quote(name)} (SCHEMA)").fetchall()
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'published'"
            " AND schema_name = 'main'"
        ).fetchall()
        for (table,) in tables:
            con.execute(f"INSERT INTO {_quote(table)} SELECT * FROM published.{_quote(table)}")
        views_over_files = con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'published'"
            " AND schema_name = 'main' AND NOT internal"
        ).fetchall()
        for (table,) in views_over_files:
            if table in PARTITIONED:
                con.execute(f"DROP VIEW {_quote(table)}").fetchall()
                con.execute(
                    f"CREATE TABLE {_quote(table)} AS SELECT * FROM published.{_quote(table)}"
                ).fetchall()
        con.execute("DETACH published").fetchall()
    finally:
        con.close()
