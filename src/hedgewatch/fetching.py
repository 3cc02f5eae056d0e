"""Fetch what each series is missing, from its watermark up to the venue's last closed candle.

A series that fails is recorded and skipped; the others go on. A venue that is down, limiting or
refusing us (its clock cannot be read, or a series fails with such an error) is skipped whole for
this run, and every series it owes is recorded with the error, so `fetch_log` shows what went
stale. Nothing here touches the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from hedgewatch.settings import Settings, VenueSettings
from hedgewatch.venues import Exchange, VenueBudget, make_exchange
from hedgewatch.venues.base import CANDLE_SCHEMA, FUNDING_SCHEMA
from hedgewatch.venues.errors import (
    ExchangeError,
    ExchangeUnavailable,
    GeoBlocked,
    RateLimited,
)
from hedgewatch.venues.validate import check_candles

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
# Each run re-reads this much of every series it already holds, so a late correction is taken.
OVERLAP = timedelta(hours=3)
# A venue clock further than this from ours is flagged in fetch_log.
SKEW_TOLERANCE_S = 60.0
# Errors that say the venue, not one series, is the problem: skip the rest of it for this run.
VENUE_DOWN = (ExchangeUnavailable, RateLimited, GeoBlocked)
ExchangeFactory = Callable[[VenueSettings], Exchange]


@dataclass(frozen=True)
class SeriesFetch:
    """What one request range of one series brought (or why it failed)."""

    venue: str
    market: str
    symbol: str
    dataset: str  # "candles" | "funding"
    start_time: datetime
    end_time: datetime
    rows: int
    error: str | None = None
    rejected: int = 0  # rows refused at the edge (see venues.validate)
    note: str | None = None  # why rows were rejected; a venue clock off ours


@dataclass
class VenueFetch:
    venue: str
    server_time: datetime | None
    candles: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CANDLE_SCHEMA))
    funding: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FUNDING_SCHEMA))
    series: list[SeriesFetch] = field(default_factory=list)
    error: str | None = None
    skew_s: float | None = None  # the venue's clock minus ours, when read

    @property
    def failed(self) -> list[SeriesFetch]:
        return [s for s in self.series if s.error]


def default_factory(venue: VenueSettings) -> Exchange:
    extra: dict[str, Any] = {"exchange": venue.exchange} if venue.exchange else {}
    return make_exchange(
        venue.kind,
        venue=venue.name,
        base_urls={str(k): v for k, v in (venue.base_urls or {}).items()} or None,
        timeout_s=venue.timeout_s,
        max_attempts=venue.max_attempts,
        budget=VenueBudget(
            venue_deadline_s=venue.run_deadline_s,
            request_deadline_s=venue.request_deadline_s,
            max_body_bytes=venue.max_body_bytes,
        ),
        **extra,
    )


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def fetch_venue(
    settings: Settings,
    venue: VenueSettings,
    candle_marks: Mapping[tuple[str, str, str, str], datetime],
    funding_marks: Mapping[tuple[str, str], datetime],
    factory: ExchangeFactory = default_factory,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> VenueFetch:
    """Fetch every configured series of one venue that has something new.

    A candle is closed by the earlier of the venue's clock and ours (a venue clock running ahead
    cannot pass its open candle off as closed); the last `OVERLAP` of every stored series is
    read again; every row is checked at the edge and rejects are counted per series.
    """
    series = sorted(
        {(i.market, i.symbol, i.interval) for i in settings.instruments if i.venue == venue.name}
    )
    perps = sorted({symbol for market, symbol, _ in series if market == "perp"})
    client = factory(venue)
    try:
        try:
            venue_now = client.server_time()
        except Exception as exc:  # a venue can only hurt itself: any failure skips it
            reason = _reason(exc)
            log.error("venue %s skipped for this run: %s", venue.name, reason)
            return skipped_venue(venue.name, series, perps, reason)
        # A replay of past history: its clock is the run's; ours would be years off.
        local_now = venue_now if settings.fetch.clock == "venue" else clock()
        now = min(venue_now, local_now)
        skew_s = (venue_now - local_now).total_seconds()
        skew_note = None
        if abs(skew_s) > SKEW_TOLERANCE_S:
            skew_note = f"venue clock {skew_s:+.0f} s off ours; candles closed by the earlier"
            log.warning("venue %s: %s", venue.name, skew_note)
        first = _floor_hour(settings.fetch.start_for(now))
        down = _Breaker(venue.name)

        def candles(key: tuple[str, str, str]) -> tuple[pl.DataFrame, SeriesFetch]:
            market, symbol, interval = key
            mark = candle_marks.get((venue.name, market, symbol, interval))
            start = max(mark + HOUR - OVERLAP, first) if mark else first

            def call() -> pl.DataFrame:
                return client.fetch_candles(market, symbol, interval, start, now, now=now)

            frame, attempt = _guarded(
                call,
                SeriesFetch(venue.name, market, symbol, "candles", start, now, 0, note=skew_note),
                CANDLE_SCHEMA,
                down,
            )
            checked = check_candles(frame, now=now)
            notes = [n for n in (checked.summary(), attempt.note) if n]
            return checked.kept, replace(
                attempt,
                rows=checked.kept.height,
                rejected=checked.rejected,
                note="; ".join(notes) or None,
            )

        def funding(symbol: str) -> tuple[pl.DataFrame, SeriesFetch]:
            mark = funding_marks.get((venue.name, symbol))
            start = mark + timedelta(milliseconds=1) if mark else first
            return _guarded(
                lambda: client.fetch_funding(symbol, start, now),
                SeriesFetch(venue.name, "perp", symbol, "funding", start, now, 0),
                FUNDING_SCHEMA,
                down,
            )

        with ThreadPoolExecutor(max_workers=settings.fetch.max_workers) as pool:
            candle_results = list(pool.map(candles, series))
            funding_results = list(pool.map(funding, perps))
    finally:
        client.close()
    return VenueFetch(
        venue=venue.name,
        server_time=now,
        skew_s=skew_s,
        candles=_concat([frame for frame, _ in candle_results], CANDLE_SCHEMA),
        funding=_concat([frame for frame, _ in funding_results], FUNDING_SCHEMA),
        series=[s for _, s in candle_results + funding_results],
    )


def skipped_venue(
    venue: str, series: Sequence[tuple[str, str, str]], perps: Sequence[str], error: str
) -> VenueFetch:
    """A venue skipped whole: one failed SeriesFetch per series it owes, for the fetch log."""
    at = datetime.now(UTC)
    owed = [SeriesFetch(venue, m, s, "candles", at, at, 0, error) for m, s, _ in series]
    owed += [SeriesFetch(venue, "perp", s, "funding", at, at, 0, error) for s in perps]
    return VenueFetch(venue=venue, server_time=None, series=owed, error=error)


def _concat(frames: list[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=schema)


class _Breaker:
    """Opens per (market, dataset) on the first venue-level error there; later series of the same
    endpoint are then skipped for this run (a venue's markets may live on different hosts)."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.errors: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    @property
    def error(self) -> str | None:
        with self._lock:
            return "; ".join(sorted(set(self.errors.values()))) or None

    def open_for(self, attempt: SeriesFetch) -> str | None:
        with self._lock:
            return self.errors.get((attempt.market, attempt.dataset))

    def trip(self, attempt: SeriesFetch, reason: str) -> None:
        with self._lock:
            key = (attempt.market, attempt.dataset)
            if key not in self.errors:
                self.errors[key] = reason
                log.error(
                    "%s %s %s skipped for the rest of this run: %s",
                    self.venue,
                    attempt.market,
                    attempt.dataset,
                    reason,
                )


def _guarded(
    call: Callable[[], pl.DataFrame],
    attempt: SeriesFetch,
    schema: Mapping[str, pl.DataType],
    breaker: _Breaker | None = None,
) -> tuple[pl.DataFrame, SeriesFetch]:
    if attempt.start_time >= attempt.end_time:
        return pl.DataFrame(schema=schema), attempt
    failing = breaker.open_for(attempt) if breaker is not None else None
    if failing is not None:
        return pl.DataFrame(schema=schema), replace(
            attempt, error=f"skipped, venue failing this run: {failing}"
        )
    try:
        frame = call()
    except Exception as exc:  # not only the client's own errors: a venue can only hurt itself
        reason = _reason(exc)
        # The venue being down, or answering what no client expects, ends it for this run.
        if breaker is not None and (
            isinstance(exc, VENUE_DOWN) or not isinstance(exc, ExchangeError)
        ):
            breaker.trip(attempt, reason)
        log.error(
            "%s %s %s %s not fetched: %s",
            attempt.venue,
            attempt.market,
            attempt.symbol,
            attempt.dataset,
            reason,
        )
        return pl.DataFrame(schema=schema), replace(attempt, error=reason)
    return frame, replace(attempt, rows=frame.height)


def _reason(exc: BaseException) -> str:
    """What fetch_log records: the client's own message, or the unexpected error's type too."""
    if isinstance(exc, ExchangeError):
        return str(exc)
    text = " ".join(str(exc).split())[:200]
    return f"unexpected {type(exc).__name__} while fetching or parsing: {text}"
