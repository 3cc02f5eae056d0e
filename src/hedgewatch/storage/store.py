"""The store: migrations, idempotent upserts, watermarks, alert state and the outbox.

Embedded (default): DuckDB locks a file for as long as any connection is open, a reader's too,
so the writer's file is private to hedgewatch's writing steps (short-lived connections that
retry on the lock for a bounded time). Each writing command ends by publishing a read snapshot
beside it — Parquet partitions of the large tables, rewritten only where writes touched them,
and a small views file swapped in with `os.replace` (see snapshot.py) — and every reader opens
that: a reader holding a connection keeps the generation it opened (one consistent state) and
never blocks the writer. Scale-out: a DuckLake (PostgreSQL catalog,
shared data path) written by several processes; each unit of work is one transaction, retried
when another writer's commit wins.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from . import snapshot
from .snapshot import snapshot_path

T = TypeVar("T")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
# A reader that opens the file in the instant a writer is creating it sees no header yet.
_BEING_CREATED = "not a valid DuckDB database file"


# Hours from which stored metrics are stale: set by every market-data upsert, cleared when the
# metrics from there on are stored.
METRICS_DIRTY_SINCE = "metrics.dirty_since"

_METRIC_TABLES = {
    "pairs_staged": "pair_correlations",
    "hedges_staged": "hedge_metrics",
    "baskets_staged": "basket_metrics",
    "ewma_staged": "ewma_correlations",
}


class StoreError(Exception):
    """The database could not be opened or written; the message says what to do."""


class StoreBusy(StoreError):
    """Another process holds the database; retry later."""


class QueryError(StoreError):
    """A statement failed (bad SQL, a missing table, a type mismatch); the message says which."""


class SchemaOutdated(QueryError):
    """The database lacks a table or view the statement needs: it predates a migration."""


@contextmanager
def query_errors() -> Iterator[None]:
    """Turn DuckDB's errors into the store's own, so callers never import duckdb."""
    try:
        yield
    except duckdb.CatalogException as exc:
        raise SchemaOutdated(str(exc)) from None
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None


def sql_dir() -> Traversable:
    """The package's `sql/` folder (the repository's `sql/`, installed as `hedgewatch/sql`)."""
    return resources.files("hedgewatch") / "sql"


def load_sql(name: str) -> str:
    """The SQL file `sql/<name>.sql`; names are fixed in code, never user input."""
    return (sql_dir() / f"{name}.sql").read_text(encoding="utf-8")


def _sql_files(folder: str) -> list[Traversable]:
    return [f for f in (sql_dir() / folder).iterdir() if f.name.endswith(".sql")]


def split_statements(script: str) -> list[str]:
    """Statements of a script, without comments (our SQL files never put ';' inside strings)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _bind(statement: str, params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parameters a statement names (DuckDB refuses extra ones), or None."""
    used = set(_PARAM.findall(statement))
    return {k: v for k, v in (params or {}).items() if k in used} or None


def _is_lock_error(exc: BaseException) -> bool:
    return any(marker in str(exc) for marker in _LOCK_MARKERS)


def connect(
    path: Path,
    *,
    read_only: bool = False,
    timeout_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[float], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the database file, waiting up to `timeout_s` while another process holds it."""
    if read_only and not path.exists():
        raise StoreError(f"{path}: database not found (run `hedgewatch run` or `make demo` first)")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            being_created = read_only and _BEING_CREATED in str(exc)
            if being_created and time.monotonic() >= deadline:
                raise StoreError(f"{path}: cannot open database: {exc}") from None
            if not _is_lock_error(exc) and not being_created:
                raise StoreError(f"{path}: cannot open database: {exc}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreBusy(
                    f"{path}: another hedgewatch process is using the database; "
                    f"gave up after {timeout_s:.0f} s, try again in a minute"
                ) from None
            if on_wait is not None:
                on_wait(remaining)
            sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
            continue
        con.execute("SET TimeZone = 'UTC'")
        # DuckDB draws a bar on stdout for a statement over 2 s (a whole publication, a
        # recompute): it would land in the worker's log and under the CLI's own output.
        con.execute("SET enable_progress_bar = false")
        return con


def reader_path(database: Path) -> Path:
    """The file a reader opens for `database`: its snapshot once one is published (the path
    itself when it is a snapshot, or when no writing command has finished yet)."""
    if database.name.endswith(".read.duckdb"):
        return database
    published = snapshot_path(database)
    return published if published.exists() else database


@dataclass(frozen=True)
class Changes:
    """What an upsert did: rows new, changed (a stored row differed) and unchanged, and the
    earliest hour (UTC) whose metrics the new and changed rows can move."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    earliest: datetime | None = None

    @property
    def rows(self) -> int:
        return self.new + self.changed + self.unchanged

    def __add__(self, other: Changes) -> Changes:
        times = [t for t in (self.earliest, other.earliest) if t is not None]
        return Changes(
            self.new + other.new,
            self.changed + other.changed,
            self.unchanged + other.unchanged,
            min(times) if times else None,
        )


@dataclass(frozen=True)
class Lake:
    """A DuckLake: a catalog database (`postgres:dbname=… host=…`, `sqlite:<file>`, or a
    `.ducklake` DuckDB file) and the data path its Parquet files go to (a folder every writer
    and reader sees, or object storage). Several processes may write at once."""

    catalog: str
    data_path: str
    extension_dir: Path | None = None  # where the packaged extensions are installed

    def __str__(self) -> str:
        # Catalog strings may carry a password: never put one in a message.
        return "ducklake:" + re.sub(r"password=\S+", "password=***", self.catalog)


# DuckLake's extensions ship as PyPI packages built for one DuckDB version (see the README's
# Storage section); they are installed from there, never downloaded.
_LAKE_EXTENSIONS = ("ducklake", "postgres")
_CONFLICT_MARKERS = ("Transaction conflict", "conflict", "Conflict")


def _extension_file(name: str) -> Path:
    import importlib

    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise StoreError(
            f"the DuckLake backend needs the duckdb-extension-{name} package "
            "(pip install 'hedgewatch[scale-out]')"
        ) from None
    folder = Path(str(module.__path__[0])) / "extensions" / f"v{duckdb.__version__}"
    file = folder / f"{name}.duckdb_extension"
    if not file.exists():
        raise StoreError(
            f"duckdb-extension-{name} has no build for DuckDB {duckdb.__version__} ({folder})"
        )
    return file


def connect_lake(
    lake: Lake, *, read_only: bool = False, timeout_s: float = 30.0
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as the default database `lake`."""
    ext_dir = lake.extension_dir or Path.home() / ".cache" / "hedgewatch" / "duckdb_extensions"
    ext_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "extension_directory": str(ext_dir),
        }
    )
    con.execute("SET enable_progress_bar = false")  # it would print to the worker's stdout
    try:
        for name in _LAKE_EXTENSIONS:
            if lake.catalog.startswith(("postgres:", "sqlite:")) or name == "ducklake":
                try:
                    con.execute(f"LOAD {name}")
                except duckdb.Error:
                    escaped = str(_extension_file(name)).replace("'", "''")
                    con.execute(f"FORCE INSTALL '{escaped}'")
                    con.execute(f"LOAD {name}")
        options = [f"DATA_PATH '{lake.data_path.replace(chr(39), chr(39) * 2)}'"]
        if read_only:
            options.append("READ_ONLY")
        catalog = lake.catalog.replace("'", "''")
        attach = f"ATTACH 'ducklake:{catalog}' AS lake ({', '.join(options)})"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                con.execute(attach)
                break
            except duckdb.Error as exc:
                # Workers starting together on a new catalog race to create its tables; the
                # losers find them created on the next try.
                racing = "Failed to initialize DuckLake" in str(exc)
                if not racing or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05 + random.random() * 0.2)  # noqa: S311 (jitter)
        con.execute("USE lake")
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error as exc:
        con.close()
        message = re.sub(r"password=\S+", "password=***", str(exc))
        raise StoreError(f"{lake}: cannot open the lake: {message}") from None
    return con


def is_conflict(exc: BaseException) -> bool:
    """A DuckLake commit that lost a race with another writer (retry the whole transaction)."""
    return isinstance(exc, duckdb.TransactionException) or (
        isinstance(exc, duckdb.Error) and "Transaction conflict" in str(exc)
    )


def _without_keys(script: str) -> str:
    """A migration for DuckLake, which has no primary keys or unique constraints: upserts here
    are delete-then-insert in one transaction, so the keys only ever documented identity. It
    also adds no column with a boolean default (every insert names those columns)."""
    script = re.sub(r",\s*PRIMARY KEY\s*\([^)]*\)", "", script)
    script = re.sub(r"(ADD COLUMN \w+ BOOLEAN)\s+DEFAULT\s+(false|true)", r"\1", script)
    return re.sub(r"\s+(PRIMARY KEY|UNIQUE)\b", "", script)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@functools.cache
def migrations() -> list[Migration]:
    found = []
    for file in sorted(_sql_files("migrations"), key=lambda f: f.name):
        version = int(file.name.split("_", 1)[0])
        found.append(
            Migration(version, file.name.removesuffix(".sql"), file.read_text(encoding="utf-8"))
        )
    return found


@functools.cache
def view_scripts() -> tuple[str, ...]:
    """The public views' SQL files (`sql/views/*.sql`), in file-name order."""
    return tuple(
        f.read_text(encoding="utf-8") for f in sorted(_sql_files("views"), key=lambda f: f.name)
    )


@functools.cache
def schema_fingerprint() -> str:
    """What the installed package expects of a store: its migrations and its public views."""
    digest = hashlib.sha256()
    for migration in migrations():
        digest.update(f"{migration.version}:{migration.name}\n".encode())
    for script in view_scripts():
        digest.update(script.encode())
    return digest.hexdigest()[:16]


class Store:
    """A connection with the product's operations on it. Use `Store.open(...)` as a context."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, path: Path, *, lake: Lake | None = None
    ) -> None:
        self.con = con
        self.path = path
        self.lake = lake
        self._depth = 0  # open transaction() blocks: an inner one joins the outer
        self.conflicts = 0  # DuckLake commits retried after losing a race

    def atomic(self, work: Callable[[Store], T], *, attempts: int = 50) -> T:
        """Run `work` in one transaction; on a DuckLake commit conflict (another writer committed
        first, even on other rows) run it again, up to `attempts` times. Counted in `conflicts`."""
        delay = 0.01
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction():
                    return work(self)
            except duckdb.Error as exc:
                if not is_conflict(exc) or attempt == attempts:
                    raise
                self.conflicts += 1
                time.sleep(delay * (1 + random.random()))  # noqa: S311 (jitter)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    @classmethod
    def in_memory(cls) -> Store:
        """A fresh, migrated store in memory (close it with `close()`)."""
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        store = cls(con, Path(":memory:"))
        store.migrate()
        return store

    def close(self) -> None:
        self.con.close()

    def publish_snapshot(self) -> Path:
        """Publish the read snapshot readers open (see snapshot.py): only the partitions written
        since the last publication are rewritten. A DuckLake needs none: its readers see
        committed snapshots by themselves."""
        if self.lake is not None:
            return self.path
        with query_errors():
            return snapshot.publish(self.con, self.path).views

    def _mark_snapshot(self, table: str, since: datetime | None, until: datetime | None) -> None:
        """Record that rows of `table` in [since, until] (no end: all after) changed, for the
        next publication of the read snapshot (in the caller's transaction)."""
        if self.lake is None and since is not None:
            self.run_script("mark_snapshot_dirty", {"table": table, "since": since, "until": until})

    @classmethod
    @contextmanager
    def open(
        cls,
        path: Path | Lake,
        *,
        read_only: bool = False,
        timeout_s: float = 30.0,
        publish: bool = True,
    ) -> Iterator[Store]:
        """The writer's store at `path`, or (`read_only`) its published read snapshot; or a
        DuckLake (`Lake`), where readers and several writers share the catalog directly.

        A writer publishes the read snapshot when its block ends without an error; steps that
        are followed by another writing step in the same command pass `publish=False`.
        """
        if isinstance(path, Lake):
            con = connect_lake(path, read_only=read_only, timeout_s=timeout_s)
            store = cls(con, Path("lake"), lake=path)
        else:
            if read_only:
                path = reader_path(path)
            con = connect(path, read_only=read_only, timeout_s=timeout_s)
            store = cls(con, path)
        try:
            if not read_only:
                store.migrate()
            yield store
            if publish and not read_only and store.lake is None:
                store.publish_snapshot()
        finally:
            con.close()

    # -- plumbing -------------------------------------------------------------------------

    def run_script(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        for statement in split_statements(load_sql(name)):
            self._execute(statement, params)

    def _execute(self, statement: str, params: Mapping[str, Any] | None) -> None:
        self.con.execute(statement, _bind(statement, params)).fetchall()

    def query(self, name: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """The rows of the one-statement query in `sql/<name>.sql`."""
        (statement,) = split_statements(load_sql(name))
        # execute(), not sql(): a relation built with parameters is materialised and then
        # converted value by value, 50x slower on a million rows (DuckDB 1.5).
        return self.con.execute(statement, _bind(statement, params)).pl()

    def rows(self, name: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows (tuples) of the one-statement query or write in `sql/<name>.sql`."""
        (statement,) = split_statements(load_sql(name))
        return self.con.execute(statement, _bind(statement, params)).fetchall()

    def records(self, name: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows of `sql/<name>.sql` as dicts keyed by column name."""
        (statement,) = split_statements(load_sql(name))
        cursor = self.con.execute(statement, _bind(statement, params))
        columns = [d[0] for d in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; a block inside another joins it (commits with the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.con.execute("ROLLBACK")
            raise
        self._depth = 0
        self.con.execute("COMMIT")

    @contextmanager
    def staged(self, **frames: pl.DataFrame) -> Iterator[None]:
        for name, frame in frames.items():
            self.con.register(name, frame.to_arrow())
        try:
            yield
        finally:
            for name in frames:
                self.con.unregister(name)

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply pending migrations, each in its own transaction; returns the versions applied.

        On a DuckLake several workers may start at once: a migration that loses the race is
        retried and then finds itself applied. A store already at the package's schema (its
        stored fingerprint matches) costs one query: every command opens the store, so this is
        the common case."""
        if self._at_current_schema():
            return []
        create = (
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        self.atomic(lambda s: s.con.execute(_without_keys(create) if s.lake else create).fetchall())
        applied = []
        for migration in migrations():
            script = _without_keys(migration.sql) if self.lake else migration.sql

            def apply(store: Store, migration: Migration = migration, script: str = script) -> bool:
                done = store.con.execute(
                    "SELECT count(*) FROM schema_migrations WHERE version = $v",
                    {"v": migration.version},
                ).fetchall()[0][0]
                if done:
                    return False
                for statement in split_statements(script):
                    store.con.execute(statement).fetchall()
                store.con.execute(
                    "INSERT INTO schema_migrations VALUES ($v, $n, now())",
                    {"v": migration.version, "n": migration.name},
                ).fetchall()
                return True

            if self.atomic(apply):
                applied.append(migration.version)
        # Here the views are missing or from another version of the package: (re)create them.
        self.atomic(lambda s: s.refresh_views())
        self.atomic(
            lambda s: (
                s.con.execute("DELETE FROM schema_fingerprint").fetchall(),
                s.con.execute(
                    "INSERT INTO schema_fingerprint VALUES ($f)", {"f": schema_fingerprint()}
                ).fetchall(),
            )
        )
        return applied

    def _at_current_schema(self) -> bool:
        """Whether the store holds the package's fingerprint and its views (one query)."""
        try:
            ((stored, views),) = self.con.execute(
                "SELECT (SELECT max(fingerprint) FROM schema_fingerprint),"
                " (SELECT count(*) FROM duckdb_views() WHERE NOT internal)"
            ).fetchall()
        except duckdb.Error:  # a store from before the fingerprint, or a new one
            return False
        return bool(stored == schema_fingerprint() and views)

    def refresh_views(self) -> None:
        """(Re)create the public views from `sql/views/*.sql`, in file-name order."""
        for script in view_scripts():
            for statement in split_statements(script):
                self.con.execute(statement).fetchall()

    # -- market data ----------------------------------------------------------------------

    def upsert_candles(self, candles: pl.DataFrame) -> int:
        """Insert or replace candles; returns the rows written (after de-duplication)."""
        return self.import_candles(candles).rows

    def import_candles(self, candles: pl.DataFrame) -> Changes:
        """Insert or replace candles in one transaction, saying what was new or changed."""
        if candles.is_empty():
            return Changes()
        return self.atomic(lambda store: store._upsert_candles(candles))

    def upsert_funding(self, funding: pl.DataFrame) -> int:
        return self.import_funding(funding).rows

    def import_funding(self, funding: pl.DataFrame) -> Changes:
        if funding.is_empty():
            return Changes()
        return self.atomic(lambda store: store._upsert_funding(funding))

    # Every write of market data goes through these two: the hours whose metrics the new or
    # changed rows can move are marked dirty in the same transaction, so whatever wrote them
    # (the hourly run, a backfill, an import), the next compute or `recompute` covers them.

    def _upsert_candles(self, candles: pl.DataFrame) -> Changes:
        keys = ["venue", "market", "symbol", "interval", "open_time"]
        staged = candles.unique(subset=keys, keep="last", maintain_order=True)
        with self.staged(staged=staged):
            changes, first, last = self._classify("classify_candles", staged.height)
            self.run_script("upsert_candles")
        self.mark_metrics_dirty(changes.earliest)
        self._mark_snapshot("candles", first, last)
        return changes

    def _upsert_funding(self, funding: pl.DataFrame) -> Changes:
        staged = funding.unique(subset=["venue", "symbol", "funding_time"], keep="last")
        with self.staged(staged=staged):
            changes, first, last = self._classify("classify_funding", staged.height)
            self.run_script("upsert_funding")
        self.mark_metrics_dirty(changes.earliest)
        self._mark_snapshot("funding", first, last)
        return changes

    def _classify(self, name: str, rows: int) -> tuple[Changes, datetime | None, datetime | None]:
        """What the staged rows change, and the first and last row time that differs."""
        ((new, changed, earliest, *span),) = self.rows(name)
        first, last = span if len(span) == 2 else (earliest, span[0])
        changes = Changes(
            new=int(new),
            changed=int(changed),
            unchanged=rows - int(new) - int(changed),
            earliest=earliest,
        )
        return changes, first, last

    def mark_metrics_dirty(self, since: datetime | None) -> None:
        """Metrics from `since` on must be recomputed (keeps the earliest mark)."""
        if since is not None:
            self.run_script("mark_metrics_dirty", {"since": since})

    def metrics_dirty_since(self) -> datetime | None:
        return self.cursor(METRICS_DIRTY_SINCE)

    def first_candle_hour(self) -> datetime | None:
        rows = self.rows("first_candle_hour")
        return rows[0][0] if rows else None

    def last_candle_hour(self) -> datetime | None:
        rows = self.rows("last_candle_hour")
        return rows[0][0] if rows else None

    def import_sources(self, series: pl.DataFrame) -> dict[tuple[str, str, str, str], set[str]]:
        """The sources imported so far into each of `series` (venue, market, symbol, interval)."""
        found: dict[tuple[str, str, str, str], set[str]] = {}
        with self.staged(series_staged=series):
            for venue, market, symbol, interval, source in self.rows("import_sources"):
                found.setdefault((venue, market, symbol, interval), set()).add(source)
        return found

    def record_import_source(self, series: pl.DataFrame, source: str) -> None:
        with self.staged(series_staged=series):
            self.run_script("record_import_source", {"source": source})

    def series_watermarks(self) -> dict[tuple[str, str, str, str], datetime]:
        frame = self.query("series_watermarks")
        return {
            (r["venue"], r["market"], r["symbol"], r["interval"]): r["last_open_time"]
            for r in frame.iter_rows(named=True)
        }

    def funding_watermarks(self) -> dict[tuple[str, str], datetime]:
        frame = self.query("funding_watermarks")
        return {
            (r["venue"], r["symbol"]): r["last_funding_time"] for r in frame.iter_rows(named=True)
        }

    def closes(
        self, instruments: pl.DataFrame, since: datetime, until: datetime | None = None
    ) -> pl.DataFrame:
        """Closes (instrument, open_time, close) of the given instruments from `since` on
        (through `until`, when given)."""
        params: dict[str, Any] = {"since": since, "until": until}
        for column in ("instrument", "venue", "market", "symbol", "interval"):
            params[column] = instruments.get_column(column).to_list()
        return self.query("candles_for_metrics", params)

    def replace_metrics(
        self,
        since: datetime,
        pairs: pl.DataFrame,
        hedges: pl.DataFrame,
        baskets: pl.DataFrame,
        ewma: pl.DataFrame | None = None,
        *,
        until: datetime | None = None,
        fingerprint: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the metric rows in [since, until] (no end: all from `since` on), clear the dirty
        mark they cover and record the settings they were computed with, in one transaction."""
        frames = {"pairs_staged": pairs, "hedges_staged": hedges, "baskets_staged": baskets}
        frames["ewma_staged"] = ewma if ewma is not None else pl.DataFrame()
        # An empty frame has no columns for INSERT ... BY NAME: stage the table's own empty rows.
        empty = [name for name, frame in frames.items() if frame.width == 0]

        def replace(store: Store) -> None:
            for name in empty:
                table = _METRIC_TABLES[name]
                store.con.execute(
                    f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {table} LIMIT 0"
                ).fetchall()
            store.run_script("replace_metrics", {"since": since, "until": until})
            for table in _METRIC_TABLES.values():
                store._mark_snapshot(table, since, until)
            for name in empty:
                store.con.execute(f"DROP VIEW {name}").fetchall()
            if until is None:
                store.run_script("clear_metrics_dirty", {"since": since})
            if fingerprint is not None:
                store.record_metrics_settings(fingerprint)

        with self.staged(**{n: f for n, f in frames.items() if f.width}):
            self.atomic(replace)

    def metrics_settings(self) -> dict[str, Any] | None:
        """The metric settings the stored rows were computed with (None: never recorded)."""
        rows = self.rows("metrics_settings")
        return json.loads(rows[0][0]) if rows else None

    def record_metrics_settings(self, settings: Mapping[str, Any]) -> None:
        text = json.dumps(settings, sort_keys=True, default=str)
        self.run_script("record_metrics_settings", {"settings": text})

    def basket_baseline(self, start: datetime, since: datetime) -> pl.DataFrame:
        """Stored avg_corr and absorption_ratio per basket and window in [start, since)."""
        return self.query("basket_baseline", {"start": start, "since": since})

    def funding_since(self, since: datetime) -> pl.DataFrame:
        return self.query("funding_for_metrics", {"since": since})

    def metrics_since(self, table: str, since: datetime) -> pl.DataFrame:
        if table not in {"hedge_metrics", "basket_metrics", "pair_correlations"}:
            raise ValueError(f"unknown metrics table {table!r}")
        return self.con.execute(
            f"SELECT * FROM {table} WHERE open_time >= $since ORDER BY ALL", {"since": since}
        ).pl()

    def latest_metric_hour(self) -> datetime | None:
        rows = self.rows("latest_metric_hour")
        return rows[0][0] if rows else None

    def latest_metrics(self) -> list[dict[str, Any]]:
        """The newest value per hedge/basket and window (kind, subject, window_hours, ...)."""
        return self.records("latest_metrics")

    def freshness(self, instruments: pl.DataFrame, at: datetime, gap_hours: int) -> pl.DataFrame:
        """How stale each instrument's candles are at hour `at` (see sql/freshness.sql)."""
        with self.staged(instruments_staged=instruments):
            return self.query("freshness", {"at": at, "gap": gap_hours})

    def gaps_within(self, ranges: pl.DataFrame) -> list[dict[str, Any]]:
        """The gaps overlapping each candle series' range (columns i, venue, market, symbol, start,
        end): venue, market, symbol, first_missing, last_missing, missing_hours, in the order of
        `i` and then time; one query."""
        if ranges.is_empty():
            return []
        with self.staged(ranges_staged=ranges):
            return self.records("fetched_gaps")

    def gaps(
        self, venue: str | None, symbol: str | None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of the `gaps` view, optionally of one venue and/or symbol."""
        with query_errors():
            frame = self.query("gaps_list", {"venue": venue, "symbol": symbol})
        return frame.columns, frame.rows()

    def candles_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        return self.query("candles_between", {"start": start, "end": end})

    def funding_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        return self.query("funding_between", {"start": start, "end": end})

    def series_open_times(
        self, venue: str, market: str, symbol: str, interval: str
    ) -> pl.DataFrame:
        params = {"venue": venue, "market": market, "symbol": symbol, "interval": interval}
        return self.query("series_open_times", params)

    def insert_rows(self, table: str, frame: pl.DataFrame) -> None:
        """Append a frame of candles or funding as they are (a copy, not an upsert)."""
        if table not in {"candles", "funding"}:
            raise ValueError(f"unknown market-data table {table!r}")
        if frame.height:
            column = "funding_time" if table == "funding" else "open_time"
            with self.transaction(), self.staged(copied=frame):
                self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM copied").fetchall()
                self._mark_snapshot(table, frame[column].min(), frame[column].max())  # type: ignore[arg-type]

    # -- backfill bookkeeping -------------------------------------------------------------

    def backfill_ranges(self) -> list[tuple[Any, ...]]:
        """(venue, market, symbol, interval, dataset, start_time, end_time), oldest first."""
        return self.rows("backfill_ranges")

    def store_backfill_chunk(
        self, dataset: str, frame: pl.DataFrame, chunk: Mapping[str, Any], at: datetime
    ) -> None:
        """A chunk's rows and its completed range, in one transaction."""

        def store_chunk(store: Store) -> None:
            if frame.height:
                if dataset == "funding":
                    store._upsert_funding(frame)
                else:
                    store._upsert_candles(frame)
            store.rows("record_backfill_range", {**chunk, "rows": frame.height, "at": at})

        self.atomic(store_chunk)

    # -- report and demo reads ------------------------------------------------------------

    def report_frames(self, since: datetime) -> dict[str, pl.DataFrame]:
        """The HTML report's frames: hedges, baskets, latest_pairs, status, events from `since`."""
        params = {"since": since}
        return {
            "hedges": self.query("report_hedges", params),
            "baskets": self.query("report_baskets", params),
            "latest_pairs": self.query("report_latest_pairs"),
            "status": self.query("report_hedge_status"),
            "events": self.query("report_alert_history", params),
        }

    def last_run(self) -> tuple[Any, ...] | None:
        """(started_at, status, as_of) of the newest run."""
        rows = self.rows("last_run")
        return rows[0] if rows else None

    def demo_timeline(self) -> list[tuple[Any, ...]]:
        return self.rows("demo_timeline")

    def demo_counts(self) -> tuple[int, int, int, int]:
        (row,) = self.rows("demo_counts")
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    # -- the outbox: alert states, events and queued notifications -------------------------

    def alert_states(self) -> list[dict[str, Any]]:
        """Every alert state row, with `evaluated_at`, as dicts."""
        return self.records("alert_states")

    def save_alert_states(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Replace the states of several (rule, subject) at once; each row names every column."""
        if not rows:
            return
        frame = pl.DataFrame([dict(row) for row in rows], infer_schema_length=None)
        with self.staged(states_staged=frame):
            self.run_script("save_alert_states")

    def save_alert_event(self, values: Mapping[str, Any]) -> None:
        """Record one alert event unless its key is recorded already."""
        self.rows("save_alert_event", values)

    def alert_events(self, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        """(rule, subject, ts, kind, value, threshold, severity, episode, context) by key."""
        return self.rows("alert_events_by_key", {"keys": list(keys)})

    def queue_delivery(
        self, key: str, channel: str, event_keys: Sequence[str], run_id: str
    ) -> None:
        params = {"key": key, "channel": channel, "event_keys": list(event_keys), "run_id": run_id}
        self.rows("queue_delivery", params)

    def pending_deliveries(self) -> list[dict[str, Any]]:
        """Every notification neither delivered nor dead: key, channel, event_keys, status, runs,
        uncertain (sends that may have arrived) and sending_since."""
        return self.records("pending_deliveries")

    def outbox_rows(self, state: str) -> pl.DataFrame:
        """`hedgewatch outbox list`: notifications in `state` (undelivered, dead or all)."""
        with query_errors():
            return self.query("outbox_list", {"state": state})

    def dead_unreported(self) -> list[dict[str, Any]]:
        """Dead notifications not yet reported: key, channel, runs, attempts, dead_reason."""
        return self.records("dead_unreported")

    def mark_dead_reported(self, keys: Sequence[str], at: datetime) -> None:
        self.rows("mark_dead_reported", {"keys": list(keys), "at": at})

    def requeue_dead(
        self, keys: Sequence[str] = (), *, channel: str | None = None, every: bool = False
    ) -> list[tuple[str, str]]:
        """Requeue dead notifications (those named, or every one, optionally of one channel);
        returns (key, channel) of each requeued."""
        params = {"keys": list(keys), "channel": channel, "all": every}

        def requeue(store: Store) -> list[tuple[str, str]]:
            found = [(k, c) for k, c in store.rows("dead_deliveries", params)]
            for key, _ in found:
                store.rows("requeue_delivery", {"key": key})
            return found

        return self.atomic(requeue)

    @staticmethod
    def execute_once(
        target: Path | Lake, name: str, params: Mapping[str, Any], *, timeout_s: float
    ) -> None:
        """Run `sql/<name>.sql` on a connection of its own, without migrating or publishing:
        the outbox's per-notification bookkeeping, committed at once and kept cheap."""
        if isinstance(target, Lake):
            store = Store(connect_lake(target, timeout_s=timeout_s), Path("lake"), lake=target)
        else:
            store = Store(connect(target, timeout_s=timeout_s), target)
        con = store.con
        try:
            store.atomic(lambda s: s.run_script(name, params))
        finally:
            con.close()

    # -- alert bookkeeping the CLI reads and writes ---------------------------------------

    def muted_episodes(self) -> list[tuple[str, str, int]]:
        """(rule, subject, episode) of the firing alerts whose firing an inhibiting alert muted."""
        return [(r, s, int(e)) for r, s, e in self.rows("muted_episodes")]

    def alert_status_rows(self) -> list[tuple[Any, ...]]:
        with query_errors():
            return self.rows("alert_status_list")

    def silences(self) -> list[tuple[str, str, datetime, str | None]]:
        """(rule, subject, until, reason) set from the CLI, soonest end first."""
        with query_errors():
            return [(r, s, u, why) for r, s, u, why in self.rows("alert_silences")]

    def add_silence(self, rule: str, subject: str, until: datetime, reason: str | None) -> None:
        params = {"rule": rule, "subject": subject, "until": until, "reason": reason}
        with query_errors(), self.transaction():
            self.run_script("add_silence", params)

    def remove_silence(self, rule: str, subject: str) -> bool:
        with query_errors():
            return bool(self.rows("remove_silence", {"rule": rule, "subject": subject}))

    # -- cursors and runs -----------------------------------------------------------------

    def cursor(self, name: str) -> datetime | None:
        rows = self.con.execute("SELECT value FROM cursors WHERE name = $n", {"n": name}).fetchall()
        return rows[0][0] if rows else None

    def set_cursor(self, name: str, value: datetime) -> None:
        with self.transaction():
            self.run_script("set_cursor", {"name": name, "value": value})

    def start_run(self, run_id: str, started_at: datetime, as_of: datetime) -> None:
        with self.transaction():
            self.run_script(
                "start_run", {"run_id": run_id, "started_at": started_at, "as_of": as_of}
            )

    def finish_run(
        self, run_id: str, finished_at: datetime, status: str, summary: Mapping[str, Any]
    ) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = $f, status = $st, summary = $su WHERE run_id = $id",
            {"id": run_id, "f": finished_at, "st": status, "su": json.dumps(summary, default=str)},
        ).fetchall()

    def last_run_settings(self) -> dict[str, Any] | None:
        """The settings (secrets masked) stored with the newest run that stored any."""
        rows = self.query("last_run_settings").rows()
        return json.loads(rows[0][0]) if rows else None

    def queued_count(self) -> int:
        """Notifications in the outbox a run would send: undelivered, not given up."""
        return int(self.query("queued_count").item())

    def log_fetches(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        frame = pl.DataFrame(
            list(rows),
            schema={
                "run_id": pl.Utf8,
                "venue": pl.Utf8,
                "market": pl.Utf8,
                "symbol": pl.Utf8,
                "dataset": pl.Utf8,
                "start_time": pl.Datetime("us", "UTC"),
                "end_time": pl.Datetime("us", "UTC"),
                "rows": pl.Int32,
                "error": pl.Utf8,
                "rejected": pl.Int32,
                "note": pl.Utf8,
            },
        )
        with self.transaction(), self.staged(fetched=frame):
            self.con.execute("INSERT INTO fetch_log BY NAME SELECT * FROM fetched").fetchall()
            self._mark_snapshot("fetch_log", frame["end_time"].min(), frame["end_time"].max())  # type: ignore[arg-type]
