"""Deliver a rendered digest to a channel: a file, an SMTP server, a Slack incoming webhook,
PagerDuty's Events API v2, or any HTTP endpoint that takes JSON (a webhook: the generic digest, a
Discord or Telegram preset, or the user's own body template).

The channels' settings (pydantic models discriminated by `kind`) live in
`hedgewatch.channel_config`, which the settings validate and this module reads. Errors are
`DeliveryError`s whose messages never contain a password, token, routing key or webhook URL.
Retrying is the outbox's job, not this module's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import httpx

from hedgewatch.alerts.render import Rendered
from hedgewatch.channel_config import (
    Channel,
    ChannelSettings,
    FileChannel,
    PagerDutyChannel,
    SlackChannel,
    SmtpChannel,
    WebhookChannel,
)

__all__ = [
    "Channel",
    "ChannelSettings",
    "DeliveryError",
    "FileChannel",
    "PagerDutyChannel",
    "SlackChannel",
    "SmtpChannel",
    "WebhookChannel",
    "deliver",
    "redact",
    "write_file_rendering",
]
from hedgewatch.logs import hide_in_logs

_EXCERPT_CHARS = 200
_REDACTED = "[redacted]"
# `Authorization: Basic dXNlcjpwYXNz`, "authorization": "Bearer …", Proxy-Authorization too.
_AUTHORIZATION = re.compile(
    r"""((?:proxy-)?authorization["']?\s*[:=]\s*["']?)((?:basic|bearer|token|digest)\s+)?"""
    r"""[^\s"',;}]+""",
    re.IGNORECASE,
)
# https://user:password@host/… (and any other scheme).
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


class DeliveryError(Exception):
    """A digest could not be delivered. `retryable` says whether trying again later may help."""

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        retryable: bool,
        status: int | None = None,
        sent: bool = False,
    ):
        super().__init__(message)
        self.channel = channel
        self.retryable = retryable
        self.status = status
        # The request went out and its answer never came: the peer may have it. Not sent again
        # in this run (a later run retries with the same idempotency key).
        self.sent = sent


def deliver(rendered: Rendered, channel: Channel, *, idempotency_key: str) -> None:
    """Send `rendered` through `channel`; raises DeliveryError.

    The key names the file (a redelivery overwrites it), derives the email Message-ID and is sent
    as the webhook's `Idempotency-Key` header and `key` field, so receivers can drop duplicates.
    Slack incoming webhooks have no idempotency mechanism.
    """
    if not idempotency_key:
        raise ValueError("idempotency_key must not be empty")
    if isinstance(channel, FileChannel):
        write_file_rendering(rendered, channel, idempotency_key, "file")
    elif isinstance(channel, SmtpChannel):
        _deliver_smtp(rendered, channel, idempotency_key)
    elif isinstance(channel, WebhookChannel):
        _deliver_webhook(rendered, channel, idempotency_key)
    elif isinstance(channel, PagerDutyChannel):
        _deliver_pagerduty(rendered, channel)
    else:
        _deliver_slack(rendered, channel)


def file_name(idempotency_key: str, suffix: str = ".md") -> str:
    """A safe, deterministic file name for a key: readable slug plus a hash against collisions."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", idempotency_key).strip("._")[:80]
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]
    return f"{slug}-{digest}{suffix}"


def write_file_rendering(
    rendered: Rendered, channel: FileChannel, idempotency_key: str, kind: str = "file"
) -> list[Path]:
    """Write one rendering into the file channel's dir, atomically; returns the paths written.

    kind "file" -> <name>.md; "email" -> <name>.email.txt (+ .email.html); "slack" ->
    <name>.slack.json. The same key and kind always map to the same files, so a redelivery
    overwrites them.
    """
    contents: list[tuple[str, str]]
    if kind == "file":
        contents = [(".md", rendered.text)]
    elif kind == "email":
        contents = [(".email.txt", f"Subject: {rendered.subject}\n\n{rendered.text}")]
        html = rendered.html_inline()  # pictures inline, so the file opens in a browser as sent
        if html is not None:
            contents.append((".email.html", html))
    elif kind == "slack":
        body = rendered.payload if rendered.payload is not None else {"text": rendered.text}
        contents = [(".slack.json", json.dumps(body, ensure_ascii=False, indent=2) + "\n")]
    else:
        raise ValueError(f"unknown rendering kind {kind!r}; expected file, email or slack")
    paths = [channel.dir / file_name(idempotency_key, suffix) for suffix, _ in contents]
    for path, (_, content) in zip(paths, contents, strict=True):
        _write_atomic(path, content)
    return paths


def _write_atomic(target: Path, content: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: readers never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise DeliveryError(
            f"file channel: cannot write {target}: {exc.strerror or type(exc).__name__}",
            channel="file",
            retryable=True,
        ) from None


def build_email(rendered: Rendered, channel: SmtpChannel, key: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = " ".join(rendered.subject.split())
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.recipients)
    msg["Date"] = formatdate(usegmt=True)
    domain = channel.sender.rpartition("@")[2] or "hedgewatch.invalid"
    msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
    msg.set_content(rendered.text)
    if rendered.html is not None:
        msg.add_alternative(rendered.html, subtype="html")
        if rendered.images:
            # multipart/related inside the alternative: the HTML shows them as cid: pictures.
            html_part = msg.get_body(preferencelist=("html",))
            assert isinstance(html_part, EmailMessage)
            for cid, png in rendered.images:
                html_part.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>")
    return msg


def _deliver_smtp(rendered: Rendered, channel: SmtpChannel, key: str) -> None:
    where = f"SMTP {channel.host}:{channel.port}"
    secrets = [channel.password.get_secret_value()] if channel.password else []

    def fail(message: str, *, retryable: bool) -> DeliveryError:
        return DeliveryError(redact(message, secrets), channel="smtp", retryable=retryable)

    try:
        msg = build_email(rendered, channel, key)
    except ValueError as exc:
        raise fail(f"{where}: cannot build the message: {exc}", retryable=False) from None
    try:
        context = ssl.create_default_context()
        if channel.ca_file is not None:
            context.load_verify_locations(cafile=str(channel.ca_file))
        smtp: smtplib.SMTP
        if channel.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                channel.host, channel.port, timeout=channel.timeout_s, context=context
            )
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        with smtp:
            if (
                channel.security == "none"
                and channel.password is not None
                and not channel.allow_plaintext_auth
            ):
                raise fail(
                    f"{where}: refused to send the password in plaintext (security = 'none'); "
                    "use starttls or ssl, or set allow_plaintext_auth = true",
                    retryable=False,
                )
            if channel.security == "starttls":
                smtp.starttls(context=context)
            if channel.username is not None and channel.password is not None:
                smtp.login(channel.username, channel.password.get_secret_value())
            smtp.send_message(msg, from_addr=channel.sender, to_addrs=channel.recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise fail(
            f"{where}: authentication failed for user {channel.username!r} "
            f"({exc.smtp_code} {_decode(exc.smtp_error)}); check the username and password",
            retryable=False,
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise fail(f"{where}: {exc}; check `security` and credentials", retryable=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(exc.recipients))
        raise fail(f"{where}: recipients refused: {refused}", retryable=False) from None
    except smtplib.SMTPResponseException as exc:
        raise fail(
            f"{where}: server answered {exc.smtp_code} {_decode(exc.smtp_error)}",
            retryable=400 <= exc.smtp_code < 500,
        ) from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise fail(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from None


def _deliver_slack(rendered: Rendered, channel: SlackChannel) -> None:
    if rendered.payload is None:
        raise ValueError("Slack delivery needs a payload: render with channel_kind='slack'")
    url = channel.webhook_url.get_secret_value()
    if not url.startswith(("https://", "http://")):
        raise DeliveryError(
            "Slack webhook: webhook_url must be an http(s) URL", channel="slack", retryable=False
        )
    secrets = [url, httpx.URL(url).path]
    hide_in_logs(secrets)

    def fail(
        message: str, *, retryable: bool, status: int | None = None, sent: bool = False
    ) -> DeliveryError:
        return DeliveryError(
            redact(message, secrets),
            channel="slack",
            retryable=retryable,
            status=status,
            sent=sent,
        )

    try:
        response = httpx.post(url, json=rendered.payload, timeout=channel.timeout_s)
    except httpx.ReadTimeout:
        raise fail("Slack webhook: sent, no answer in time", retryable=True, sent=True) from None
    except httpx.TimeoutException:
        raise fail("Slack webhook: timed out", retryable=True) from None
    except httpx.HTTPError as exc:
        raise fail(f"Slack webhook: {type(exc).__name__}: {exc}", retryable=True) from None
    if not response.is_success:
        excerpt = " ".join(response.text[:_EXCERPT_CHARS].split())
        raise fail(
            f"Slack webhook answered HTTP {response.status_code}: {excerpt}",
            retryable=response.status_code == 429 or response.status_code >= 500,
            status=response.status_code,
        )


def _deliver_webhook(rendered: Rendered, channel: WebhookChannel, key: str) -> None:
    if rendered.payload is None:
        raise ValueError("webhook delivery needs a payload: render with channel_kind='webhook'")
    token = channel.token.get_secret_value() if channel.token is not None else ""
    headers = {"Idempotency-Key": key}
    if channel.preset == "telegram":
        url = f"{channel.api_url.rstrip('/')}/bot{token}/sendMessage"
        body = rendered.payload
    else:
        url = channel.url.get_secret_value() if channel.url is not None else ""
        # The generic digest carries its key; a preset's or template's body is sent as rendered.
        generic = channel.preset == "generic" and channel.template is None
        body = {"key": key, **rendered.payload} if generic else rendered.payload
        if token:
            headers["Authorization"] = f"Bearer {token}"
    if not url.startswith(("https://", "http://")):
        raise DeliveryError(
            "webhook: url must be an http(s) URL", channel="webhook", retryable=False
        )
    parsed = httpx.URL(url)
    where = f"{channel.preset if channel.preset != 'generic' else 'webhook'} {parsed.host}"
    secrets = [url, parsed.path, parsed.query.decode(), parsed.password or "", token]
    hide_in_logs(secrets)
    _post_json(url, body, headers, channel.timeout_s, where, "webhook", secrets)


def _deliver_pagerduty(rendered: Rendered, channel: PagerDutyChannel) -> None:
    """One Events v2 request per event, in order; the routing key goes in each body only."""
    if rendered.payload is None:
        raise ValueError("PagerDuty delivery needs a payload: render with channel_kind='pagerduty'")
    routing_key = channel.routing_key.get_secret_value()
    secrets = [routing_key]
    hide_in_logs(secrets)
    where = f"PagerDuty {httpx.URL(channel.events_url).host}"
    for event in rendered.payload["events"]:
        body = {"routing_key": routing_key, **event}
        if event.get("event_action") == "trigger":
            body["payload"] = {**event["payload"], "source": channel.source}
        _post_json(channel.events_url, body, {}, channel.timeout_s, where, "pagerduty", secrets)


def _post_json(
    url: str,
    body: object,
    headers: dict[str, str],
    timeout_s: float,
    where: str,
    kind: str,
    secrets: list[str],
) -> None:
    def fail(
        message: str, *, retryable: bool, status: int | None = None, sent: bool = False
    ) -> DeliveryError:
        return DeliveryError(
            redact(message, secrets), channel=kind, retryable=retryable, status=status, sent=sent
        )

    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
    except httpx.ReadTimeout:
        raise fail(f"{where}: sent, no answer in time", retryable=True, sent=True) from None
    except httpx.TimeoutException:
        raise fail(f"{where}: timed out", retryable=True) from None
    except httpx.HTTPError as exc:
        raise fail(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from None
    if not response.is_success:
        excerpt = " ".join(response.text[:_EXCERPT_CHARS].split())
        raise fail(
            f"{where} answered HTTP {response.status_code}: {excerpt}",
            retryable=response.status_code in (408, 409, 425, 429) or response.status_code >= 500,
            status=response.status_code,
        )


def redact(message: str, secrets: Iterable[str]) -> str:
    """`message` with every secret (and its base64 form, as in Basic auth) replaced, and any
    Authorization value or credentials in a URL too, known or not (a peer may echo them)."""
    message = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{_REDACTED}", message)
    message = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{_REDACTED}@", message)
    for secret in secrets:
        if len(secret) < 4:
            continue  # too short to tell apart from ordinary text
        forms = {secret, base64.b64encode(secret.encode()).decode()}
        for form in forms:
            message = message.replace(form, _REDACTED)
    return message


def _decode(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
