"""The hourly run as a Prefect flow: settings → fetch per venue → load → compute → evaluate →
deliver → publish.

Tasks adapt plain functions; HTTP retries live in the exchange clients, so tasks do not retry.
The database is opened only while a step writes, never across network calls.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import delivering, pipeline
from flows.fetching import VenueFetch, fetch_venue
from flows.settings import Settings, VenueSettings, load_settings, utc_now
from flows.store import Store


@dataclass
class RunSummary:
    """What one run did; stored in the `runs` table and published as a Prefect artifact."""

    run_id: str
    started_at: datetime
    as_of: datetime | None = None
    status: str = "running"
    fetched: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    computed: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    deliveries: dict[str, Any] = field(default_factory=dict)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a Prefect run context (task.fn() in tests)
        return logging.getLogger("hedgewatch")


@task(name="read-watermarks", cache_policy=NO_CACHE)
def read_watermarks(settings: Settings) -> tuple[dict[Any, datetime], dict[Any, datetime]]:
    with Store.open(settings.storage.database, timeout_s=settings.storage.lock_timeout_s) as store:
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


@task(name="load-compute-evaluate", cache_policy=NO_CACHE)
def load_compute_evaluate(
    settings: Settings, fetches: list[VenueFetch], summary: RunSummary
) -> RunSummary:
    with Store.open(settings.storage.database, timeout_s=settings.storage.lock_timeout_s) as store:
        store.start_run(summary.run_id, summary.started_at, summary.as_of or summary.started_at)
        loaded = pipeline.load(store, fetches, summary.run_id)
        computed = pipeline.compute(store, settings, loaded.earliest_new)
        # A venue that did not answer is judged by our own clock: its series are going stale.
        venue_times = {f.venue: f.server_time or summary.started_at for f in fetches}
        evaluated = pipeline.evaluate(store, settings, summary.run_id, venue_times)
    summary.fetched = {"candles": loaded.candles, "funding": loaded.funding}
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


@task(name="deliver-outbox", cache_policy=NO_CACHE)
def deliver(settings: Settings) -> dict[str, Any]:
    report = delivering.deliver_outbox(settings)
    if report.failed:
        _logger().warning(
            "%d notification(s) not delivered; they stay queued for the next run", report.failed
        )
    return {"delivered": report.delivered, "failed": report.failed, "errors": report.errors}


@task(name="publish-run", cache_policy=NO_CACHE)
def publish(settings: Settings, summary: RunSummary) -> RunSummary:
    summary.status = "partial" if summary.failures else "ok"
    with Store.open(settings.storage.database, timeout_s=settings.storage.lock_timeout_s) as store:
        store.finish_run(summary.run_id, utc_now(), summary.status, _jsonable(summary))
    create_markdown_artifact(
        key="hedgewatch-run", markdown=run_markdown(summary), description="hedgewatch hourly run"
    )
    return summary


@flow(name="hedgewatch-hourly", log_prints=True)
def hourly(config_path: str = "hedgewatch.toml") -> RunSummary:
    """One hourly run. A missed run heals on the next: every series resumes at its watermark."""
    settings = load_settings(Path(config_path))
    summary = RunSummary(run_id=uuid.uuid4().hex, started_at=utc_now())
    candle_marks, funding_marks = read_watermarks(settings)
    futures = [
        fetch.submit(settings, venue, candle_marks, funding_marks)
        for venue in settings.venues
        if venue.enabled
    ]
    fetches = [future.result() for future in futures]
    summary.as_of = max((f.server_time for f in fetches if f.server_time), default=None)
    summary.failures = [f"{f.venue}: {f.error}" for f in fetches if f.error] + [
        f"{s.venue} {s.market} {s.symbol} {s.dataset}: {s.error}" for f in fetches for s in f.failed
    ]
    summary = load_compute_evaluate(settings, fetches, summary)
    summary.deliveries = deliver(settings)
    return publish(settings, summary)


def run_markdown(summary: RunSummary) -> str:
    lines = [
        f"# hedgewatch run `{summary.run_id[:8]}` — {summary.status}",
        "",
        f"- exchange time: {summary.as_of:%Y-%m-%d %H:%M} UTC" if summary.as_of else "- no venue",
        f"- fetched: {summary.fetched.get('candles', 0)} candles, "
        f"{summary.fetched.get('funding', 0)} funding rates",
        f"- evaluated hours: {summary.computed.get('hours_evaluated', 0)}",
        f"- notifications delivered: {summary.deliveries.get('delivered', 0)}, "
        f"queued after failure: {summary.deliveries.get('failed', 0)}",
    ]
    if summary.failures:
        lines += ["", "## Failures", ""] + [f"- {failure}" for failure in summary.failures]
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
            f"| {a['value']:.3f} |"
            for a in summary.alerts
        ]
    return "\n".join(lines)


def _jsonable(summary: RunSummary) -> dict[str, Any]:
    return {
        "as_of": summary.as_of,
        "fetched": summary.fetched,
        "failures": summary.failures,
        "computed": summary.computed,
        "alerts": summary.alerts,
        "deliveries": summary.deliveries,
    }
