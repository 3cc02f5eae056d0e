"""When a run fails: tell people through the configured channels, straight away.

The hourly flow's `on_failure` hook builds the pipeline-failure event of `alerts.state` and
queues it in the outbox (`flows.delivering.notify_pipeline_failure`: exactly once per run, the
channels of the config's `pipeline_failure` rule, else every channel). The database may be what
broke, though: when it cannot be opened, the event is rendered and sent directly instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hedgewatch.alerts.state import AlertEvent, pipeline_failure_event
from hedgewatch.outbox.channels import DeliveryError
from hedgewatch.outbox.deliver import Pending, notify_pipeline_failure, send
from hedgewatch.settings import ConfigError, Settings, load_settings, utc_now
from hedgewatch.storage.store import StoreError

log = logging.getLogger(__name__)


@dataclass
class FailureReport:
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def failure_channels(settings: Settings) -> list[str]:
    """The channels of the config's `pipeline_failure` rule, else every channel."""
    rule = next((r for r in settings.alerts.rules if r.kind == "pipeline_failure"), None)
    return list(rule.channels) if rule is not None else sorted(settings.channels)


def send_directly(settings: Settings, event: AlertEvent) -> FailureReport:
    """Render and send `event` to the failure channels without the database; never raises."""
    report = FailureReport()
    title = f"hedgewatch pipeline failure: {event.subject}"
    for name in failure_channels(settings):
        channel = settings.channels[name]
        key = f"{event.key}|{name}"
        try:
            send(Pending(key, name, [event]), channel, settings, title=title)
        except DeliveryError as exc:
            report.failed[name] = str(exc)
            log.error("pipeline-failure alert to %s failed: %s", name, exc)
        else:
            report.delivered.append(name)
    return report


def redact(message: str, settings: Settings) -> str:
    """`message` without any channel secret's value."""
    for channel in settings.channels.values():
        for value in channel.model_dump().values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                message = message.replace(value.get_secret_value(), "[redacted]")
    return message


def report_failure(
    settings: Settings, *, flow: str, run_id: str, started_at: datetime, error: str
) -> list[str]:
    """Announce a failed run; returns the channels that took it."""
    error = redact(error, settings)
    try:
        outbox = notify_pipeline_failure(
            settings, flow=flow, run_id=run_id, started_at=started_at, error=error
        )
    except StoreError as exc:
        log.warning("outbox unavailable (%s); sending the pipeline-failure alert directly", exc)
        rule = next((r for r in settings.alerts.rules if r.kind == "pipeline_failure"), None)
        event = pipeline_failure_event(
            flow=flow, run_id=run_id, started_at=started_at, error=error, rule=rule
        )
        return send_directly(settings, event).delivered
    if outbox.failed:
        log.error("pipeline-failure alert queued but not delivered: %s", "; ".join(outbox.errors))
    return failure_channels(settings) if not outbox.failed else []


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect `on_failure` hook of the hourly flow."""
    config_path = (flow_run.parameters or {}).get("config_path", "hedgewatch.toml")
    try:
        settings = load_settings(Path(config_path))
    except ConfigError as exc:
        log.error("pipeline-failure alert not sent: the config cannot be read: %s", exc)
        return
    channels = report_failure(
        settings,
        flow=flow.name,
        run_id=str(flow_run.id),
        started_at=flow_run.start_time or flow_run.expected_start_time or utc_now(),
        error=state.message or f"flow run ended {state.name}",
    )
    log.warning(
        "pipeline-failure alert for run %s sent to %s", flow_run.name, ", ".join(channels) or "none"
    )
