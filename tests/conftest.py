"""Shared fixtures: paths to the repo's demo data, its vendored test data and the shared data set.

Under `CI=true` a test that skips because its data is missing fails instead: the suite must never
go green by skipping what it could not read.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HEDGEWATCH_SHARED_DATA", ROOT.parent / "shared" / "data"))
TEST_DATA = ROOT / "tests" / "data"
MISSING_DATA = "data not found"
DEMO_DATA = ROOT / "demo" / "data"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Each test session gets its own Prefect home (task cache and harness database live there);
# set before anything imports Prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="hedgewatch-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--live", action="store_true", help="also run tests against real exchanges")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="talks to real exchanges; run with --live")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and os.environ.get("CI") and MISSING_DATA in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"CI=true: a missing-data skip fails the run: {report.longrepr}"
    return report


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_data() -> Path:
    return DEMO_DATA
