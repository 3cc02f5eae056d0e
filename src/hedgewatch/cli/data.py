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
    parse_time,
)

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
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Let a file's candles join a series already imported from another source.",
        ),
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Load candle files (Binance data archive, normalised CSV, Parquet) into the database.

    Says per file how many candles were new, changed or unchanged; warns about series no
    instrument of the config names; refuses to put a second source into one series unless
    --merge is given. The hours the new and changed candles touch get their metrics recomputed
    by the next run (or `hedgewatch recompute`).
    """
    from hedgewatch.importing import CandleFileError, Defaults, read_checked, source_of
    from hedgewatch.storage.store import Changes, Store, StoreBusy, StoreError

    if market is not None and market not in ("spot", "perp"):
        raise fail(f"--market: expected spot or perp, got {market!r}", 2)
    settings = _settings(config)
    defaults = Defaults(venue=venue, market=market, interval=interval, symbol=symbol)
    configured = {(i.venue, i.market, i.symbol, i.interval) for i in settings.instruments}
    keys = ["venue", "market", "symbol", "interval"]
    total = Changes()
    now = datetime.now(UTC)
    try:
        with Store.open(
            settings.storage.target, timeout_s=settings.storage.lock_timeout_s
        ) as store:
            for path in files:
                source = source_of(path)
                changes = Changes()
                rejected: dict[str, int] = {}
                for checked in read_checked(path, defaults, now=now):
                    for reason, n in checked.rejects.items():
                        rejected[reason] = rejected.get(reason, 0) + n
                    frame = checked.kept
                    if frame.is_empty():
                        continue
                    series = frame.select(keys).unique().sort(keys)
                    for key in series.iter_rows():
                        if key not in configured:
                            typer.echo(
                                f"{path}: warning: {' '.join(key)} is not an instrument of "
                                f"{config}; stored, but no metric uses it",
                                err=True,
                            )
                    clashes = {
                        key: sorted(found - {source})
                        for key, found in store.import_sources(series).items()
                        if found - {source}
                    }
                    if clashes and not merge:
                        key, others = next(iter(clashes.items()))
                        raise fail(
                            f"{path}: {' '.join(key)} already holds candles imported from "
                            f"{', '.join(others)}; this file is {source!r}. Pass --venue to "
                            "store it as another venue, or --merge to combine the two sources",
                            2,
                        )
                    with store.transaction():
                        changes += store.import_candles(frame)
                        store.record_import_source(series, source)
                total += changes
                refused = "".join(
                    f", {n} rejected: {reason}" for reason, n in sorted(rejected.items())
                )
                typer.echo(
                    f"{path}: {changes.rows} candles: {changes.new} new, "
                    f"{changes.changed} changed, {changes.unchanged} unchanged{refused}"
                )
    except CandleFileError as exc:
        raise fail(str(exc), 2) from None
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    typer.echo(
        f"imported {total.rows} candles from {len(files)} file(s): {total.new} new, "
        f"{total.changed} changed, {total.unchanged} unchanged"
        + (
            f"; metrics from {total.earliest:%Y-%m-%d %H:%M} UTC on are recomputed by the next run"
            if total.earliest is not None
            else ""
        )
    )


@app.command()
def recompute(
    start: Annotated[
        str | None, typer.Option("--from", help="First hour to recompute (ISO 8601, UTC).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last hour to recompute. Default: the newest.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Recompute stored metrics from the stored candles (default: all of history).

    Runs pick up hours that changed by themselves; use this after changing metric settings
    when you do not want to wait for the next run, or to rebuild a range.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from hedgewatch import pipeline
    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    settings = _settings(config)
    first = parse_time(start, "--from") if start else None
    last = parse_time(end, "--to") if end else None
    if first is not None and last is not None and last < first:
        raise fail("--to must not be before --from", 2)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    )
    task = bar.add_task("recompute", total=None)
    try:
        with (
            bar,
            Store.open(settings.storage.target, timeout_s=settings.storage.lock_timeout_s) as store,
        ):
            changed = pipeline.settings_changed(store, settings)
            if changed:
                typer.echo(f"metric settings changed: {', '.join(changed)}", err=True)
            done = pipeline.recompute(
                store,
                settings,
                first,
                last,
                on_plan=lambda n: bar.update(task, total=n),
                on_step=lambda lo, _: bar.advance(task),
            )
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    if done.since is None:
        typer.echo("no candles stored: nothing to recompute")
        return
    typer.echo(
        f"recomputed {done.since:%Y-%m-%d %H:%M} → {done.through:%Y-%m-%d %H:%M} UTC: "
        if done.through
        else "recomputed: ",
        nl=False,
    )
    typer.echo(f"{done.hedge_rows} hedge, {done.basket_rows} basket and {done.pair_rows} pair rows")


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
    from hedgewatch.storage.store import QueryError, Store, StoreBusy, StoreError

    path = database_path(config, database)
    try:
        with Store.open(path, read_only=True, timeout_s=30.0) as store:
            columns, rows = store.gaps(venue, symbol)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except QueryError as exc:
        raise fail(f"cannot read gaps: {exc}", 2) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(format_rows(columns, rows, fmt), nl=False)
    if fmt is OutputFormat.table:
        missing = sum(int(row[-1]) for row in rows)
        series = len({row[:4] for row in rows})
        typer.echo(f"{missing} missing candles in {len(rows)} gaps across {series} series")
