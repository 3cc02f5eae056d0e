"""The hourly deployment: one definition used by `hedgewatch serve`, tests and `prefect.yaml`.

`hedgewatch serve` runs the flow in this process on the `[schedule]` cron (a few minutes past
the hour, once the hourly candle has closed). The deployment allows one run at a time — DuckDB
has one writer per file — and each venue gets a tag concurrency limit of one fetch at a time, so
a manual run or backfill overlapping a scheduled one does not double a venue's request rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hedgewatch.settings import Settings

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

FLOW_NAME = "hedgewatch-hourly"
DESCRIPTION = "Fetch closed candles, store, compute metrics, evaluate alerts, deliver."


def venue_tags(settings: Settings) -> list[str]:
    """The concurrency tag of each enabled venue's fetch task (see flows/hourly.py)."""
    return [f"venue:{venue.name}" for venue in settings.venues if venue.enabled]


def build_deployment(settings: Settings, config_path: Path) -> RunnerDeployment:
    """The hourly deployment for `config_path`, scheduled by `[schedule]`."""
    from prefect.schedules import Cron

    from hedgewatch.flows.hourly import hourly

    schedule = settings.schedule
    return hourly.with_options(timeout_seconds=schedule.run_timeout_s).to_deployment(  # type: ignore[return-value]
        name=schedule.deployment,
        schedules=[Cron(schedule.cron, timezone=schedule.timezone)],
        parameters={"config_path": str(config_path.resolve())},
        concurrency_limit=1,
        description=DESCRIPTION,
        tags=["hedgewatch"],
    )


def ensure_venue_limits(settings: Settings, per_venue: int = 1) -> list[str]:
    """Create (or reset) a tag concurrency limit for every venue on the Prefect server."""
    from prefect.client.orchestration import get_client

    tags = venue_tags(settings)
    with get_client(sync_client=True) as client:
        for tag in tags:
            client.create_concurrency_limit(tag=tag, concurrency_limit=per_venue)
    return tags
