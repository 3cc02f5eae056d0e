"""kill -9 at random points of a full hourly run, then rerun: the data ends as if never killed.

Each trial is a fresh database and a subprocess that runs one hourly run (real Prefect, against
the session's test server) over HTTP from the shared replay exchange, killed with SIGKILL after a
random delay within the length of an uninterrupted run. The test process then reruns the same
hour and compares the data tables with an uninterrupted run's. `runs`, `fetch_log` and
`deliveries` are not compared: they name the runs, and a killed run leaves its own row behind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.flows.hourly import hourly
from hedgewatch.replay import ReplayExchange
from hedgewatch.storage.store import Store

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("HEDGEWATCH_CRASH_TRIALS", "15"))
SEED = 20220512
NOW = datetime(2022, 5, 12, 18, 5, tzinfo=UTC)  # the LUNA hedge is decoupling: alerts fire
HISTORY = datetime(2022, 5, 10, tzinfo=UTC)  # under three days: each trial is quick
LEVEL_RULE = """
[[alerts.rules]]
name = "luna-hedge-level"
kind = "hedge_decoupling"
subjects = ["luna-vs-btc-perp"]
window = "24h"
fire_above = -0.20
clear_below = -0.45
for_hours = 2
channels = ["outbox"]
"""
RUNNER = """
import sys, time
from hedgewatch.flows.hourly import hourly
from hedgewatch.flows.runtime import quiet_prefect

print("ready", flush=True)
sys.stdin.readline()
started = time.perf_counter()
with quiet_prefect():
    hourly(config_path=sys.argv[1])
print(f"done {time.perf_counter() - started:.3f}", flush=True)
"""


class Runner:
    """A subprocess that has imported everything and starts one run when told to."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def go(self) -> None:
        assert self.process.stdout is not None and self.process.stdin is not None
        assert self.process.stdout.readline().strip() == "ready"
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> float:
        out, _ = self.process.communicate(timeout=120)
        assert self.process.returncode == 0, out
        return float(out.split()[-1])

    def kill_after(self, delay: float) -> bool:
        """SIGKILL after `delay` seconds; True if the run was still going."""
        time.sleep(delay)
        alive = self.process.poll() is None
        if alive:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=30)
        return alive


def runs_left(database: Path) -> list[str]:
    if not database.exists():
        return []
    with Store.open(database, read_only=True) as store:
        tables = store.con.sql("SELECT table_name FROM duckdb_tables()").fetchall()
        if ("runs",) not in tables:  # killed before the first migration committed
            return ["no schema"]
        return [row[0] for row in store.con.sql("SELECT status FROM runs").fetchall()]


def test_a_run_killed_at_random_points_then_rerun_ends_identical(
    prefect_harness: None,
    replay_market: Any,
    small_config: Any,
    data_tables: Any,
    tmp_path: Path,
) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    rng = random.Random(SEED)
    candles, funding = replay_market
    outcomes: list[tuple[float, bool, list[str]]] = []
    with ReplayExchange(candles, funding, now=NOW) as exchange:

        def trial_config(name: str) -> Path:
            workdir = tmp_path / name
            workdir.mkdir()
            config = small_config(workdir, exchange.url, HISTORY)
            # The default rules need weeks of history; this level rule fires within the trial's
            # three days, so the outbox path runs too (the LUNA hedge decouples on 2022-05-12).
            config.write_text(config.read_text() + LEVEL_RULE)
            return config

        # The uninterrupted run, in a subprocess like the trials: the reference and the clock.
        reference = Runner(trial_config("reference"), env)
        reference.go()
        duration = reference.finish()
        expected = data_tables(reference.config.parent / "hedgewatch.duckdb")
        assert expected["alert_events"], "the reference run should fire alerts"

        runner = Runner(trial_config("trial-00"), env)
        for trial in range(TRIALS):
            delay = rng.uniform(0.0, duration)
            runner.go()
            interrupted = runner.kill_after(delay)
            config = runner.config
            if trial + 1 < TRIALS:  # warm up the next one while this one is checked
                runner = Runner(trial_config(f"trial-{trial + 1:02d}"), env)
            database = config.parent / "hedgewatch.duckdb"
            left = runs_left(database)
            rerun = hourly(config_path=str(config))
            assert rerun.status == "ok", f"trial {trial} (killed after {delay:.2f} s)"
            assert data_tables(database) == expected, f"trial {trial}: killed after {delay:.2f} s"
            outcomes.append((delay, interrupted, left))

    interrupted_runs = [o for o in outcomes if o[1]]
    mid_run = [o for o in interrupted_runs if "running" in o[2]]
    # Most kills land inside the run, and some of them after it had started writing.
    assert len(interrupted_runs) >= TRIALS // 2, outcomes
    assert mid_run, outcomes
    print(f"\nreference run {duration:.2f} s; kills (delay s, interrupted, runs left):")
    for outcome in outcomes:
        print(f"  {outcome[0]:.2f} {outcome[1]} {outcome[2]}")
