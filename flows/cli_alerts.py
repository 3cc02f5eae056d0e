"""`hedgewatch alerts list|silence|unsilence|test` and `hedgewatch backtest`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from flows.settings import Settings
    from flows.store import Store

from flows.cli import DEFAULT_CONFIG, ConfigOption, _settings, app, fail, format_rows
from flows.cli import OutputFormat as QueryFormat

alerts_app = typer.Typer(help="Alert state, silences and test notifications.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")


def parse_time(text: str, option: str) -> datetime:
    """ISO 8601 (UTC when no zone is given) or a duration from now such as '4h', '2d', '30m'."""
    match = _DURATION.match(text)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) + timedelta(**{unit: int(match.group(1))})
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
def _store(config: Path, *, read_only: bool = False) -> Iterator[tuple[Settings, Store]]:
    """Settings and an open store; a busy database exits 3, a broken one 2."""
    from flows.store import Store, StoreBusy, StoreError

    settings = _settings(config)
    try:
        opened = Store.open(
            settings.storage.database,
            read_only=read_only,
            timeout_s=settings.storage.lock_timeout_s,
        )
        store = opened.__enter__()
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    import duckdb

    try:
        yield settings, store
    except duckdb.CatalogException:
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
    fmt: Annotated[QueryFormat, typer.Option("--format", "-f")] = QueryFormat.table,
) -> None:
    """Every (rule, subject) with its state — ok, pending, firing or no data — and silences."""
    with _store(config, read_only=True) as (settings, store):
        columns = [
            "rule",
            "subject",
            "status",
            "severity",
            "since",
            "last_value",
            "episode",
            "no_data_since",
            "evaluated_at",
            "silenced_until",
        ]
        rows = store.con.execute(
            "SELECT s.rule, s.subject,"
            " CASE WHEN s.no_data_since IS NOT NULL THEN s.status || ' (no data)'"
            " ELSE s.status END, s.severity, s.since, s.last_value, s.episode,"
            " s.no_data_since, s.evaluated_at, max(x.until) AS silenced_until"
            " FROM alert_state AS s LEFT JOIN alert_silences AS x"
            "  ON x.rule IN ('*', s.rule) AND x.subject IN ('*', s.subject) AND x.until > now()"
            " GROUP BY ALL ORDER BY s.rule, s.subject"
        ).fetchall()
        silences = store.con.execute(
            "SELECT rule, subject, until, reason FROM alert_silences ORDER BY until"
        ).fetchall()
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
    if ends <= datetime.now(UTC):
        raise fail("--until: the silence would already be over", 2)
    settings = _settings(config)
    names = {r.name for r in settings.alerts.rules}
    if rule != "*" and rule not in names:
        known = ", ".join(sorted(names)) or "none configured"
        raise fail(f"unknown rule {rule!r} (rules: {known})", 2)
    with _store(config) as (_, store):
        store.con.execute(
            "INSERT OR REPLACE INTO alert_silences VALUES ($r, $s, $u, $why, now())",
            {"r": rule, "s": subject, "u": ends, "why": reason or None},
        ).fetchall()
    typer.echo(f"silenced {rule} / {subject} until {ends:%Y-%m-%d %H:%M} UTC")


@alerts_app.command("unsilence")
def unsilence(
    rule: Annotated[str, typer.Argument(help="Rule name, or '*'.")],
    subject: Annotated[str, typer.Argument(help="Subject, or '*'.")] = "*",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Remove a silence set with `alerts silence` (silences in the config stay)."""
    with _store(config) as (_, store):
        removed = store.con.execute(
            "DELETE FROM alert_silences WHERE rule = $r AND subject = $s RETURNING rule",
            {"r": rule, "s": subject},
        ).fetchall()
    if not removed:
        raise fail(f"no silence for {rule} / {subject}", 2)
    typer.echo(f"unsilenced {rule} / {subject}")


@alerts_app.command("test")
def test_channel(
    channel: Annotated[str, typer.Option("--channel", "-C", help="A channel from the config.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Send a test notification through one channel now (not through the outbox)."""
    from alerts.delivery import DeliveryError
    from alerts.state import AlertEvent
    from flows.delivering import Pending, channel_kind, send

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
    try:
        send(Pending(key, channel, [event]), target, settings)
    except DeliveryError as exc:
        raise fail(f"test notification to {channel!r} failed: {exc}", 1) from None
    typer.echo(f"test notification sent to {channel} ({channel_kind(target)}), key {key}")


class BacktestFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"


@app.command()
def backtest(
    start: Annotated[str, typer.Option("--from", help="First hour (ISO 8601, UTC).")],
    end: Annotated[str, typer.Option("--to", help="Last hour (ISO 8601, UTC).")],
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    fmt: Annotated[BacktestFormat, typer.Option("--format", "-f")] = BacktestFormat.table,
) -> None:
    """Replay stored history hour by hour through the metrics, rules and state machine.

    Nothing is sent and the database is only read. Prints every alert event, then a summary
    per rule: episodes, hours firing, notifications per month.
    """
    from flows.backtest import event_rows, run_backtest
    from flows.store import StoreBusy, StoreError

    settings = _settings(config)
    first = parse_time(start, "--from")
    last = parse_time(end, "--to")
    if last <= first:
        raise fail("--to must be after --from", 2)
    try:
        result = run_backtest(settings, first, last, database)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    if fmt is BacktestFormat.jsonl:
        for row in event_rows(result):
            typer.echo(json.dumps({"type": "event", **row}))
        for s in result.summaries:
            typer.echo(json.dumps({"type": "summary", **s.__dict__}))
        return
    rows = [
        (r["ts"], r["rule"], r["subject"], r["state"], r["value"], r["threshold"], r["severity"])
        for r in event_rows(result)
    ]
    typer.echo(
        f"backtest {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC: {result.hours} hours, "
        f"{len(result.events)} alert events"
    )
    if rows:
        typer.echo(
            format_rows(
                ["ts", "rule", "subject", "state", "value", "threshold", "severity"],
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
