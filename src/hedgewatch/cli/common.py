"""What every command shares: the config option, output formats, errors with exit codes."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from hedgewatch.settings import ConfigError, Settings

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
    from hedgewatch.settings import load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


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
