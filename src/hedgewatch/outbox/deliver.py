"""Deliver the outbox: every queued notification is rendered for its channel and sent.

One outbox row per notification and channel (`deliveries`), keyed by an idempotency key. For
each row: commit `status = 'sending'` (attempts + 1), close the database, call the channel
(retrying retryable errors with exponential backoff), reopen and commit `delivered` or `queued`
with the error. Rows still queued are retried on the next run.

The guarantee, honestly: a notification is never lost (it stays in the outbox until a channel
accepts it) and is sent once unless the process dies between the channel accepting it and the
`delivered` commit — a window of one local write. A row found in `sending` on the next run was
interrupted there; it is sent again with the same idempotency key and counted in `interrupted`.
So per crash at most one duplicate, carrying the same key: the file channel overwrites the same
file (exactly once), email keeps the same Message-ID (clients and many servers drop it), the
webhook sends the same `Idempotency-Key` header; Slack incoming webhooks cannot deduplicate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hedgewatch.alerts.render import ChannelKind, render
from hedgewatch.alerts.rules import Rule
from hedgewatch.alerts.state import AlertEvent, pipeline_failure_event
from hedgewatch.outbox.channels import (
    Channel,
    DeliveryError,
    FileChannel,
    SlackChannel,
    SmtpChannel,
    WebhookChannel,
    deliver,
    write_file_rendering,
)
from hedgewatch.pipeline import load_events, plan_outbox, queue, save_events
from hedgewatch.settings import Settings, utc_now
from hedgewatch.storage.store import Store, StoreError, connect

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    resent_after_interruption: int = 0


@dataclass(frozen=True)
class Pending:
    key: str
    channel: str
    events: list[AlertEvent]
    interrupted: bool = False


def channel_kind(channel: Channel) -> ChannelKind:
    if isinstance(channel, SmtpChannel):
        return "email"
    if isinstance(channel, SlackChannel):
        return "slack"
    if isinstance(channel, WebhookChannel):
        return "webhook"
    return "file"


def pending_deliveries(store: Store) -> list[Pending]:
    rows = store.con.sql(
        "SELECT key, channel, event_keys, coalesce(status, 'queued') FROM deliveries"
        " WHERE delivered_at IS NULL ORDER BY key"
    ).fetchall()
    return [
        Pending(key, channel, load_events(store, keys), status == "sending")
        for key, channel, keys, status in rows
    ]


def _mark(database: Path, timeout_s: float, sql: str, params: dict[str, object]) -> None:
    # A bare connection: the schema is current (the run opened the store before), and opening
    # one without re-creating views keeps the per-row bookkeeping cheap.
    con = connect(database, timeout_s=timeout_s)
    try:
        con.execute(sql, params).fetchall()
    finally:
        con.close()


def deliver_outbox(
    settings: Settings,
    now: datetime | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    database = settings.storage.database
    timeout_s = settings.storage.lock_timeout_s
    with Store.open(database, timeout_s=timeout_s) as store:
        queued = pending_deliveries(store)
    report = DeliveryReport()
    for item in queued:
        channel = settings.channels.get(item.channel)
        if item.interrupted:
            report.resent_after_interruption += 1
            log.warning(
                "notification %s to %s was interrupted mid-send; sending it again with the same "
                "idempotency key",
                item.key,
                item.channel,
            )
        _mark(
            database,
            timeout_s,
            "UPDATE deliveries SET status = 'sending', sending_since = $t,"
            " interrupted = coalesce(interrupted, 0) + CASE WHEN $i THEN 1 ELSE 0 END"
            " WHERE key = $k",
            {"k": item.key, "t": now or utc_now(), "i": item.interrupted},
        )
        error: str | None
        tries = 1
        if channel is None:
            error = f"channel {item.channel!r} is no longer configured"
        elif not item.events:
            error = "no events found for this notification"
        else:
            error, tries = _send_with_retries(item, channel, settings, sleep)
        _mark(
            database,
            timeout_s,
            "UPDATE deliveries SET last_error = $e, attempts = attempts + $n,"
            " status = CASE WHEN $ok THEN 'delivered' ELSE 'queued' END,"
            " delivered_at = CASE WHEN $ok THEN $t ELSE NULL END WHERE key = $k",
            {"k": item.key, "e": error, "n": tries, "ok": error is None, "t": now or utc_now()},
        )
        if error:
            report.failed += 1
            report.errors.append(f"{item.channel}: {error}")
            log.warning("delivery to %s failed, kept queued: %s", item.channel, error)
        else:
            report.delivered += 1
    return report


def _send_with_retries(
    item: Pending, channel: Channel, settings: Settings, sleep: Callable[[float], None]
) -> tuple[str | None, int]:
    """(error or None, tries made): retryable errors are retried with exponential backoff."""
    attempts = settings.alerts.delivery_attempts
    error: str | None = None
    for attempt in range(attempts):
        try:
            send(item, channel, settings)
            return None, attempt + 1
        except DeliveryError as exc:
            error = str(exc)
            if not exc.retryable or attempt == attempts - 1:
                return error, attempt + 1
            sleep(settings.alerts.delivery_backoff_s * 2**attempt)
    return error, attempts


def send(item: Pending, channel: Channel, settings: Settings, title: str = "hedgewatch") -> None:
    """Render `item` for `channel` and send it; raises DeliveryError."""
    context = {"title": title}
    if isinstance(channel, FileChannel):
        # The file outbox keeps every rendering, to be read as each channel would show it.
        kinds: tuple[ChannelKind, ...] = ("file", "email", "slack")
        for kind in kinds:
            rendered = render(
                item.events, kind, template_dir=settings.alerts.template_dir, context=context
            )
            write_file_rendering(rendered, channel, item.key, kind)
    else:
        rendered = render(
            item.events,
            channel_kind(channel),
            template_dir=settings.alerts.template_dir,
            context=context,
        )
        deliver(rendered, channel, idempotency_key=item.key)


def queue_events(
    store: Store,
    settings: Settings,
    events: Sequence[AlertEvent],
    run_id: str,
    rules: Mapping[str, Rule] | None = None,
) -> int:
    """Record events and queue one digest per channel (silences apply); returns rows queued."""
    rules = rules if rules is not None else {r.name: r for r in settings.alerts.rules}
    silenced, digests = plan_outbox(store, settings, events, rules, run_id)
    with store.transaction():
        save_events(store, events, silenced)
        queue(store, digests, run_id)
    return len(digests)


def notify_pipeline_failure(
    settings: Settings,
    *,
    flow: str,
    run_id: str,
    started_at: datetime,
    error: str,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Queue and send a pipeline-failure alert for a failed run (for an on-failure hook).

    The rule of kind `pipeline_failure` in the config, if any, gives its name, severity and
    channels; without one it goes to every configured channel, as critical. Calling it twice for
    the same run queues nothing new (same idempotency key). `error` is shown as is: pass a message
    without secrets (exception type and text, never a URL with credentials).
    """
    rule = next((r for r in settings.alerts.rules if r.kind == "pipeline_failure"), None)
    event = pipeline_failure_event(
        flow=flow, run_id=run_id, started_at=started_at, error=error, rule=rule
    )
    if rule is None:
        rule = Rule(
            name=event.rule,
            kind="pipeline_failure",
            severity="critical",
            channels=sorted(settings.channels),
        )
    try:
        with Store.open(
            settings.storage.database, timeout_s=settings.storage.lock_timeout_s
        ) as store:
            queue_events(store, settings, [event], run_id, {rule.name: rule})
    except StoreError as exc:
        # The run may have failed because of the database itself: send directly (same key, so a
        # receiver can still drop a duplicate), and say the outbox could not record it.
        log.warning("pipeline failure not recorded in the outbox (%s); sending directly", exc)
        return _send_directly(settings, rule, event, sleep)
    return deliver_outbox(settings, sleep=sleep)


def _send_directly(
    settings: Settings, rule: Rule, event: AlertEvent, sleep: Callable[[float], None]
) -> DeliveryReport:
    report = DeliveryReport()
    for name in rule.channels:
        channel = settings.channels.get(name)
        if channel is None:
            continue
        key = f"{event.key}|{name}"
        error, _ = _send_with_retries(Pending(key, name, [event]), channel, settings, sleep)
        if error:
            report.failed += 1
            report.errors.append(f"{name}: {error}")
        else:
            report.delivered += 1
    return report
