"""Market-data commands: `backfill`, `import` and `gaps`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from hedgewatch.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    OutputFormat,
    _settings,
    database_path,
    fail,
    format_rows,
)


def parse_time(value: str, option: str) -> datetime:
    """ISO 8601 date or time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{option}: not an ISO 8601 date or time: {value!r}", 2) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


app = typer.Typer()


@app.command()
def backfill(
    start: Annotated[
        str, typer.Option("--from", help="First hour to fetch (ISO 8601, UTC), e.g. 2023-01-01.")
    ],
    end: Annotated[
        str | None, typer.Option("--to", help="Fetch up to this time (exclusive). Default: now.")
    ] = None,
    venue: Annotated[
        list[str] | None, typer.Option("--venue", help="Only this venue (repeatable).")
    ] = None,
    symbol: Annotated[
        list[str] | None,
        typer.Option("--symbol", help="Only this symbol or instrument id (repeatable)."),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fetch history for the configured instruments; rerun to resume an interrupted backfill."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TimeRemainingColumn,
    )

    from hedgewatch.flows.backfill import Chunk, run_backfill
    from hedgewatch.storage.store import StoreBusy, StoreError

    settings = _settings(config)
    first = parse_time(start, "--from")
    last = parse_time(end, "--to") if end else datetime.now(UTC)
    if last <= first:
        raise fail("--to must be after --from", 2)
    known_venues = {v.name for v in settings.venues}
    for name in venue or []:
        if name not in known_venues:
            raise fail(f"--venue: {name!r} is not in {config} (known: {sorted(known_venues)})", 2)
    scope = [i for i in settings.instruments if not venue or i.venue in venue]
    for wanted in symbol or []:
        if not any(wanted in (i.symbol, i.id) for i in scope):
            raise fail(f"--symbol: no configured instrument {wanted!r} on the chosen venues", 2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def planned(per_venue: dict[str, int]) -> None:
        for name, count in sorted(per_venue.items()):
            tasks[name] = bar.add_task(name, total=count)

    def stored(chunk: Chunk, rows: int) -> None:
        bar.advance(tasks[chunk.venue])

    try:
        with bar:
            report = run_backfill(
                settings,
                first,
                last,
                venues=venue,
                symbols=symbol,
                on_plan=planned,
                on_chunk=stored,
            )
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        typer.echo(
            "interrupted; what was stored is kept — rerun the same command to resume", err=True
        )
        raise typer.Exit(130) from None
    typer.echo(
        f"backfill {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC: {report.done} ranges "
        f"stored ({report.rows} rows), {report.skipped} already stored earlier, "
        f"{len(report.failed)} failed, {len(report.unavailable)} not available from the venue"
    )
    for chunk, reason in report.unavailable[:5]:
        typer.echo(f"  not available: {chunk.venue} {chunk.symbol}: {reason}", err=True)
    for chunk, reason in report.failed[:10]:
        typer.echo(
            f"  failed: {chunk.venue} {chunk.market} {chunk.symbol} {chunk.dataset} "
            f"{chunk.start:%Y-%m-%d}..{chunk.end:%Y-%m-%d}: {reason}",
            err=True,
        )
    if report.failed:
        typer.echo("rerun the same command to retry what failed", err=True)
        raise typer.Exit(1)


@app.command("import")
def import_files(
    files: Annotated[
        list[Path], typer.Argument(help="Candle files: .csv, .csv.gz, .zip, .parquet")
    ],
    venue: Annotated[str | None, typer.Option(help="Venue name, if the file does not say.")] = None,
    market: Annotated[
        str | None, typer.Option(help="spot or perp, if the file does not say.")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="e.g. 1h, if neither file nor name says.")
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="The venue's symbol, if missing.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Load candle files (Binance data archive, normalised CSV, Parquet) into the database."""
    from hedgewatch.importing import CandleFileError, Defaults, read_checked
    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    if market is not None and market not in ("spot", "perp"):
        raise fail(f"--market: expected spot or perp, got {market!r}", 2)
    settings = _settings(config)
    defaults = Defaults(venue=venue, market=market, interval=interval, symbol=symbol)
    total = 0
    now = datetime.now(UTC)
    try:
        for path in files:
            rows = 0
            rejected: dict[str, int] = {}
            for checked in read_checked(path, defaults, now=now):
                for reason, n in checked.rejects.items():
                    rejected[reason] = rejected.get(reason, 0) + n
                if checked.kept.is_empty():
                    continue
                with Store.open(
                    settings.storage.database, timeout_s=settings.storage.lock_timeout_s
                ) as store:
                    rows += store.upsert_candles(checked.kept)
            total += rows
            refused = "".join(f", {n} rejected: {reason}" for reason, n in sorted(rejected.items()))
            typer.echo(f"{path}: {rows} candles{refused}")
    except CandleFileError as exc:
        raise fail(str(exc), 2) from None
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    typer.echo(f"imported {total} candles from {len(files)} file(s)")


@app.command()
def gaps(
    venue: Annotated[str | None, typer.Option(help="Only this venue.")] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
) -> None:
    """Missing candles per series, from the `gaps` view. Shown, never filled."""
    import duckdb

    from hedgewatch.storage.store import StoreBusy, StoreError, connect

    path = database_path(config, database)
    try:
        con = connect(path, read_only=True, timeout_s=30.0)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    try:
        relation = con.sql(
            "SELECT venue, market, symbol, interval, first_missing, last_missing, missing_hours "
            "FROM gaps WHERE ($venue IS NULL OR venue = $venue) "
            "AND ($symbol IS NULL OR symbol = $symbol) ORDER BY ALL",
            params={"venue": venue, "symbol": symbol},
        )
        columns, rows = relation.columns, relation.fetchall()
    except duckdb.Error as exc:
        raise fail(f"cannot read gaps: {exc}", 2) from None
    finally:
        con.close()
    typer.echo(format_rows(columns, rows, fmt), nl=False)
    if fmt is OutputFormat.table:
        missing = sum(int(row[-1]) for row in rows)
        series = len({row[:4] for row in rows})
        typer.echo(f"{missing} missing candles in {len(rows)} gaps across {series} series")
