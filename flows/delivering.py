"""Deliver the outbox: every queued digest is rendered for its channel and sent.

The database is read, closed while sending, and reopened to record the outcome. A failure stays
queued with its error and is retried on the next run; a digest is marked delivered only after
its channel accepted it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from alerts.delivery import (
    Channel,
    DeliveryError,
    FileChannel,
    SlackChannel,
    SmtpChannel,
    deliver,
    write_file_rendering,
)
from alerts.render import ChannelKind, Rendered, render
from alerts.state import AlertEvent
from flows.pipeline import load_events
from flows.settings import Settings, utc_now
from flows.store import Store

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pending:
    key: str
    channel: str
    events: list[AlertEvent]


def channel_kind(channel: Channel) -> ChannelKind:
    if isinstance(channel, SmtpChannel):
        return "email"
    if isinstance(channel, SlackChannel):
        return "slack"
    return "file"


def render_for(channel: Channel, events: list[AlertEvent], settings: Settings) -> Rendered:
    return render(
        events,
        channel_kind(channel),
        template_dir=settings.alerts.template_dir,
        context={"title": "hedgewatch"},
    )


def pending_deliveries(store: Store) -> list[Pending]:
    rows = store.con.sql(
        "SELECT key, channel, event_keys FROM deliveries WHERE delivered_at IS NULL ORDER BY key"
    ).fetchall()
    return [Pending(key, channel, load_events(store, keys)) for key, channel, keys in rows]


def deliver_outbox(settings: Settings, now: datetime | None = None) -> DeliveryReport:
    database = settings.storage.database
    with Store.open(database, timeout_s=settings.storage.lock_timeout_s) as store:
        queued = pending_deliveries(store)
    report = DeliveryReport()
    outcomes: list[tuple[str, str | None]] = []
    for item in queued:
        channel = settings.channels.get(item.channel)
        error: str | None
        if channel is None:
            error = f"channel {item.channel!r} is no longer configured"
        elif not item.events:
            error = "no events found for this notification"
        else:
            error = _send(item, channel, settings)
        outcomes.append((item.key, error))
        if error:
            report.failed += 1
            report.errors.append(f"{item.channel}: {error}")
            log.warning("delivery to %s failed, kept queued: %s", item.channel, error)
        else:
            report.delivered += 1
    if outcomes:
        with Store.open(database, timeout_s=settings.storage.lock_timeout_s) as store:
            stamp = now or utc_now()
            for key, error in outcomes:
                store.con.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, last_error = $e,"
                    " delivered_at = CASE WHEN $ok THEN $t ELSE NULL END WHERE key = $k",
                    {"k": key, "e": error, "ok": error is None, "t": stamp},
                ).fetchall()
    return report


def _send(item: Pending, channel: Channel, settings: Settings) -> str | None:
    try:
        if isinstance(channel, FileChannel):
            # The file outbox keeps every rendering, to be read as each channel would show it.
            kinds: tuple[ChannelKind, ...] = ("file", "email", "slack")
            for kind in kinds:
                rendered = render(
                    item.events,
                    kind,
                    template_dir=settings.alerts.template_dir,
                    context={"title": "hedgewatch"},
                )
                write_file_rendering(rendered, channel, item.key, kind)
        else:
            deliver(render_for(channel, item.events, settings), channel, idempotency_key=item.key)
    except DeliveryError as exc:
        return str(exc)
    return None
