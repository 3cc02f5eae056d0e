"""What every command shares: the config option, output formats, errors with exit codes.

Exit codes are a contract (README, "Exit codes"): 0 ok, 1 failure, 2 usage or configuration,
3 the database is busy, 4 partial (the run finished but something in it failed, e.g. a venue).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from hedgewatch.settings import Settings

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

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3
EXIT_PARTIAL = 4


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command (`hedgewatch --log-level debug run`)."""

    log_level: str = "WARNING"
    log_format: str = "text"


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The global options of the command being run (defaults when none were parsed)."""
    found = ctx.find_root().obj
    return found if isinstance(found, GlobalOptions) else GlobalOptions()


def reapply_logging(ctx: typer.Context) -> GlobalOptions:
    """Apply --log-level/--log-format again (after importing Prefect, which resets handlers)."""
    from hedgewatch.logs import configure_logging

    options = global_options(ctx)
    configure_logging(options.log_level, "json" if options.log_format == "json" else "text")
    return options


class WaitNotice:
    """Says once that a run holds the database and the command waits for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.told = False

    def __call__(self, remaining: float) -> None:
        if not self.told:
            typer.echo(
                f"hedgewatch: a run is writing {self.path}; waiting up to {remaining:.0f} s…",
                err=True,
            )
            self.told = True


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def fail(message: str, code: int) -> typer.Exit:
    """Print `hedgewatch: message` on stderr; raise the result to exit with `code`."""
    typer.echo(f"hedgewatch: {message}", err=True)
    return typer.Exit(code)


def parse_time(value: str, option: str) -> datetime:
    """ISO 8601 date or time for `option`; without a zone it is UTC. Bad input exits 2."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{option}: not an ISO 8601 date or time: {value!r}", 2) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _settings(config: Path, *, secrets: bool = True) -> Settings:
    """The validated config; `secrets=False` for commands that never send (no secret is read)."""
    from hedgewatch.settings import ConfigError, load_settings

    try:
        return load_settings(config, secrets=secrets)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def database_path(config: Path, database: Path | None) -> Path:
    """The database a read-only command reads: -d, else the config's (read without secrets)."""
    if database is not None:
        return database
    return _settings(config, secrets=False).storage.database


def reading_settings(config: Path, database: Path | None, *, wait: float = 30.0) -> Settings:
    """Settings for a command that reads the database and needs the rules or hedges: the config
    (without its secrets) when the file is there, else — with -d — the settings the database's
    last run stored."""
    if config.is_file() or database is None:
        settings = _settings(config, secrets=False)
    else:
        settings = stored_settings(config, database, wait)
    if database is not None:
        storage = settings.storage.model_copy(update={"database": database})
        settings = settings.model_copy(update={"storage": storage})
    return settings


def stored_settings(config: Path, database: Path, wait: float) -> Settings:
    from pydantic import ValidationError

    from hedgewatch.settings import Settings
    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    try:
        with Store.open(database, read_only=True, timeout_s=wait) as store:
            snapshot = store.last_run_settings()
    except StoreBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except StoreError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if snapshot is None:
        raise fail(
            f"{config}: config file not found, and {database} holds no settings from a run; "
            "give the config with -c FILE (or $HEDGEWATCH_CONFIG)",
            EXIT_USAGE,
        )
    try:
        return Settings.model_validate(snapshot)
    except ValidationError as exc:
        raise fail(
            f"{database}: the settings stored with its last run no longer validate "
            f"({exc.error_count()} errors); give the config with -c FILE",
            EXIT_USAGE,
        ) from None


def format_rows(
    columns: list[str], rows: list[tuple[Any, ...]], fmt: OutputFormat, *, footer: bool = True
) -> str:
    if fmt is OutputFormat.json:
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        return json.dumps(records, default=_json_default, indent=2) + "\n"
    if fmt is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return buffer.getvalue()
    cells = [[_cell(v) for v in row] for row in rows]
    width = max(80, min(240, 20 * len(columns)))
    count = f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n" if footer else ""
    return (plain_table(columns, cells, width) or rich_table(columns, cells, width)) + count


def rich_table(columns: list[str], cells: list[list[str]], width: int) -> str:
    """The table drawn by rich: cells are text as it is (no markup), wrapped to `width`."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False)
    for column in columns:
        table.add_column(Text(column))
    for row in cells:
        table.add_row(*(Text(c) for c in row))
    console = Console(file=io.StringIO(), width=width, record=True)
    console.print(table)
    return console.export_text()


def plain_table(columns: list[str], cells: list[list[str]], width: int) -> str | None:
    """`rich_table`'s text in one pass over the cells, when nothing needs wrapping or measuring
    (cells of printable characters one column wide each, a table no wider than `width`); None
    otherwise.

    A few hundred rows of events cost rich about a second; this costs milliseconds.
    """
    texts = [columns, *cells]
    if not columns or not all(_one_column_each(c) for row in texts for c in row):
        return None
    widths = [max(len(row[i]) for row in texts) for i in range(len(columns))]
    if sum(widths) + 3 * len(widths) + 1 > width:
        return None

    def rule(left: str, line: str, cross: str, right: str) -> str:
        return left + cross.join(line * (w + 2) for w in widths) + right + "\n"

    def line(row: list[str], edge: str) -> str:
        return edge + edge.join(f" {c.ljust(w)} " for c, w in zip(row, widths, strict=True))

    out = [rule("┏", "━", "┳", "┓"), line(columns, "┃") + "┃\n", rule("┡", "━", "╇", "┩")]
    out.extend(line(row, "│") + "│\n" for row in cells)
    out.append(rule("└", "─", "┴", "┘"))
    return "".join(out)


def _one_column_each(text: str) -> bool:
    """Whether every character of `text` takes one terminal column, as rich measures it."""
    if text.isascii():
        return text.isprintable()
    from rich.cells import cell_len

    return text.isprintable() and cell_len(text) == len(text)


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
