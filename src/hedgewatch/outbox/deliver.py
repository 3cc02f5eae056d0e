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

Bounded across runs. A send that timed out after the request went out is "uncertain": the peer
may have it. It is never repeated in the same run. Channels whose receiver drops a second copy
with the same key (`receiver_dedupes`: file, email, PagerDuty, the generic webhook) retry it on
later runs — at least once. Channels that cannot (Slack, Discord, Telegram, a templated webhook)
show the notification's key in every message, so a duplicate is recognisable, and send an
uncertain notification once more, no sooner than `delivery_uncertain_delay_s` after it and marked
as a resend; a second uncertain send gives it up. Whatever the channel, a notification still
undelivered after `delivery_max_runs` runs is given up (`dead`): it is no longer tried, it is
reported once through the failure channels (`report_dead`), and `hedgewatch outbox requeue`
puts it back.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from hedgewatch.alerts.render import WEBHOOK_PRESETS, ChannelKind, Rendered, render
from hedgewatch.alerts.rules import Rule
from hedgewatch.alerts.state import PIPELINE_FAILURE_RULE, AlertEvent, pipeline_failure_event
from hedgewatch.channel_config import secret_values
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
    redact,
    write_file_rendering,
)
from hedgewatch.outbox.queue import Pending
from hedgewatch.settings import AlertSettings, Settings, utc_now
from hedgewatch.storage.store import Store

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    resent_after_interruption: int = 0
    delivered_to: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)  # keys given up in this run
    waiting: int = 0  # uncertain sends held back until their delay has passed


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


def receiver_dedupes(channel: Channel) -> bool:
    """Whether the receiving end can drop a second copy that carries the same key: the file
    channel overwrites its file, email keeps the Message-ID, PagerDuty the `dedup_key`, the
    generic webhook sends `Idempotency-Key` and the `key` field. Slack incoming webhooks,
    Discord, Telegram and a webhook with its own body template cannot."""
    if isinstance(channel, FileChannel | SmtpChannel | PagerDutyChannel):
        return True
    if isinstance(channel, WebhookChannel):
        return channel.preset == "generic" and channel.template is None
    return False


@dataclass(frozen=True)
class Plan:
    """What this run does with one notification: send it (`resend`: it may have arrived
    before), wait for a later run, or give it up (`bury`) without sending."""

    action: Literal["send", "wait", "bury"]
    resend: bool = False
    reason: str = ""


def plan_send(item: Pending, dedupes: bool, alerts: AlertSettings, now: datetime) -> Plan:
    """Pure: whether `item` is sent in this run. An uncertain notification on a channel that
    cannot drop duplicates is sent once more, after `delivery_uncertain_delay_s`; never a third
    time."""
    if dedupes or item.uncertain == 0:
        return Plan("send", resend=item.uncertain > 0)
    if item.uncertain >= 2:
        return Plan(
            "bury",
            reason=(
                f"sent {item.uncertain} times without an answer; the channel cannot drop a "
                "duplicate, so it is not sent again"
            ),
        )
    delay = timedelta(seconds=alerts.delivery_uncertain_delay_s)
    if item.sent_at is not None and now < item.sent_at + delay:
        return Plan("wait")
    return Plan("send", resend=True)


def give_up_reason(
    item: Pending, error: str, uncertain: bool, dedupes: bool, alerts: AlertSettings
) -> str | None:
    """Pure: why `item`, which failed with `error` in this run, is given up, or None to keep it
    queued."""
    if uncertain and not dedupes and item.uncertain >= 1:
        return f"sent twice without an answer; the channel cannot drop a duplicate: {error}"
    runs = item.runs + 1
    if runs >= alerts.delivery_max_runs:
        return f"undelivered after {runs} runs (delivery_max_runs): {error}"
    return None


def deliver_outbox(
    settings: Settings,
    now: datetime | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    publish: bool = True,
) -> DeliveryReport:
    """Send what the outbox holds, each notification claimed before and marked after its send.
    `publish`: end by publishing the read snapshot, so readers see the outcomes (the hourly run
    passes False: its last step publishes the whole run)."""
    database = settings.storage.target
    timeout_s = settings.storage.lock_timeout_s
    with Store.open(database, timeout_s=timeout_s, publish=False) as store:
        queued = queue.pending(store)
        dead_before = bool(store.dead_unreported())
    report = DeliveryReport()
    for item in queued:
        at = now or utc_now()
        channel = settings.channels.get(item.channel)
        dedupes = channel is not None and receiver_dedupes(channel)
        plan = plan_send(item, dedupes, settings.alerts, at)
        if plan.action == "wait":
            report.waiting += 1
            log.info(
                "notification %s to %s went out unanswered; sent once more after %.0f s",
                item.key,
                item.channel,
                settings.alerts.delivery_uncertain_delay_s,
            )
            continue
        if plan.action == "bury":
            queue.bury(database, timeout_s, item.key, plan.reason, at)
            report.dead.append(item.key)
            log.warning("notification %s to %s given up: %s", item.key, item.channel, plan.reason)
            continue
        if item.interrupted:
            report.resent_after_interruption += 1
            log.warning(
                "notification %s to %s was interrupted mid-send; sending it again with the same "
                "idempotency key",
                item.key,
                item.channel,
            )
        queue.claim(database, timeout_s, item, at)
        outcome: Outcome
        if channel is None:
            outcome = Outcome(f"channel {item.channel!r} is no longer configured", 1, False)
        elif not item.events:
            outcome = Outcome("no events found for this notification", 1, False)
        else:
            outcome = attempt(item, channel, settings, sleep, resend=plan.resend)
        error = outcome.error
        dead_reason = (
            give_up_reason(item, error, outcome.uncertain, dedupes, settings.alerts)
            if error
            else None
        )
        queue.mark(
            database,
            timeout_s,
            item.key,
            error,
            outcome.tries,
            now or utc_now(),
            uncertain=outcome.uncertain,
            dead_reason=dead_reason,
        )
        if dead_reason:
            report.failed += 1
            report.errors.append(f"{item.channel}: {error}")
            report.dead.append(item.key)
            log.warning("notification %s to %s given up: %s", item.key, item.channel, dead_reason)
        elif error:
            report.failed += 1
            report.errors.append(f"{item.channel}: {error}")
            log.warning("delivery to %s failed, kept queued: %s", item.channel, error)
        else:
            report.delivered += 1
            report.delivered_to.append(item.channel)
    if report.dead or dead_before:
        report_dead(settings, now or utc_now(), sleep)
    if publish and (queued or dead_before):  # readers (alerts list, the outbox view) see them
        with Store.open(database, timeout_s=timeout_s):
            pass
    return report


DEAD_SQL = "SELECT key, channel, runs, attempts, dead_reason FROM outbox WHERE status = 'dead'"
_DEAD_LISTED = 5


def dead_letter_event(
    rows: Sequence[Mapping[str, Any]], rule: Rule, at: datetime, secrets: Sequence[str] = ()
) -> AlertEvent:
    """Pure: one pipeline-health event naming the notifications given up (the first few, then a
    count) and why, with every secret redacted."""
    parts = [
        f"{row['channel']} {row['key'].rsplit('|', 1)[0]} after {row['runs']} runs: "
        f"{row['dead_reason']}"
        for row in rows[:_DEAD_LISTED]
    ]
    more = f"; and {len(rows) - _DEAD_LISTED} more" if len(rows) > _DEAD_LISTED else ""
    error = (
        f"{len(rows)} notification(s) given up, no longer sent (hedgewatch outbox list; "
        f"hedgewatch outbox requeue to retry): " + "; ".join(parts) + more
    )
    event = pipeline_failure_event(
        flow="outbox", run_id="delivery", started_at=at, error=redact(error, secrets), rule=rule
    )
    return replace(event, context={**event.context, "sql": DEAD_SQL})


def report_dead(
    settings: Settings, at: datetime, sleep: Callable[[float], None] = time.sleep
) -> DeliveryReport | None:
    """Report every dead notification not reported yet, once: one event sent directly to the
    failure channels (not through the outbox, which is what failed), then marked reported
    whatever the channels answered (their errors are logged)."""
    database = settings.storage.target
    timeout_s = settings.storage.lock_timeout_s
    with Store.open(database, timeout_s=timeout_s, publish=False) as store:
        rows = store.dead_unreported()
    if not rows:
        return None
    secrets = secret_values(settings.channels.values())
    event = dead_letter_event(rows, failure_rule(settings), at, secrets)
    sent = send_directly(settings, failure_rule(settings), event, sleep, title="hedgewatch outbox")
    queue.mark_dead_reported(database, timeout_s, [row["key"] for row in rows], at)
    if sent.failed:
        log.error("the report of %d dead notification(s) failed: %s", len(rows), sent.errors)
    return sent


def failure_rule(settings: Settings) -> Rule:
    """The config's `pipeline_failure` rule, else a critical one sending to every channel."""
    rule = next((r for r in settings.alerts.rules if r.kind == "pipeline_failure"), None)
    if rule is not None:
        return rule
    return Rule(
        name=PIPELINE_FAILURE_RULE,
        kind="pipeline_failure",
        severity="critical",
        channels=sorted(settings.channels),
    )


def send_directly(
    settings: Settings,
    rule: Rule,
    event: AlertEvent,
    sleep: Callable[[float], None] = time.sleep,
    title: str | None = None,
) -> DeliveryReport:
    """Render and send `event` to `rule`'s channels without the database; never raises."""
    report = DeliveryReport()
    title = title or f"hedgewatch pipeline failure: {event.subject}"
    for name in rule.channels:
        channel = settings.channels.get(name)
        if channel is None:
            continue
        key = f"{event.key}|{name}"
        error, _ = send_with_retries(Pending(key, name, [event]), channel, settings, sleep, title)
        if error:
            report.failed += 1
            report.errors.append(f"{name}: {error}")
            log.error("pipeline-failure alert to %s failed: %s", name, error)
        else:
            report.delivered += 1
            report.delivered_to.append(name)
    return report


@dataclass(frozen=True)
class Outcome:
    """One run's sends of a notification: the last error (None: delivered), the tries made, and
    whether the last send went out and got no answer."""

    error: str | None
    tries: int
    uncertain: bool


def attempt(
    item: Pending,
    channel: Channel,
    settings: Settings,
    sleep: Callable[[float], None],
    title: str = "hedgewatch",
    *,
    resend: bool = False,
) -> Outcome:
    """Send `item`, retrying retryable errors with exponential backoff, but never after a send
    that went out unanswered (the peer may have it)."""
    attempts = settings.alerts.delivery_attempts
    error: str | None = None
    for try_ in range(attempts):
        try:
            send(item, channel, settings, title, resend=resend)
            return Outcome(None, try_ + 1, False)
        except DeliveryError as exc:
            error = str(exc)
            if exc.sent:  # sent but unanswered: not again in this run
                return Outcome(error, try_ + 1, True)
            if not exc.retryable or try_ == attempts - 1:
                return Outcome(error, try_ + 1, False)
            sleep(settings.alerts.delivery_backoff_s * 2**try_)
    return Outcome(error, attempts, False)


def send_with_retries(
    item: Pending,
    channel: Channel,
    settings: Settings,
    sleep: Callable[[float], None],
    title: str = "hedgewatch",
) -> tuple[str | None, int]:
    """(error or None, tries made): retryable errors are retried with exponential backoff."""
    outcome = attempt(item, channel, settings, sleep, title)
    return outcome.error, outcome.tries


def send(
    item: Pending,
    channel: Channel,
    settings: Settings,
    title: str = "hedgewatch",
    *,
    resend: bool = False,
) -> None:
    """Render `item` for `channel` and send it; raises DeliveryError. On a channel that cannot
    drop duplicates the message shows the notification's key (and says so when it is a resend
    of one that may have arrived)."""
    context: dict[str, Any] = {"title": title, "notification_key": item.key, "resend": resend}
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
        if not receiver_dedupes(channel):
            rendered = show_key(rendered, channel, item.key, resend)
        deliver(rendered, channel, idempotency_key=item.key)


def notification_ref(key: str) -> str:
    """The key as a message shows it: without the channel name it ends in."""
    return key.rsplit("|", 1)[0]


def show_key(rendered: Rendered, channel: Channel, key: str, resend: bool) -> Rendered:
    """`rendered` with the notification's key shown at its end (Slack, Discord, Telegram), so a
    second copy is recognisable; a user's own body template gets `notification_key` and
    `resend` to show as it likes."""
    if rendered.payload is None:
        return rendered
    ref = notification_ref(key)
    note = "resent: an earlier send got no answer and may have arrived · " if resend else ""
    body = dict(rendered.payload)
    if isinstance(channel, SlackChannel):
        line = f"{note}ref {html.escape(ref, quote=False)}"
        block = {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}
        body["blocks"] = [*body.get("blocks", []), block]
        body["text"] = f"{body.get('text', '')}\n{line}"
    elif isinstance(channel, WebhookChannel) and channel.template is None:
        if channel.preset == "discord":
            line = f"\n{note}ref {ref}"
            body["content"] = str(body.get("content", ""))[: 2000 - len(line)] + line
        elif channel.preset == "telegram":
            line = f"\n\n{html.escape(note)}ref <code>{html.escape(ref)}</code>"
            text = str(body.get("text", ""))
            if len(text) + len(line) > 4096:  # cut at a line: markup stays within a line
                text = text[: 4096 - len(line)].rpartition("\n")[0]
            body["text"] = text + line
    return replace(rendered, payload=body)
