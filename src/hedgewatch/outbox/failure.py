"""When a run fails: tell people through the configured channels, straight away.

The hourly flow's `on_failure` hook builds the pipeline-failure event of `alerts.state`, queues it
in the outbox exactly once per run (same idempotency key) and delivers it, to the channels of the
config's `pipeline_failure` rule (`failure_rule`), else to every channel as critical. The database
may be what broke, though: when it cannot be opened the event is rendered and sent directly
(`deliver.send_directly`, the only path that bypasses the outbox; it also carries the report of
the notifications the outbox gave up). The error text is redacted of every channel secret before
it is stored or sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from hedgewatch.alerts.state import pipeline_failure_event
from hedgewatch.channel_config import secret_values
from hedgewatch.outbox.channels import redact
from hedgewatch.outbox.deliver import DeliveryReport, deliver_outbox, failure_rule, send_directly
from hedgewatch.outbox.queue import queue_events
from hedgewatch.settings import ConfigError, Settings, load_settings, resolve_config, utc_now
from hedgewatch.storage.store import Store

log = logging.getLogger(__name__)


def notify_pipeline_failure(
    settings: Settings,
    *,
    flow: str,
    run_id: str,
    started_at: datetime,
    error: str,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Queue and send a pipeline-failure alert for a failed run; never raises StoreError.

    Calling it twice for the same run queues nothing new (same idempotency key). `error` is
    redacted of every channel secret first.
    """
    rule = failure_rule(settings)
    event = pipeline_failure_event(
        flow=flow,
        run_id=run_id,
        started_at=started_at,
        error=redact(error, secret_values(settings.channels.values())),
        rule=rule,
    )
    try:
        with Store.open(
            settings.storage.database, timeout_s=settings.storage.lock_timeout_s
        ) as store:
            queue_events(store, settings, [event], run_id, {rule.name: rule})
    except Exception as exc:  # StoreError, a full disk, a broken file: whatever failed the run
        # The run may have failed because of the database itself: send directly (same key, so a
        # receiver can still drop a duplicate), and say the outbox could not record it.
        log.warning("pipeline failure not recorded in the outbox (%s); sending directly", exc)
        return send_directly(settings, rule, event, sleep)
    try:
        return deliver_outbox(settings, sleep=sleep)
    except Exception as exc:
        log.warning("outbox delivery failed (%s); sending the failure alert directly", exc)
        return send_directly(settings, rule, event, sleep)


def report_failure(
    settings: Settings, *, flow: str, run_id: str, started_at: datetime, error: str
) -> list[str]:
    """Announce a failed run; returns the channels that took it."""
    report = notify_pipeline_failure(
        settings, flow=flow, run_id=run_id, started_at=started_at, error=error
    )
    channels = sorted(failure_rule(settings).channels)
    if not report.failed:
        return channels  # delivered now, or by an earlier call for the same run (same key)
    log.error("pipeline-failure alert not delivered everywhere: %s", "; ".join(report.errors))
    return sorted(set(channels).intersection(report.delivered_to))


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect `on_failure` and `on_crashed` hook of the hourly flow; never raises."""
    try:
        _on_flow_failure(flow, flow_run, state)
    except Exception:
        log.exception("pipeline-failure alert for run %s could not be sent", flow_run.name)


def _on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    config_path = resolve_config((flow_run.parameters or {}).get("config_path"))
    try:
        settings = load_settings(config_path)
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
