"""Readers in other processes query the database in a loop while full runs write to it.

DuckDB lets one process hold a file for writing and locks readers out meanwhile: runs hold the
file only while a step reads or writes, readers open it read-only for one query at a time, and
both sides wait and retry on the lock. Expected: zero failed runs, zero crashed readers.
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
from hedgewatch.storage.store import connect

database, stop = Path(sys.argv[1]), Path(sys.argv[2])
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
        con = connect(database, read_only=True, timeout_s=60)
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


def test_readers_in_other_processes_never_break_a_run(
    prefect_harness: None, replay_market: Any, small_config: Any, tmp_path: Path
) -> None:
    candles, funding = replay_market
    database = tmp_path / "hedgewatch.duckdb"
    stop = tmp_path / "stop"
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(database), str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(READERS)
    ]
    cli_results: list[subprocess.CompletedProcess[str]] = []

    def query_with_the_cli() -> None:  # as a user would, from another terminal
        while not stop.exists():
            if database.exists():
                cli_results.append(
                    subprocess.run(
                        [
                            str(Path(sys.executable).parent / "hedgewatch"),
                            "query",
                            "-d",
                            str(database),
                            "-f",
                            "json",
                            "select count(*) as n from candles",
                        ],
                        capture_output=True,
                        text=True,
                        timeout=120,
                        env={**os.environ, "COLUMNS": "120"},
                    )
                )

    cli = threading.Thread(target=query_with_the_cli)
    cli.start()
    try:
        with ReplayExchange(
            candles, funding, now=datetime(2022, 5, 11, 12, 5, tzinfo=UTC)
        ) as exchange:
            config = small_config(tmp_path, exchange.url, datetime(2022, 5, 1, tzinfo=UTC))
            first = hourly(config_path=str(config))  # a backfill: the longest writes
            exchange.set_now(datetime(2022, 5, 12, 18, 5, tzinfo=UTC))
            second = hourly(config_path=str(config))
    finally:
        stop.touch()
        cli.join(timeout=180)
        outputs = [reader.communicate(timeout=120) for reader in readers]

    assert (first.status, second.status) == ("ok", "ok")
    for reader, (out, err) in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, err
        report = json.loads(out)
        assert report["errors"] == []
        assert report["done"] > 0
    print(
        f"\nreaders: {[json.loads(o)['done'] for o, _ in outputs]}; CLI queries: {len(cli_results)}"
    )
    assert cli_results, "the CLI reader never ran"
    for result in cli_results:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)[0]["n"] >= 0
