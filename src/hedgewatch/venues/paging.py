"""Pagination guard every paging loop shares: a page that does not advance is an error.

A venue that answers full pages without moving forward (rows stamped with the requested start,
duplicates of the last page, rows older than asked) would keep a loop asking for ever, and a real
venue bans the IP for it. The guard stops the loop with a BadResponse when a page leaves the cursor
where it was, or when the loop has read more pages than the requested range can hold.
"""

from __future__ import annotations

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
