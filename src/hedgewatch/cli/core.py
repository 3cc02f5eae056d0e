"""The core commands: `run`, `check-config`, `query`, `demo` and `replay serve`."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from hedgewatch.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    OutputFormat,
    _settings,
    fail,
    format_rows,
)

app = typer.Typer()
replay_app = typer.Typer(
    help="The replay exchange: serve stored candles over HTTP.", no_args_is_help=True
)
app.add_typer(replay_app, name="replay")


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """One hourly run now: fetch, load, compute, evaluate alerts, deliver."""
    _settings(config)  # fail fast with exit code 2 before Prefect starts
    from hedgewatch.flows.hourly import hourly
    from hedgewatch.flows.runtime import quiet_prefect
    from hedgewatch.storage.store import StoreBusy

    try:
        with quiet_prefect(log_level="INFO"):
            summary = hourly(config_path=str(config))
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except Exception as exc:
        raise fail(f"run failed: {type(exc).__name__}: {exc}", 1) from None
    typer.echo(
        f"run {summary.run_id[:8]} {summary.status}: {summary.fetched.get('candles', 0)} candles, "
        f"{len(summary.alerts)} alert events, "
        f"{summary.deliveries.get('delivered', 0)} notifications delivered"
    )
    for failure in summary.failures:
        typer.echo(f"  failed: {failure}", err=True)


@app.command("check-config")
def check_config(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Validate the config file and print what it watches."""
    settings = _settings(config)
    problem = _unwritable(settings.storage.database.parent)
    if problem:
        raise fail(
            f"{config}: storage.database: cannot write in {settings.storage.database.parent} "
            f"({problem})",
            2,
        )
    typer.echo(
        f"{config}: ok — {len(settings.instruments)} instruments on "
        f"{len(settings.venues)} venue(s), "
        f"{len(settings.hedges)} hedges, {len(settings.baskets)} baskets, "
        f"{len(settings.alerts.rules)} rules, {len(settings.channels)} channels"
    )


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
    path = database or _settings(config).storage.database

    def waiting(remaining: float) -> None:
        if not waiting.told:  # type: ignore[attr-defined]
            typer.echo(
                f"hedgewatch: a run is writing {path}; waiting up to {remaining:.0f} s…", err=True
            )
            waiting.told = True  # type: ignore[attr-defined]

    waiting.told = False  # type: ignore[attr-defined]
    try:
        con = open_locked(path, timeout_s=wait, on_wait=waiting)
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
    step_hours: Annotated[int, typer.Option(min=1, max=168, help="Hours between runs.")] = 12,
) -> None:
    """Replay the May 2022 LUNA/UST crash through the whole pipeline, offline."""
    # The demo prints its own timeline; Prefect's per-task INFO lines would bury it.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from hedgewatch.demo import run_demo

    run_demo(workdir=workdir, step_hours=step_hours, echo=typer.echo)


@replay_app.command("serve")
def replay_serve(
    data: Annotated[
        list[Path],
        typer.Option("--data", help="Candle or funding files (CSV/CSV.gz, ts in epoch ms UTC)."),
    ],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 0,
    now: Annotated[
        str | None, typer.Option(help="The server's clock (ISO 8601, UTC). Default: last candle.")
    ] = None,
    venue: Annotated[
        str, typer.Option(help="Wire format: binance, bybit, okx, coinbase or kraken.")
    ] = "binance",
) -> None:
    """Serve candle files in a venue's wire format on loopback, so hedgewatch can fetch them."""
    from hedgewatch.replay.exchange import serve

    for path in data:
        if not path.is_file():
            raise fail(f"{path}: no such file", 2)
    clock = None
    if now is not None:
        try:
            clock = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"--now: not an ISO 8601 time: {now!r}", 2) from None
        clock = clock.replace(tzinfo=UTC) if clock.tzinfo is None else clock.astimezone(UTC)
    from hedgewatch.venues import REST_SPECS

    served = ("binance", *sorted(REST_SPECS))
    if venue not in served:
        raise fail(f"--venue: expected one of {', '.join(served)}", 2)
    serve(data, host=host, port=port, now=clock, venue=venue)
