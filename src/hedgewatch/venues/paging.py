"""Paging: the strategies venues page a time range by, and the guard every page passes.

A strategy (forward from a start time, backward from an end time, fixed windows) is a small
object a venue spec names; the client's one loop asks it for each request's bounds and where the
cursor goes next. The guard: a page that does not advance is an error.

A venue that answers full pages without moving forward (rows stamped with the requested start,
duplicates of the last page, rows older than asked) would keep a loop asking for ever, and a real
venue bans the IP for it. The guard stops the loop with a BadResponse when a page leaves the cursor
where it was, or when the loop has read more pages than the requested range can hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hedgewatch.venues.errors import BadResponse

HOUR_MS = 3_600_000
# Funding settles at most hourly on the venues served; candles at most once per interval.
FUNDING_STEP_MS = HOUR_MS


class PageGuard:
    """Counts the pages of one fetch and checks that each moves the cursor."""

    def __init__(
        self, venue: str, path: str, *, span_ms: int, step_ms: int, page_limit: int
    ) -> None:
        self.venue = venue
        self.path = path
        rows = max(span_ms, 0) // max(step_ms, 1) + 1
        # Half again as many pages as the range holds (venues repeat a boundary row), plus slack.
        self.max_pages = 3 + (3 * rows) // (2 * max(page_limit, 1))
        self.pages = 0

    def advance(self, before: int, after: int, *, descending: bool = False) -> int:
        """Book one page that moved the cursor from `before` to `after`; returns `after`."""
        self.pages += 1
        moved = after < before if descending else after > before
        if not moved:
            raise BadResponse(
                self.venue,
                self.path,
                f"page {self.pages} does not advance (cursor stays at {before} ms); stopped",
            )
        if self.pages > self.max_pages:
            raise BadResponse(
                self.venue,
                self.path,
                f"{self.pages} pages for a range that holds at most {self.max_pages}: "
                "the venue's pages do not advance; stopped",
            )
        return after


@dataclass(frozen=True)
class Page:
    """What a paging strategy learns from one answer: how many rows the venue sent (before any
    were dropped as open or foreign), the page size asked for, and the oldest and newest row
    kept, in ms (None when none was kept)."""

    rows: int
    limit: int
    oldest: int | None
    newest: int | None

    @property
    def short(self) -> bool:
        """Empty, or fewer rows than asked for: the venue has nothing more in the range."""
        return self.newest is None or self.rows < self.limit


class Paging(Protocol):
    """How a venue pages a time range [lo, hi] (ms, inclusive): where the cursor starts, which
    bounds each request sends, and where the cursor moves after a page (None: done). `step` is
    the spacing of rows (the candle interval; 1 ms for funding)."""

    def bounds(self, lo: int, hi: int, step: int) -> tuple[int, int]: ...

    def start(self, lo: int, hi: int) -> int | None: ...

    def window(self, cursor: int, lo: int, hi: int, step: int, limit: int) -> tuple[int, int]: ...

    def next(
        self,
        cursor: int,
        asked: tuple[int, int],
        page: Page,
        lo: int,
        hi: int,
        step: int,
        guard: PageGuard,
    ) -> int | None: ...


@dataclass(frozen=True)
class FixedWindows:
    """Consecutive windows of one full page each, on interval boundaries: row order and "first
    or last N" semantics never matter, and an empty window (a gap in history) is skipped."""

    def bounds(self, lo: int, hi: int, step: int) -> tuple[int, int]:
        return -(-lo // step) * step, (hi // step) * step

    def start(self, lo: int, hi: int) -> int | None:
        return lo if lo <= hi else None

    def window(self, cursor: int, lo: int, hi: int, step: int, limit: int) -> tuple[int, int]:
        return cursor, min(cursor + (limit - 1) * step, hi)

    def next(
        self,
        cursor: int,
        asked: tuple[int, int],
        page: Page,
        lo: int,
        hi: int,
        step: int,
        guard: PageGuard,
    ) -> int | None:
        after = guard.advance(cursor, asked[1] + step)
        return after if after <= hi else None


@dataclass(frozen=True)
class ForwardFromStart:
    """Ask from the cursor to the range's end; the venue answers the oldest `limit` rows, so the
    next page starts one step past the newest row, and a short page ends the range.

    `repeats_cursor`: rows stamped at the cursor itself are a repeat of the last page (a venue
    whose start bound is inclusive on times that are not on a grid), so they move nothing."""

    repeats_cursor: bool = False

    def bounds(self, lo: int, hi: int, step: int) -> tuple[int, int]:
        return lo, hi

    def start(self, lo: int, hi: int) -> int | None:
        return lo if lo <= hi else None

    def window(self, cursor: int, lo: int, hi: int, step: int, limit: int) -> tuple[int, int]:
        return cursor, hi

    def next(
        self,
        cursor: int,
        asked: tuple[int, int],
        page: Page,
        lo: int,
        hi: int,
        step: int,
        guard: PageGuard,
    ) -> int | None:
        if page.short or page.newest is None:
            return None
        after = page.newest + step
        if self.repeats_cursor and page.newest <= cursor:
            after = cursor
        after = guard.advance(cursor, after)
        return after if after <= hi else None


@dataclass(frozen=True)
class BackwardFromEnd:
    """Ask from the range's start to the cursor; the venue answers the newest `limit` rows
    (newest-first venues), so the next page ends just before the oldest row, and a short page
    ends the range."""

    def bounds(self, lo: int, hi: int, step: int) -> tuple[int, int]:
        return lo, hi

    def start(self, lo: int, hi: int) -> int | None:
        return hi if lo <= hi else None

    def window(self, cursor: int, lo: int, hi: int, step: int, limit: int) -> tuple[int, int]:
        return lo, cursor

    def next(
        self,
        cursor: int,
        asked: tuple[int, int],
        page: Page,
        lo: int,
        hi: int,
        step: int,
        guard: PageGuard,
    ) -> int | None:
        if page.short or page.oldest is None:
            return None
        # The guard counts in exclusive ends: the cursor's end moves from cursor + 1 to oldest.
        after = guard.advance(cursor + 1, page.oldest, descending=True) - 1
        return after if after >= lo else None
