"""Users' own SQL, read-only for real: one reading statement, no files, no extensions, a deadline.

`hedgewatch query` opens the database read-only, then locks the connection down with DuckDB's own
switches (no file system or network access beyond the database itself and the read snapshot's
Parquet folder, no extension loading, no configuration change after that) and accepts one
statement whose parsed type reads. The statement runs on a worker thread so a deadline or Ctrl-C
can stop it with `interrupt()`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .snapshot import allowed_directory
from .store import Lake, StoreError, connect, connect_lake, reader_path

# Statement kinds that only read. SELECT covers DESCRIBE, SHOW, SUMMARIZE and CTEs.
READING_KINDS = frozenset({"SELECT", "EXPLAIN"})
_LOCKS = (
    "SET enable_progress_bar = false",
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)


class QueryRefused(StoreError):
    """The SQL is not one reading statement; the message names what was refused."""


class QueryTimeout(StoreError):
    """The query ran past its deadline and was interrupted."""


class QueryInterrupted(StoreError):
    """The user interrupted the query (Ctrl-C)."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def open_locked(
    path: Path | Lake, *, timeout_s: float, on_wait: Callable[[float], None] | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-only connection that can read nothing but the database and change no setting.

    It opens the published read snapshot of a database file (never the writer's file), or a
    DuckLake read-only, whose data lives outside by design: there external access stays on."""
    if isinstance(path, Lake):
        con = connect_lake(path, read_only=True, timeout_s=timeout_s)
        locks = [s for s in _LOCKS if "external_access" not in s]
    else:
        con = connect(reader_path(path), read_only=True, timeout_s=timeout_s, on_wait=on_wait)
        locks = list(_LOCKS)
        folder = allowed_directory(con)
        if folder is not None:
            # The snapshot's large tables are views over the Parquet files in its data folder:
            # that one folder stays readable, nothing else does.
            escaped = (folder.rstrip("/") + "/").replace("'", "''")
            locks.insert(1, f"SET allowed_directories = ['{escaped}']")
    try:
        for statement in locks:
            con.execute(statement)
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"{path}: cannot lock the query connection down: {exc}") from None
    return con


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one statement of a reading kind."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"query failed: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(
            f"query is read-only: refused {len(statements)} statements (give exactly one SELECT)"
        )
    kind = statements[0].type.name
    if kind not in READING_KINDS:
        raise QueryRefused(f"query is read-only: refused a {kind} statement (only SELECT, EXPLAIN)")


def run_locked(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    timeout_s: float | None,
) -> QueryResult:
    """Check and run `sql`; interrupt it past `timeout_s` seconds or on KeyboardInterrupt."""
    check_statement(con, sql)
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            relation = con.sql(sql)
            if relation is None:
                outcome["result"] = QueryResult([], [])
            else:
                outcome["result"] = QueryResult(list(relation.columns), relation.fetchall())
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name="hedgewatch-query", daemon=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        worker.start()
        # Short joins so a Ctrl-C reaches this thread while DuckDB works on the other.
        while not done.is_set() and (deadline is None or time.monotonic() < deadline):
            done.wait(
                0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
            )
    except KeyboardInterrupt:
        _stop(con, done)
        raise QueryInterrupted("query interrupted") from None
    if not done.is_set():
        _stop(con, done)
        if "result" not in outcome:
            raise QueryTimeout(f"query interrupted after its --timeout of {timeout_s:g} s")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, duckdb.Error):
            raise StoreError(f"query failed: {error}") from None
        raise error
    result: QueryResult = outcome["result"]
    return result


def _stop(con: duckdb.DuckDBPyConnection, done: threading.Event) -> None:
    """Interrupt until the worker is done (a query that had not started yet is caught next)."""
    while not done.is_set():
        con.interrupt()
        done.wait(0.05)
