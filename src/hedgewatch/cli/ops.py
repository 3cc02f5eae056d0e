"""Operations commands: `serve` (the hourly schedule), `status`, `outbox list|requeue`,
`metrics` (Prometheus), `export` (Parquet) and `report` (HTML)."""

from __future__ import annotations

import importlib.util
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hedgewatch.cli.common import (
    DEFAULT_CONFIG,
    EXIT_BUSY,
    EXIT_USAGE,
    ConfigOption,
    OutputFormat,
    _json_default,
    _settings,
    database_path,
    fail,
    format_rows,
    reading_settings,
)

app = typer.Typer()


@app.command()
def serve(
    config: ConfigOption = DEFAULT_CONFIG,
    cron: Annotated[
        str | None, typer.Option(help="Cron (UTC unless [schedule] timezone says otherwise).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Deployment name.")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Also serve Prometheus gauges on this port."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Serve the hourly flow on its cron (config: schedule.cron) until Ctrl-C; needs Prefect."""
    from pydantic import ValidationError

    from hedgewatch.settings import ScheduleSettings

    settings = _settings(config)
    updates = {k: v for k, v in {"cron": cron, "deployment": name}.items() if v is not None}
    if updates:
        try:
            schedule = ScheduleSettings.model_validate(
                {**settings.schedule.model_dump(), **updates}
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            option = "--" + ("name" if first["loc"][0] == "deployment" else str(first["loc"][0]))
            raise fail(f"{option}: {first['msg']}", 2) from None
        settings = settings.model_copy(update={"schedule": schedule})
    from hedgewatch.flows.runtime import api_configured

    if not api_configured():
        raise fail(
            "serve needs a Prefect server to schedule runs: start one with `prefect server start` "
            "and set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)",
            2,
        )
    from hedgewatch.flows.runtime import quiet_prefect, serve_until_signalled
    from hedgewatch.flows.scheduling import build_deployment, ensure_venue_limits

    if metrics_port is not None:
        _serve_metrics(settings.storage.database, metrics_port, metrics_host)
    with quiet_prefect(log_level="INFO"):
        tags = ensure_venue_limits(settings)
        deployment = build_deployment(settings, config)
        serve_until_signalled(
            deployment,
            on_ready=lambda: typer.echo(
                f"serving {deployment.flow_name}/{deployment.name}: cron "
                f"{settings.schedule.cron!r} ({settings.schedule.timezone}), one run at a time, "
                f"one fetch per venue ({', '.join(tags)}); Ctrl-C (or SIGTERM) stops and pauses "
                "the schedule"
            ),
        )
    typer.echo("stopped; the schedule is paused until the next `hedgewatch serve`")


def _serve_metrics(database: Path, port: int, host: str) -> None:
    from hedgewatch.metrics_export import serve as serve_metrics

    try:
        serve_metrics(database, port, host)
    except OSError as exc:
        raise fail(
            f"--metrics-port: cannot listen on {host}:{port}: {exc.strerror or exc}", 2
        ) from None
    typer.echo(f"Prometheus gauges at http://{host}:{port}/metrics")


@app.command()
def metrics(
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    textfile: Annotated[
        Path | None, typer.Option(help="Write the gauges to this file (atomically).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve /metrics here until Ctrl-C.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address for --port.")] = "127.0.0.1",
    wait: Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")] = 30.0,
) -> None:
    """Prometheus gauges (newest hedge and basket metrics, alert states, run health): print
    them, write them to --textfile, or serve them on --port."""
    import time

    from hedgewatch.metrics_export import exposition, write_textfile
    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    path = database or _settings(config).storage.database
    if not path.exists():
        raise fail(f"--database: {path}: database not found", 2)
    if port is not None:
        _serve_metrics(path, port, host)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return
    try:
        if textfile is not None:
            size = write_textfile(path, textfile, timeout_s=wait)
            typer.echo(f"wrote {textfile} ({size} bytes)")
            return
        with Store.open(path, read_only=True, timeout_s=wait) as store:
            text = exposition(store)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(text.decode(), nl=False)


class ExportFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write one file per view/table.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f")] = ExportFormat.parquet,
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")] = 30.0,
) -> None:
    """Write every public view and table as Parquet (or CSV) files, each replaced atomically."""
    from hedgewatch.storage.export import export_relations
    from hedgewatch.storage.store import StoreBusy, StoreError

    path = database_path(config, database)
    if directory.exists() and not directory.is_dir():
        raise fail(f"{directory}: not a directory", 2)
    try:
        written = export_relations(path, directory, fmt.value, timeout_s=wait)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    for name, rows in written:
        typer.echo(f"{name}: {rows} rows")
    typer.echo(f"wrote {len(written)} files to {directory}")


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "hedgewatch-report.html"
    ),
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days of history to chart.")] = 14,
    wait: Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")] = 30.0,
) -> None:
    """Write one self-contained HTML report (works offline): heatmaps, hedges, stress, alerts."""
    from hedgewatch.report.html import build_report
    from hedgewatch.storage.store import StoreBusy, StoreError

    if importlib.util.find_spec("plotly") is None:
        raise fail("report draws its charts with plotly: pip install 'hedgewatch[report]'", 2)
    settings = reading_settings(config, database, wait=wait)
    path = settings.storage.database
    if out.suffix.lower() not in {".html", ".htm"}:
        raise fail(f"--out: {out} should end in .html", 2)
    try:
        html = build_report(settings, path, days=days, timeout_s=wait)
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    typer.echo(f"wrote {out} ({len(html) // 1024} KiB)")


class StatusFormat(StrEnum):
    table = "table"
    json = "json"


STATUS_SECTIONS = ("runs", "staleness", "firing", "queued")
STATUS_TITLES = {
    "runs": "Last runs",
    "staleness": "Staleness (hours since each series' newest candle closed)",
    "firing": "Firing alerts",
    "queued": "Undelivered notifications (queued, retrying, dead)",
}


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    fmt: Annotated[StatusFormat, typer.Option("--format", "-f")] = StatusFormat.table,
    runs: Annotated[int, typer.Option(min=1, max=1000, help="How many runs to list.")] = 5,
    wait: Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")] = 30.0,
) -> None:
    """At a glance: the last runs, how stale each series is, firing alerts, undelivered
    notifications (dead ones too)."""
    from datetime import UTC, datetime

    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    path = database_path(config, database)
    now = datetime.now(UTC)
    try:
        with Store.open(path, read_only=True, timeout_s=wait) as store:
            frames = {
                "runs": store.query("status/runs", {"limit": runs}),
                "staleness": store.query("status/staleness", {"now": now}),
                "firing": store.query("status/firing"),
                "queued": store.query("status/queued"),
            }
    except StoreBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except StoreError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if fmt is StatusFormat.json:
        document = {"database": str(path), "at": now.isoformat()} | {
            name: frames[name].to_dicts() for name in STATUS_SECTIONS
        }
        typer.echo(json.dumps(document, indent=2, default=_json_default))
        return
    typer.echo(f"{path} at {now:%Y-%m-%d %H:%M} UTC")
    for name in STATUS_SECTIONS:
        frame = frames[name]
        typer.echo(f"\n{STATUS_TITLES[name]}:")
        if frame.is_empty():
            typer.echo("  (none)")
            continue
        typer.echo(
            format_rows(frame.columns, frame.rows(), OutputFormat.table, footer=False), nl=False
        )


outbox_app = typer.Typer(
    help="The outbox: list notifications, requeue those given up (dead).", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")


class OutboxState(StrEnum):
    undelivered = "undelivered"
    dead = "dead"
    all = "all"


@outbox_app.command("list")
def outbox_list(
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    state: Annotated[
        OutboxState, typer.Option(help="undelivered (queued, retrying, dead), dead, or all.")
    ] = OutboxState.undelivered,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    wait: Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")] = 30.0,
) -> None:
    """One row per notification and channel: state, attempts, runs, and the last error (for a
    dead one, why it was given up)."""
    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    path = database_path(config, database)
    try:
        with Store.open(path, read_only=True, timeout_s=wait) as store:
            frame = store.outbox_rows(state.value)
    except StoreBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except StoreError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    typer.echo(format_rows(frame.columns, frame.rows(), fmt), nl=False)


@outbox_app.command("requeue")
def outbox_requeue(
    keys: Annotated[
        list[str] | None,
        typer.Argument(help="Keys of dead notifications (or the ref a message shows)."),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every dead notification.")] = False,
    channel: Annotated[str | None, typer.Option(help="Only this channel's.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    database: Annotated[
        Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")] = 30.0,
) -> None:
    """Put dead notifications back in the queue: the next run sends them, with a fresh budget of
    `alerts.delivery_max_runs` runs."""
    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    names = keys or []
    if not names and not every:
        raise fail("outbox requeue: name the notifications (KEY...) or give --all", EXIT_USAGE)
    if names and every:
        raise fail("outbox requeue: give KEY... or --all, not both", EXIT_USAGE)
    path = database_path(config, database)
    try:
        with Store.open(path, timeout_s=wait) as store:
            requeued = store.requeue_dead(names, channel=channel, every=every)
    except StoreBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except StoreError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    found = {key for key, _ in requeued} | {key.rsplit("|", 1)[0] for key, _ in requeued}
    missing = [name for name in names if name not in found]
    for key, name in requeued:
        typer.echo(f"requeued {key} ({name})")
    if missing:
        raise fail(f"not a dead notification: {', '.join(missing)}", EXIT_USAGE)
    if not requeued:
        typer.echo("no dead notification to requeue")
