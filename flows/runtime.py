"""How hedgewatch runs Prefect in a one-off process: no telemetry, no heartbeats, quiet logs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# Must be set before Prefect reads its settings: a one-off run talks to loopback only.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@contextmanager
def quiet_prefect(log_level: str = "WARNING") -> Iterator[None]:
    """Run flows without per-run heartbeats and with Prefect's own logs at `log_level`."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_LEVEL,
        temporary_settings,
    )

    with temporary_settings(
        updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_LOGGING_LEVEL: log_level}
    ):
        yield
