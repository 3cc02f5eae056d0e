"""Export the public views and tables as Parquet (or CSV) files for other tools.

Each file is written next to its target under a temporary name and moved into place with
`os.replace`, so a reader never sees half a file. The read snapshot is opened, read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

from .store import connect, reader_path

# Bookkeeping that is not data: never exported.
PRIVATE = frozenset({"schema_migrations", "cursors", "snapshot_dirty", "snapshot_published"})


def public_relations(con: object) -> list[str]:
    """Every user table and view of the main schema, views first, in name order."""
    rows = con.execute(  # type: ignore[attr-defined]
        "SELECT view_name, 0 FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'"
        " UNION ALL "
        "SELECT table_name, 1 FROM duckdb_tables() WHERE NOT internal AND schema_name = 'main'"
        " ORDER BY 2, 1"
    ).fetchall()
    return [name for name, _ in rows if name not in PRIVATE]


def export_relations(
    database: Path, directory: Path, fmt: str = "parquet", *, timeout_s: float = 30.0
) -> list[tuple[str, int]]:
    """Write `<directory>/<name>.<fmt>` for every public relation; returns (name, rows)."""
    if fmt not in {"parquet", "csv"}:
        raise ValueError(f"unknown export format {fmt!r}")
    directory.mkdir(parents=True, exist_ok=True)
    con = connect(reader_path(database), read_only=True, timeout_s=timeout_s)
    written = []
    try:
        for name in public_relations(con):
            target = directory / f"{name}.{fmt}"
            tmp = directory / f".{name}.{fmt}.tmp"
            options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv"
            escaped = str(tmp).replace("'", "''")
            con.execute(f"COPY (SELECT * FROM \"{name}\") TO '{escaped}' ({options})").fetchall()
            rows = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
            os.replace(tmp, target)
            written.append((name, int(rows)))
    finally:
        con.close()
    return written
