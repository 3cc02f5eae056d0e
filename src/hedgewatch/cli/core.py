"""The core commands: `run`, `check-config`, `query`, `demo` and `replay serve`."""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hedgewatch.cli.common import (
    DEFAULT_CONFIG,
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_PARTIAL,
    ConfigOption,
    OutputFormat,
    WaitNotice,
    _settings,
    fail,
    format_rows,
    reapply_logging,
)

if TYPE_CHECKING:
    from hedgewatch.settings import Settings

app = typer.Typer()
replay_app = typer.Typer(
    help="The replay exchange: serve stored candles over HTTP.", no_args_is_help=True
)
app.add_typer(replay_app, name="replay")


@app.command()
def run(
    ctx: typer.Context,
    config: ConfigOption = DEFAULT_CONFIG,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Fetch and compute on a copy of the database; write and send nothing.",
        ),
    ] = False,
) -> None:
    """One hourly run now: fetch, load, compute, evaluate alerts, deliver.

    With PREFECT_API_URL set the run is a Prefect flow run on that server; without it the same
    steps run as plain functions (no server to start, nothing to wait for).
    """
    _settings(config)  # fail fast with exit code 2 before anything starts
    from hedgewatch.flows.hourly import hourly, hourly_now
    from hedgewatch.flows.runtime import api_configured, quiet_prefect
    from hedgewatch.storage.store import StoreBusy

    options = reapply_logging(ctx)
    try:
        if dry_run or not api_configured():
            summary = hourly_now(config_path=str(config.resolve()), dry_run=dry_run)
        else:
            with quiet_prefect(log_level=options.log_level):
                summary = hourly(config_path=str(config.resolve()))
    except StoreBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except Exception as exc:
        raise fail(f"run failed: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    if summary.status == "dry-run":
        typer.echo(
            f"dry run: {summary.fetched.get('candles', 0)} candles and "
            f"{summary.fetched.get('funding', 0)} funding rates fetched, "
            f"{summary.computed.get('hours_evaluated', 0)} hours evaluated, "
            f"{len(summary.alerts)} alert events, "
            f"{summary.deliveries.get('would_send', 0)} notifications would be sent; "
            "nothing was written or sent"
        )
        for event in summary.alerts:
            typer.echo(
                f"  {event['ts']:%Y-%m-%d %H:%M}  {event['kind'].upper():<9} "
                f"{event['rule']} {event['subject']} {event['value']}"
            )
    else:
        typer.echo(
            f"run {summary.run_id[:8]} {summary.status}: "
            f"{summary.fetched.get('candles', 0)} candles, "
            f"{len(summary.alerts)} alert events, "
            f"{summary.deliveries.get('delivered', 0)} notifications delivered"
        )
    for failure in summary.failures:
        typer.echo(f"  failed: {failure}", err=True)
    if summary.failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("check-config")
def check_config(
    config: ConfigOption = DEFAULT_CONFIG,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")
    ] = OutputFormat.table,
) -> None:
    """Validate the config file (secrets included) and print everything it will watch."""
    settings = _settings(config)
    problem = _unwritable(settings.storage.database.parent)
    if problem:
        raise fail(
            f"{config}: storage.database: cannot write in {settings.storage.database.parent} "
            f"({problem})",
            2,
        )
    sections = describe(settings)
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"config": str(config), "ok": True, **sections}, indent=2))
        return
    typer.echo(
        f"{config}: ok — {len(settings.instruments)} instruments on "
        f"{len(settings.venues)} venue(s), "
        f"{len(settings.hedges)} hedges, {len(settings.baskets)} baskets, "
        f"{len(settings.alerts.rules)} rules, {len(settings.channels)} channels"
    )
    for title, rows in sections.items():
        typer.echo(f"\n{title.capitalize()}:")
        if not rows:
            typer.echo("  (none)")
            continue
        columns = list(rows[0])
        typer.echo(
            format_rows(
                columns, [tuple(r.values()) for r in rows], OutputFormat.table, footer=False
            ),
            nl=False,
        )


def describe(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """What a config watches, section by section, as printable rows (never a secret)."""

    def condition(rule: Any) -> str:
        parts = []
        for name, label in (
            ("fire_above", ">"),
            ("fire_below", "<"),
            ("z_fire_above", "z >"),
            ("critical_at", "critical"),
        ):
            value = getattr(rule, name, None)
            if value is not None:
                parts.append(f"{label} {value:g}")
        return ", ".join(parts) or "—"

    return {
        "venues": [
            {
                "name": v.name,
                "kind": v.kind + (f" ({v.exchange})" if v.exchange else ""),
                "enabled": v.enabled,
                "base_urls": ", ".join(f"{m}={u}" for m, u in (v.base_urls or {}).items())
                or "default",
            }
            for v in settings.venues
        ],
        "instruments": [
            {"id": i.id, "venue": i.venue, "market": i.market, "symbol": i.symbol}
            for i in settings.instruments
        ],
        "hedges": [
            {
                "name": h.name,
                "legs": " / ".join(f"{leg.side} {leg.ratio:g} {leg.instrument}" for leg in h.legs),
            }
            for h in settings.hedges
        ],
        "baskets": [{"name": b.name, "members": ", ".join(b.members)} for b in settings.baskets],
        "rules": [
            {
                "name": r.name,
                "kind": r.kind,
                "subjects": ", ".join(r.subjects),
                "window": r.window,
                "fires": condition(r),
                "severity": r.severity,
                "channels": ", ".join(r.channels),
            }
            for r in settings.alerts.rules
        ],
        "channels": [
            {"name": name, "kind": channel.kind, "target": channel_target(channel)}
            for name, channel in sorted(settings.channels.items())
        ],
    }


def channel_target(channel: Any) -> str:
    """Where a channel sends, without its secret (a webhook URL is one: only its kind shows)."""
    for attribute in ("dir", "host", "recipients"):
        value = getattr(channel, attribute, None)
        if value:
            if attribute == "host":
                return f"{value}:{channel.port} ({channel.security})"
            return ", ".join(value) if isinstance(value, list) else str(value)
    return "(secret URL)"


def _unwritable(folder: Path) -> str | None:
    """Why a database could not be created in `folder` (it or its nearest existing parent)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


@app.command()
def query(
    sql: Annotated[
        str | None,
        typer.Argument(help='Read-only SQL, e.g. "select * from hedge_status"; "-" reads stdin.'),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-F", help="Read the SQL from a file.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    wait: Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")] = 30.0,
    timeout: Annotated[
        float,
        typer.Option(min=0.001, max=86400.0, help="Interrupt the query after this many seconds."),
    ] = 300.0,
) -> None:
    """Run one read-only statement on the DuckDB file and print the result.

    The connection reads nothing but the database: no files, no extensions, no settings;
    other statements are refused with exit code 2. Ctrl-C or --timeout interrupts it.
    """
    from hedgewatch.storage.query import QueryInterrupted, QueryTimeout, open_locked, run_locked
    from hedgewatch.storage.store import StoreBusy, StoreError

    if (sql is None) == (file is None):
        raise fail("give the SQL as an argument, or with --file (not both)", 2)
    if file is not None:
        try:
            sql = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"{file}: cannot read: {exc.strerror}", 2) from None
    elif sql == "-":
        sql = sys.stdin.read()
    assert sql is not None
    path = database if database is not None else _settings(config, secrets=False).storage.target

    try:
        notice = WaitNotice(path) if isinstance(path, Path) else None  # a lake never waits
        con = open_locked(path, timeout_s=wait, on_wait=notice)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    try:
        result = run_locked(con, sql, timeout_s=timeout)
    except QueryInterrupted as exc:
        raise fail(str(exc), 130) from None
    except QueryTimeout as exc:
        raise fail(str(exc), 2) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    finally:
        con.close()
    if not result.columns:
        return
    typer.echo(format_rows(result.columns, result.rows, fmt), nl=False)


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Where the demo keeps its database and outbox.")
    ] = Path("var/demo"),
    step_hours: Annotated[int, typer.Option(min=1, max=168, help="Hours between runs.")] = 24,
    prefect: Annotated[
        bool,
        typer.Option(
            "--prefect/--no-prefect",
            help="Each run a Prefect flow run (on PREFECT_API_URL, else on a server the demo "
            "starts and stops), or the same steps as plain functions.",
        ),
    ] = False,
) -> None:
    """Replay the May 2022 LUNA/UST crash through the whole pipeline, offline.

    Each run calls the hourly flow's steps as plain functions, as `hedgewatch run` does without a
    Prefect API. With --prefect each run is a flow run: on PREFECT_API_URL's server, else on a
    Prefect server the demo starts on loopback (its database under WORKDIR) and stops at the end.
    """
    from hedgewatch.demo import run_demo

    try:
        run_demo(workdir=workdir, step_hours=step_hours, echo=typer.echo, prefect=prefect)
    except RuntimeError as exc:
        raise fail(f"demo failed: {exc}", EXIT_FAILED) from None


@replay_app.command("serve")
def replay_serve(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Candle or funding files (CSV/CSV.gz, ts in epoch ms UTC).", show_default=False
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Files to serve (same as the arguments: --data A B C works)."),
    ] = None,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 0,
    now: Annotated[
        str | None, typer.Option(help="The server's clock (ISO 8601, UTC). Default: last candle.")
    ] = None,
    venue: Annotated[
        str, typer.Option(help="Wire format: binance, bybit, okx, coinbase or kraken.")
    ] = "binance",
    speed: Annotated[
        float,
        typer.Option(min=0, help="Run the clock at this many replay seconds per second (0: hold)."),
    ] = 0.0,
) -> None:
    """Serve candle files in a venue's wire format on loopback, so hedgewatch can fetch them.

    The clock holds still unless --speed says otherwise; `hedgewatch replay advance` moves it.
    """
    from hedgewatch.replay.serve import serve

    paths = [*(data or []), *(files or [])]
    if not paths:
        raise fail("give the files to serve (as arguments or with --data)", 2)
    for path in paths:
        if not path.is_file():
            raise fail(f"{path}: no such file", 2)
    clock = None if now is None else _utc_option("--now", now)
    from hedgewatch.venues import VENUE_SPECS

    served = tuple(sorted(VENUE_SPECS))
    if venue not in served:
        raise fail(f"--venue: expected one of {', '.join(served)}", 2)
    try:
        serve(paths, host=host, port=port, now=clock, venue=venue, speed=speed, echo=typer.echo)
    except (ValueError, OSError) as exc:
        raise fail(str(exc), 2) from None


@replay_app.command("advance")
def replay_advance(
    by: Annotated[
        str | None, typer.Argument(help="How far to move the clock: 30m, 12h, 2d (negative: back).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Set the clock to this time (ISO 8601, UTC).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(min=0, help="Let the clock run at this speed from now on.")
    ] = None,
    url: Annotated[
        str, typer.Option("--url", "-u", help="The running replay exchange's URL.")
    ] = "http://127.0.0.1:8765",
) -> None:
    """Move a running replay exchange's clock (and print where it is now)."""
    from hedgewatch.replay.client import move_clock

    command: dict[str, object] = {}
    if by is not None:
        command["advance_s"] = _duration_s(by)
    if to is not None:
        command["now"] = _utc_option("--to", to).isoformat()
    if speed is not None:
        command["speed"] = speed
    try:
        now_at = move_clock(url, command)
    except ConnectionError as exc:
        raise fail(f"{url}: {exc}", 1) from None
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(f"replay clock: {now_at}")


def _utc_option(option: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{option}: not an ISO 8601 time: {text!r}", 2) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _duration_s(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    try:
        if body and body[-1] in units:
            return sign * float(body[:-1]) * units[body[-1]]
        return sign * float(body)
    except ValueError:
        raise fail(f"not a duration: {text!r} (e.g. 30m, 12h, 2d)", 2) from None
