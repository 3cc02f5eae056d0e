"""PagerDuty Events v2 and the webhook presets (Discord, Telegram, a user's body template), each
sent to a real HTTP receiver on loopback that records what arrived."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from hedgewatch.alerts.state import AlertEvent
from hedgewatch.outbox.channels import DeliveryError, PagerDutyChannel, WebhookChannel
from hedgewatch.outbox.deliver import send
from hedgewatch.outbox.queue import Pending
from hedgewatch.settings import ConfigError, Settings, load_settings

TS = datetime(2024, 8, 5, 14, tzinfo=UTC)
ROUTING_KEY = "R0uTiNgKeY-0123456789abcdef"
BOT_TOKEN = "123456:AAE-b0t-t0ken-s3cret"
WEBHOOK_SECRET = "w3bhook-path-s3cret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    status: int = 202
    answer: str = '{"status": "success"}'

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(
                Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)
                )
            )
            body = state.answer.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _event(
    kind: Any = "firing", severity: Any = "critical", hour: int = 0, **ctx: Any
) -> AlertEvent:
    context = {
        "metric": "correlation",
        "window": "24h",
        "n_obs": 23,
        "ci_low": -0.21,
        "ci_high": 0.52,
        "history": [0.8, 0.7, None, 0.4, 0.21],
        **ctx,
    }
    return AlertEvent(
        rule="decouple",
        subject="btc-eth",
        ts=TS + timedelta(hours=hour),
        kind=kind,
        value=0.41 if kind != "resolved" else 0.1,
        threshold=0.3 if kind != "resolved" else 0.2,
        severity=severity,
        episode=3,
        context=context,
    )


def _settings(tmp_path: Path, toml: str, env: dict[str, str]) -> Settings:
    config = tmp_path / "hedgewatch.toml"
    config.write_text(
        '[storage]\ndatabase = "var/h.duckdb"\n'
        '[[venues]]\nname = "binance"\nkind = "binance"\n'
        '[[instruments]]\nid = "BTC-PERP"\nvenue = "binance"\nmarket = "perp"\n'
        'symbol = "BTCUSDT"\n' + toml
    )
    return load_settings(config, env=env)


def test_pagerduty_triggers_then_resolves_one_incident_per_episode(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        tmp_path,
        f'[channels.pager]\nkind = "pagerduty"\nrouting_key_env = "PD_KEY"\n'
        f'events_url = "{receiver.base}/v2/enqueue"\n',
        {"PD_KEY": ROUTING_KEY},
    )
    channel = settings.channels["pager"]
    assert isinstance(channel, PagerDutyChannel)
    caplog.set_level(logging.DEBUG)
    firing = _event("firing")
    send(Pending("k1|pager", "pager", [firing]), channel, settings)
    resolved = _event("resolved", hour=5)
    send(Pending("k2|pager", "pager", [resolved]), channel, settings)

    trigger, resolve = (r.body for r in receiver.requests)
    assert {r.path for r in receiver.requests} == {"/v2/enqueue"}
    assert trigger["routing_key"] == ROUTING_KEY and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "decouple|btc-eth|3" == resolve["dedup_key"]
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "decouple|btc-eth|3",
    }
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "hedgewatch"
    assert payload["summary"].startswith("FIRING decouple / btc-eth: correlation +0.410 above")
    assert payload["timestamp"] == "2024-08-05T14:00:00+00:00"
    assert payload["custom_details"]["95% CI"] == "-0.210 to +0.520"
    assert ROUTING_KEY not in caplog.text


def test_pagerduty_error_never_carries_the_routing_key(receiver: Receiver, tmp_path: Path) -> None:
    receiver.status = 400
    receiver.answer = f'{{"message": "Invalid routing key {ROUTING_KEY}"}}'
    channel = PagerDutyChannel(
        routing_key=SecretStr(ROUTING_KEY), events_url=f"{receiver.base}/v2/enqueue"
    )
    settings = _settings(tmp_path, "", {})
    with pytest.raises(DeliveryError) as err:
        send(Pending("k|p", "p", [_event()]), channel, settings)
    assert ROUTING_KEY not in str(err.value) and "[redacted]" in str(err.value)
    assert err.value.status == 400 and not err.value.retryable


def test_discord_preset_posts_one_coloured_embed_per_event(
    receiver: Receiver, tmp_path: Path
) -> None:
    url = f"{receiver.base}/api/webhooks/42/{WEBHOOK_SECRET}"
    settings = _settings(
        tmp_path,
        '[channels.chat]\nkind = "webhook"\npreset = "discord"\nurl_env = "DISCORD_URL"\n',
        {"DISCORD_URL": url},
    )
    events = [_event(), _event("resolved", severity="warning", hour=1, members="@everyone, eth")]
    send(Pending("k|chat", "chat", events), settings.channels["chat"], settings)
    [request] = receiver.requests
    body = request.body
    assert request.path == f"/api/webhooks/42/{WEBHOOK_SECRET}"
    assert body["allowed_mentions"] == {"parse": []}
    assert body["content"].startswith("[hedgewatch] 1 firing, 1 resolved")
    firing, resolved = body["embeds"]
    assert firing["color"] == 0xB91C1C and resolved["color"] == 0x15803D
    assert firing["title"] == "FIRING · critical · decouple / btc-eth"
    names = [f["name"] for f in firing["fields"]]
    assert len(names) == len(set(names))  # each field once
    assert {"correlation", "Threshold", "Window", "95% CI", "Last 5 h", "Hour"} <= set(names)
    assert {"name": "Members", "value": "@everyone, eth", "inline": True} in resolved["fields"]
    assert "n/a to n/a" not in json.dumps(body)


def test_telegram_preset_sends_escaped_html_and_keeps_the_token_out_of_errors_and_logs(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        tmp_path,
        '[channels.tg]\nkind = "webhook"\npreset = "telegram"\ntoken_env = "TG_TOKEN"\n'
        f'chat_id = "-100200300"\napi_url = "{receiver.base}"\n',
        {"TG_TOKEN": BOT_TOKEN},
    )
    caplog.set_level(logging.DEBUG)
    channel = settings.channels["tg"]
    send(Pending("k|tg", "tg", [_event(rule_kind="x", sql="SELECT 1 < 2")]), channel, settings)
    [request] = receiver.requests
    assert request.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert request.body["chat_id"] == "-100200300" and request.body["parse_mode"] == "HTML"
    text = request.body["text"]
    assert "<b>FIRING · critical</b> decouple / btc-eth" in text
    assert "Reproduce: SELECT 1 &lt; 2" in text and len(text) <= 4096

    receiver.status = 401
    receiver.answer = f'{{"ok": false, "description": "bad token at /bot{BOT_TOKEN}/"}}'
    with pytest.raises(DeliveryError) as err:
        send(Pending("k2|tg", "tg", [_event()]), channel, settings)
    assert BOT_TOKEN not in str(err.value) and err.value.status == 401
    assert BOT_TOKEN not in caplog.text


def test_a_users_body_template_renders_json_with_a_bearer_token(
    receiver: Receiver, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "ops.json.j2").write_text(
        '{"summary": {{ subject|tojson }}, "alerts": [{% for e in events %}'
        '{"rule": {{ e.rule|tojson }}, "severity": {{ e.severity|tojson }}}'
        '{{ "," if not loop.last }}{% endfor %}]}'
    )
    settings = _settings(
        tmp_path,
        f'[alerts]\ntemplate_dir = "{templates}"\n'
        '[channels.ops]\nkind = "webhook"\ntemplate = "ops.json.j2"\n'
        'url_env = "OPS_URL"\ntoken_env = "OPS_TOKEN"\n',
        {"OPS_URL": f"{receiver.base}/hook", "OPS_TOKEN": "t0ken-for-ops"},
    )
    send(Pending("k|ops", "ops", [_event()]), settings.channels["ops"], settings)
    [request] = receiver.requests
    assert request.body == {
        "summary": request.body["summary"],
        "alerts": [{"rule": "decouple", "severity": "critical"}],
    }
    assert request.headers["authorization"] == "Bearer t0ken-for-ops"
    assert request.headers["idempotency-key"] == "k|ops"

    (templates / "ops.json.j2").write_text("{{ subject }}")
    with pytest.raises(Exception, match=r"did not render JSON"):
        send(Pending("k2|ops", "ops", [_event()]), settings.channels["ops"], settings)


def test_presets_say_what_they_miss_without_echoing_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="telegram preset needs token_env"):
        _settings(
            tmp_path,
            '[channels.tg]\nkind = "webhook"\npreset = "telegram"\ntoken_env = "T"\n',
            {"T": BOT_TOKEN},
        )
    with pytest.raises(ConfigError, match="secrets do not belong in the config file"):
        _settings(
            tmp_path,
            f'[channels.p]\nkind = "pagerduty"\nrouting_key = "{ROUTING_KEY}"\n',
            {},
        )
    with pytest.raises(ValidationError) as err:
        WebhookChannel(preset="discord", token=SecretStr(BOT_TOKEN))
    assert BOT_TOKEN not in str(err.value)
