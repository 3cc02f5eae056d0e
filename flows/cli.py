"""The `hedgewatch` command line: a thin layer over the library.

Exit codes: 0 success, 1 the run failed, 2 bad usage or configuration, 3 the database is busy.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.settings import ConfigError, Settings

app = typer.Typer(
    name="hedgewatch",
    help="Watch crypto hedges: fetch candles, store them in DuckDB, alert on decoupling.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
replay_app = typer.Typer(
    help="The replay exchange: serve stored candles over HTTP.", no_args_is_help=True
)
app.add_typer(replay_app, name="replay")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="HEDGEWATCH_CONFIG",
        help="Config file (TOML). Default: hedgewatch.toml, or $HEDGEWATCH_CONFIG.",
    ),
]
DEFAULT_CONFIG = Path("hedgewatch.toml")


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"hedgewatch: {message}", err=True)
    return typer.Exit(code)


def _settings(config: Path) -> Settings:
    from flows.settings import load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """One hourly run now: fetch, load, compute, evaluate alerts, deliver."""
    _settings(config)  # fail fast with exit code 2 before Prefect starts
    from flows.hourly import hourly
    from flows.runtime import quiet_prefect
    from flows.store import StoreBusy

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
    typer.echo(
        f"{config}: ok — {len(settings.instruments)} instruments on "
        f"{len(settings.venues)} venue(s), "
        f"{len(settings.hedges)} hedges, {len(settings.baskets)} baskets, "
        f"{len(settings.alerts.rules)} rules, {len(settings.channels)} channels"
    )


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
) -> None:
    """Run read-only SQL on the DuckDB file and print the result."""
    import duckdb

    from flows.store import StoreBusy, StoreError, connect

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
        con = connect(path, read_only=True, timeout_s=wait, on_wait=waiting)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    try:
        relation = con.sql(sql)
        if relation is None:
            return
        columns = relation.columns
        rows = relation.fetchall()
    except duckdb.Error as exc:
        raise fail(f"query failed: {exc}", 2) from None
    finally:
        con.close()
    typer.echo(format_rows(columns, rows, fmt), nl=False)


def format_rows(columns: list[str], rows: list[tuple[Any, ...]], fmt: OutputFormat) -> str:
    if fmt is OutputFormat.json:
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        return json.dumps(records, default=_json_default, indent=2) + "\n"
    if fmt is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return buffer.getvalue()
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*[_cell(v) for v in row])
    console = Console(file=io.StringIO(), width=max(80, min(240, 20 * len(columns))), record=True)
    console.print(table)
    footer = f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n"
    return console.export_text() + footer


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


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
    from flows.demo import run_demo

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
    from flows.exchanges.replay import serve

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
    from flows.exchanges import REST_SPECS

    served = ("binance", *sorted(REST_SPECS))
    if venue not in served:
        raise fail(f"--venue: expected one of {', '.join(served)}", 2)
    serve(data, host=host, port=port, now=clock, venue=venue)


# Commands of each area live in their own module (flows/cli_*.py) and register on `app` on import.
from flows import cli_alerts, cli_data, cli_hedges, cli_ops  # noqa: E402, F401


def main() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    # `python -m flows.cli`: run the imported module's app, the one the area commands registered on.
    from flows.cli import main as entry

    entry()
