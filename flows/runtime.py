"""How hedgewatch runs Prefect: quiet one-off runs, a local server it owns, a clean `serve`.

Prefect 3.8 runs a flow only against an API. With no `PREFECT_API_URL` it would start a
temporary ("ephemeral") server inside the first flow call and give up after
`PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` (20 s) — on a busy machine that start takes
longer, and the run crashes. So hedgewatch never relies on it: `hedgewatch run` without a
server runs the same steps as plain functions, and `hedgewatch demo` starts a `prefect server`
of its own on loopback, waits for its health endpoint (polling, with a generous deadline), runs
every flow run against it and stops it (benchmarks/README.md has the measurements).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

# What a Prefect process started by hedgewatch gets: no telemetry, no UI build, loopback only.
QUIET_SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
}
SERVER_READY_TIMEOUT_S = 300.0


def configured_api_url() -> str | None:
    """PREFECT_API_URL as Prefect sees it (environment, profile or temporary settings)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def api_configured() -> bool:
    """Whether Prefect has an API to talk to."""
    return configured_api_url() is not None


@contextmanager
def quiet_prefect(log_level: str = "WARNING", api_url: str | None = None) -> Iterator[None]:
    """Run flows without per-run heartbeats, with Prefect's own logs at `log_level` and, when
    given, against `api_url`."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_LEVEL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    updates: dict[Any, Any] = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_LOGGING_LEVEL: log_level,
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    if api_url is not None:
        updates[PREFECT_API_URL] = api_url
    # Prefect's loggers took their level when Prefect was imported; set it for this block too.
    prefect_logger = logging.getLogger("prefect")
    previous = prefect_logger.level
    prefect_logger.setLevel(log_level)
    try:
        with temporary_settings(updates=updates):
            yield
    finally:
        prefect_logger.setLevel(previous)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    api_url: str,
    deadline_s: float,
    alive: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll `api_url`/health until it answers 200; returns the seconds waited. Raises
    RuntimeError when `alive()` turns false or the deadline passes."""
    started = time.monotonic()
    delay = 0.1
    while True:
        try:
            with urllib.request.urlopen(api_url + "/health", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        if not alive():
            raise RuntimeError("the Prefect server exited before it became healthy")
        if time.monotonic() - started > deadline_s:
            raise RuntimeError(f"the Prefect server was not healthy after {deadline_s:.0f} s")
        sleep(delay)
        delay = min(delay * 1.5, 1.0)


@contextmanager
def local_prefect_server(
    home: Path, *, ready_timeout_s: float = SERVER_READY_TIMEOUT_S, port: int | None = None
) -> Iterator[str]:
    """A `prefect server` on 127.0.0.1 owned by the caller (its database in `home`): started,
    waited for by polling its health endpoint, and stopped on exit. Yields its API URL."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **QUIET_SERVER_ENV, "PREFECT_HOME": str(home.resolve())}
    env.pop("PREFECT_API_URL", None)
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_until_healthy(api_url, ready_timeout_s, alive=lambda: process.poll() is None)
        except RuntimeError as exc:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; its log ({log_path}) ends:\n{tail}") from None
        yield api_url
    finally:
        flush_prefect_logs()
        stop_process(process)


def flush_prefect_logs() -> None:
    """Send the flow runs' buffered log lines to the server while it is still there."""
    from prefect.logging.handlers import APILogHandler

    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, APILogHandler):
                try:
                    handler.flush()
                except Exception:  # nothing buffered, or Prefect's log worker is gone
                    return


def stop_process(process: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within `grace_s`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def serve_until_signalled(deployment: RunnerDeployment) -> None:
    """Serve `deployment` (scheduled runs in subprocesses) until SIGINT or SIGTERM, then stop the
    runner, let it pause the schedule, and return."""
    asyncio.run(_serve(deployment))


async def _serve(deployment: RunnerDeployment) -> None:
    from prefect.runner import Runner

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    runner = Runner(pause_on_shutdown=True, limit=None)

    def stop_soon(*_: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    # Ours from the start (a signal may come while the deployment registers). Runner.start
    # installs its own SIGTERM handler, which cannot await the runner's stop: it gets ours.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_soon)
    runner.handle_sigterm = stop_soon  # type: ignore[method-assign]
    serving: asyncio.Task[None] | None = None
    waiting = asyncio.create_task(stop.wait())
    try:
        await runner.aadd_deployment(deployment)
        if stop.is_set():
            return
        serving = asyncio.create_task(runner.start(webserver=False))
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if serving is not None and not serving.done():
            if runner.started:
                await runner.astop()
            else:
                serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        waiting.cancel()
