"""The pure alert modules import nothing that does I/O or reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import alerts

FORBIDDEN = {"httpx", "duckdb", "prefect", "flows", "smtplib", "os", "socket", "time"}


@pytest.mark.parametrize("module", ["rules", "state", "render"])
def test_pure_module_imports_no_io(module: str) -> None:
    source = (Path(alerts.__file__).parent / f"{module}.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "parsed no imports at all"
    assert imported.isdisjoint(FORBIDDEN)
    assert "datetime.now" not in source and "utcnow" not in source
