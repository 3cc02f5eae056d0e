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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from hedgewatch.alerts.render import WEBHOOK_PRESETS, ChannelKind, render
from hedgewatch.outbox import queue
from hedgewatch.outbox.channels import (
    Channel,
    DeliveryError,
    FileChannel,
    PagerDutyChannel,
    SlackChannel,
    SmtpChannel,
    WebhookChannel,
    deliver,
    write_file_rendering,
)
from hedgewatch.outbox.queue import Pending
from hedgewatch.settings import Settings, utc_now
from hedgewatch.storage.store import Store

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    resent_after_interruption: int = 0
    delivered_to: list[str] = field(default_factory=list)


def channel_kind(channel: Channel) -> ChannelKind:
    if isinstance(channel, SmtpChannel):
        return "email"
    if isinstance(channel, SlackChannel):
        return "slack"
    if isinstance(channel, WebhookChannel):
        return "webhook"
    if isinstance(channel, PagerDutyChannel):
        return "pagerduty"
    return "file"


def deliver_outbox(
    settings: Settings,
    now: datetime | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    database = settings.storage.target
    timeout_s = settings.storage.lock_timeout_s
    with Store.open(database, timeout_s=timeout_s, publish=False) as store:
        queued = queue.pending(store)
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
        queue.claim(database, timeout_s, item, now or utc_now())
        error: str | None
        tries = 1
        if channel is None:
            error = f"channel {item.channel!r} is no longer configured"
        elif not item.events:
            error = "no events found for this notification"
        else:
            error, tries = send_with_retries(item, channel, settings, sleep)
        queue.mark(database, timeout_s, item.key, error, tries, now or utc_now())
        if error:
            report.failed += 1
            report.errors.append(f"{item.channel}: {error}")
            log.warning("delivery to %s failed, kept queued: %s", item.channel, error)
        else:
            report.delivered += 1
            report.delivered_to.append(item.channel)
    if queued:  # readers (alerts list, the outbox view) see the outcomes
        with Store.open(database, timeout_s=timeout_s):
            pass
    return report


def send_with_retries(
    item: Pending,
    channel: Channel,
    settings: Settings,
    sleep: Callable[[float], None],
    title: str = "hedgewatch",
) -> tuple[str | None, int]:
    """(error or None, tries made): retryable errors are retried with exponential backoff."""
    attempts = settings.alerts.delivery_attempts
    error: str | None = None
    for attempt in range(attempts):
        try:
            send(item, channel, settings, title)
            return None, attempt + 1
        except DeliveryError as exc:
            error = str(exc)
            # Sent but unanswered: the peer may have it, so not again in this run.
            if not exc.retryable or exc.sent or attempt == attempts - 1:
                return error, attempt + 1
            sleep(settings.alerts.delivery_backoff_s * 2**attempt)
    return error, attempts


def send(item: Pending, channel: Channel, settings: Settings, title: str = "hedgewatch") -> None:
    """Render `item` for `channel` and send it; raises DeliveryError."""
    context: dict[str, str] = {"title": title}
    if isinstance(channel, FileChannel):
        # The file outbox keeps every rendering, to be read as each channel would show it.
        kinds: tuple[ChannelKind, ...] = ("file", "email", "slack")
        for kind in kinds:
            rendered = render(
                item.events, kind, template_dir=settings.alerts.template_dir, context=context
            )
            write_file_rendering(rendered, channel, item.key, kind)
    else:
        body_template = None
        if isinstance(channel, WebhookChannel):
            body_template = channel.template or WEBHOOK_PRESETS.get(channel.preset)
            if channel.chat_id is not None:
                context["chat_id"] = channel.chat_id
        if isinstance(channel, PagerDutyChannel):
            context["source"] = channel.source
        rendered = render(
            item.events,
            channel_kind(channel),
            template_dir=settings.alerts.template_dir,
            context=context,
            body_template=body_template,
        )
        deliver(rendered, channel, idempotency_key=item.key)
