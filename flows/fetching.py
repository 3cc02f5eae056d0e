"""Fetch what each series is missing, from its watermark up to the venue's last closed candle.

A series that fails is recorded and skipped; the others go on. A venue whose clock cannot be read
is skipped whole for this run. Nothing here touches the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import polars as pl

from flows.exchanges import Exchange, make_exchange
from flows.exchanges.base import CANDLE_SCHEMA, FUNDING_SCHEMA
from flows.exchanges.errors import ExchangeError
from flows.settings import Settings, VenueSettings

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
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


@dataclass
class VenueFetch:
    venue: str
    server_time: datetime | None
    candles: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CANDLE_SCHEMA))
    funding: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FUNDING_SCHEMA))
    series: list[SeriesFetch] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> list[SeriesFetch]:
        return [s for s in self.series if s.error]


def default_factory(venue: VenueSettings) -> Exchange:
    return make_exchange(
        venue.kind,
        venue=venue.name,
        base_urls={str(k): v for k, v in (venue.base_urls or {}).items()} or None,
        timeout_s=venue.timeout_s,
        max_attempts=venue.max_attempts,
    )


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def fetch_venue(
    settings: Settings,
    venue: VenueSettings,
    candle_marks: Mapping[tuple[str, str, str, str], datetime],
    funding_marks: Mapping[tuple[str, str], datetime],
    factory: ExchangeFactory = default_factory,
) -> VenueFetch:
    """Fetch every configured series of one venue that has something new."""
    client = factory(venue)
    try:
        try:
            now = client.server_time()
        except ExchangeError as exc:
            log.error("venue %s skipped for this run: %s", venue.name, exc)
            return VenueFetch(venue=venue.name, server_time=None, error=str(exc))
        first = _floor_hour(settings.fetch.start_for(now))
        series = sorted(
            {
                (i.market, i.symbol, i.interval)
                for i in settings.instruments
                if i.venue == venue.name
            }
        )
        perps = sorted({symbol for market, symbol, _ in series if market == "perp"})

        def candles(key: tuple[str, str, str]) -> tuple[pl.DataFrame, SeriesFetch]:
            market, symbol, interval = key
            mark = candle_marks.get((venue.name, market, symbol, interval))
            start = mark + HOUR if mark else first
            return _guarded(
                lambda: client.fetch_candles(market, symbol, interval, start, now),
                SeriesFetch(venue.name, market, symbol, "candles", start, now, 0),
                CANDLE_SCHEMA,
            )

        def funding(symbol: str) -> tuple[pl.DataFrame, SeriesFetch]:
            mark = funding_marks.get((venue.name, symbol))
            start = mark + timedelta(milliseconds=1) if mark else first
            return _guarded(
                lambda: client.fetch_funding(symbol, start, now),
                SeriesFetch(venue.name, "perp", symbol, "funding", start, now, 0),
                FUNDING_SCHEMA,
            )

        with ThreadPoolExecutor(max_workers=settings.fetch.max_workers) as pool:
            candle_results = list(pool.map(candles, series))
            funding_results = list(pool.map(funding, perps))
    finally:
        client.close()
    return VenueFetch(
        venue=venue.name,
        server_time=now,
        candles=pl.concat([frame for frame, _ in candle_results], how="vertical"),
        funding=pl.concat([frame for frame, _ in funding_results], how="vertical"),
        series=[s for _, s in candle_results + funding_results],
    )


def _guarded(
    call: Callable[[], pl.DataFrame], attempt: SeriesFetch, schema: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame, SeriesFetch]:
    if attempt.start_time >= attempt.end_time:
        return pl.DataFrame(schema=schema), attempt
    try:
        frame = call()
    except ExchangeError as exc:
        log.error(
            "%s %s %s %s not fetched: %s",
            attempt.venue,
            attempt.market,
            attempt.symbol,
            attempt.dataset,
            exc,
        )
        return pl.DataFrame(schema=schema), replace(attempt, error=str(exc))
    return frame, replace(attempt, rows=frame.height)
