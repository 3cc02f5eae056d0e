"""Fixtures for the shell: one Prefect test harness per session, replay exchange wiring."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real `prefect server` on loopback for the session (its own home), waited for by polling
    its health endpoint with a generous deadline — never a start-up race on a busy machine."""
    from hedgewatch.flows.runtime import local_prefect_server, quiet_prefect

    home = tmp_path_factory.mktemp("prefect-server")
    with local_prefect_server(home) as api_url, quiet_prefect(api_url=api_url):
        yield


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# --- real delivery peers on loopback -----------------------------------------------------------


@dataclass
class Inbox:
    """Messages an aiosmtpd server on 127.0.0.1 accepted."""

    port: int = 0
    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 Message accepted"


@pytest.fixture()
def smtp_inbox() -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        inbox.port = int(sock.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@dataclass
class Webhook:
    """A local Slack-style webhook receiver; set `status` to make it fail."""

    url: str = ""
    status: int = 200
    payloads: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture()
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if hook.status == 200:
                hook.payloads.append(json.loads(body))
            self.send_response(hook.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/secret-token-xyz"
    try:
        yield hook
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# --- small replayed markets for whole-flow tests -----------------------------------------------


@pytest.fixture(scope="session")
def replay_market() -> tuple[Any, Any]:
    """The demo's Binance candles and funding, loaded once per session."""
    from hedgewatch.demo import demo_data_dir
    from hedgewatch.replay import load_candle_files, load_funding_files

    data = demo_data_dir()
    return (
        load_candle_files(sorted(data.glob("binance_*_1h_*.csv.gz"))),
        load_funding_files(sorted(data.glob("binance_funding_*.csv.gz"))),
    )


def write_small_config(
    workdir: Path,
    url: str,
    history_start: Any,
    *,
    channels: dict[str, dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> Path:
    """The demo config wired to `url`, backfilling only from `history_start` (a small dataset).

    `channels` are added and given to every rule; `sections` update top-level tables.
    """
    import tomllib

    import tomli_w

    from hedgewatch.demo import write_demo_config

    path = write_demo_config(workdir, url)
    config = tomllib.loads(path.read_text())
    config["fetch"]["history_start"] = history_start
    config["venues"][0]["max_attempts"] = 2
    if channels:
        config["channels"].update(channels)
        for rule in config["alerts"]["rules"]:
            rule["channels"] = ["outbox", *channels]
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(config))
    return path


@pytest.fixture()
def small_config() -> Any:
    return write_small_config


def rounded(value: Any, digits: int = 12) -> Any:
    """`value` with every float rounded to `digits` significant digits (also inside JSON text).

    Metrics computed from a different first hour can differ in the last bit or two (summation
    order); comparisons of whole databases use this so that only real differences count.
    """
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, tuple | list):
        return type(value)(rounded(v, digits) for v in value)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{"):
        try:
            return rounded(json.loads(value), digits)
        except ValueError:
            return value
    return value


DATA_TABLES = (
    "candles",
    "funding",
    "pair_correlations",
    "hedge_metrics",
    "basket_metrics",
    "alert_state",
    "alert_events",
    "cursors",
)


def read_tables(database: Path, names: tuple[str, ...] = DATA_TABLES) -> dict[str, Any]:
    """The data tables (not runs/fetch_log/deliveries, which name runs), floats `rounded`."""
    from hedgewatch.storage.store import Store

    with Store.open(database, read_only=True) as store:
        return {
            t: rounded(store.con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall()) for t in names
        }


@pytest.fixture()
def data_tables() -> Any:
    return read_tables


def _modules_after(*args: str) -> set[str]:
    """The modules a `hedgewatch ARGS` process has imported when the command returns."""
    script = (
        "import json, sys\n"
        "from hedgewatch.cli import main\n"
        f"sys.argv = ['hedgewatch', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.fixture()
def modules_after() -> Any:
    """`modules_after(*args)`: what a fresh `hedgewatch ARGS` process imported."""
    return _modules_after
