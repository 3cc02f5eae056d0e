"""The pure alert modules import nothing that does I/O or reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hedgewatch.alerts as alerts

FORBIDDEN = {"httpx", "duckdb", "prefect", "smtplib", "os", "socket", "time"}
SHELL = ("hedgewatch.flows", "hedgewatch.storage", "hedgewatch.venues", "hedgewatch.outbox")


@pytest.mark.parametrize("module", ["rules", "state", "render"])
def test_pure_module_imports_no_io(module: str) -> None:
    source = (Path(alerts.__file__).parent / f"{module}.py").read_text()
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    assert modules, "parsed no imports at all"
    assert {m.split(".")[0] for m in modules}.isdisjoint(FORBIDDEN)
    assert not [m for m in modules if m.startswith(SHELL)]
    assert "datetime.now" not in source and "utcnow" not in source
