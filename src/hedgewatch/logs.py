"""Logging for the `hedgewatch` command and its runs: level, text or JSON lines, secrets redacted.

Nothing happens at import time. `configure_logging` (called by the CLI before any command) sets the
level and format of hedgewatch's and Prefect's console output and installs one redacting filter on
the loggers that can see a secret (httpx logs each request's full URL, and a webhook URL is a
secret). `hide_in_logs` adds a channel's secrets to that filter before it sends; used without the
CLI (a Prefect worker importing the flow), it installs the filter itself on first use.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
REDACTED = "[redacted]"
# Loggers whose records can carry a secret; the filter sits on each (filters do not inherit).
WATCHED_LOGGERS = ("httpx", "httpcore", "hedgewatch", "prefect")
_MIN_SECRET_CHARS = 4


class RedactingFilter(logging.Filter):
    """Replaces every registered secret in a record's message (and drops its arguments)."""

    def __init__(self) -> None:
        super().__init__("")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = redact(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, REDACTED)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message[, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def installed_filter() -> RedactingFilter:
    """The redacting filter on the watched loggers, installing it there if it is not yet."""
    first = logging.getLogger(WATCHED_LOGGERS[0])
    found = next((f for f in first.filters if isinstance(f, RedactingFilter)), None)
    if found is None:
        found = RedactingFilter()
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        if found not in logger.filters:
            logger.addFilter(found)
    return found


def hide_in_logs(secrets: Iterable[str]) -> None:
    """Redact these values from every log line the watched loggers emit from now on."""
    installed_filter().secrets.update(s for s in secrets if len(s) >= _MIN_SECRET_CHARS)


def configure_logging(level: str = "WARNING", fmt: LogFormat = "text") -> None:
    """Console logging for one hedgewatch process: `level` for hedgewatch's loggers, text or JSON
    lines on stderr, and the redacting filter on every console handler.

    Prefect replaces the root logger's handlers when it is imported; commands that import it
    call this again afterwards (it is idempotent).
    """
    logging.getLogger("hedgewatch").setLevel(level.upper())
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    redactor = installed_filter()
    for handler in console_handlers():
        if redactor not in handler.filters:
            handler.addFilter(redactor)
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        elif handler.formatter is None or isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
            )


def console_handlers() -> list[logging.Handler]:
    """The stream handlers of the root logger and of Prefect's loggers."""
    names = [
        name
        for name in list(logging.Logger.manager.loggerDict)
        if name == "prefect" or name.startswith("prefect.")
    ]
    found: list[logging.Handler] = []
    for name in ["", *names]:
        for handler in logging.getLogger(name or None).handlers:
            if isinstance(handler, logging.StreamHandler) and handler not in found:
                found.append(handler)
    return found
