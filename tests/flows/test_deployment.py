"""prefect.yaml as an operator uses it: deploy → process work pool → worker → a completed run.

One end-to-end test against a real `prefect server` on loopback (started, polled for health and
stopped by `local_prefect_server`), driven through Prefect's own CLI in subprocesses. The worker
is told the config only through $HEDGEWATCH_CONFIG: the run resolves it when it starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.flows.runtime import QUIET_SERVER_ENV, local_prefect_server, stop_process
from hedgewatch.replay import ReplayExchange
from hedgewatch.storage.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
# Generous: on two busy cores a flow-run process needs a while to import Prefect and polars.
RUN_DEADLINE_S = 600.0


def prefect(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [*PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def api(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_prefect_yaml_deploys_and_a_process_worker_completes_a_run(
    tmp_path: Path, replay_market: tuple[Any, Any], small_config: Any
) -> None:
    candles, funding = replay_market
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "prefect.yaml", project / "prefect.yaml")
    now = datetime(2022, 5, 3, 0, 5, tzinfo=UTC)
    with (
        ReplayExchange(candles, funding, now=now) as exchange,
        local_prefect_server(tmp_path / "prefect-home") as api_url,
    ):
        (tmp_path / "elsewhere").mkdir()
        config = small_config(tmp_path / "elsewhere", exchange.url, "2022-05-01T00:00:00Z")
        env = {
            **os.environ,
            **QUIET_SERVER_ENV,
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(tmp_path / "prefect-client"),
            "HEDGEWATCH_CONFIG": str(config),
        }
        prefect(["work-pool", "create", "hedgewatch", "--type", "process"], env, project)
        prefect(["--no-prompt", "deploy", "--name", "hourly-worker"], env, project)
        deployment = api(api_url, "/deployments/name/hedgewatch-hourly/hourly-worker")
        assert deployment["entrypoint"] == "hedgewatch.flows.hourly:hourly"
        assert deployment["parameters"] == {}
        run = api(api_url, f"/deployments/{deployment['id']}/create_flow_run", {})
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "hedgewatch", "--type", "process"],
            env=env,
            cwd=tmp_path,
            stdout=(tmp_path / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            state = wait_for_final_state(api_url, run["id"], worker)
        finally:
            stop_process(worker)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert state["type"] == "COMPLETED", f"run ended {state}:\n{log[-4000:]}"

    database = tmp_path / "elsewhere" / "hedgewatch.duckdb"
    with Store.open(database, read_only=True) as store:
        [(status, candles_stored)] = store.con.sql(
            "SELECT status, (SELECT count(*) FROM candles) FROM runs"
        ).fetchall()
    assert status == "ok"
    assert candles_stored > 0


def wait_for_final_state(api_url: str, run_id: str, worker: subprocess.Popen[Any]) -> Any:
    """Poll the run's state until it is final (or the worker dies, or the deadline passes)."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    state: Any = None
    while time.monotonic() < deadline:
        state = api(api_url, f"/flow_runs/{run_id}")["state"]
        if state and state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return state
        assert worker.poll() is None, "the worker exited before the run finished"
        time.sleep(1.0)
    return state
