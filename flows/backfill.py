"""Backfill history: split a range into chunks per series, fetch them concurrently within each
venue's budget, store each chunk through the same upsert as the hourly run, and remember it.

A chunk is a whole number of the venue's pages (so paging wastes no weight) and is recorded in
`backfill_ranges` in the same transaction as its rows: an interrupted backfill resumes where it
stopped, and memory stays flat however long the range is (one chunk per worker in flight).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from hedgewatch.fetching import ExchangeFactory, default_factory
from hedgewatch.settings import Settings, VenueSettings
from hedgewatch.storage.store import Store
from hedgewatch.venues import Exchange
from hedgewatch.venues.base import interval_to_timedelta
from hedgewatch.venues.errors import ExchangeError, HistoryUnavailable

log = logging.getLogger(__name__)

# Pages per chunk: big enough that the one server-time call per chunk is noise (a year of 1h
# candles is one chunk on Binance or Bybit), small enough that a chunk is some 10^4 rows.
PAGES_PER_CHUNK = 16


@dataclass(frozen=True)
class Chunk:
    venue: str
    market: str
    symbol: str
    interval: str  # "-" for funding
    dataset: str  # "candles" | "funding"
    start: datetime
    end: datetime


@dataclass
class BackfillReport:
    planned: int = 0
    skipped: int = 0  # already stored by an earlier backfill
    done: int = 0
    rows: int = 0
    failed: list[tuple[Chunk, str]] = field(default_factory=list)
    unavailable: list[tuple[Chunk, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def split(start: datetime, end: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    """[start, end) in consecutive pieces of `step` (the last may be shorter)."""
    pieces = []
    cursor = start
    while cursor < end:
        pieces.append((cursor, min(cursor + step, end)))
        cursor += step
    return pieces


def completed_ranges(store: Store) -> dict[tuple[str, ...], list[tuple[datetime, datetime]]]:
    rows = store.backfill_ranges()
    done: dict[tuple[str, ...], list[tuple[datetime, datetime]]] = {}
    for venue, market, symbol, interval, dataset, start, end in rows:
        done.setdefault((venue, market, symbol, interval, dataset), []).append((start, end))
    return done


def _covered(ranges: Sequence[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    """Whether the union of `ranges` covers [start, end)."""
    cursor = start
    for lo, hi in sorted(ranges):
        if lo > cursor:
            break
        cursor = max(cursor, hi)
        if cursor >= end:
            return True
    return cursor >= end


def plan(
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    pages: dict[tuple[str, str], int],
    venues: Iterable[str] | None = None,
    symbols: Iterable[str] | None = None,
) -> list[Chunk]:
    """Chunks for every configured series in scope; `pages[(venue, market)]` is the page size."""
    wanted_venues = set(venues) if venues else None
    wanted_symbols = set(symbols) if symbols else None
    chunks: list[Chunk] = []
    seen: set[tuple[str, str, str, str]] = set()
    perps: set[tuple[str, str]] = set()
    for inst in settings.instruments:
        if wanted_venues is not None and inst.venue not in wanted_venues:
            continue
        if wanted_symbols is not None and not {inst.symbol, inst.id} & wanted_symbols:
            continue
        key = (inst.venue, inst.market, inst.symbol, inst.interval)
        if key in seen:
            continue
        seen.add(key)
        step = interval_to_timedelta(inst.interval) * pages[(inst.venue, inst.market)]
        step *= PAGES_PER_CHUNK
        for lo, hi in split(start, end, step):
            chunks.append(Chunk(*key, "candles", lo, hi))
        if inst.market == "perp":
            perps.add((inst.venue, inst.symbol))
    for venue, symbol in sorted(perps):
        # Funding settles every 1-8 h; a chunk of 90 days is a few pages on any venue.
        for lo, hi in split(start, end, timedelta(days=90)):
            chunks.append(Chunk(venue, "perp", symbol, "-", "funding", lo, hi))
    return chunks


def run_backfill(
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    venues: Iterable[str] | None = None,
    symbols: Iterable[str] | None = None,
    factory: ExchangeFactory = default_factory,
    on_plan: Callable[[dict[str, int]], None] | None = None,
    on_chunk: Callable[[Chunk, int], None] | None = None,
) -> BackfillReport:
    """Fetch and store [start, end) for the series in scope; resumable, see the module doc."""
    report = BackfillReport()
    chosen = [v for v in settings.venues if v.enabled and (not venues or v.name in set(venues))]
    clients: dict[str, Exchange] = {v.name: factory(v) for v in chosen}
    try:
        pages: dict[tuple[str, str], int] = {
            (inst.venue, inst.market): clients[inst.venue].page_size(inst.market)
            for inst in settings.instruments
            if inst.venue in clients
        }
        everything = plan(
            settings, start, end, pages=pages, venues=[v.name for v in chosen], symbols=symbols
        )
        with Store.open(
            settings.storage.target, timeout_s=settings.storage.lock_timeout_s, publish=False
        ) as store:
            done = completed_ranges(store)
        todo = [
            c
            for c in everything
            if not _covered(
                done.get((c.venue, c.market, c.symbol, c.interval, c.dataset), []),
                c.start,
                c.end,
            )
        ]
        report.planned = len(everything)
        report.skipped = len(everything) - len(todo)
        if on_plan is not None:
            per_venue: dict[str, int] = {}
            for chunk in todo:
                per_venue[chunk.venue] = per_venue.get(chunk.venue, 0) + 1
            on_plan(per_venue)
        _execute(settings, chosen, clients, todo, report, on_chunk)
        if report.done:
            # Chunks are stored without publishing; readers see the backfill once, whole. The
            # stored hours are marked dirty: the next run (or `recompute`) computes them.
            with Store.open(settings.storage.target, timeout_s=settings.storage.lock_timeout_s):
                pass
    finally:
        for client in clients.values():
            client.close()
    return report


def _execute(
    settings: Settings,
    venues: list[VenueSettings],
    clients: dict[str, Exchange],
    todo: list[Chunk],
    report: BackfillReport,
    on_chunk: Callable[[Chunk, int], None] | None,
) -> None:
    """Each venue gets its own workers (its client's limiter paces them); this thread writes."""
    workers = settings.fetch.max_workers
    pools = {v.name: ThreadPoolExecutor(workers, thread_name_prefix=f"bf-{v.name}") for v in venues}
    queues: dict[str, list[Chunk]] = {v.name: [] for v in venues}
    for chunk in todo:
        queues[chunk.venue].append(chunk)
    running: dict[Future[pl.DataFrame], Chunk] = {}
    # Each venue's clock, read once: a backfill's ranges are history, and a clock that grows
    # stale during a long backfill only holds back candles that closed meanwhile.
    clocks: dict[str, datetime | None] = {}
    for venue in venues:
        if queues[venue.name]:
            try:
                clocks[venue.name] = clients[venue.name].server_time()
            except ExchangeError as exc:
                log.error("venue %s skipped: %s", venue.name, exc)
                report.failed.extend((chunk, str(exc)) for chunk in queues[venue.name])
                queues[venue.name] = []

    def refill() -> None:
        # Keep at most `workers` chunks in flight per venue, so memory stays flat.
        for name, queue in queues.items():
            in_flight = sum(1 for c in running.values() if c.venue == name)
            while queue and in_flight < workers:
                chunk = queue.pop(0)
                future = pools[name].submit(_fetch, clients[name], chunk, clocks.get(name))
                running[future] = chunk
                in_flight += 1

    try:
        refill()
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                chunk = running.pop(future)
                try:
                    frame = future.result()
                except HistoryUnavailable as exc:
                    report.unavailable.append((chunk, str(exc)))
                    log.warning("%s", exc)
                except ExchangeError as exc:
                    report.failed.append((chunk, str(exc)))
                    log.error("%s %s %s %s %s..%s failed: %s", *_describe(chunk), exc)
                else:
                    _store(settings, chunk, frame)
                    report.done += 1
                    report.rows += frame.height
                    if on_chunk is not None:
                        on_chunk(chunk, frame.height)
            refill()
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def _describe(chunk: Chunk) -> tuple[str, ...]:
    return (
        chunk.venue,
        chunk.market,
        chunk.symbol,
        chunk.dataset,
        f"{chunk.start:%Y-%m-%d %H:%M}",
        f"{chunk.end:%Y-%m-%d %H:%M}",
    )


def _fetch(client: Exchange, chunk: Chunk, now: datetime | None) -> pl.DataFrame:
    if chunk.dataset == "funding":
        end = chunk.end if now is None else min(chunk.end, now)
        return client.fetch_funding(chunk.symbol, chunk.start, end)
    return client.fetch_candles(
        chunk.market, chunk.symbol, chunk.interval, chunk.start, chunk.end, now=now
    )


def _store(settings: Settings, chunk: Chunk, frame: pl.DataFrame) -> None:
    """The chunk's rows and its completed range, in one transaction."""
    with Store.open(
        settings.storage.target, timeout_s=settings.storage.lock_timeout_s, publish=False
    ) as store:
        store.store_backfill_chunk(
            chunk.dataset,
            frame,
            {
                "venue": chunk.venue,
                "market": chunk.market,
                "symbol": chunk.symbol,
                "interval": chunk.interval,
                "dataset": chunk.dataset,
                "start": chunk.start,
                "end": chunk.end,
            },
            datetime.now(UTC),
        )
