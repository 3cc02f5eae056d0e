"""The `hedgewatch` command line: a thin layer over the library, mounted here from its areas.

Each area module (`core`, `data`, `alerts`, `hedges`, `ops`) defines its own Typer app on top of
`hedgewatch.cli.common`; this module merges their commands into one `hedgewatch` command and no
area imports it back.
Exit codes: 0 success, 1 the run failed, 2 bad usage or configuration, 3 the database is busy.
"""

from __future__ import annotations

import os
import sys

import typer

from hedgewatch.cli import alerts, core, data, hedges, ops

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


def main() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
