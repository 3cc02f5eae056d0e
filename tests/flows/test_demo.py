"""`make demo` runs the real pipeline offline and gives the same result every time."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.demo import run_demo
from hedgewatch.flows.runtime import keep_template
from hedgewatch.storage.store import Store

pytestmark = pytest.mark.slow

HEDGEWATCH = str(Path(sys.executable).with_name("hedgewatch"))
TABLES = ("candles", "funding", "hedge_metrics", "basket_metrics", "alert_events", "alert_state")


def rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    with Store.open(database, read_only=True) as store:
        return {t: store.con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_demo_fires_through_the_crash_and_is_repeatable(
    prefect_harness: None, tmp_path: Path
) -> None:
    """Flow runs on Prefect, then the same steps as plain functions: the same story, row for row."""
    lines: list[str] = []
    first = run_demo(workdir=tmp_path / "one", echo=lines.append, prefect=True)
    second = run_demo(workdir=tmp_path / "two", echo=lambda _: None, prefect=False)

    assert first == second
    assert rows(tmp_path / "one" / "hedgewatch.duckdb") == rows(
        tmp_path / "two" / "hedgewatch.duckdb"
    )

    crash = (datetime(2022, 5, 9, tzinfo=UTC), datetime(2022, 5, 13, tzinfo=UTC))
    firing = [(ts, rule, subject) for ts, kind, rule, subject, *_ in first if kind == "firing"]
    assert any(rule == "market-stress" and crash[0] <= ts < crash[1] for ts, rule, _ in firing)
    assert any(subject == "luna-vs-btc-perp" for _, _, subject in firing)

    outbox = tmp_path / "one" / "outbox"
    suffixes = {p.name.split("-")[-1].split(".", 1)[1] for p in outbox.iterdir()}
    assert suffixes == {"md", "email.txt", "email.html", "slack.json"}
    for payload in outbox.glob("*.slack.json"):
        assert json.loads(payload.read_text())["blocks"]
    assert any("Alert timeline" in line for line in lines)


def test_the_demo_owns_its_prefect_server_and_keeps_its_migrated_database(tmp_path: Path) -> None:
    """`hedgewatch demo --prefect` with no PREFECT_API_URL (two runs a week apart to
    keep it short): the first demo's server migrates a new database and keeps it as the
    template; the second starts from a copy of it and tells the same story."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    printed = []
    for name in ("first", "second"):
        done = subprocess.run(
            [
                HEDGEWATCH,
                "demo",
                "--prefect",
                "--workdir",
                str(tmp_path / name),
                "--step-hours",
                "168",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        assert "Prefect server on http://127.0.0.1:" in done.stdout
        printed.append(done.stdout)
        templates = list((tmp_path / ".prefect-cache").glob("prefect-*.db"))
        assert len(templates) == 1, templates
    timelines = [text[text.index("Alert timeline") : text.index("Stored ")] for text in printed]
    assert timelines[0] == timelines[1]
    assert "FIRING" in timelines[0]


def test_the_default_demo_needs_no_prefect_server(tmp_path: Path) -> None:
    """`make demo` as a fresh machine runs it: no PREFECT_API_URL, and Prefect forbidden to start a
    temporary server; the runs are the flow's steps as plain functions (a week apart, to keep it
    short)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
    done = subprocess.run(
        [HEDGEWATCH, "demo", "--workdir", str(tmp_path / "demo"), "--step-hours", "168"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "Prefect server on" not in done.stdout
    assert "as plain functions" in done.stdout
    assert "FIRING" in done.stdout[done.stdout.index("Alert timeline") :]
    assert not (tmp_path / "demo" / "prefect").exists()


def test_a_template_is_a_consistent_copy_of_a_database_in_use(tmp_path: Path) -> None:
    database = tmp_path / "prefect.db"
    with contextlib.closing(sqlite3.connect(database)) as writer:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE alembic_version (version_num TEXT)")
        writer.execute("INSERT INTO alembic_version VALUES ('head')")
        writer.commit()  # in the write-ahead log, not yet in the file: the copy must see it
        template = tmp_path / "cache" / "prefect-x.db"
        keep_template(database, template)
    with contextlib.closing(sqlite3.connect(template)) as copy:
        assert copy.execute("SELECT version_num FROM alembic_version").fetchall() == [("head",)]
    assert [p.name for p in template.parent.iterdir()] == ["prefect-x.db"]
