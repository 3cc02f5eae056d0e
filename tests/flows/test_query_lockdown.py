"""`hedgewatch query` cannot write, read outside the database, load code or run forever.

Every escape exits 2 with what was refused, and every file in the folder stays byte-identical.
"""

from __future__ import annotations

import _thread
import hashlib
import shutil
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.storage.store import Store
from hedgewatch.venues.base import CANDLE_SCHEMA

T0 = datetime(2022, 5, 9, tzinfo=UTC)
SECRET = "root:$6$not-for-your-eyes"
# Hours of work at any speed, and no overflow on the way (a sum of squares overflowed after three
# billion rows: on a busy machine that came before the interrupt).
ENDLESS = "select count(*) from range(10000000000000) t(i) where i % 7 = 3"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("query")
    frame = pl.DataFrame(
        [
            {
                "venue": "binance",
                "market": "spot",
                "symbol": "BTCUSDT",
                "interval": "1h",
                "open_time": T0 + timedelta(hours=h),
                "open": 1.0,
                "high": 1.0,
                "low": 1.0,
                "close": 1.0,
                "volume": 2.0,
                "quote_volume": None,
                "trades": None,
            }
            for h in range(3)
        ],
        schema=CANDLE_SCHEMA,
    )
    with Store.open(tmp_path / "v.duckdb") as store:
        store.upsert_candles(frame)
    with Store.open(tmp_path / "other.duckdb"):
        pass
    (tmp_path / "shadow").write_text(SECRET + "\n")
    return tmp_path


@pytest.fixture()
def folder(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "f")
    return tmp_path / "f"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


ESCAPES = [
    # 1: the database overwritten by a CSV
    "COPY (select 1) TO '{db}' (FORMAT csv)",
    # 2: writes anywhere, exports, a second database attached for writing
    "COPY (select * from candles) TO '{dir}/leak.csv' (FORMAT csv)",
    "EXPORT DATABASE '{dir}/export'",
    "ATTACH '{dir}/other.duckdb' (READ_WRITE)",
    "ATTACH '{dir}/other.duckdb' (READ_WRITE); CREATE TABLE other.x AS SELECT 1",
    "CREATE TABLE x AS SELECT 1",
    "DELETE FROM candles",
    # 3: files outside the database
    "select * from read_text('{dir}/shadow')",
    "select * from read_csv('{dir}/shadow', header = false)",
    "select * from glob('{dir}/*')",
    "select * from read_blob('{dir}/shadow')",
    # 4: more than one statement, settings, pragmas, extensions
    "select 1; select 2",
    "SET threads = 1",
    "SET enable_external_access = true",
    "PRAGMA enable_profiling",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CALL pragma_version()",
]


@pytest.mark.parametrize("attack", ESCAPES)
def test_every_query_escape_exits_2_and_leaves_files_byte_identical(
    folder: Path, attack: str
) -> None:
    db = folder / "v.duckdb"
    before = snapshot(folder)
    sql = attack.format(db=db, dir=folder)
    result = CliRunner().invoke(app, ["query", sql, "-d", str(db), "-f", "csv"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert "refused" in result.stderr or "query failed" in result.stderr
    assert snapshot(folder) == before


def test_refusals_name_what_was_refused(folder: Path) -> None:
    db = str(folder / "v.duckdb")
    result = CliRunner().invoke(app, ["query", "select 1; select 2", "-d", db])
    assert "refused 2 statements" in result.stderr
    result = CliRunner().invoke(app, ["query", "INSTALL httpfs", "-d", db])
    assert "refused a LOAD statement" in result.stderr
    result = CliRunner().invoke(app, ["query", f"from read_text('{folder}/shadow')", "-d", db])
    assert "Permission Error" in result.stderr


def test_reading_kinds_still_answer(folder: Path) -> None:
    db = str(folder / "v.duckdb")
    for sql in ("select count(*) from candles", "describe candles", "show tables"):
        result = CliRunner().invoke(app, ["query", sql, "-d", db, "-f", "csv"])
        assert result.exit_code == 0, result.stderr


def test_a_query_past_its_timeout_is_interrupted_with_exit_2(folder: Path) -> None:
    before = snapshot(folder)
    result = CliRunner().invoke(
        app, ["query", ENDLESS, "-d", str(folder / "v.duckdb"), "--timeout", "0.2"]
    )
    assert result.exit_code == 2
    assert "--timeout of 0.2 s" in result.stderr
    assert snapshot(folder) == before


def test_ctrl_c_interrupts_a_running_query(folder: Path) -> None:
    # Imported here: the tests above go through the command alone, so they also run against a
    # tree that predates this module (docs/hardening.md).
    from hedgewatch.storage.query import QueryInterrupted, open_locked, run_locked

    con = open_locked(folder / "v.duckdb", timeout_s=5)

    # Another test's query thread may still be winding down: wait for this query's own. Threads
    # are told apart as objects (held here), never by ident: a new thread may reuse a dead one's.
    before = [t for t in threading.enumerate() if t.name == "hedgewatch-query"]
    pressed, finished = threading.Event(), threading.Event()

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
            t.name == "hedgewatch-query" and all(t is not old for old in before)
            for t in threading.enumerate()
        ):
            time.sleep(0.01)
        _thread.interrupt_main()
        pressed.set()
        # Never hang the suite: if Ctrl-C did not stop the query, stop it here (the test fails).
        if not finished.wait(120):
            while not finished.wait(0.1):
                con.interrupt()

    # Ctrl-C as a user's shell sends it: Python's own handler (an earlier test in this process
    # may have left another one installed, which interrupt_main would call instead).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        with pytest.raises(QueryInterrupted):
            run_locked(con, ENDLESS, timeout_s=None)
        assert pressed.is_set()
    finally:
        finished.set()
        signal.signal(signal.SIGINT, previous)
        con.close()
