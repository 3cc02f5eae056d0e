"""Score alert events against labelled history: which events were caught, how fast, at what cost.

Pure: the labelled events, the alert events of a backtest, the rules and the backtested range are
arguments; nothing here reads files or the clock (`parse_events` takes the file's text).

Definitions (the README's Backtest section repeats them):

- A labelled event has a kind (`market` or `hedge`), a subject (a basket for market events, a
  hedge for hedge events), an onset and a window. A market event's window runs from 24 hours
  before its onset to 7 days after it (`onset-24h .. onset+7d`), unless the event gives its own
  `window`. A hedge event gives its window (`"2022-11-07..2022-11-13"`: from the first day's
  00:00 to the last day's 23:00 UTC); its onset is the window's start unless given.
- A page is a FIRING or ESCALATED notification that was not muted (inhibited).
- An event is alerted when a page of a rule watching its subject (basket rules for market events,
  hedge rules for hedge events) falls within its window. Its lag is the hours from the onset to
  the first such page's hour (the open time of the candle whose value fired; the notification
  goes out when that candle closes). Negative lags are alerts before the onset. Caught within H
  hours: alerted with a lag of at most H.
- A page belongs to an event when it falls within the event's window and, for a hedge event, is
  about the event's hedge: a market event's window covers every page (a crisis is not a false
  alarm, whichever rule notices it). Every other page counts as a page outside event windows.
- A calm month is a calendar month of the backtested range that no event window touches. The
  totals give the mean pages per calm month and the calm month with the most pages.
"""

from __future__ import annotations

import csv
import io
import math
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .rules import KINDS, Rule
from .state import PAGE_KINDS, AlertEvent

HOUR = timedelta(hours=1)
MARKET_BEFORE = timedelta(hours=24)
MARKET_AFTER = timedelta(days=7)
EventKind = Literal["market", "hedge"]
# Which rule sources speak about which kind of labelled event.
SOURCES: dict[str, str] = {"market": "basket", "hedge": "hedge"}


class EventsFileError(ValueError):
    """The events file cannot be read; the message names the event and the field."""


class LabelledEvent(BaseModel):
    """One labelled event: a market crisis on a basket, or a hedge break on a hedge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: EventKind
    subject: str
    onset: datetime | None = None
    window: str | None = None  # "START..END": dates (whole days) or ISO times, UTC
    end: datetime | None = None  # alternative to `window` for hedge events: last hour

    @field_validator("onset", "end", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return _as_time(value, end_of_day=False)

    @field_validator("name", "subject")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @model_validator(mode="after")
    def _has_a_window(self) -> LabelledEvent:
        if self.window is not None and self.end is not None:
            raise ValueError("give either window or end, not both")
        if self.window is not None:
            start, end = parse_window(self.window)
            if self.onset is not None and not start <= self.onset <= end:
                raise ValueError(f"onset {self.onset:%Y-%m-%d %H:%M} is outside window")
        elif self.kind == "hedge" and self.end is None:
            raise ValueError("a hedge event needs a window (e.g. '2022-11-07..2022-11-13') or end")
        if self.onset is None and self.window is None:
            raise ValueError("onset is required (or a window, whose start is the onset)")
        if self.end is not None:
            if self.onset is None:
                raise ValueError("onset is required with end")
            if self.end < self.onset:
                raise ValueError("end must not be before onset")
        return self

    @property
    def starts(self) -> datetime:
        """The onset: given, or the window's start."""
        if self.onset is not None:
            return self.onset
        assert self.window is not None
        return parse_window(self.window)[0]

    @property
    def span(self) -> tuple[datetime, datetime]:
        """First and last hour (inclusive) of the event's window."""
        if self.window is not None:
            return parse_window(self.window)
        if self.end is not None:
            return self.starts, self.end
        return self.starts - MARKET_BEFORE, self.starts + MARKET_AFTER

    def covers(self, ts: datetime) -> bool:
        first, last = self.span
        return first <= ts <= last


def parse_window(text: str) -> tuple[datetime, datetime]:
    """'2022-11-07..2022-11-13' -> (2022-11-07 00:00, 2022-11-13 23:00) UTC; times may be given."""
    parts = text.split("..")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ValueError(f"window must look like 'START..END', got {text!r}")
    start = _as_time(parts[0].strip(), end_of_day=False)
    end = _as_time(parts[1].strip(), end_of_day=True)
    if end < start:
        raise ValueError(f"window {text!r} ends before it starts")
    return start, end


def _as_time(value: Any, *, end_of_day: bool) -> datetime:
    """A datetime (naive means UTC) or a date (its first hour, or last with `end_of_day`)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time(23) if end_of_day else time(0))
    elif isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            if len(text) == 10:
                return _as_time(date.fromisoformat(text), end_of_day=end_of_day)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"expected a UTC time such as 2022-05-09T00:00Z or a date, got {value!r}"
            ) from None
    else:
        raise ValueError(f"expected a UTC time or date, got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_events(text: str, fmt: Literal["toml", "csv"]) -> list[LabelledEvent]:
    """Labelled events from a TOML (`[[events]]` tables) or CSV (header row) file's text."""
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise EventsFileError(f"not valid TOML: {exc}") from None
        unknown = sorted(set(data) - {"events"})
        if unknown:
            raise EventsFileError(f"unknown top-level key(s): {', '.join(unknown)}")
        raw = data.get("events", [])
        if not isinstance(raw, list):
            raise EventsFileError("events must be an array of tables ([[events]])")
        rows: list[dict[str, Any]] = raw
    else:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            raise EventsFileError("the CSV file is empty (a header row is required)")
        unknown = sorted(set(reader.fieldnames) - set(LabelledEvent.model_fields))
        if unknown:
            raise EventsFileError(f"unknown column(s): {', '.join(unknown)}")
        rows = [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
    events: list[LabelledEvent] = []
    for number, row in enumerate(rows, start=1):
        label = row.get("name") if isinstance(row, dict) and row.get("name") else f"#{number}"
        try:
            events.append(LabelledEvent.model_validate(row))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
                for err in exc.errors()
            )
            raise EventsFileError(f"event {label}: {problems}") from None
    names = Counter(e.name for e in events)
    twice = sorted(n for n, c in names.items() if c > 1)
    if twice:
        raise EventsFileError(f"event names must be unique: {', '.join(twice)}")
    if not events:
        raise EventsFileError("no events in the file")
    return events


@dataclass(frozen=True)
class Peak:
    """The most extreme value (in the rule's direction) of a rule's metric within a window."""

    rule: str
    ts: datetime
    value: float


@dataclass
class EventScore:
    event: LabelledEvent
    first: AlertEvent | None = None
    lag_hours: float | None = None
    caught: bool = False
    peaks: list[Peak] = field(default_factory=list)

    @property
    def alerted(self) -> bool:
        return self.first is not None


@dataclass
class MonthScore:
    month: str  # "YYYY-MM"
    calm: bool
    pages: int = 0  # outside event windows
    pages_in_events: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)  # pages outside event windows


@dataclass
class Scorecard:
    within_hours: float
    events: list[EventScore]
    months: list[MonthScore]

    @property
    def alerted(self) -> int:
        return sum(e.alerted for e in self.events)

    @property
    def caught(self) -> int:
        return sum(e.caught for e in self.events)

    @property
    def calm(self) -> list[MonthScore]:
        return [m for m in self.months if m.calm]

    @property
    def pages_per_calm_month(self) -> float | None:
        calm = self.calm
        return sum(m.pages for m in calm) / len(calm) if calm else None

    @property
    def max_calm_month(self) -> MonthScore | None:
        return max(self.calm, key=lambda m: (m.pages, m.month), default=None)

    @property
    def pages_outside(self) -> int:
        return sum(m.pages for m in self.months)


def is_page(event: AlertEvent) -> bool:
    return event.kind in PAGE_KINDS and not event.context.get("muted_by")


def watches(rule: Rule | None, event: LabelledEvent) -> bool:
    """Does `rule` speak about `event`'s subject (a basket rule for a market event, ...)?"""
    if rule is None or KINDS[rule.kind].source != SOURCES[event.kind]:
        return False
    return "*" in rule.subjects or event.subject in rule.subjects


def score(
    labelled: Sequence[LabelledEvent],
    alerts: Iterable[AlertEvent],
    rules: Sequence[Rule],
    start: datetime,
    end: datetime,
    *,
    within_hours: float = 6.0,
    peaks: Mapping[str, Sequence[Peak]] | None = None,
) -> Scorecard:
    """The scorecard of `alerts` (a backtest's events over [start, end]) against `labelled`.

    `peaks` maps an event's name to the peak of each rule watching it (see `peak_in`).
    """
    by_name = {rule.name: rule for rule in rules}
    pages = sorted((a for a in alerts if is_page(a)), key=lambda a: (a.ts, a.rule, a.subject))
    scores = [EventScore(event=e, peaks=list((peaks or {}).get(e.name, ()))) for e in labelled]
    for item in scores:
        event = item.event
        for page in pages:
            if (
                page.subject == event.subject
                and event.covers(page.ts)
                and watches(by_name.get(page.rule), event)
            ):
                item.first = page
                item.lag_hours = (page.ts - event.starts) / HOUR
                item.caught = item.lag_hours <= within_hours
                break
    months = {m: MonthScore(month=m, calm=True) for m in _months(start, end)}
    for event in labelled:
        first, last = event.span
        for month in _months(max(first, start), min(last, end)):
            if month in months:
                months[month].calm = False
    for page in pages:
        counted = months.get(f"{page.ts:%Y-%m}")
        if counted is None:
            continue
        if any(_belongs(page, e) for e in labelled):
            counted.pages_in_events += 1
        else:
            counted.pages += 1
            counted.by_rule[page.rule] = counted.by_rule.get(page.rule, 0) + 1
    return Scorecard(within_hours=within_hours, events=scores, months=list(months.values()))


def _belongs(page: AlertEvent, event: LabelledEvent) -> bool:
    if not event.covers(page.ts):
        return False
    return event.kind == "market" or page.subject == event.subject


def _months(first: datetime, last: datetime) -> list[str]:
    out: list[str] = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def peak_in(
    rule: Rule, times: Sequence[datetime], values: Sequence[float | None], event: LabelledEvent
) -> Peak | None:
    """The rule's most extreme value within the event's window, from a time-ordered series."""
    first, last = event.span
    best: tuple[float, datetime] | None = None
    sign = -1.0 if rule.direction == "below" else 1.0
    for ts, value in zip(times, values, strict=True):
        if value is None or not math.isfinite(value) or not first <= ts <= last:
            continue
        if best is None or sign * value > sign * best[0]:
            best = (value, ts)
    return None if best is None else Peak(rule=rule.name, ts=best[1], value=best[0])


def scorecard_json(card: Scorecard) -> dict[str, Any]:
    """The scorecard as plain JSON-ready data."""
    worst = card.max_calm_month
    per_calm = card.pages_per_calm_month
    return {
        "within_hours": card.within_hours,
        "events": [
            {
                "name": s.event.name,
                "kind": s.event.kind,
                "subject": s.event.subject,
                "onset": s.event.starts.isoformat(),
                "window": [t.isoformat() for t in s.event.span],
                "alerted": s.alerted,
                "caught": s.caught,
                "lag_hours": s.lag_hours,
                "first_alert": alert_json(s.first) if s.first is not None else None,
                "peaks": [
                    {"rule": p.rule, "ts": p.ts.isoformat(), "value": _round(p.value)}
                    for p in s.peaks
                ],
            }
            for s in card.events
        ],
        "months": [
            {
                "month": m.month,
                "calm": m.calm,
                "pages": m.pages,
                "pages_in_events": m.pages_in_events,
                "by_rule": dict(sorted(m.by_rule.items())),
            }
            for m in card.months
        ],
        "totals": {
            "events": len(card.events),
            "alerted": card.alerted,
            "caught": card.caught,
            "pages_outside_events": card.pages_outside,
            "calm_months": len(card.calm),
            "pages_per_calm_month": None if per_calm is None else round(per_calm, 3),
            "max_calm_month": None if worst is None else worst.month,
            "max_calm_month_pages": None if worst is None else worst.pages,
        },
    }


def alert_json(event: AlertEvent) -> dict[str, Any]:
    """One alert event's numbers: the arm that fired, its threshold, z, window, members, n_obs."""
    ctx = event.context
    row: dict[str, Any] = {
        "ts": event.ts.isoformat(),
        "rule": event.rule,
        "subject": event.subject,
        "state": event.kind,
        "value": _round(event.value),
        "threshold": _round(event.threshold),
        "arm": ctx.get("arm"),
        "z": _round(ctx.get("z")),
        "window": ctx.get("window"),
        "n_obs": ctx.get("n_obs"),
        "severity": event.severity,
        "episode": event.episode,
    }
    if ctx.get("members") is not None:
        row["members"] = ctx["members"]
    if ctx.get("muted_by"):
        row["muted_by"] = ctx["muted_by"]
    return row


def _round(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    number = float(value)
    return round(number, 6) if math.isfinite(number) else None
