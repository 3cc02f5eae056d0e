"""`hedgewatch query` on a database with no read snapshot yet (no writing command has finished),
while another process writes it: it says so, waits, and retries. Once a snapshot is published,
queries read that and never wait (tests/flows/test_read_snapshot.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.storage.store import Store

HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold(database: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process with the database open for writing for `seconds`."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "holding"
    return process


def test_query_waits_for_a_writer_then_answers(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database, publish=False):
        pass
    writer = hold(database, 1.5)
    result = CliRunner().invoke(
        app, ["query", "select count(*) as n from candles", "-d", str(database), "-f", "csv"]
    )
    writer.wait(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "n\n0\n"
    assert f"a run is writing {database}; waiting up to" in result.stderr


def test_query_gives_up_with_exit_3_when_the_writer_stays(tmp_path: Path) -> None:
    database = tmp_path / "hw.duckdb"
    with Store.open(database, publish=False):
        pass
    writer = hold(database, 10)
    try:
        result = CliRunner().invoke(
            app, ["query", "select 1", "-d", str(database), "--wait", "0.5"]
        )
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert result.exit_code == 3
    assert "another hedgewatch process is using the database" in result.stderr
