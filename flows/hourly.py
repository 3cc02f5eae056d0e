"""The hourly run as a Prefect flow: settings → fetch per venue → load → compute → evaluate →
deliver → publish.

Tasks adapt plain functions. Retries: HTTP retries live in the exchange clients and the outbox
retries deliveries on the next run, so fetch and deliver never retry as tasks; the database steps
retry once, only when another process held the file past `storage.lock_timeout_s`. Each venue's
fetch is one task tagged `venue:<name>` (a Prefect tag concurrency limit of 1 per venue keeps
overlapping runs from sharing a venue's rate budget; `hedgewatch serve` creates the limits).
Timeouts come from `[schedule]`: each database step and the delivery get `step_timeout_s`; a
fetch runs in a worker thread, where Prefect cannot interrupt it, so it is bounded by the HTTP
client's timeouts and attempts and by the run's `run_timeout_s` (set on the deployment).
The database is opened only while a step reads or writes, never across network calls. A failed
run sends a pipeline-failure alert (`hedgewatch.outbox.failure`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.utilities.annotations import quote

from hedgewatch import pipeline
from hedgewatch.fetching import VenueFetch, fetch_venue
from hedgewatch.metrics_export import write_textfile
from hedgewatch.outbox import deliver as delivering
from hedgewatch.outbox.failure import on_flow_failure, report_failure
from hedgewatch.settings import Settings, VenueSettings, load_settings, resolve_config, utc_now
from hedgewatch.storage.snapshot import materialize
from hedgewatch.storage.store import Store, StoreBusy, StoreError, reader_path

BUSY_RETRY_DELAY_S = 30.0
FLOW_NAME = "hedgewatch-hourly"


@dataclass
class RunSummary:
    """What one run did; stored in the `runs` table and published as a Prefect artifact."""

    run_id: str
    started_at: datetime
    as_of: datetime | None = None
    status: str = "running"
    fetched: dict[str, Any] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)  # per series: range and rows
    failures: list[str] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)  # missing candles in fetched ranges
    computed: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # newest value per subject
    alerts: list[dict[str, Any]] = field(default_factory=list)
    deliveries: dict[str, Any] = field(default_factory=dict)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a Prefect run context (task.fn() in tests)
        return logging.getLogger("hedgewatch")


def retry_when_busy(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a database step only when the file was held by another process."""
    try:
        state.result()
    except StoreBusy:
        return True
    except BaseException:
        return False
    return False


_DB_STEP: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 1,
    "retry_delay_seconds": BUSY_RETRY_DELAY_S,
    "retry_condition_fn": retry_when_busy,
}


@task(name="read-watermarks", **_DB_STEP)
def read_watermarks(settings: Settings) -> tuple[dict[Any, datetime], dict[Any, datetime]]:
    # Published once, at the end of the run (publish-run): readers see whole runs only.
    with Store.open(
        settings.storage.target, timeout_s=settings.storage.lock_timeout_s, publish=False
    ) as store:
        return store.series_watermarks(), store.funding_watermarks()


@task(name="fetch-venue", cache_policy=NO_CACHE, tags=["exchange"])
def fetch(
    settings: Settings,
    venue: VenueSettings,
    candle_marks: dict[Any, datetime],
    funding_marks: dict[Any, datetime],
) -> VenueFetch:
    result = fetch_venue(settings, venue, candle_marks, funding_marks)
    logger = _logger()
    if result.error:
        logger.error("venue %s skipped: %s", venue.name, result.error)
    for failed in result.failed:
        logger.error(
            "%s %s %s %s failed: %s",
            failed.venue,
            failed.market,
            failed.symbol,
            failed.dataset,
            failed.error,
        )
    logger.info(
        "%s: %d candles, %d funding rows", venue.name, result.candles.height, result.funding.height
    )
    return result


@task(name="load-compute-evaluate", **_DB_STEP)
def load_compute_evaluate(
    settings: Settings, fetches: list[VenueFetch], summary: RunSummary, metrics: bool = True
) -> RunSummary:
    with Store.open(
        settings.storage.target, timeout_s=settings.storage.lock_timeout_s, publish=False
    ) as store:
        store.start_run(summary.run_id, summary.started_at, summary.as_of or summary.started_at)
        # The upsert marks the hours the new rows change (and a backfill's or import's marks
        # wait there too); compute covers them all and clears the mark with its rows.
        loaded = pipeline.load(store, fetches, summary.run_id)
        if metrics:
            computed = pipeline.compute(store, settings, pipeline.dirty_since(store, settings))
            # A venue that did not answer is judged by our own clock: its series go stale.
            venue_times = {f.venue: f.server_time or summary.started_at for f in fetches}
            evaluated = pipeline.evaluate(store, settings, summary.run_id, venue_times)
        else:  # a scale-out shard: the metrics deployment computes what the shards marked
            computed, evaluated = pipeline.ComputeResult(None, None), pipeline.EvaluateResult()
        summary.gaps = fetched_gaps(store, fetches)
        summary.metrics = metrics_summary(store)
    summary.fetched = {"candles": loaded.candles, "funding": loaded.funding}
    summary.series = [
        {
            "venue": s.venue,
            "market": s.market,
            "symbol": s.symbol,
            "dataset": s.dataset,
            "from": s.start_time,
            "to": s.end_time,
            "rows": s.rows,
            "error": s.error,
        }
        for f in fetches
        for s in f.series
    ]
    summary.computed = {
        "since": computed.since,
        "through": computed.through,
        "hedge_rows": computed.hedge_rows,
        "basket_rows": computed.basket_rows,
        "pair_rows": computed.pair_rows,
        "hours_evaluated": len(evaluated.hours),
    }
    summary.alerts = [
        {
            "ts": e.ts,
            "rule": e.rule,
            "subject": e.subject,
            "kind": e.kind,
            "value": e.value,
            "threshold": e.threshold,
            "severity": e.severity,
        }
        for e in evaluated.events
    ]
    return summary


def fetched_gaps(store: Store, fetches: list[VenueFetch]) -> list[dict[str, Any]]:
    """Gaps (from the `gaps` view) that overlap what this run asked each series for."""
    asked = [s for f in fetches for s in f.series if s.dataset == "candles" and not s.error]
    ranges = pl.DataFrame(
        {
            "i": range(len(asked)),
            "venue": [s.venue for s in asked],
            "market": [s.market for s in asked],
            "symbol": [s.symbol for s in asked],
            "start": [s.start_time for s in asked],
            "end": [s.end_time for s in asked],
        },
        schema={
            "i": pl.Int64,
            "venue": pl.String,
            "market": pl.String,
            "symbol": pl.String,
            "start": pl.Datetime("us", "UTC"),
            "end": pl.Datetime("us", "UTC"),
        },
    )
    return [
        {**row, "missing_hours": int(row["missing_hours"])} for row in store.gaps_within(ranges)
    ]


def metrics_summary(store: Store) -> list[dict[str, Any]]:
    """The newest hedge correlation/effectiveness and basket average correlation per window."""
    return store.latest_metrics()


@task(name="deliver-outbox", cache_policy=NO_CACHE)
def deliver(settings: Settings) -> dict[str, Any]:
    report = delivering.deliver_outbox(settings, publish=False)  # publish-run follows
    if report.failed:
        _logger().warning(
            "%d notification(s) not delivered; they stay queued for the next run", report.failed
        )
    return {
        "delivered": report.delivered,
        "failed": report.failed,
        "errors": report.errors,
        "dead": report.dead,  # given up in this run (reported once, `hedgewatch outbox requeue`)
    }


@task(name="publish-run", **_DB_STEP)
def publish(settings: Settings, summary: RunSummary) -> RunSummary:
    summary.status = "partial" if summary.failures else "ok"
    # Leaving the block publishes the read snapshot: readers now see this whole run.
    with Store.open(settings.storage.target, timeout_s=settings.storage.lock_timeout_s) as store:
        record = _jsonable(summary)
        # Read-only commands given no config use the settings of the last run (secrets masked);
        # a run stores them when they differ from the last stored ones.
        snapshot = json.loads(settings.model_dump_json())
        if store.last_run_settings() != snapshot:
            record["settings"] = snapshot
        store.finish_run(summary.run_id, utc_now(), summary.status, record)
    if FlowRunContext.get() is not None:  # inside a Prefect flow run (not a plain run)
        create_markdown_artifact(
            key="hedgewatch-run",
            markdown=run_markdown(summary),
            description="hedgewatch hourly run",
        )
    textfile = settings.metrics_export.textfile
    if textfile is not None:
        try:
            write_textfile(
                settings.storage.database, textfile, timeout_s=settings.storage.lock_timeout_s
            )
        except (OSError, StoreError) as exc:  # the run itself went well: say so, do not fail it
            _logger().warning("Prometheus textfile %s not written: %s", textfile, exc)
    return summary


@flow(name=FLOW_NAME, log_prints=True, on_failure=[on_flow_failure], on_crashed=[on_flow_failure])
def hourly(
    config_path: str | None = None, venues: list[str] | None = None, metrics: bool = True
) -> RunSummary:
    """One hourly run. A missed run heals on the next: every series resumes at its watermark.

    `config_path` is resolved when the run starts (see `settings.resolve_config`): the
    parameter, else $HEDGEWATCH_CONFIG, else hedgewatch.toml in the working directory.
    Scale-out (a shared DuckLake, docs/scale-out.md): shard deployments each fetch some `venues`
    with `metrics=False`; one deployment with `venues=[]` computes, evaluates and delivers.
    """
    settings = load_settings(resolve_config(config_path))
    return run_steps(settings, prefect=True, venues=venues, metrics=metrics)


def hourly_now(config_path: str | None = None, *, dry_run: bool = False) -> RunSummary:
    """The same run as `hourly`, its steps called as plain functions: no Prefect API needed.

    A failure is announced as the flow's on-failure hook would. With `dry_run` the run works on
    a temporary copy of the database with delivery off: it fetches and computes, and the real
    database, the outbox and the channels see nothing.
    """
    settings = load_settings(resolve_config(config_path))
    if dry_run:
        return dry_run_steps(settings)
    started = utc_now()
    try:
        return run_steps(settings, prefect=False)
    except Exception as exc:
        report_failure(
            settings,
            flow=FLOW_NAME,
            run_id=f"local-{uuid.uuid4().hex[:12]}",
            started_at=started,
            error=f"{type(exc).__name__}: {exc}",
        )
        raise


def dry_run_steps(settings: Settings) -> RunSummary:
    """Fetch and compute on a copy of the database; deliver nothing, keep nothing."""
    source = settings.storage.database
    with tempfile.TemporaryDirectory(prefix="hedgewatch-dry-run-") as tmp:
        copy = Path(tmp) / "dry-run.duckdb"
        published = reader_path(source)
        if published != source:
            # The read snapshot: a whole, published state that no writer changes in place.
            materialize(published, copy)
        elif source.exists():
            shutil.copyfile(source, copy)
        scratch = settings.model_copy(
            update={"storage": settings.storage.model_copy(update={"database": copy})}
        )
        summary = run_steps(scratch, prefect=False, deliver_outbox=False, record=False)
        with Store.open(copy, read_only=True) as store:
            summary.deliveries = {"would_send": store.queued_count()}
    summary.status = "dry-run"
    return summary


def run_steps(
    settings: Settings,
    *,
    prefect: bool,
    deliver_outbox: bool = True,
    record: bool = True,
    venues: list[str] | None = None,
    metrics: bool = True,
) -> RunSummary:
    """The run's steps in order; as Prefect tasks inside the flow, else as plain functions."""
    summary = RunSummary(run_id=uuid.uuid4().hex, started_at=utc_now())
    step = settings.schedule.step_timeout_s

    def call(task: Any) -> Any:
        return task.with_options(timeout_seconds=step) if prefect else task.fn

    # Prefect walks every task argument looking for futures to wait on (half a second of CPU
    # per run on the settings, candle frames and summaries); these hold none, so it need not.
    as_is: Any = quote if prefect else (lambda value: value)
    candle_marks, funding_marks = call(read_watermarks)(as_is(settings))
    chosen = [
        venue
        for venue in settings.venues
        if venue.enabled and (venues is None or venue.name in venues)
    ]
    if prefect:
        futures = [
            fetch.with_options(tags=["exchange", f"venue:{venue.name}"]).submit(
                as_is(settings), venue, as_is(candle_marks), as_is(funding_marks)
            )
            for venue in chosen
        ]
        fetches = [future.result() for future in futures]
    else:
        with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            fetches = list(
                pool.map(lambda v: fetch.fn(settings, v, candle_marks, funding_marks), chosen)
            )
    summary.as_of = max((f.server_time for f in fetches if f.server_time), default=None)
    summary.failures = [f"{f.venue}: {f.error}" for f in fetches if f.error] + [
        f"{s.venue} {s.market} {s.symbol} {s.dataset}: {s.error}" for f in fetches for s in f.failed
    ]
    summary = call(load_compute_evaluate)(as_is(settings), as_is(fetches), as_is(summary), metrics)
    if deliver_outbox and metrics:
        summary.deliveries = call(deliver)(as_is(settings))
    if not record:
        summary.status = "partial" if summary.failures else "ok"
        return summary
    return call(publish)(as_is(settings), as_is(summary))


def run_markdown(summary: RunSummary) -> str:
    """The run's Prefect artifact: what was fetched, gaps, metrics, alerts and deliveries."""
    lines = [
        f"# hedgewatch run `{summary.run_id[:8]}` — {summary.status}",
        "",
        f"- exchange time: {summary.as_of:%Y-%m-%d %H:%M} UTC" if summary.as_of else "- no venue",
        f"- fetched: {summary.fetched.get('candles', 0)} candles, "
        f"{summary.fetched.get('funding', 0)} funding rates",
        f"- gaps in fetched ranges: {len(summary.gaps)}",
        f"- evaluated hours: {summary.computed.get('hours_evaluated', 0)}",
        f"- alert events: {len(summary.alerts)}",
        f"- notifications delivered: {summary.deliveries.get('delivered', 0)}, "
        f"queued after failure: {summary.deliveries.get('failed', 0)}",
    ]
    if summary.failures:
        lines += ["", "## Failures", ""] + [f"- {failure}" for failure in summary.failures]
    fetched = [s for s in summary.series if s["rows"] or s["error"]]
    if fetched:
        lines += [
            "",
            "## Fetched",
            "",
            "| venue | market | symbol | dataset | from (UTC) | rows | error |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['venue']} | {s['market']} | {s['symbol']} | {s['dataset']} "
            f"| {s['from']:%Y-%m-%d %H:%M} | {s['rows']} | {s['error'] or ''} |"
            for s in fetched
        ]
    if summary.gaps:
        lines += [
            "",
            "## Gaps",
            "",
            "| venue | market | symbol | first missing | last missing | hours |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {g['venue']} | {g['market']} | {g['symbol']} | {g['first_missing']:%Y-%m-%d %H:%M} "
            f"| {g['last_missing']:%Y-%m-%d %H:%M} | {g['missing_hours']} |"
            for g in summary.gaps
        ]
    if summary.metrics:
        lines += [
            "",
            "## Metrics (newest hour)",
            "",
            "| subject | window | hour (UTC) | correlation | effectiveness | obs |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {m['kind']} {m['subject']} | {m['window_hours']}h "
            f"| {m['open_time']:%Y-%m-%d %H:%M} | {_fmt(m['value'])} "
            f"| {_fmt(m['effectiveness'])} | {m['n_obs']} |"
            for m in summary.metrics
        ]
    if summary.alerts:
        lines += [
            "",
            "## Alerts",
            "",
            "| hour (UTC) | rule | subject | event | value |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {a['ts']:%Y-%m-%d %H:%M} | {a['rule']} | {a['subject']} | {a['kind']} "
            f"| {_fmt(a['value'])} |"
            for a in summary.alerts
        ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:+.3f}"


def _jsonable(summary: RunSummary) -> dict[str, Any]:
    return {
        "as_of": summary.as_of,
        "fetched": summary.fetched,
        "series": summary.series,
        "failures": summary.failures,
        "gaps": summary.gaps,
        "computed": summary.computed,
        "metrics": summary.metrics,
        "alerts": summary.alerts,
        "deliveries": summary.deliveries,
    }
