"""Fixtures for the storage backends: a real PostgreSQL server for the DuckLake catalog."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "hedgewatch_test_postgres", Path(__file__).with_name("postgres.py")
)
assert _spec is not None and _spec.loader is not None
postgres = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgres)


@pytest.fixture(scope="module")
def catalog() -> Iterator[str]:
    """`postgres:<libpq string>` of a server this module started (stopped after it)."""
    if postgres.binaries() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    with postgres.postgres_server() as dsn:
        yield f"postgres:{dsn}"
