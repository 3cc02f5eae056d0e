"""`hedgewatch alerts list|silence|unsilence|test` and `hedgewatch backtest`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from hedgewatch.alerts.scorecard import LabelledEvent, Scorecard
    from hedgewatch.alerts.state import AlertEvent
    from hedgewatch.backtest import BacktestResult, History
    from hedgewatch.settings import Settings
    from hedgewatch.storage.store import Store
    from hedgewatch.sweep import Axis

from hedgewatch.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    _settings,
    fail,
    format_rows,
    reading_settings,
)
from hedgewatch.cli.common import OutputFormat as QueryFormat

app = typer.Typer()
alerts_app = typer.Typer(help="Alert state, silences and test notifications.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
MAX_AHEAD_DAYS = 366  # a silence longer than a year is a rule to change, not a silence


def parse_time(text: str, option: str) -> datetime:
    """ISO 8601 (UTC when no zone is given) or a duration from now such as '4h', '2d', '30m'."""
    match = _DURATION.match(text)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        amount = int(match.group(1))
        if amount > MAX_AHEAD_DAYS * {"minutes": 24 * 60, "hours": 24, "days": 1}[unit]:
            raise fail(f"{option}: {text!r} is more than {MAX_AHEAD_DAYS} days ahead", 2)
        return datetime.now(UTC) + timedelta(**{unit: amount})
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(
            f"{option}: expected an ISO 8601 time (e.g. 2024-05-01T12:00) or a duration "
            f"such as 4h or 2d, got {text!r}",
            2,
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@contextmanager
def _store(
    config: Path, *, read_only: bool = False, database: Path | None = None
) -> Iterator[tuple[Settings, Store]]:
    """Settings and an open store; a busy database exits 3, a broken one 2. Reading needs no
    secret (and, with `database`, no config: the last run's settings serve)."""
    from hedgewatch.storage.store import SchemaOutdated, Store, StoreBusy, StoreError

    settings = reading_settings(config, database) if read_only else _settings(config)
    try:
        opened = Store.open(
            settings.storage.target,
            read_only=read_only,
            timeout_s=settings.storage.lock_timeout_s,
        )
        store = opened.__enter__()
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    try:
        yield settings, store
    except SchemaOutdated:
        raise fail(
            f"{settings.storage.database}: the database predates the alert tables; "
            "run `hedgewatch run` once to upgrade its schema",
            2,
        ) from None
    finally:
        opened.__exit__(None, None, None)


@alerts_app.command("list")
def list_alerts(
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    fmt: Annotated[QueryFormat, typer.Option("--format", "-f")] = QueryFormat.table,
) -> None:
    """Every (rule, subject) with its state — ok, pending, firing or no data — the arm it fired
    on, the alert muting it (inhibition) and silences."""
    with _store(config, read_only=True, database=database) as (settings, store):
        columns = [
            "rule",
            "subject",
            "status",
            "severity",
            "arm",
            "since",
            "last_value",
            "episode",
            "no_data_since",
            "evaluated_at",
            "muted_by",
            "silenced_until",
        ]
        rows = store.alert_status_rows()
        silences: list[tuple[Any, ...]] = list(store.silences())
    typer.echo(format_rows(columns, rows, fmt), nl=False)
    configured = [(s.rule, s.subject, s.until, s.reason) for s in settings.alerts.silences]
    if fmt is QueryFormat.table and (silences or configured):
        typer.echo("Silences (from the CLI, then from the config):")
        typer.echo(
            format_rows(["rule", "subject", "until", "reason"], silences + configured, fmt),
            nl=False,
        )


@alerts_app.command("silence")
def silence(
    rule: Annotated[str, typer.Argument(help="Rule name, or '*' for every rule.")],
    subject: Annotated[str, typer.Argument(help="Hedge, basket or instrument; '*' for all.")] = "*",
    until: Annotated[
        str, typer.Option("--until", "-u", help="ISO 8601 time, or a duration such as 4h, 2d.")
    ] = "4h",
    reason: Annotated[str, typer.Option(help="Why, for the next person.")] = "",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Record but do not send events of RULE for SUBJECT until a time."""
    ends = parse_time(until, "--until")
    now = datetime.now(UTC)
    if ends <= now:
        raise fail("--until: the silence would already be over", 2)
    if ends > now + timedelta(days=MAX_AHEAD_DAYS):
        raise fail(f"--until: more than {MAX_AHEAD_DAYS} days ahead", 2)
    settings = _settings(config)
    names = {r.name for r in settings.alerts.rules}
    if rule != "*" and rule not in names:
        known = ", ".join(sorted(names)) or "none configured"
        raise fail(f"unknown rule {rule!r} (rules: {known})", 2)
    subjects = settings.silence_subjects(rule)
    if subject != "*" and subjects is not None and subject not in subjects:
        known = ", ".join(sorted(subjects)) or "none configured"
        raise fail(f"unknown subject {subject!r} for rule {rule!r} (subjects: {known})", 2)
    with _store(config) as (_, store):
        store.add_silence(rule, subject, ends, reason or None)
    typer.echo(f"silenced {rule} / {subject} until {ends:%Y-%m-%d %H:%M} UTC")


@alerts_app.command("unsilence")
def unsilence(
    rule: Annotated[str, typer.Argument(help="Rule name, or '*'.")],
    subject: Annotated[str, typer.Argument(help="Subject, or '*'.")] = "*",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Remove a silence set with `alerts silence` (silences in the config stay)."""
    with _store(config) as (_, store):
        removed = store.remove_silence(rule, subject)
    if not removed:
        raise fail(f"no silence for {rule} / {subject}", 2)
    typer.echo(f"unsilenced {rule} / {subject}")


@alerts_app.command("test")
def test_channel(
    channel: Annotated[
        str | None, typer.Argument(help="A channel from the config.", show_default=False)
    ] = None,
    channel_option: Annotated[
        str | None, typer.Option("--channel", help="The same, as an option.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Send a test notification through CHANNEL now (not through the outbox)."""
    if (channel is None) == (channel_option is None):
        raise fail("name one channel: `hedgewatch alerts test CHANNEL [-c FILE]`", 2)
    channel = channel or channel_option
    assert channel is not None
    import dataclasses

    from hedgewatch.alerts.state import AlertEvent
    from hedgewatch.outbox.channels import DeliveryError
    from hedgewatch.outbox.deliver import channel_kind, send
    from hedgewatch.outbox.queue import Pending

    settings = _settings(config)
    target = settings.channels.get(channel)
    if target is None:
        known = ", ".join(sorted(settings.channels)) or "none configured"
        raise fail(f"--channel: unknown channel {channel!r} (channels: {known})", 2)
    now = datetime.now(UTC).replace(microsecond=0)
    event = AlertEvent(
        rule="hedgewatch-test",
        subject=channel,
        ts=now,
        kind="firing",
        value=0.0,
        threshold=0.0,
        severity="info",
        episode=0,
        context={
            "rule_kind": "pipeline_failure",
            "run_id": "test",
            "message": "This is a test notification from `hedgewatch alerts test`; "
            "no action is needed.",
        },
    )
    key = f"test|{channel}|{now.isoformat()}"
    events = [event]
    if channel_kind(target) == "pagerduty":
        # Trigger and resolve at once: the test must not leave an incident open.
        events.append(dataclasses.replace(event, kind="resolved"))
    try:
        send(Pending(key, channel, events), target, settings)
    except DeliveryError as exc:
        raise fail(f"test notification to {channel!r} failed: {exc}", 1) from None
    typer.echo(f"test notification sent to {channel} ({channel_kind(target)}), key {key}")


class BacktestFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    json = "json"


@app.command()
def backtest(
    start: Annotated[str, typer.Option("--from", help="First hour (ISO 8601, UTC).")],
    end: Annotated[str, typer.Option("--to", help="Last hour (ISO 8601, UTC).")],
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    fmt: Annotated[BacktestFormat, typer.Option("--format", "-f")] = BacktestFormat.table,
    events_file: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="Labelled events (TOML or CSV): print the scorecard — per event the lag of "
            "the first alert, per month the pages outside event windows.",
        ),
    ] = None,
    within: Annotated[
        float, typer.Option("--within", help="Caught means alerted within this many hours.")
    ] = 6.0,
    only_rules: Annotated[
        list[str] | None,
        typer.Option("--rule", help="Score only this rule's alerts (repeatable)."),
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            help="A grid axis RULE.FIELD=V1,V2,... or a TOML grid file (repeatable; needs "
            "--events): one scorecard line per combination.",
        ),
    ] = None,
) -> None:
    """Replay stored history hour by hour through the metrics, rules and state machine.

    Nothing is sent and the database is only read. Prints every alert event, then a summary
    per rule: episodes, hours firing, notifications per month. With --events, prints the
    scorecard against labelled events instead of the event list; with --sweep, the trade-off
    table of a grid of rule parameters.
    """
    from hedgewatch.alerts.scorecard import EventsFileError, parse_events
    from hedgewatch.backtest import backtest_history, compute_history
    from hedgewatch.storage.store import StoreBusy, StoreError
    from hedgewatch.sweep import GridError, check_axes, parse_sweep

    settings = reading_settings(config, database)
    first = parse_time(start, "--from")
    last = parse_time(end, "--to")
    if last <= first:
        raise fail("--to must be after --from", 2)
    labelled = None
    if events_file is not None:
        try:
            text = events_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"--events {events_file}: cannot read: {exc}", 2) from None
        try:
            labelled = parse_events(text, "csv" if events_file.suffix.lower() == ".csv" else "toml")
        except EventsFileError as exc:
            raise fail(f"--events {events_file}: {exc}", 2) from None
    names = {r.name for r in settings.alerts.rules}
    unknown = sorted(set(only_rules or ()) - names)
    if unknown:
        raise fail(f"--rule: no rule named {', '.join(map(repr, unknown))}", 2)
    axes = []
    if sweep:
        if labelled is None:
            raise fail("--sweep needs --events (the labelled events to score against)", 2)
        try:
            axes = parse_sweep(sweep)
            check_axes(axes, settings.alerts.rules)
        except GridError as exc:
            raise fail(str(exc), 2) from None
    try:
        history = compute_history(settings, first, last, database)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    if axes:
        assert labelled is not None
        _print_sweep(history, labelled, axes, within, only_rules, fmt)
        return
    result = backtest_history(history)
    card = None
    if labelled is not None:
        card = _scorecard(history, result.events, labelled, within, only_rules)
    if fmt is BacktestFormat.json:
        from hedgewatch.alerts.scorecard import scorecard_json
        from hedgewatch.backtest import event_rows

        document: dict[str, object] = {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "hours": result.hours,
            "events": list(event_rows(result)),
            "summaries": [s.__dict__ for s in result.summaries],
        }
        if card is not None:
            document["scorecard"] = scorecard_json(card)
        document["timings"] = {k: round(v, 3) for k, v in result.timings.items()}
        typer.echo(json.dumps(document, indent=2))
        return
    if fmt is BacktestFormat.jsonl:
        from hedgewatch.backtest import event_rows

        for row in event_rows(result):
            typer.echo(json.dumps({"type": "event", **row}))
        for s in result.summaries:
            typer.echo(json.dumps({"type": "summary", **s.__dict__}))
        if card is not None:
            from hedgewatch.alerts.scorecard import scorecard_json

            typer.echo(json.dumps({"type": "scorecard", **scorecard_json(card)}))
        return
    _print_backtest(result, first, last, show_events=card is None)
    if card is not None:
        _print_scorecard(card)


def _scorecard(
    history: History,
    events: list[AlertEvent],
    labelled: list[LabelledEvent],
    within: float,
    only_rules: list[str] | None,
) -> Scorecard:
    from hedgewatch.alerts.scorecard import score
    from hedgewatch.backtest import event_peaks

    rules = history.settings.alerts.rules
    if only_rules:
        rules = [r for r in rules if r.name in set(only_rules)]
        events = [e for e in events if e.rule in set(only_rules)]
    peaks = event_peaks(history, rules, labelled)
    return score(
        labelled, events, rules, history.start, history.end, within_hours=within, peaks=peaks
    )


def _print_backtest(
    result: BacktestResult, first: datetime, last: datetime, *, show_events: bool
) -> None:
    from hedgewatch.backtest import event_rows

    rows = [
        (
            r["ts"],
            r["rule"],
            r["subject"],
            r["state"],
            r["value"],
            r["arm"],
            r["threshold"],
            r["severity"],
            r.get("muted_by") or "",
        )
        for r in event_rows(result)
    ]
    typer.echo(
        f"backtest {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC: {result.hours} hours, "
        f"{len(result.events)} alert events"
    )
    if rows and show_events:
        typer.echo(
            format_rows(
                [
                    "ts",
                    "rule",
                    "subject",
                    "state",
                    "value",
                    "arm",
                    "threshold",
                    "severity",
                    "muted by",
                ],
                rows,
                QueryFormat.table,
            ),
            nl=False,
        )
    summary = [
        (
            s.rule,
            s.kind,
            s.subjects,
            s.episodes,
            round(s.hours_firing, 1),
            s.notifications,
            round(s.alerts_per_month, 2),
            s.no_data_hours,
        )
        for s in result.summaries
    ]
    typer.echo(
        format_rows(
            [
                "rule",
                "kind",
                "subjects",
                "episodes",
                "hours firing",
                "notifications",
                "per month",
                "no-data obs",
            ],
            summary,
            QueryFormat.table,
        ),
        nl=False,
    )
    typer.echo(
        "took " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings.items())
    )


def _print_scorecard(card: Scorecard) -> None:
    rows = []
    for s in card.events:
        first = s.first
        peak = s.peaks[0] if s.peaks else None
        if first is not None:
            peak = next((p for p in s.peaks if p.rule == first.rule), peak)
        rows.append(
            (
                s.event.name,
                s.event.kind,
                s.event.subject,
                f"{s.event.starts:%Y-%m-%d %H:%M}",
                "yes" if s.alerted else "no",
                f"{first.ts:%Y-%m-%d %H:%M}" if first is not None else "",
                f"{first.rule} ({first.context.get('arm') or '-'})" if first is not None else "",
                f"{s.lag_hours:+.0f}" if s.lag_hours is not None else "",
                "yes" if s.caught else "no",
                f"{peak.rule} {peak.value:.3f} at {peak.ts:%m-%d %H:%M}" if peak else "",
            )
        )
    typer.echo("")
    typer.echo(
        format_rows(
            [
                "event",
                "kind",
                "subject",
                "onset",
                "alerted",
                "first alert",
                "rule (arm)",
                "lag h",
                f"≤{card.within_hours:g} h",
                "peak",
            ],
            rows,
            QueryFormat.table,
        ),
        nl=False,
    )
    months = [
        (
            m.month,
            "calm" if m.calm else "event",
            m.pages,
            m.pages_in_events,
            ", ".join(f"{rule} {n}" for rule, n in sorted(m.by_rule.items())),
        )
        for m in card.months
    ]
    typer.echo("")
    typer.echo(
        format_rows(
            ["month", "month is", "pages outside events", "pages in events", "by rule"],
            months,
            QueryFormat.table,
        ),
        nl=False,
    )
    worst = card.max_calm_month
    per_calm = card.pages_per_calm_month
    typer.echo(
        f"events: {card.alerted}/{len(card.events)} alerted, {card.caught}/{len(card.events)} "
        f"within {card.within_hours:g} h; calm months: {len(card.calm)}, "
        + (
            f"{per_calm:.2f} pages per calm month, max {worst.pages} ({worst.month})"
            if per_calm is not None and worst is not None
            else "none in range"
        )
    )


def _print_sweep(
    history: History,
    labelled: list[LabelledEvent],
    axes: list[Axis],
    within: float,
    only_rules: list[str] | None,
    fmt: BacktestFormat,
) -> None:
    from hedgewatch.sweep import run_sweep

    rows, seconds = run_sweep(
        history,
        labelled,
        axes,
        within_hours=within,
        only_rules=set(only_rules) if only_rules else None,
    )
    dicts = [row.as_dict() for row in rows]
    if fmt is not BacktestFormat.table:
        if fmt is BacktestFormat.json:
            typer.echo(json.dumps({"sweep": dicts, "seconds": round(seconds, 3)}, indent=2))
        else:
            for row in dicts:
                typer.echo(json.dumps({"type": "sweep", **row}))
        return
    labels = [axis.label for axis in axes]
    table = []
    for point, d in zip(rows, dicts, strict=True):
        params = [d[label] for label in labels]
        if point.card is None:
            table.append((*params, "invalid", "", "", "", "", point.error or ""))
            continue
        n = d["events"]
        table.append(
            (
                *params,
                f"{d['caught']}/{n}",
                f"{d['alerted']}/{n}",
                "" if d["median_lag_hours"] is None else f"{d['median_lag_hours']:+.0f}",
                "" if d["pages_per_calm_month"] is None else f"{d['pages_per_calm_month']:.2f}",
                ""
                if d["max_calm_month"] is None
                else f"{d['max_calm_month_pages']} ({d['max_calm_month']})",
                d["pages_outside_events"],
            )
        )
    typer.echo(
        format_rows(
            [
                *labels,
                f"caught ≤{within:g} h",
                "alerted",
                "median lag h",
                "pages/calm month",
                "max calm month",
                "pages outside events",
            ],
            table,
            QueryFormat.table,
        ),
        nl=False,
    )
    typer.echo(
        f"{len(rows)} grid points over {history.hours} hours in {seconds:.1f} s "
        f"(metrics computed once: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in history.timings.items())
        + ")"
    )
