"""SMTP over real TLS (STARTTLS and implicit SSL) with a certificate made here, and the generic
JSON webhook against a local receiver."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from hedgewatch.alerts.render import render
from hedgewatch.alerts.state import AlertEvent
from hedgewatch.outbox.channels import DeliveryError, SmtpChannel, WebhookChannel, deliver

TS = datetime(2022, 5, 11, 1, tzinfo=UTC)
TOKEN = "whk-sEcReT-token-123456"


def alert() -> AlertEvent:
    return AlertEvent(
        rule="correlation-spike",
        subject="<script>majors</script>",
        ts=TS,
        kind="firing",
        value=0.931,
        threshold=0.93,
        severity="warning",
        episode=1,
        context={"metric": "avg_corr", "window": "24h", "n_obs": 24, "history": [0.8, 0.9, 0.93]},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with `cryptography`."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Inbox:
    messages: list[bytes] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        self.tls.append(session.ssl is not None)
        return "250 Message accepted"


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context


@pytest.fixture(params=["starttls", "ssl"])
def tls_server(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[str, Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    context = server_context(certificate)
    if request.param == "starttls":
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
        )
    else:
        controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        yield request.param, inbox, port
    finally:
        controller.stop()


def channel(port: int, security: str, ca_file: Path | None) -> SmtpChannel:
    return SmtpChannel.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "sender": "hedgewatch@desk.example",
            "recipients": ["risk@desk.example"],
            "security": security,
            "ca_file": ca_file,
            "timeout_s": 5,
        }
    )


def test_smtp_delivers_over_verified_tls(
    tls_server: tuple[str, Inbox, int], certificate: tuple[Path, Path]
) -> None:
    security, inbox, port = tls_server
    deliver(
        render([alert()], "email"), channel(port, security, certificate[0]), idempotency_key="k1"
    )
    [raw] = inbox.messages
    if security == "starttls":
        assert inbox.tls == [True]  # implicit SSL wraps the socket below aiosmtpd's session
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;majors&lt;/script&gt;" in html and "<script>" not in html


def test_smtp_refuses_an_untrusted_certificate(tls_server: tuple[str, Inbox, int]) -> None:
    security, inbox, port = tls_server
    with pytest.raises(DeliveryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        deliver(render([alert()], "email"), channel(port, security, None), idempotency_key="k2")
    assert inbox.messages == []


@dataclass
class Receiver:
    url: str = ""
    status: int = 200
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append((dict(self.headers), body))
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/{TOKEN}?sig={TOKEN}"
    try:
        yield state
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_webhook_posts_json_with_the_idempotency_key(receiver: Receiver) -> None:
    hook = WebhookChannel.model_validate({"kind": "webhook", "url": receiver.url})
    deliver(render([alert()], "webhook"), hook, idempotency_key="abc|hook")
    [(headers, body)] = receiver.requests
    assert headers["Idempotency-Key"] == "abc|hook"
    assert body["key"] == "abc|hook"
    [event] = body["events"]
    assert (event["rule"], event["subject"], event["kind"]) == (
        "correlation-spike",
        "<script>majors</script>",
        "firing",
    )
    assert event["value"] == pytest.approx(0.931)
    assert event["sparkline"] == "▁▆█"
    assert "avg_corr" in body["text"]


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (400, False)])
def test_webhook_errors_say_if_retrying_helps_and_hide_the_url(
    receiver: Receiver, status: int, retryable: bool
) -> None:
    receiver.status = status
    hook = WebhookChannel.model_validate({"kind": "webhook", "url": receiver.url})
    with pytest.raises(DeliveryError) as caught:
        deliver(render([alert()], "webhook"), hook, idempotency_key="abc|hook")
    assert caught.value.retryable is retryable
    assert str(status) in str(caught.value)
    assert TOKEN not in str(caught.value)
