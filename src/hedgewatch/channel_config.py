"""Channel settings: one pydantic model per receiver kind, discriminated by `kind`.

Plain configuration, no I/O: `hedgewatch.settings` validates them inside the config and the
outbox's channels read them when delivering. Secrets are `SecretStr`s filled from the environment
or a Prefect Secret block by the settings loader; they never come from the file itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
TELEGRAM_API_URL = "https://api.telegram.org"


class _ChannelModel(BaseModel):
    # hide_input_in_errors only helps when a channel is validated on its own: nested in another
    # model, the outer config decides. So no validator here ever fails on a secret's value.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class FileChannel(_ChannelModel):
    """Writes each digest's text to `dir/<slug of the idempotency key>-<hash>.md`."""

    kind: Literal["file"] = "file"
    dir: Path


class SmtpChannel(_ChannelModel):
    """Sends multipart/alternative (text + HTML) email with the standard library's smtplib."""

    kind: Literal["smtp"] = "smtp"
    host: str = Field(min_length=1)
    port: int = Field(default=587, gt=0, lt=65536)
    # password comes first: the pair check runs on username, so its error never echoes the password.
    password: SecretStr | None = None
    username: str | None = Field(default=None, validate_default=True)
    sender: str = Field(min_length=3)
    recipients: list[str] = Field(min_length=1)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    # With security = "none" a password would cross the network readable: refused unless set.
    allow_plaintext_auth: bool = Field(default=False, validate_default=True)
    # Extra CA certificates (PEM) to trust, e.g. a company's internal CA; the system's are kept.
    ca_file: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=3600)

    @field_validator("allow_plaintext_auth")
    @classmethod
    def _no_plaintext_password(cls, value: bool, info: ValidationInfo) -> bool:
        if info.data.get("security") == "none" and info.data.get("password") and not value:
            raise ValueError(
                "security = 'none' would send the password in plaintext; use starttls or ssl, "
                "or set allow_plaintext_auth = true"
            )
        return value

    @field_validator("username")
    @classmethod
    def _credentials_come_in_pairs(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (value is None) != (info.data.get("password") is None):
            raise ValueError("username and password must be given together (or neither)")
        return value


class SlackChannel(_ChannelModel):
    """Posts Block Kit JSON to a Slack incoming webhook (its URL is checked when delivering)."""

    kind: Literal["slack"] = "slack"
    webhook_url: SecretStr
    timeout_s: float = Field(default=10.0, gt=0)


class WebhookChannel(_ChannelModel):
    """POSTs the digest as JSON, with an `Idempotency-Key` header per notification.

    The body is the generic JSON digest, or what a body template renders: a ready `preset`
    ("discord": an incoming-webhook message with one coloured embed per event; "telegram": a Bot
    API sendMessage to `chat_id`) or the user's own `template` (a file in `alerts.template_dir`
    that renders JSON). `token` is sent as `Authorization: Bearer`, or for Telegram becomes the
    bot's part of the API path; like `url`, it comes from the environment or a Secret block.
    """

    kind: Literal["webhook"] = "webhook"
    preset: Literal["generic", "discord", "telegram"] = "generic"
    url: SecretStr | None = None
    token: SecretStr | None = None
    template: str | None = Field(default=None, min_length=1)
    chat_id: str | None = Field(default=None, min_length=1)
    # Telegram's Bot API root; the request goes to {api_url}/bot<token>/sendMessage.
    api_url: str = Field(default=TELEGRAM_API_URL, pattern=r"^https?://")
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _preset_has_what_it_needs(self) -> WebhookChannel:
        # Messages name fields only, never a value: the url and token are secrets.
        if self.preset == "telegram":
            if self.token is None or self.chat_id is None:
                raise ValueError("the telegram preset needs token_env (the bot token) and chat_id")
            if self.url is not None:
                raise ValueError("the telegram preset builds its URL from api_url; drop url_env")
        elif self.url is None:
            raise ValueError(f"a {self.preset} webhook needs url_env (or url_secret_block)")
        if self.preset != "generic" and self.template is not None:
            raise ValueError("give a preset or a template, not both")
        return self


class PagerDutyChannel(_ChannelModel):
    """PagerDuty Events API v2: "trigger" for a firing/escalated/repeat event, "resolve" for a
    resolved one, `dedup_key` = the alert episode's key, so one incident per episode. The
    integration's routing key travels in the request body only, never in a URL."""

    kind: Literal["pagerduty"] = "pagerduty"
    routing_key: SecretStr
    events_url: str = Field(default=PAGERDUTY_EVENTS_URL, pattern=r"^https?://")
    source: str = Field(default="hedgewatch", min_length=1)
    timeout_s: float = Field(default=10.0, gt=0)


Channel = FileChannel | SmtpChannel | SlackChannel | WebhookChannel | PagerDutyChannel
ChannelSettings = Annotated[Channel, Field(discriminator="kind")]


def secret_values(channels: Iterable[BaseModel]) -> list[str]:
    """Every secret's value held by `channels` (for redaction)."""
    values = []
    for channel in channels:
        for value in channel.__dict__.values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
    return values
