"""Fixtures for the shell: one Prefect test harness per session, replay exchange wiring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real local Prefect server (its own test harness) in a throw-away PREFECT_HOME."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.runtime import quiet_prefect

    with prefect_test_harness(server_startup_timeout=60), quiet_prefect():
        yield


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path
