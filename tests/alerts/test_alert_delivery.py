"""Delivery against real peers on loopback: an aiosmtpd server, an HTTP webhook receiver, files."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import TypeAdapter, ValidationError

from hedgewatch.alerts.render import Rendered, render
from hedgewatch.alerts.state import AlertEvent
from hedgewatch.outbox.channels import (
    ChannelSettings,
    DeliveryError,
    FileChannel,
    SlackChannel,
    SmtpChannel,
    deliver,
    file_name,
    write_file_rendering,
)

PASSWORD = "hunter2-Sup3rSecret"
WEBHOOK_TOKEN = "T0000/B0000/XXXXsecretTOKENxxxx"
TS = datetime(2024, 8, 5, 14, tzinfo=UTC)


def alert(subject: str = "btc-eth") -> AlertEvent:
    return AlertEvent(
        rule="decouple",
        subject=subject,
        ts=TS,
        kind="firing",
        value=0.21,
        threshold=0.0,
        severity="critical",
        episode=1,
        context={"metric": "correlation", "window": "24h", "n_obs": 23, "beta": 0.1},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- SMTP -------------------------------------------------------------------------------------


@dataclass
class Inbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    if isinstance(data, LoginPassword) and data.password == PASSWORD.encode():
        return AuthResult(success=True)
    # handled=False lets aiosmtpd answer 535; handled=True would leave the client waiting.
    return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_channel(port: int, **overrides: Any) -> SmtpChannel:
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "alerts",
        "password": PASSWORD,
        "sender": "hedgewatch@desk.example",
        "recipients": ["risk@desk.example", "trader@desk.example"],
        "security": "none",
        "allow_plaintext_auth": True,  # loopback test server without TLS
        "timeout_s": 5,
    }
    fields.update(overrides)
    return SmtpChannel.model_validate(fields)


def test_smtp_sends_multipart_text_and_html(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    rendered = render([alert("<script>x</script>")], "email")
    deliver(rendered, smtp_channel(port), idempotency_key="digest|2024-08-05T14")

    [(mail_from, rcpt_tos, raw)] = inbox.messages
    assert mail_from == "hedgewatch@desk.example"
    assert rcpt_tos == ["risk@desk.example", "trader@desk.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    # The stdlib may fold a long subject onto a continuation line; unfolding leaves a leading space.
    assert str(msg["Subject"]).strip() == rendered.subject
    assert msg["To"] == "risk@desk.example, trader@desk.example"
    assert msg.get_content_type() == "multipart/alternative"
    assert str(msg["Message-ID"]).endswith("@desk.example>")
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    # SMTP carries CRLF line endings.
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert "&lt;script&gt;x&lt;/script&gt;" in html.get_content()


def test_smtp_message_id_follows_the_idempotency_key(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    rendered = render([alert()], "email")
    for key in ("k1", "k1", "k2"):
        deliver(rendered, smtp_channel(port), idempotency_key=key)
    ids = [email.message_from_bytes(m[2])["Message-ID"] for m in inbox.messages]
    assert ids[0] == ids[1] != ids[2]


def test_smtp_without_html_sends_plain_text(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    deliver(Rendered(subject="s", text="only text\n"), smtp_channel(port), idempotency_key="k")
    msg = email.message_from_bytes(inbox.messages[0][2], policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"


def test_smtp_auth_failure_names_the_user_but_not_the_password(
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    wrong = "Wr0ng-" + PASSWORD
    with pytest.raises(DeliveryError) as caught:
        deliver(render([alert()], "email"), smtp_channel(port, password=wrong), idempotency_key="k")
    error = caught.value
    assert "authentication failed for user 'alerts'" in str(error)
    assert "535" in str(error)
    assert not error.retryable
    assert_no_secret(error, wrong)
    assert inbox.messages == []


def test_smtp_refused_connection_is_a_retryable_delivery_error() -> None:
    with pytest.raises(DeliveryError, match=r"SMTP 127\.0\.0\.1:\d+") as caught:
        deliver(render([alert()], "email"), smtp_channel(free_port()), idempotency_key="k")
    assert caught.value.retryable
    assert_no_secret(caught.value, PASSWORD)


def test_smtp_starttls_against_a_server_without_it_fails_clearly(
    smtp_server: tuple[Inbox, int],
) -> None:
    _, port = smtp_server
    channel = smtp_channel(port, security="starttls")
    with pytest.raises(DeliveryError, match="STARTTLS") as caught:
        deliver(render([alert()], "email"), channel, idempotency_key="k")
    assert not caught.value.retryable


def test_smtp_username_without_password_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="username and password must be given together"):
        smtp_channel(25, password=None)


# --- Slack ------------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    status: int = 200
    body: str = "ok"


def slack_channel(url: str, **overrides: Any) -> SlackChannel:
    return SlackChannel.model_validate({"webhook_url": url, **overrides})


@pytest.fixture
def slack_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            payload = json.loads(self.rfile.read(length))
            receiver.requests.append((self.path, self.headers["Content-Type"], payload))
            body = receiver.body.encode()
            self.send_response(receiver.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/services/{WEBHOOK_TOKEN}"
    try:
        yield receiver
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_slack_posts_the_block_kit_payload(slack_receiver: Receiver) -> None:
    rendered = render([alert("<!channel>")], "slack")
    deliver(rendered, slack_channel(slack_receiver.url), idempotency_key="k")
    [(path, content_type, payload)] = slack_receiver.requests
    assert path == f"/services/{WEBHOOK_TOKEN}"
    assert content_type == "application/json"
    assert payload == rendered.payload
    assert "<!channel>" not in json.dumps(payload)


def test_slack_server_error_is_retryable_and_hides_the_webhook(slack_receiver: Receiver) -> None:
    slack_receiver.status = 500
    # A misbehaving server echoing the request path must not leak the token through our error.
    slack_receiver.body = f"internal error while handling /services/{WEBHOOK_TOKEN}"
    channel = slack_channel(slack_receiver.url)
    with pytest.raises(DeliveryError) as caught:
        deliver(render([alert()], "slack"), channel, idempotency_key="k")
    error = caught.value
    assert (error.status, error.retryable) == (500, True)
    assert str(error).startswith("Slack webhook answered HTTP 500: internal error while handling")
    assert_no_secret(error, slack_receiver.url, WEBHOOK_TOKEN)


def test_slack_client_error_is_not_retryable(slack_receiver: Receiver) -> None:
    slack_receiver.status = 404
    slack_receiver.body = "no_service"
    channel = slack_channel(slack_receiver.url)
    with pytest.raises(DeliveryError, match="HTTP 404: no_service") as caught:
        deliver(render([alert()], "slack"), channel, idempotency_key="k")
    assert not caught.value.retryable


def test_slack_unreachable_webhook_hides_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/{WEBHOOK_TOKEN}"
    channel = slack_channel(url, timeout_s=2)
    with pytest.raises(DeliveryError, match="Slack webhook: ConnectError") as caught:
        deliver(render([alert()], "slack"), channel, idempotency_key="k")
    assert caught.value.retryable
    assert_no_secret(caught.value, url, WEBHOOK_TOKEN)


def test_slack_needs_a_slack_rendering() -> None:
    channel = slack_channel("https://hooks.invalid/x")
    with pytest.raises(ValueError, match="channel_kind='slack'"):
        deliver(render([alert()], "email"), channel, idempotency_key="k")


# --- File -------------------------------------------------------------------------------------


def test_file_redelivery_overwrites_instead_of_duplicating(tmp_path: Path) -> None:
    channel = FileChannel(dir=tmp_path / "outbox")
    key = "digest|file|2024-08-05T14:00:00+00:00"
    deliver(Rendered(subject="s", text="first\n"), channel, idempotency_key=key)
    deliver(Rendered(subject="s", text="second\n"), channel, idempotency_key=key)
    deliver(Rendered(subject="s", text="other\n"), channel, idempotency_key=key + "-b")
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == sorted([file_name(key), file_name(key + "-b")])
    assert (tmp_path / "outbox" / file_name(key)).read_text() == "second\n"


def test_every_rendering_can_be_written_to_the_file_channel(tmp_path: Path) -> None:
    channel = FileChannel(dir=tmp_path)
    written: dict[str, list[Path]] = {}
    for kind in ("file", "email", "slack"):
        rendered = render([alert("<!channel>")], kind)
        written[kind] = write_file_rendering(rendered, channel, "key-1", kind)
        assert write_file_rendering(rendered, channel, "key-1", kind) == written[kind]
    names = sorted(p.name.removeprefix(file_name("key-1", "")) for p in tmp_path.iterdir())
    assert names == [".email.html", ".email.txt", ".md", ".slack.json"]
    payload = json.loads(written["slack"][0].read_text())
    assert payload == render([alert("<!channel>")], "slack").payload
    assert written["email"][0].read_text().startswith("Subject: [hedgewatch] 1 firing")


def test_file_names_are_safe_and_distinct_for_similar_keys() -> None:
    names = {file_name("a|b"), file_name("a/b"), file_name("a b")}
    assert len(names) == 3
    assert all("/" not in n and "|" not in n for n in names)
    assert file_name("../../etc/passwd").startswith("etc_passwd-")


def test_file_write_failure_is_a_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(DeliveryError, match="file channel: cannot write") as caught:
        deliver(Rendered(subject="s", text="t"), FileChannel(dir=blocker), idempotency_key="k")
    assert caught.value.retryable


# --- Settings and secrets ---------------------------------------------------------------------


def test_channels_are_discriminated_by_kind() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(ChannelSettings)
    assert isinstance(adapter.validate_python({"kind": "file", "dir": "out"}), FileChannel)
    slack = adapter.validate_python({"kind": "slack", "webhook_url": "https://h.invalid/x"})
    assert isinstance(slack, SlackChannel)
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        adapter.validate_python({"kind": "pager"})


def test_non_http_webhook_is_refused_without_echoing_it() -> None:
    channel = slack_channel(f"ftp://{WEBHOOK_TOKEN}")
    with pytest.raises(DeliveryError, match=r"must be an http\(s\) URL") as caught:
        deliver(render([alert()], "slack"), channel, idempotency_key="k")
    assert not caught.value.retryable
    assert_no_secret(caught.value, WEBHOOK_TOKEN)


def test_password_without_username_is_refused_without_echoing_it() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(ChannelSettings)
    bad = {"kind": "smtp", "host": "h", "sender": "a@b", "recipients": ["x"], "password": PASSWORD}
    with pytest.raises(
        ValidationError, match="username and password must be given together"
    ) as caught:
        adapter.validate_python(bad)
    assert PASSWORD not in str(caught.value)


def test_no_secret_appears_in_any_error_rendering_or_settings_text(
    smtp_server: tuple[Inbox, int], slack_receiver: Receiver
) -> None:
    _, port = smtp_server
    wrong_password = PASSWORD[::-1]
    slack_receiver.status = 503
    slack_receiver.body = f"down; you called {slack_receiver.url}"
    dead_url = f"http://127.0.0.1:{free_port()}/services/{WEBHOOK_TOKEN}"
    attempts: list[tuple[Rendered, Any]] = [
        (render([alert()], "email"), smtp_channel(port, password=wrong_password)),
        (render([alert()], "email"), smtp_channel(free_port())),
        (render([alert()], "email"), smtp_channel(port, security="starttls")),
        (render([alert()], "slack"), slack_channel(slack_receiver.url)),
        (render([alert()], "slack"), slack_channel(dead_url, timeout_s=2)),
    ]
    texts: list[str] = []
    for rendered, channel in attempts:
        with pytest.raises(DeliveryError) as caught:
            deliver(rendered, channel, idempotency_key="k")
        texts += [str(caught.value), "".join(traceback.format_exception(caught.value))]
        texts += [repr(channel), str(channel), channel.model_dump_json()]
    for bad in (
        {"kind": "slack", "webhook_url": 42},
        {"kind": "smtp", "host": "h", "sender": "a@b", "recipients": [], "password": PASSWORD},
        {"kind": "smtp", "host": "h", "sender": "a@b", "recipients": ["x"], "password": PASSWORD},
    ):
        with pytest.raises(ValidationError) as invalid:
            TypeAdapter(ChannelSettings).validate_python(bad)
        texts.append(str(invalid.value))
    for kind in ("email", "slack", "file"):
        rendered = render([alert()], kind, context={"channel": attempts[0][1]})
        texts += [
            rendered.subject,
            rendered.text,
            rendered.html or "",
            json.dumps(rendered.payload),
        ]
    assert len(texts) == 5 * 5 + 3 + 3 * 4
    for text in texts:
        for secret in (PASSWORD, wrong_password, WEBHOOK_TOKEN, slack_receiver.url, dead_url):
            assert secret not in text


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    """Neither the message, the args nor the printed traceback (with any chained cause) leaks."""
    printed = "".join(traceback.format_exception(error))
    for secret in secrets:
        assert secret not in str(error)
        assert secret not in repr(error.args)
        assert secret not in printed


def test_plaintext_smtp_auth_is_refused_unless_allowed(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    with pytest.raises(ValidationError, match="plaintext"):
        smtp_channel(port, allow_plaintext_auth=False)
    # Built around the check (as an older config might be): the send refuses before AUTH.
    channel = smtp_channel(port).model_copy(update={"allow_plaintext_auth": False})
    with pytest.raises(DeliveryError, match="plaintext") as caught:
        deliver(render([alert()], "email"), channel, idempotency_key="k")
    assert not caught.value.retryable and not inbox.messages
    assert PASSWORD not in str(caught.value)
    smtp_channel(port, security="starttls", allow_plaintext_auth=False)  # fine with TLS


def test_echoed_authorization_and_url_credentials_are_redacted() -> None:
    from hedgewatch.outbox.channels import redact

    echoed = (
        'bad request: {"headers": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}} '
        "Authorization: Bearer abc.def.ghi, proxy-authorization=Token t0k3n; "
        "from https://desk:s3cr3t@hooks.example.test/path"
    )
    clean = redact(echoed, [])
    for leaked in ("dXNlcjpwYXNzd29yZA==", "abc.def.ghi", "t0k3n", "s3cr3t", "desk:"):
        assert leaked not in clean
    assert "hooks.example.test/path" in clean and "[redacted]" in clean


def test_a_webhook_that_answers_too_late_is_not_sent_again_in_the_run() -> None:
    posts: list[bytes] = []
    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            release.wait(10)  # answers after the client gave up
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        channel = TypeAdapter(ChannelSettings).validate_python(
            {
                "kind": "webhook",
                "url": f"http://127.0.0.1:{server.server_address[1]}/hook",
                "timeout_s": 0.3,
            }
        )
        with pytest.raises(DeliveryError) as caught:
            deliver(render([alert()], "webhook"), channel, idempotency_key="k1")
        assert caught.value.sent and caught.value.retryable
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert len(posts) == 1


def test_send_with_retries_stops_after_a_send_that_went_unanswered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from hedgewatch.outbox import deliver as deliver_module

    calls: list[int] = []

    def unanswered(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise DeliveryError("sent, no answer in time", channel="webhook", retryable=True, sent=True)

    monkeypatch.setattr(deliver_module, "send", unanswered)
    settings = SimpleNamespace(alerts=SimpleNamespace(delivery_attempts=3, delivery_backoff_s=0.0))
    error, tries = deliver_module.send_with_retries(
        SimpleNamespace(),
        SimpleNamespace(),
        settings,
        lambda s: None,  # type: ignore[arg-type]
    )
    assert (tries, len(calls)) == (1, 1) and error is not None
