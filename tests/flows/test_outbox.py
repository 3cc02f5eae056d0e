"""The outbox against real peers: down then up, killed mid-send, silences, pipeline failures,
secrets nowhere, and the alerts CLI."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from hedgewatch.alerts.state import AlertEvent
from hedgewatch.cli import app
from hedgewatch.outbox.deliver import deliver_outbox
from hedgewatch.outbox.failure import notify_pipeline_failure
from hedgewatch.outbox.queue import queue_events
from hedgewatch.settings import Settings, load_settings
from hedgewatch.storage.store import Store

TS = datetime(2022, 5, 11, 1, tzinfo=UTC)
TOKEN = "hook-S3cret-t0ken-abcdef"
PASSWORD = "smtp-Pa55word-zyxw"
ROOT = Path(__file__).resolve().parents[2]


def event(subject: str = "majors", hour: int = 0) -> AlertEvent:
    return AlertEvent(
        rule="spike",
        subject=subject,
        ts=TS + timedelta(hours=hour),
        kind="firing",
        value=0.95,
        threshold=0.93,
        severity="warning",
        episode=1,
        context={"metric": "avg_corr", "window": "24h", "n_obs": 24},
    )


def write_config(folder: Path, channels: str, rule_channels: list[str]) -> Path:
    config = folder / "hedgewatch.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [storage]
            database = "hw.duckdb"
            lock_timeout_s = 5
            [[venues]]
            name = "binance"
            kind = "binance"
            [[instruments]]
            id = "BTC"
            venue = "binance"
            symbol = "BTCUSDT"
            [[instruments]]
            id = "ETH"
            venue = "binance"
            symbol = "ETHUSDT"
            [[baskets]]
            name = "majors"
            members = ["BTC", "ETH"]
            [alerts]
            delivery_attempts = 2
            delivery_backoff_s = 0
            [[alerts.rules]]
            name = "spike"
            kind = "correlation_spike"
            fire_above = 0.93
            clear_below = 0.88
            channels = {json.dumps(rule_channels)}
            [channels.outbox]
            kind = "file"
            dir = "outbox"
            """
        )
        + textwrap.dedent(channels)
    )
    return config


def settings_for(config: Path, **env: str) -> Settings:
    return load_settings(config, env={**os.environ, **env})


def queue(settings: Settings, *events: AlertEvent) -> None:
    with Store.open(settings.storage.database) as store:
        queue_events(store, settings, list(events), "run-1")


def outbox_rows(settings: Settings) -> list[tuple[Any, ...]]:
    """What the store holds (its own file: a delivery killed mid-send published nothing)."""
    with Store.open(settings.storage.database, publish=False) as store:
        return store.con.sql(
            "SELECT channel, status, attempts, interrupted, delivered_at IS NOT NULL, last_error"
            " FROM deliveries ORDER BY channel"
        ).fetchall()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Hook:
    url: str = ""
    status: int = 200
    delay_s: float = 0.0
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.received.append((self.headers["Idempotency-Key"], body))
            state.arrived.set()
            time.sleep(state.delay_s)
            try:
                self.send_response(state.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # a slow hook's sender gave up (its timeout), as the test meant it to

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/in/{TOKEN}"
    try:
        yield state
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


HOOK_CHANNEL = """
[channels.hook]
kind = "webhook"
url_env = "TEST_HOOK_URL"
"""


def test_smtp_down_is_queued_then_delivered_exactly_once(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    port = free_port()
    config = write_config(
        tmp_path,
        f"""
        [channels.mail]
        kind = "smtp"
        host = "127.0.0.1"
        port = {port}
        security = "none"
        sender = "hw@desk.example"
        recipients = ["risk@desk.example"]
        timeout_s = 2
        """,
        ["mail"],
    )
    settings = settings_for(config)
    queue(settings, event())
    down = deliver_outbox(settings)
    assert (down.delivered, down.failed) == (0, 1)
    [(_, status, attempts, _, delivered, error)] = outbox_rows(settings)
    assert (status, attempts, delivered) == ("queued", 2, False)  # two tries within the run
    assert "ConnectionRefusedError" in error

    messages: list[bytes] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(envelope.content)
            return "250 OK"

    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        up = deliver_outbox(settings)
        again = deliver_outbox(settings)
    finally:
        controller.stop()
    assert (up.delivered, again.delivered, again.failed) == (1, 0, 0)
    assert len(messages) == 1
    [(_, status, attempts, _, delivered, error)] = outbox_rows(settings)
    assert (status, attempts, delivered, error) == ("delivered", 3, True, None)


def test_webhook_down_then_up_sends_once_per_notification(tmp_path: Path, hook: Hook) -> None:
    config = write_config(tmp_path, HOOK_CHANNEL, ["hook", "outbox"])
    settings = settings_for(config, TEST_HOOK_URL=hook.url)
    queue(settings, event("majors"), event("alts"))  # one digest per channel
    hook.status = 503
    assert deliver_outbox(settings).failed == 1
    hook.status = 200
    hook.received.clear()
    assert deliver_outbox(settings).delivered == 1
    assert deliver_outbox(settings).delivered == 0
    [(key, body)] = hook.received
    assert key.endswith("|hook") and {e["subject"] for e in body["events"]} == {"majors", "alts"}
    assert len(list((tmp_path / "outbox").glob("*.md"))) == 1


@pytest.mark.slow
def test_kill_9_mid_delivery_loses_nothing_and_resends_once_with_the_same_key(
    tmp_path: Path, hook: Hook
) -> None:
    config = write_config(tmp_path, HOOK_CHANNEL, ["hook"])
    settings = settings_for(config, TEST_HOOK_URL=hook.url)
    queue(settings, event())
    hook.delay_s = 30  # the receiver has the notification but never answers in time
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from hedgewatch.settings import load_settings;"
            " from hedgewatch.outbox.deliver import deliver_outbox;"
            " deliver_outbox(load_settings(sys.argv[1]))",
            str(config),
        ],
        cwd=ROOT,
        env={**os.environ, "TEST_HOOK_URL": hook.url},
    )
    try:
        assert hook.arrived.wait(60), "the delivery never reached the receiver"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    [(_, status, _, interrupted, delivered, _)] = outbox_rows(settings)
    assert (status, interrupted, delivered) == ("sending", 0, False)  # nothing lost: still queued

    hook.delay_s = 0
    report = deliver_outbox(settings)
    assert (report.delivered, report.resent_after_interruption) == (1, 1)
    assert deliver_outbox(settings).delivered == 0
    [(_, status, _, interrupted, delivered, _)] = outbox_rows(settings)
    assert (status, interrupted, delivered) == ("delivered", 1, True)
    # At most one duplicate per crash, and it carries the same idempotency key.
    keys = [key for key, _ in hook.received]
    assert len(keys) == 2 and len(set(keys)) == 1


def test_silenced_events_are_recorded_but_not_sent(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", ["outbox"])
    runner = CliRunner()
    result = runner.invoke(
        app, ["alerts", "silence", "spike", "majors", "--until", "2h", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    settings = settings_for(config)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    queue(settings, AlertEvent(**{**_fields(event("majors")), "ts": now}))
    queue(settings, AlertEvent(**{**_fields(event("alts")), "ts": now}))
    with Store.open(settings.storage.database, read_only=True) as store:
        rows = store.con.sql("SELECT subject, silenced FROM alert_events ORDER BY 1").fetchall()
        [(keys,)] = store.con.sql("SELECT event_keys FROM deliveries").fetchall()
    assert rows == [("alts", False), ("majors", True)]
    assert len(keys) == 1 and "|alts|" in keys[0]
    listed = runner.invoke(app, ["alerts", "list", "-c", str(config)])
    assert listed.exit_code == 0 and "spike" in listed.output
    gone = runner.invoke(app, ["alerts", "unsilence", "spike", "majors", "-c", str(config)])
    assert gone.exit_code == 0
    missing = runner.invoke(app, ["alerts", "unsilence", "spike", "majors", "-c", str(config)])
    assert missing.exit_code == 2 and "no silence" in missing.output


def _fields(e: AlertEvent) -> dict[str, Any]:
    return {k: getattr(e, k) for k in e.__dataclass_fields__ if k != "key"}


def test_silence_rejects_unknown_rules_and_bad_times(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", ["outbox"])
    runner = CliRunner()
    bad_rule = runner.invoke(app, ["alerts", "silence", "nope", "-c", str(config)])
    assert bad_rule.exit_code == 2 and "unknown rule 'nope'" in bad_rule.output
    bad_time = runner.invoke(app, ["alerts", "silence", "spike", "-u", "soon", "-c", str(config)])
    assert bad_time.exit_code == 2 and "--until" in bad_time.output


def test_alerts_test_sends_through_the_named_channel(tmp_path: Path, hook: Hook) -> None:
    config = write_config(tmp_path, HOOK_CHANNEL, ["hook"])
    runner = CliRunner()
    env = {"TEST_HOOK_URL": hook.url}
    sent = runner.invoke(app, ["alerts", "test", "--channel", "hook", "-c", str(config)], env=env)
    assert sent.exit_code == 0, sent.output
    [(key, body)] = hook.received
    assert key.startswith("test|hook|") and "test notification" in body["text"]
    unknown = runner.invoke(app, ["alerts", "test", "pager", "-c", str(config)], env=env)
    assert unknown.exit_code == 2 and "unknown channel 'pager'" in unknown.output
    hook.status = 500
    failed = runner.invoke(app, ["alerts", "test", "hook", "-c", str(config)], env=env)
    assert failed.exit_code == 1 and TOKEN not in failed.output


def test_pipeline_failure_goes_out_once_per_run(tmp_path: Path, hook: Hook) -> None:
    config = write_config(tmp_path, HOOK_CHANNEL, ["hook"])
    settings = settings_for(config, TEST_HOOK_URL=hook.url)
    started = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    for _ in range(2):  # a retried hook
        notify_pipeline_failure(
            settings,
            flow="hedgewatch-hourly",
            run_id="run-9",
            started_at=started,
            error="StoreBusy: database locked",
        )
    assert len(hook.received) == 1
    [(_, body)] = hook.received
    [alert] = body["events"]
    assert alert["rule"] == "pipeline-failure" and alert["severity"] == "critical"
    assert "StoreBusy: database locked" in body["text"]


@pytest.mark.slow
def test_pipeline_failure_is_sent_directly_when_the_database_is_held(
    tmp_path: Path, hook: Hook
) -> None:
    config = write_config(tmp_path, HOOK_CHANNEL, ["hook"])
    config.write_text(config.read_text().replace("lock_timeout_s = 5", "lock_timeout_s = 0.5"))
    settings = settings_for(config, TEST_HOOK_URL=hook.url)
    with Store.open(settings.storage.database):
        pass  # create the file and its schema
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]);"
            " print('holding', flush=True); time.sleep(60)",
            str(settings.storage.database),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        report = notify_pipeline_failure(
            settings,
            flow="hedgewatch-hourly",
            run_id="run-7",
            started_at=datetime(2026, 1, 1, 11, 5, tzinfo=UTC),
            error="StoreBusy: another process holds the database",
        )
    finally:
        holder.kill()
        holder.wait(10)
    # Without a pipeline_failure rule it goes to every channel: the webhook and the file outbox.
    assert (report.delivered, report.failed) == (2, 0)
    assert len(list((tmp_path / "outbox").glob("*.md"))) == 1
    [(key, body)] = hook.received
    assert key.startswith("pipeline-failure|hedgewatch-hourly|0|firing|") and key.endswith("|hook")
    assert "another process holds the database" in body["text"]


def test_secrets_never_reach_logs_database_outbox_or_errors(
    tmp_path: Path, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        HOOK_CHANNEL
        + f"""
        [channels.mail]
        kind = "smtp"
        host = "127.0.0.1"
        port = {port}
        username = "alerts"
        password_env = "TEST_SMTP_PASSWORD"
        security = "none"
        allow_plaintext_auth = true
        sender = "hw@desk.example"
        recipients = ["risk@desk.example"]
        timeout_s = 2
        """,
        ["hook", "mail", "outbox"],
    )
    settings = settings_for(config, TEST_HOOK_URL=hook.url, TEST_SMTP_PASSWORD=PASSWORD)
    queue(settings, event())
    hook.status = 500
    caplog.set_level(logging.DEBUG)
    report = deliver_outbox(settings)
    assert report.failed == 2
    texts = [caplog.text, "\n".join(report.errors), repr(settings), str(settings.model_dump())]
    with Store.open(settings.storage.database, read_only=True) as store:
        for table in ("deliveries", "alert_events", "alert_state", "runs", "cursors"):
            texts.append(str(store.con.sql(f"SELECT * FROM {table}").fetchall()))
    texts += [p.read_text() for p in (tmp_path / "outbox").glob("*")]
    runner = CliRunner()
    env = {"TEST_HOOK_URL": hook.url, "TEST_SMTP_PASSWORD": PASSWORD}
    for args in (["alerts", "list"], ["alerts", "test", "hook"], ["check-config"]):
        texts.append(runner.invoke(app, [*args, "-c", str(config)], env=env).output)
    blob = "\n".join(texts)
    assert TOKEN not in blob and PASSWORD not in blob
    assert "500" in blob  # the errors are there, only the secrets are not


def test_pipeline_failure_survives_a_full_disk_and_a_crashing_hook(
    tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from hedgewatch.outbox import failure

    config = write_config(tmp_path, HOOK_CHANNEL, ["hook"])
    settings = settings_for(config, TEST_HOOK_URL=hook.url)

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise duckdb.IOException("IO Error: could not write file: No space left on device")

    monkeypatch.setattr(failure.Store, "open", disk_full)
    report = notify_pipeline_failure(
        settings,
        flow="hedgewatch-hourly",
        run_id="run-disk",
        started_at=datetime(2026, 1, 1, 12, 5, tzinfo=UTC),
        error="IOException: No space left on device",
    )
    assert report.delivered >= 1 and report.failed == 0
    [(_, body)] = hook.received
    assert "No space left on device" in body["text"]

    # The Prefect hook (on_failure and on_crashed) never raises, whatever breaks inside it.
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the failure path broke too")

    monkeypatch.setattr(failure, "report_failure", broken)
    run = SimpleNamespace(parameters={"config_path": str(config)}, name="r", id="x")
    failure.on_flow_failure(SimpleNamespace(name="hedgewatch-hourly"), run, SimpleNamespace())
