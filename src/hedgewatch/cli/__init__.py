"""The `hedgewatch` command line: a thin layer over the library, mounted here from its areas.

Each area module (`core`, `data`, `alerts`, `hedges`, `ops`) defines its own Typer app on top of
`hedgewatch.cli.common`; this module merges their commands into one `hedgewatch` command, adds
the global options (--version, --log-level, --log-format) and no area imports it back.
Exit codes (README, "Exit codes"): 0 ok, 1 failure, 2 usage or configuration, 3 database busy,
4 partial.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from hedgewatch.cli import alerts, core, data, hedges, ops
from hedgewatch.cli.common import GlobalOptions


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


app = typer.Typer(
    name="hedgewatch",
    help="Watch crypto hedges: fetch candles, store them in DuckDB, alert on decoupling.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _area in (core.app, data.app, alerts.app, hedges.app, ops.app):
    app.registered_commands.extend(_area.registered_commands)
    app.registered_groups.extend(_area.registered_groups)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"hedgewatch {version('hedgewatch')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    level: Annotated[
        LogLevel,
        typer.Option("--log-level", envvar="HEDGEWATCH_LOG_LEVEL", help="Log level on stderr."),
    ] = LogLevel.warning,
    fmt: Annotated[
        LogFormat,
        typer.Option(
            "--log-format", envvar="HEDGEWATCH_LOG_FORMAT", help="Log lines as text or JSON."
        ),
    ] = LogFormat.text,
) -> None:
    from hedgewatch.logs import configure_logging

    options = GlobalOptions(log_level=level.value.upper(), log_format=fmt.value)
    configure_logging(options.log_level, "json" if fmt is LogFormat.json else "text")
    ctx.obj = options


def main() -> None:
    # Prefect's client telemetry reads DO_NOT_TRACK from the process environment only, so the
    # entry point (which owns the process) sets its default here, before any command runs.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
