"""Exceptions raised by exchange clients; each says which venue and endpoint failed and what to do.

Messages carry the endpoint path only, never a query string, header or key.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base class. `endpoint` is a path such as "/api/v3/klines"; `status` the HTTP status."""

    advice = "check the venue's status and the request, then retry later"

    def __init__(
        self,
        venue: str,
        endpoint: str,
        detail: str,
        *,
        status: int | None = None,
        advice: str | None = None,
    ) -> None:
        self.venue = venue
        self.endpoint = endpoint
        self.detail = detail
        self.status = status
        self.advice = advice if advice is not None else type(self).advice
        status_part = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{venue} {endpoint}{status_part}: {detail}. What to do: {self.advice}.")


class RateLimited(ExchangeError):
    """HTTP 429 (or a firewall limit) that outlasted the retry budget."""

    advice = (
        "the venue's request-weight limit was hit; wait for Retry-After, lower concurrency "
        "or fetch fewer symbols per run (limits are per IP, shared with other clients on it)"
    )

    def __init__(
        self,
        venue: str,
        endpoint: str,
        detail: str,
        *,
        status: int | None = None,
        advice: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(venue, endpoint, detail, status=status, advice=advice)


class IPBanned(RateLimited):
    """HTTP 418: the IP is banned for ignoring rate limits; bans escalate from 2 min to 3 days."""

    advice = (
        "this IP is banned for exceeding rate limits; stop all clients on this IP until the ban "
        "ends (Retry-After), then reduce request weight — further requests lengthen the ban"
    )


class GeoBlocked(ExchangeError):
    """HTTP 451 (restricted location). Not retried: the answer will not change from this IP."""

    advice = "the venue refuses requests from this location; use another host or egress region"


class ExchangeUnavailable(ExchangeError):
    """5xx, timeouts or connection failures that persisted through every retry."""

    advice = "the venue is down or unreachable; check its status page, the next run fills the gap"


class BadResponse(ExchangeError):
    """A payload that does not have the expected shape, or an error body sent with HTTP 200."""

    advice = (
        "the venue's response format may have changed or the body was cut off; "
        "report it with the endpoint and detail above"
    )


class InvalidRequest(ExchangeError):
    """4xx such as an unknown symbol or interval. Not retried: the request itself must change."""

    advice = "fix the request (symbol, interval, market or time range); retrying will not help"


class HistoryUnavailable(InvalidRequest):
    """The venue does not serve candles that old at all (Kraken keeps only the latest 720)."""

    advice = "load older history from files with `hedgewatch import`"
