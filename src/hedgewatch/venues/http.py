"""The HTTP layer every venue client uses: JSON GETs with retries, backoff and a weight limiter.

Retries for 429/418/5xx/timeouts/connection errors live here and nowhere else.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from hedgewatch.venues.errors import (
    BadResponse,
    ExchangeError,
    ExchangeUnavailable,
    GeoBlocked,
    InvalidRequest,
    IPBanned,
    RateLimited,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Params = Mapping[str, str | int]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Delays are seconds; backoff is exponential with full jitter."""

    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # Cap on the summed sleeps of one request, so a run never stalls for long on one venue.
    max_total_sleep_s: float = 180.0
    # A 418 ban longer than this raises IPBanned at once (bans escalate to days).
    max_ban_wait_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))] (attempt counts from 1)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return rng.uniform(0.0, ceiling)


class WeightLimiter:
    """Per-IP request-weight budget over fixed windows (Binance resets its count each minute).

    Weight is reserved before a request is sent, so concurrent threads never overshoot together;
    weight still in flight when a window turns is carried into the new one (the request may land
    there). The venue's own count (e.g. X-MBX-USED-WEIGHT-1M, which includes other clients on the
    same IP) raises ours when it is higher. Thread-safe.
    """

    def __init__(
        self,
        budget: int,
        *,
        window_s: float = 60.0,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
    ) -> None:
        if budget < 1:
            raise ValueError("weight budget must be positive")
        self.budget = budget
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._window = math.floor(clock() / window_s)
        self._used = 0
        self._in_flight = 0
        self._blocked_until = 0.0

    def _advance(self, window: int) -> int:
        # Never step back: if an injected sleep did not move the clock, trust that we slept.
        window = max(window, self._window, math.floor(self._clock() / self.window_s))
        if window != self._window:
            self._window, self._used = window, self._in_flight
        return window

    @property
    def used(self) -> int:
        with self._lock:
            self._advance(self._window)
            return self._used

    def acquire(self, weight: int) -> int:
        """Reserve `weight`, sleeping until the budget allows it; returns the window booked."""
        if weight > self.budget:
            raise ValueError(f"request weight {weight} exceeds the whole budget {self.budget}")
        while True:
            with self._lock:
                now = self._clock()
                blocked_until = self._blocked_until
                if now < blocked_until:
                    wait, next_window = blocked_until - now, None
                else:
                    window = self._advance(self._window)
                    if self._used + weight <= self.budget:
                        self._used += weight
                        self._in_flight += weight
                        return window
                    wait, next_window = (window + 1) * self.window_s - now, window + 1
            log.info("weight budget %d per window reached; waiting %.1f s", self.budget, wait)
            self._sleep(max(wait, 0.0))
            with self._lock:
                if next_window is None:
                    if self._blocked_until == blocked_until:
                        self._blocked_until = 0.0
                else:
                    self._advance(next_window)

    def release(self, window: int, weight: int, used_by_venue: int | None = None) -> None:
        """The request booked in `window` is done; adopt the venue's count if it is higher."""
        with self._lock:
            self._in_flight -= weight
            current = self._advance(self._window)
            if used_by_venue is not None and window == current and used_by_venue > self._used:
                self._used = used_by_venue

    def block_for(self, seconds: float) -> None:
        """Hold every request back for `seconds` (after a 429/418 the whole IP must pause)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)


class VenueBudget:
    """What one venue may cost one run: a total deadline shared by all its requests, a deadline
    per request (a body dripped a byte at a time never outlasts it) and a maximum body size."""

    def __init__(
        self,
        *,
        venue_deadline_s: float = 900.0,
        request_deadline_s: float = 60.0,
        max_body_bytes: int = 64 * 1024 * 1024,
        clock: Clock = time.monotonic,
    ) -> None:
        self.venue_deadline_s = venue_deadline_s
        self.request_deadline_s = request_deadline_s
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._ends = clock() + venue_deadline_s

    def remaining_s(self) -> float:
        return self._ends - self._clock()

    def request_ends(self) -> float:
        """The monotonic time the next request must be done by."""
        return self._clock() + min(self.request_deadline_s, max(self.remaining_s(), 0.0))

    def now(self) -> float:
        return self._clock()


@dataclass(frozen=True)
class _Retry:
    error: ExchangeError
    delay_s: float
    whole_ip: bool = False


@dataclass(frozen=True)
class Envelope:
    """How a venue wraps rows and reports errors inside an HTTP 200 body (a venue fact, as data).

    `code_field` holds a status code where `ok_codes` mean success (OKX "code", Bybit "retCode");
    `errors_field` holds a list that is empty on success (Kraken "error"); `message_field` names
    the human text. Codes (or error-string prefixes) in `rate_limit_codes` are retried like a 429,
    those in `busy_codes` like a 5xx; every other error is an InvalidRequest.
    """

    code_field: str | None = None
    ok_codes: tuple[str, ...] = ()
    message_field: str | None = None
    errors_field: str | None = None
    rate_limit_codes: tuple[str, ...] = ()
    busy_codes: tuple[str, ...] = ()

    def error(self, payload: Any) -> tuple[str, str] | None:
        """(kind, detail) when `payload` is an error body; kind is "rate", "busy" or "invalid"."""
        if not isinstance(payload, dict):
            return None
        message = str(payload.get(self.message_field, "")) if self.message_field else ""
        if self.code_field is not None and self.code_field in payload:
            code = str(payload[self.code_field])
            if code in self.ok_codes:
                return None
            detail = f"code {code}: {message}" if message else f"code {code}"
            return self._kind(code), detail
        if self.errors_field is not None:
            errors = payload.get(self.errors_field)
            if isinstance(errors, list) and errors:
                text = "; ".join(str(e) for e in errors)
                return self._kind(str(errors[0])), text
        return None

    def _kind(self, code: str) -> str:
        # Kraken's errors are strings such as "EAPI:Rate limit exceeded": match on the prefix.
        if any(_code_matches(code, c) for c in self.rate_limit_codes):
            return "rate"
        if any(_code_matches(code, c) for c in self.busy_codes):
            return "busy"
        return "invalid"


def _code_matches(code: str, known: str) -> bool:
    # Numeric codes match exactly; text codes ("EAPI:Rate limit exceeded") as a prefix.
    return code == known or (not known.isdigit() and code.startswith(known))


class JsonHttp:
    """GET JSON from one venue host with the retry policy and weight limiter applied."""

    def __init__(
        self,
        venue: str,
        base_url: str,
        *,
        limiter: WeightLimiter,
        policy: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        sleep: Sleep = time.sleep,
        used_weight_header: str | None = None,
        geo_advice: str | None = None,
        forbidden_advice: str | None = None,
        envelope: Envelope | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        budget: VenueBudget | None = None,
    ) -> None:
        self.venue = venue
        self.budget = budget or VenueBudget()
        self.limiter = limiter
        self.policy = policy or RetryPolicy()
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._used_weight_header = used_weight_header
        self._geo_advice = geo_advice
        self._forbidden_advice = forbidden_advice
        self._envelope = envelope
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s),
            headers={"Accept": "application/json", "User-Agent": "hedgewatch"},
            transport=transport,
            verify=_ssl_context(),
        )

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        path: str,
        params: Params | None = None,
        *,
        weight: int = 1,
        limiter: WeightLimiter | None = None,
    ) -> Any:
        """GET `path` and return the decoded JSON body, retrying transient failures.

        `limiter` replaces the host's limiter for endpoints the venue budgets separately.
        """
        policy = self.policy
        limiter = limiter or self.limiter
        slept = 0.0
        for attempt in range(1, policy.max_attempts + 1):
            if self.budget.remaining_s() <= 0:
                raise ExchangeUnavailable(
                    self.venue,
                    path,
                    f"the venue's deadline of {self.budget.venue_deadline_s:g} s "
                    "for this run has passed",
                )
            backoff = policy.backoff_s(attempt, self._rng)
            window = limiter.acquire(weight)
            used: int | None = None
            try:
                outcome = self._send(path, params, backoff)
                if isinstance(outcome, httpx.Response):
                    used = self._used_weight(outcome)
                    outcome = self._classify(path, outcome, backoff)
            finally:
                limiter.release(window, weight, used)
            if not isinstance(outcome, _Retry):
                return outcome
            error, delay = outcome.error, outcome.delay_s
            if attempt == policy.max_attempts:
                raise error
            if slept + delay > policy.max_total_sleep_s:
                log.warning(
                    "%s %s: giving up, a %.1f s wait is over budget", self.venue, path, delay
                )
                raise error
            log.warning(
                "%s %s: %s; retrying in %.1f s (attempt %d/%d)",
                self.venue,
                path,
                error.detail,
                delay,
                attempt + 1,
                policy.max_attempts,
            )
            slept += delay
            if outcome.whole_ip:
                # The limit is per IP: pause every thread; the next acquire() does the waiting.
                limiter.block_for(delay)
            else:
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, path: str, params: Params | None, backoff: float) -> httpx.Response | _Retry:
        try:
            return self._bounded_get(path, params, backoff)
        except httpx.TimeoutException as exc:
            detail = f"no response within {self.timeout_s:g} s ({type(exc).__name__})"
            return _Retry(ExchangeUnavailable(self.venue, path, detail), backoff)
        except httpx.TransportError as exc:
            # Connection refused/reset, or the peer closed mid-body (RemoteProtocolError).
            detail = f"connection failed ({type(exc).__name__}: {_safe(str(exc))})"
            return _Retry(ExchangeUnavailable(self.venue, path, detail), backoff)

    def _bounded_get(
        self, path: str, params: Params | None, backoff: float
    ) -> httpx.Response | _Retry:
        """GET with the body streamed: aborted past the size limit or the request deadline."""
        budget = self.budget
        ends = budget.request_ends()
        limit = budget.max_body_bytes
        with self._client.stream("GET", path, params=params) as streamed:
            announced = streamed.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > limit:
                raise BadResponse(
                    self.venue, path, f"body of {announced} bytes is over the {limit}-byte limit"
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in streamed.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise BadResponse(
                        self.venue, path, f"body over the {limit}-byte limit; aborted"
                    )
                chunks.append(chunk)
                if budget.now() > ends:
                    detail = (
                        f"body not complete within the {budget.request_deadline_s:g} s "
                        "request deadline"
                    )
                    return _Retry(ExchangeUnavailable(self.venue, path, detail), backoff)
            headers = [
                (k, v)
                for k, v in streamed.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
            return httpx.Response(
                streamed.status_code,
                headers=headers,
                content=b"".join(chunks),
                request=streamed.request,
            )

    def _classify(self, path: str, response: httpx.Response, backoff: float) -> Any:
        """The JSON payload, a _Retry, or a raised error that retrying cannot fix."""
        status = response.status_code
        if 200 <= status < 300:
            try:
                payload = response.json()
            except RecursionError:
                detail = f"body nested too deep to decode ({len(response.content)} bytes)"
                raise BadResponse(self.venue, path, detail, status=status) from None
            except ValueError:
                detail = f"body is not valid JSON ({len(response.content)} bytes; truncated?)"
                return _Retry(BadResponse(self.venue, path, detail, status=status), backoff)
            return self._unwrap(path, payload, status, backoff)
        says = _error_detail(response, self._envelope)
        retry_after = _retry_after_s(response)
        if status == 418:
            ban = "unknown" if retry_after is None else f"{retry_after:g} s"
            banned = IPBanned(
                self.venue,
                path,
                f"IP banned for {ban}; {says}",
                status=418,
                retry_after_s=retry_after,
            )
            if retry_after is None or retry_after > self.policy.max_ban_wait_s:
                raise banned
            return _Retry(banned, retry_after, whole_ip=True)
        if status == 429:
            limited = RateLimited(
                self.venue, path, f"rate limited; {says}", status=429, retry_after_s=retry_after
            )
            return _Retry(limited, backoff if retry_after is None else retry_after, whole_ip=True)
        if status == 451:
            detail = f"restricted location; {says}"
            raise GeoBlocked(self.venue, path, detail, status=451, advice=self._geo_advice)
        if status == 403:
            raise RateLimited(
                self.venue,
                path,
                f"refused by the venue's firewall (WAF limit or blocked region); {says}",
                status=403,
                advice=self._forbidden_advice
                or "wait several minutes and lower the request rate; if it persists the region "
                "may be blocked, so try another host or egress",
            )
        if 400 <= status < 500:
            if self._envelope is not None and status != 404:
                # Some venues send their error envelope with a 4xx: classify it by its code.
                try:
                    return self._unwrap(path, response.json(), status, backoff)
                except (ValueError, RecursionError):
                    pass
            raise InvalidRequest(self.venue, path, says, status=status)
        if status >= 500:
            unavailable = ExchangeUnavailable(
                self.venue, path, f"server error; {says}", status=status
            )
            return _Retry(unavailable, backoff if retry_after is None else retry_after)
        raise BadResponse(self.venue, path, f"unexpected HTTP status; {says}", status=status)

    def _unwrap(self, path: str, payload: Any, status: int, backoff: float) -> Any:
        """An error envelope (HTTP 200 with OKX `code`, Bybit `retCode`, Kraken `error[]`) is an
        error: rate limits and busy codes are retried here, everything else is raised."""
        found = self._envelope.error(payload) if self._envelope is not None else None
        if found is None:
            if 200 <= status < 300:
                return payload
            raise InvalidRequest(self.venue, path, _safe(str(payload)), status=status)
        kind, detail = found
        detail = _safe(detail)
        if kind == "rate":
            limited = RateLimited(self.venue, path, f"rate limited; {detail}", status=status)
            return _Retry(limited, max(backoff, 1.0), whole_ip=True)
        if kind == "busy":
            busy = ExchangeUnavailable(self.venue, path, f"venue busy; {detail}", status=status)
            return _Retry(busy, backoff)
        raise InvalidRequest(
            self.venue, path, f"error body with HTTP {status}: {detail}", status=status
        )

    def _used_weight(self, response: httpx.Response) -> int | None:
        if self._used_weight_header is None:
            return None
        raw = response.headers.get(self._used_weight_header, "").strip()
        return int(raw) if raw.isdigit() else None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a verifying context loads the CA bundle (~50 ms); every client can share one.
    return httpx.create_ssl_context()


def _safe(text: str, limit: int = 160) -> str:
    """Shorten text for an error message and drop anything that looks like a query string."""
    text = " ".join(text.split())
    if "?" in text:
        text = text.split("?", 1)[0] + "?…"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_detail(response: httpx.Response, envelope: Envelope | None = None) -> str:
    """What the venue said, e.g. 'code -1121: Invalid symbol.' (bodies may be JSON, HTML, empty)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        text = response.text.strip()
        return f"body: {_safe(text)}" if text else "empty body"
    found = envelope.error(body) if envelope is not None else None
    if found is not None:
        return _safe(found[1])
    if isinstance(body, dict):
        msg = body.get("msg", body.get("message"))
        code = body.get("code")
        if msg is not None:
            return _safe(f"code {code}: {msg}" if code is not None else str(msg))
    return f"body: {_safe(response.text)}"


def _retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After as seconds; accepts delta-seconds (what Binance sends) or an HTTP date."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
