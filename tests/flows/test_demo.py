"""`make demo` runs the real pipeline offline and gives the same result every time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.demo import run_demo
from hedgewatch.storage.store import Store

pytestmark = pytest.mark.slow

TABLES = ("candles", "funding", "hedge_metrics", "basket_metrics", "alert_events", "alert_state")


def rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    with Store.open(database, read_only=True) as store:
        return {t: store.con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_demo_fires_through_the_crash_and_is_repeatable(
    prefect_harness: None, tmp_path: Path
) -> None:
    lines: list[str] = []
    first = run_demo(workdir=tmp_path / "one", echo=lines.append)
    second = run_demo(workdir=tmp_path / "two", echo=lambda _: None)

    assert first == second
    assert rows(tmp_path / "one" / "hedgewatch.duckdb") == rows(
        tmp_path / "two" / "hedgewatch.duckdb"
    )

    crash = (datetime(2022, 5, 9, tzinfo=UTC), datetime(2022, 5, 13, tzinfo=UTC))
    firing = [(ts, rule, subject) for ts, kind, rule, subject, *_ in first if kind == "firing"]
    assert any(rule == "market-stress" and crash[0] <= ts < crash[1] for ts, rule, _ in firing)
    assert any(subject == "luna-vs-btc-perp" for _, _, subject in firing)

    outbox = tmp_path / "one" / "outbox"
    suffixes = {p.name.split("-")[-1].split(".", 1)[1] for p in outbox.iterdir()}
    assert suffixes == {"md", "email.txt", "email.html", "slack.json"}
    for payload in outbox.glob("*.slack.json"):
        assert json.loads(payload.read_text())["blocks"]
    assert any("Alert timeline" in line for line in lines)
