"""`hedgewatch serve` as an operator runs it: a process that serves the hourly deployment and,
with --metrics-port, Prometheus gauges, and that stops cleanly on SIGINT (Ctrl-C) and SIGTERM.

Each test starts `hedgewatch serve` in a subprocess against the session's Prefect server, waits
until the runner polls for its runs (the deployment turns READY on the server), signals it and
waits for the process to exit. Every wait is on the process or the server, with a deadline far
above what the step needs, so a slow machine makes it slower, never red.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hedgewatch.flows.hourly import hourly_now
from hedgewatch.flows.runtime import QUIET_SERVER_ENV, configured_api_url, free_port, stop_process
from hedgewatch.replay import ReplayExchange

pytestmark = pytest.mark.slow

HEDGEWATCH = str(Path(sys.executable).with_name("hedgewatch"))
DEADLINE_S = 300.0  # far above what any step takes; only a broken serve reaches it
NEVER = "0 0 1 1 *"  # a cron that schedules no run while a test is running


class Lines:
    """A text stream read on a thread, so a test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, process: subprocess.Popen[str]) -> str:
        deadline = time.monotonic() + DEADLINE_S
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                assert process.poll() is None, f"serve exited early:\n{self.text()}"
                assert time.monotonic() < deadline, f"no {text!r} from serve:\n{self.text()}"
                self._changed.wait(timeout=1.0)

    def text(self) -> str:
        return "".join(self.lines)

    def finish(self) -> str:
        self._thread.join(timeout=DEADLINE_S)
        return "".join(self.lines)


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture()
def served_config(tmp_path: Path, small_config: Any) -> Path:
    """The demo config, its venue on a port nothing listens on (no run is due while serving)."""
    (tmp_path / "work").mkdir()
    return Path(small_config(tmp_path / "work", "http://127.0.0.1:9", "2022-05-01T00:00:00Z"))


def start_serve(
    config: Path, api_url: str, name: str, extra: list[str], home: Path
) -> tuple[subprocess.Popen[str], Lines, Lines]:
    env = {**os.environ, **QUIET_SERVER_ENV, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home)}
    process = subprocess.Popen(
        [HEDGEWATCH, "serve", "-c", str(config), "--name", name, "--cron", NEVER, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    return process, Lines(process.stdout), Lines(process.stderr)


def wait_until_polled(api_url: str, name: str, process: subprocess.Popen[str]) -> Any:
    """The deployment once the runner has asked the server for its runs (status READY)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            deployment = api(api_url, f"/deployments/name/hedgewatch-hourly/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            deployment = None
        if deployment is not None and deployment["status"] == "READY":
            return deployment
        assert process.poll() is None, "serve exited before its runner polled the server"
        assert time.monotonic() < deadline, f"deployment {name} never polled: {deployment}"
        time.sleep(0.5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_and_pauses_its_schedule_on_a_signal(
    prefect_harness: None, served_config: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    api_url = configured_api_url()
    assert api_url is not None
    name = f"serve-{signum.name.lower()}"
    process, out, err = start_serve(served_config, api_url, name, [], tmp_path / "home")
    try:
        out.wait_for("Ctrl-C (or SIGTERM) stops", process)
        deployment = wait_until_polled(api_url, name, process)
        assert deployment["paused"] is False
        os.killpg(process.pid, signum)  # as a terminal's Ctrl-C or a service manager does
        code = process.wait(timeout=DEADLINE_S)
    finally:
        stop_process(process)
    stdout, stderr = out.finish(), err.finish()
    assert code == 0, f"exit {code}\n{stdout}\n{stderr}"
    assert "never awaited" not in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert "stopped; the schedule is paused" in stdout
    assert api(api_url, f"/deployments/{deployment['id']}")["paused"] is True


def test_serve_metrics_port_serves_prometheus_text_until_stopped(
    prefect_harness: None, replay_market: tuple[Any, Any], small_config: Any, tmp_path: Path
) -> None:
    api_url = configured_api_url()
    assert api_url is not None
    candles, funding = replay_market
    with ReplayExchange(candles, funding, now=datetime(2022, 5, 3, 0, 5, tzinfo=UTC)) as exchange:
        config = small_config(tmp_path, exchange.url, "2022-05-01T00:00:00Z")
        summary = hourly_now(str(config))  # one real run: the metrics the endpoint will show
    assert summary.status == "ok", summary.failures
    port = free_port()
    process, out, err = start_serve(
        config, api_url, "serve-metrics", ["--metrics-port", str(port)], tmp_path / "home"
    )
    try:
        out.wait_for(f"Prometheus gauges at http://127.0.0.1:{port}/metrics", process)
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60)
        out.wait_for("Ctrl-C (or SIGTERM) stops", process)  # signals are handled from here on
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=DEADLINE_S)
    finally:
        stop_process(process)
    assert code == 0, f"exit {code}\n{out.finish()}\n{err.finish()}"
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        assert family.type == "gauge", family
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    assert [s.value for s in samples["hedgewatch_exporter_up"]] == [1.0]
    # The run's metrics: every hedge of the config per window, correlations where known.
    hedges = {s.labels["hedge"] for s in samples["hedgewatch_hedge_held_ratio"]}
    assert hedges == {"luna-vs-btc-perp", "btc-vs-eth-perp", "btc-vs-btcdown"}
    correlations = [s.value for s in samples["hedgewatch_hedge_correlation"]]
    assert correlations and all(-1.0 <= value <= 1.0 for value in correlations)
    assert samples["hedgewatch_basket_avg_corr"]
    assert [s.value for s in samples["hedgewatch_runs"]] == [1.0]
    with pytest.raises(httpx.TransportError):  # and the endpoint went away with the process
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
