"""Readers in other processes query while full runs write, one of them holding its connection
across a whole run.

Readers open the read snapshot each run publishes, never the writer's file, so no reader can
hold the writer's lock: expected zero failed runs, zero failed readers, and a held connection
that keeps seeing the state it opened (then a new one sees the new run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.flows.hourly import hourly
from hedgewatch.replay import ReplayExchange

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
READERS = 3
READER = """
import json, sys, time
from pathlib import Path
from hedgewatch.storage.store import connect, snapshot_path

database, stop = snapshot_path(Path(sys.argv[1])), Path(sys.argv[2])
queries = [
    "SELECT count(*) FROM candles",
    "SELECT * FROM hedge_status",
    "SELECT * FROM market_stress ORDER BY open_time DESC LIMIT 24",
    "SELECT * FROM alert_history",
    "SELECT * FROM run_history",
]
done, errors = 0, []
while not stop.exists():
    if not database.exists():
        time.sleep(0.05)
        continue
    try:
        con = connect(database, read_only=True, timeout_s=5)
        try:
            for query in queries:
                con.execute(query).fetchall()
        finally:
            con.close()
        done += 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    time.sleep(0.1)
print(json.dumps({"done": done, "errors": errors}))
"""
# A notebook left open: one connection on the snapshot, held until told (a line on stdin).
HOLDER = """
import json, sys
import duckdb
from pathlib import Path
from hedgewatch.storage.store import snapshot_path

con = duckdb.connect(str(snapshot_path(Path(sys.argv[1]))), read_only=True)
look = "SELECT (SELECT count(*) FROM candles), (SELECT count(*) FROM runs)"
print(json.dumps(con.execute(look).fetchall()[0]), flush=True)
sys.stdin.readline()
print(json.dumps(con.execute(look).fetchall()[0]), flush=True)
"""


def test_readers_in_other_processes_never_break_a_run(
    prefect_harness: None, replay_market: Any, small_config: Any, tmp_path: Path
) -> None:
    candles, funding = replay_market
    database = tmp_path / "hedgewatch.duckdb"
    stop = tmp_path / "stop"
    hedgewatch = str(Path(sys.executable).parent / "hedgewatch")

    def query(sql: str) -> subprocess.CompletedProcess[str]:  # as a user would, from a terminal
        return subprocess.run(
            [hedgewatch, "query", "-d", str(database), "-f", "json", "--wait", "5", sql],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "120"},
        )

    with ReplayExchange(candles, funding, now=datetime(2022, 5, 11, 12, 5, tzinfo=UTC)) as exchange:
        config = small_config(tmp_path, exchange.url, datetime(2022, 5, 1, tzinfo=UTC))
        first = hourly(config_path=str(config))  # a backfill: the longest writes
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        readers = [
            subprocess.Popen(
                [sys.executable, "-c", READER, str(database), str(stop)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(READERS)
        ]
        cli_results = [query("select count(*) as n from candles")]

        def query_with_the_cli() -> None:
            while not stop.exists():
                cli_results.append(query("select count(*) as n from candles"))

        cli = threading.Thread(target=query_with_the_cli)
        try:
            assert holder.stdout is not None and holder.stdin is not None
            held_before = json.loads(holder.stdout.readline())  # its connection is open now
            cli.start()
            exchange.set_now(datetime(2022, 5, 12, 18, 5, tzinfo=UTC))
            second = hourly(config_path=str(config))
            holder.stdin.write("\n")
            holder.stdin.flush()
            held_after = json.loads(holder.stdout.readline())
        finally:
            stop.touch()
            cli.join(timeout=180)
            outputs = [reader.communicate(timeout=120) for reader in readers]
            holder.communicate(timeout=60)

    assert (first.status, second.status) == ("ok", "ok")
    assert held_after == held_before  # one consistent state for as long as it is held
    assert held_before[1] == 1  # it opened after the first run
    now = json.loads(query("select count(*) as n from runs").stdout)[0]["n"]
    assert now == 2  # a new connection sees the second run
    for reader, (out, err) in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, err
        report = json.loads(out)
        assert report["errors"] == []
        assert report["done"] > 0
    print(
        f"\nreaders: {[json.loads(o)['done'] for o, _ in outputs]}; CLI queries: {len(cli_results)}"
    )
    for result in cli_results:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)[0]["n"] > 0
