"""Delivery stays bounded across runs: a receiver on loopback that takes a POST and then holds
its answer (until the test lets it go) counts what each channel gets over several runs; a
notification that cannot be delivered goes dead, is reported once, and can be requeued."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hedgewatch.alerts.state import AlertEvent
from hedgewatch.cli import app
from hedgewatch.outbox.deliver import deliver_outbox, give_up_reason, plan_send
from hedgewatch.outbox.queue import Pending, queue_events
from hedgewatch.settings import AlertSettings, ConfigError, Settings, load_settings
from hedgewatch.storage.store import Store

T0 = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
SLACK_SECRET = "T000/B000/slack-S3cret-path-xyz"
HOOK_TOKEN = "hook-T0ken-abcdef-123"
WAIT_S = 60.0  # generous bound on a busy machine; never reached when things work


@dataclass
class Receiver:
    """POSTs by path. Paths under /slow/ are answered only once `release` is set (the client
    has given up by then: it sent, and got no answer); every other path at once."""

    port: int = 0
    posts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        with self.changed:
            return len(self.posts.get(path, []))

    def wait_for(self, path: str, n: int) -> None:
        """Until `path` has had at least `n` POSTs (they arrive in handler threads)."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.posts.get(path, [])) >= n, WAIT_S)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
            with state.changed:
                state.posts.setdefault(self.path, []).append(body)
                state.changed.notify_all()
            if self.path.startswith("/slow/"):
                state.release.wait(WAIT_S)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.block_on_close = True  # server_close() joins every handler: all POSTs are counted
    state.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def settle(receiver: Receiver) -> None:
    """Every POST made so far is counted: accepts are in order, so once a later request is
    answered, every earlier connection has a handler; closing the server joins them all."""
    receiver.release.set()
    httpx.post(receiver.url("/sentinel"), json={}, timeout=WAIT_S).raise_for_status()


def write_config(folder: Path, receiver: Receiver, max_runs: int) -> Path:
    config = folder / "hedgewatch.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [storage]
            database = "hw.duckdb"
            lock_timeout_s = 30
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
            delivery_attempts = 3
            delivery_backoff_s = 0
            delivery_max_runs = {max_runs}
            delivery_uncertain_delay_s = 1800
            [[alerts.rules]]
            name = "spike"
            kind = "correlation_spike"
            fire_above = 0.93
            clear_below = 0.88
            channels = ["desk", "hook"]
            [[alerts.rules]]
            name = "pipeline-failure"
            kind = "pipeline_failure"
            severity = "critical"
            channels = ["ops"]
            [channels.desk]
            kind = "slack"
            webhook_url_env = "DESK_SLACK_URL"
            timeout_s = 0.3
            [channels.hook]
            kind = "webhook"
            url_env = "HOOK_URL"
            token_env = "HOOK_TOKEN"
            timeout_s = 0.3
            [channels.ops]
            kind = "webhook"
            url_env = "OPS_URL"
            timeout_s = 30
            """
        )
    )
    return config


def settings_for(config: Path, receiver: Receiver) -> Settings:
    return load_settings(
        config,
        env={
            "DESK_SLACK_URL": receiver.url(f"/slow/slack/{SLACK_SECRET}"),
            "HOOK_URL": receiver.url("/slow/hook"),
            "HOOK_TOKEN": HOOK_TOKEN,
            "OPS_URL": receiver.url("/ops"),
        },
    )


def spike() -> AlertEvent:
    return AlertEvent(
        rule="spike",
        subject="majors",
        ts=datetime(2026, 3, 2, 9, tzinfo=UTC),
        kind="firing",
        value=0.95,
        threshold=0.93,
        severity="warning",
        episode=1,
        context={"metric": "avg_corr", "window": "24h", "n_obs": 24},
    )


def rows(settings: Settings) -> dict[str, tuple[Any, ...]]:
    with Store.open(settings.storage.database, publish=False) as store:
        found = store.con.sql(
            "SELECT channel, status, runs, uncertain, dead_reason, dead_reported_at IS NOT NULL"
            " FROM deliveries"
        ).fetchall()
    return {row[0]: row[1:] for row in found}


SLACK = f"/slow/slack/{SLACK_SECRET}"


def test_uncertain_sends_are_bounded_across_runs_dead_rows_are_reported_once_and_requeued(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, receiver, max_runs=5)
    settings = settings_for(config, receiver)
    with Store.open(settings.storage.database) as store:
        queue_events(store, settings, [spike()], "run-1")

    def run(minutes: int) -> Any:
        return deliver_outbox(settings, now=T0 + timedelta(minutes=minutes), sleep=lambda s: None)

    # Run 1: each channel gets one POST, which goes unanswered; nothing is repeated in the run.
    first = run(0)
    receiver.wait_for(SLACK, 1)
    receiver.wait_for("/slow/hook", 1)
    assert (first.delivered, first.failed, first.dead) == (0, 2, [])
    assert rows(settings)["desk"][:3] == ("queued", 1, 1)
    assert rows(settings)["hook"][:3] == ("queued", 1, 1)

    # Run 2, ten minutes on: the keyed webhook is retried (the receiver can drop the copy);
    # Slack, which cannot, waits for the longer delay.
    second = run(10)
    receiver.wait_for("/slow/hook", 2)
    assert second.waiting == 1 and rows(settings)["desk"][:3] == ("queued", 1, 1)

    # Run 3, an hour on: Slack gets its one resend; unanswered again, it is given up and
    # reported once through the failure channel.
    third = run(60)
    receiver.wait_for(SLACK, 2)
    receiver.wait_for("/slow/hook", 3)
    receiver.wait_for("/ops", 1)
    status, runs, uncertain, reason, reported = rows(settings)["desk"]
    assert (status, runs, uncertain, reported) == ("dead", 2, 2, True)
    assert "sent twice without an answer" in reason
    assert len(third.dead) == 1 and third.dead[0].endswith("|desk")

    # Runs 4 and 5: Slack is no longer tried; the webhook dies after its fifth run.
    run(120)
    receiver.wait_for("/slow/hook", 4)
    fifth = run(180)
    receiver.wait_for("/slow/hook", 5)
    receiver.wait_for("/ops", 2)
    assert fifth.dead and fifth.dead[0].endswith("|hook")
    assert rows(settings)["hook"][:3] == ("dead", 5, 5)
    assert "undelivered after 5 runs" in rows(settings)["hook"][3]
    # Run 6: nothing left to try, nothing new to report.
    sixth = run(240)
    assert (sixth.delivered, sixth.failed, sixth.dead, sixth.waiting) == (0, 0, [], 0)

    settle(receiver)
    assert receiver.count(SLACK) == 2
    assert receiver.count("/slow/hook") == 5
    assert receiver.count("/ops") == 2  # one report per notification given up, never repeated

    # Slack shows the notification's key in both copies; the second says it is a resend.
    slack_first, slack_second = receiver.posts[SLACK]
    key = third.dead[0]
    ref = key.rsplit("|", 1)[0]
    assert ref in json.dumps(slack_first["blocks"]) and ref in slack_first["text"]
    assert "resent" not in json.dumps(slack_first)
    assert "resent" in slack_second["blocks"][-1]["elements"][0]["text"]
    # The generic webhook carries the key for the receiver to drop copies.
    assert {post["key"] for post in receiver.posts["/slow/hook"]} == {ref + "|hook"}

    # The reports name what died and why, with no secret in them.
    first_report, second_report = (post["events"][0] for post in receiver.posts["/ops"])
    assert key in json.dumps(first_report) or ref in json.dumps(first_report)
    assert "sent twice without an answer" in json.dumps(first_report)
    assert "undelivered after 5 runs" in json.dumps(second_report)
    for post in receiver.posts["/ops"]:
        text = json.dumps(post)
        assert SLACK_SECRET not in text and HOOK_TOKEN not in text

    # Visible in `status` and `outbox list`; requeued from the command line.
    runner = CliRunner()
    db = str(settings.storage.database)
    shown = runner.invoke(app, ["status", "-d", db, "-f", "json"])
    assert shown.exit_code == 0, shown.output
    states = {row["channel"]: row["state"] for row in json.loads(shown.output)["queued"]}
    assert states == {"desk": "dead", "hook": "dead"}
    listed = runner.invoke(app, ["outbox", "list", "-d", db, "--state", "dead", "-f", "json"])
    assert listed.exit_code == 0, listed.output
    assert {row["channel"] for row in json.loads(listed.output)} == {"desk", "hook"}
    assert SLACK_SECRET not in listed.output and HOOK_TOKEN not in listed.output

    missing = runner.invoke(app, ["outbox", "requeue", "-d", db, "nope"])
    assert missing.exit_code == 2 and "not a dead notification: nope" in missing.output
    assert runner.invoke(app, ["outbox", "requeue", "-d", db]).exit_code == 2
    requeued = runner.invoke(app, ["outbox", "requeue", "-d", db, ref, "--channel", "desk"])
    assert requeued.exit_code == 0, requeued.output
    assert rows(settings)["desk"][:3] == ("queued", 0, 0)
    assert runner.invoke(app, ["outbox", "requeue", "-d", db, "--all"]).exit_code == 0

    # The receiver answers now (released): the next run delivers both, reporting nothing.
    seventh = run(300)
    assert (seventh.delivered, seventh.failed) == (2, 0)
    assert {row[0] for row in rows(settings).values()} == {"delivered"}
    settle(receiver)
    assert receiver.count("/ops") == 2


def test_plans_for_an_uncertain_notification() -> None:
    alerts = AlertSettings(delivery_max_runs=3, delivery_uncertain_delay_s=600)
    now = T0

    def item(uncertain: int, runs: int = 1, sent_minutes_ago: int = 60) -> Pending:
        sent_at = now - timedelta(minutes=sent_minutes_ago)
        return Pending("k|c", "c", [], runs=runs, uncertain=uncertain, sent_at=sent_at)

    assert plan_send(item(0), False, alerts, now).action == "send"
    assert plan_send(item(1, sent_minutes_ago=5), False, alerts, now).action == "wait"
    resend = plan_send(item(1), False, alerts, now)
    assert resend.action == "send" and resend.resend
    assert plan_send(item(2), False, alerts, now).action == "bury"
    # A receiver that drops duplicates gets it again whatever happened before.
    assert plan_send(item(4, sent_minutes_ago=1), True, alerts, now).action == "send"
    # Given up: a second unanswered send where copies cannot be dropped; or the last run.
    assert give_up_reason(item(1), "e", True, False, alerts)
    assert give_up_reason(item(1), "e", True, True, alerts) is None
    assert give_up_reason(item(0, runs=1), "e", False, False, alerts) is None
    assert "after 3 runs" in (give_up_reason(item(0, runs=2), "e", False, True, alerts) or "")


@pytest.mark.parametrize(
    ("line", "field_name"),
    [
        ("delivery_max_runs = 0", "delivery_max_runs"),
        ("delivery_max_runs = 100000", "delivery_max_runs"),
        ("delivery_uncertain_delay_s = -1", "delivery_uncertain_delay_s"),
        ("delivery_uncertain_delay_s = inf", "delivery_uncertain_delay_s"),
    ],
)
def test_delivery_bounds_are_checked(tmp_path: Path, line: str, field_name: str) -> None:
    config = tmp_path / "hedgewatch.toml"
    config.write_text(f"[storage]\ndatabase = 'hw.duckdb'\n[alerts]\n{line}\n")
    with pytest.raises(ConfigError, match=field_name):
        load_settings(config, env={})
