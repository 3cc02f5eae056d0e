"""The DuckDB store: migrations, idempotent upserts, watermarks, alert state and the outbox.

DuckDB lets one process write a file at a time and locks readers out meanwhile, so every
connection here is short-lived and opening one retries on the lock for a bounded time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
# A reader that opens the file in the instant a writer is creating it sees no header yet.
_BEING_CREATED = "not a valid DuckDB database file"


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
        return con


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for file in sorted(_sql_files("migrations"), key=lambda f: f.name):
        version = int(file.name.split("_", 1)[0])
        found.append(
            Migration(version, file.name.removesuffix(".sql"), file.read_text(encoding="utf-8"))
        )
    return found


class Store:
    """A connection with the product's operations on it. Use `Store.open(...)` as a context."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path

    @classmethod
    @contextmanager
    def open(
        cls, path: Path, *, read_only: bool = False, timeout_s: float = 30.0
    ) -> Iterator[Store]:
        con = connect(path, read_only=read_only, timeout_s=timeout_s)
        try:
            store = cls(con, path)
            if not read_only:
                store.migrate()
            yield store
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
        return self.con.sql(statement, params=_bind(statement, params)).pl()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
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
        """Apply pending migrations, each in its own transaction; returns the versions applied."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        done = {
            row[0] for row in self.con.execute("SELECT version FROM schema_migrations").fetchall()
        }
        applied = []
        for migration in migrations():
            if migration.version in done:
                continue
            with self.transaction():
                for statement in split_statements(migration.sql):
                    self.con.execute(statement).fetchall()
                self.con.execute(
                    "INSERT INTO schema_migrations VALUES ($v, $n, now())",
                    {"v": migration.version, "n": migration.name},
                ).fetchall()
            applied.append(migration.version)
        self.refresh_views()
        return applied

    def refresh_views(self) -> None:
        """(Re)create the public views from `sql/views/*.sql`, in file-name order."""
        for file in sorted(_sql_files("views"), key=lambda f: f.name):
            for statement in split_statements(file.read_text(encoding="utf-8")):
                self.con.execute(statement).fetchall()

    # -- market data ----------------------------------------------------------------------

    def upsert_candles(self, candles: pl.DataFrame) -> int:
        if candles.is_empty():
            return 0
        keys = ["venue", "market", "symbol", "interval", "open_time"]
        staged = candles.unique(subset=keys, keep="last", maintain_order=True)
        with self.staged(staged=staged), self.transaction():
            self.run_script("upsert_candles")
        return staged.height

    def upsert_funding(self, funding: pl.DataFrame) -> int:
        if funding.is_empty():
            return 0
        staged = funding.unique(subset=["venue", "symbol", "funding_time"], keep="last")
        with self.staged(staged=staged), self.transaction():
            self.run_script("upsert_funding")
        return staged.height

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

    def closes(self, instruments: pl.DataFrame, since: datetime) -> pl.DataFrame:
        """Closes (instrument, open_time, close) of the given instruments from `since` on."""
        with self.staged(instruments_staged=instruments):
            return self.query("candles_for_metrics", {"since": since})

    def replace_metrics(
        self,
        since: datetime,
        pairs: pl.DataFrame,
        hedges: pl.DataFrame,
        baskets: pl.DataFrame,
        ewma: pl.DataFrame | None = None,
    ) -> None:
        frames = {"pairs_staged": pairs, "hedges_staged": hedges, "baskets_staged": baskets}
        frames["ewma_staged"] = ewma if ewma is not None else pl.DataFrame()
        # An empty frame has no columns for INSERT ... BY NAME: stage the table's own empty rows.
        empty = [name for name, frame in frames.items() if frame.width == 0]
        with self.staged(**{n: f for n, f in frames.items() if f.width}), self.transaction():
            for name in empty:
                table = _METRIC_TABLES[name]
                self.con.execute(
                    f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {table} LIMIT 0"
                ).fetchall()
            self.run_script("replace_metrics", {"since": since})
            for name in empty:
                self.con.execute(f"DROP VIEW {name}").fetchall()

    def earliest_changed(self, table: str, rows: pl.DataFrame) -> datetime | None:
        """Earliest time among `rows` (candles or funding) that are new or differ when stored."""
        script = {"candles": "earliest_changed_candle", "funding": "earliest_changed_funding"}
        if rows.is_empty():
            return None
        with self.staged(staged=rows):
            frame = self.query(script[table])
        value = frame["earliest"][0]
        return value if isinstance(value, datetime) else None

    def basket_baseline(self, start: datetime, since: datetime) -> pl.DataFrame:
        """Stored avg_corr and absorption_ratio per basket and window in [start, since)."""
        return self.query("basket_baseline", {"start": start, "since": since})

    def funding_since(self, since: datetime) -> pl.DataFrame:
        return self.query("funding_for_metrics", {"since": since})

    def metrics_since(self, table: str, since: datetime) -> pl.DataFrame:
        if table not in {"hedge_metrics", "basket_metrics", "pair_correlations"}:
            raise ValueError(f"unknown metrics table {table!r}")
        return self.con.sql(
            f"SELECT * FROM {table} WHERE open_time >= $since ORDER BY ALL", params={"since": since}
        ).pl()

    def latest_metric_hour(self) -> datetime | None:
        rows = self.con.execute(
            "SELECT max(open_time) FROM (SELECT open_time FROM hedge_metrics"
            " UNION ALL SELECT open_time FROM basket_metrics)"
        ).fetchall()
        return rows[0][0] if rows else None

    # -- cursors and runs -----------------------------------------------------------------

    def cursor(self, name: str) -> datetime | None:
        rows = self.con.execute("SELECT value FROM cursors WHERE name = $n", {"n": name}).fetchall()
        return rows[0][0] if rows else None

    def set_cursor(self, name: str, value: datetime) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO cursors VALUES ($n, $v)", {"n": name, "v": value}
        ).fetchall()

    def start_run(self, run_id: str, started_at: datetime, as_of: datetime) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO runs VALUES ($id, $s, NULL, $a, 'running', NULL)",
            {"id": run_id, "s": started_at, "a": as_of},
        ).fetchall()

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
        """Notifications in the outbox not delivered yet."""
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
        with self.staged(fetched=frame):
            self.con.execute("INSERT INTO fetch_log BY NAME SELECT * FROM fetched").fetchall()
