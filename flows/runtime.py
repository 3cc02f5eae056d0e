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
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


# A server only the demo talks to needs none of Prefect's background loops but the one that
# records task runs; these are switched off for it (`local_prefect_server(lean=True)`).
LEAN_SERVER_ENV = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in (
        "SCHEDULER",
        "LATE_RUNS",
        "FOREMAN",
        "REPOSSESSOR",
        "PAUSE_EXPIRATIONS",
        "CANCELLATION_CLEANUP",
        "CLEANUP_RECONCILER",
        "TRIGGERS",
        "EVENT_PERSISTER",
    )
}


@dataclass
class PrefectServerProcess:
    """A `prefect server` process started by `start_prefect_server`: not yet known to be up."""

    process: subprocess.Popen[Any]
    api_url: str
    log_path: Path
    template: Path | None = None
    started: float = field(default_factory=time.monotonic)

    def wait_ready(self, deadline_s: float = SERVER_READY_TIMEOUT_S) -> float:
        """Poll the health endpoint until it answers; returns the seconds since the start.
        Raises RuntimeError (with the end of the server's log) if the server exits first or
        the deadline passes. A new database it migrated is kept as the template, if one is named."""
        try:
            wait_until_healthy(
                self.api_url,
                max(0.0, deadline_s - (time.monotonic() - self.started)),
                alive=lambda: self.process.poll() is None,
            )
        except RuntimeError as exc:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; its log ({self.log_path}) ends:\n{tail}") from None
        if self.template is not None and not self.template.exists():
            keep_template(self.log_path.parent / "prefect.db", self.template)
        return time.monotonic() - self.started

    def stop(self) -> None:
        flush_prefect_logs()
        stop_process(self.process)


def database_template(cache: Path) -> Path:
    """Where a migrated, empty Prefect database for the installed Prefect version is kept."""
    import prefect

    return cache / f"prefect-{prefect.__version__}.db"


def keep_template(database: Path, template: Path) -> None:
    """Copy the server's freshly migrated database (consistently, while it runs) to `template`."""
    template.parent.mkdir(parents=True, exist_ok=True)
    partial = template.with_name(f".{template.name}.{os.getpid()}")
    try:
        with (
            contextlib.closing(sqlite3.connect(database)) as source,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            source.backup(copy)
        os.replace(partial, template)
    except (OSError, sqlite3.Error) as exc:  # only a cache: the next start migrates again
        logging.getLogger(__name__).warning("Prefect database template not kept: %s", exc)
        partial.unlink(missing_ok=True)


def start_prefect_server(
    home: Path, *, port: int | None = None, lean: bool = False, template_cache: Path | None = None
) -> PrefectServerProcess:
    """Start `prefect server` on 127.0.0.1 with its database in `home`, without waiting for it.

    `lean`: only the services a caller that just runs flows needs (no scheduler, no late-run or
    heartbeat loops, no event history). `template_cache`: a folder holding a migrated empty
    database per Prefect version; when there is one, the server starts from a copy of it
    instead of running every migration on a new database (and keeps one when there is not).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **QUIET_SERVER_ENV, "PREFECT_HOME": str(home.resolve())}
    env.pop("PREFECT_API_URL", None)
    if lean:
        env.update(LEAN_SERVER_ENV)
    template = database_template(template_cache) if template_cache is not None else None
    if template is not None and template.exists():
        shutil.copyfile(template, home / "prefect.db")
        env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "false"  # the template has them
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
    return PrefectServerProcess(process, api_url, log_path, template)


@contextmanager
def prefect_server(
    home: Path, *, port: int | None = None, lean: bool = False, template_cache: Path | None = None
) -> Iterator[PrefectServerProcess]:
    """`start_prefect_server`, stopped on exit; the caller waits for it (`wait_ready`) when it
    needs it, so it can do other work while the server starts."""
    server = start_prefect_server(home, port=port, lean=lean, template_cache=template_cache)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def local_prefect_server(
    home: Path, *, ready_timeout_s: float = SERVER_READY_TIMEOUT_S, port: int | None = None
) -> Iterator[str]:
    """A `prefect server` on 127.0.0.1 owned by the caller (its database in `home`): started,
    waited for by polling its health endpoint, and stopped on exit. Yields its API URL."""
    with prefect_server(home, port=port) as server:
        server.wait_ready(ready_timeout_s)
        yield server.api_url


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


def serve_until_signalled(
    deployment: RunnerDeployment, on_ready: Callable[[], None] = lambda: None
) -> None:
    """Serve `deployment` (scheduled runs in subprocesses) until SIGINT or SIGTERM, then stop the
    runner, let it pause the schedule, and return. `on_ready` is called once both signals are
    handled here (before, a Ctrl-C would still end the process with a traceback)."""
    asyncio.run(_serve(deployment, on_ready))


async def _serve(deployment: RunnerDeployment, on_ready: Callable[[], None]) -> None:
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
    on_ready()
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
