"""Fixtures for the shell: one Prefect test harness per session, replay exchange wiring."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real local Prefect server (its own test harness) in a throw-away PREFECT_HOME."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.runtime import quiet_prefect

    with prefect_test_harness(server_startup_timeout=60), quiet_prefect():
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
