"""A venue can only hurt itself: whatever one venue answers, the run ends within its deadlines,
memory stays small, the healthy venue's candles are stored and the reason is in fetch_log.

Bounds come from the config (tiny here): per request `timeout_s` per read and
`request_deadline_s` in all, per venue `run_deadline_s`, and `max_body_bytes` per body. No timing
is asserted; each test reports its wall time and Python heap peak on stdout (`pytest -s`).
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import tomli_w
from venue import HOUR_MS, HostileVenue, serve

from hedgewatch import pipeline
from hedgewatch.fetching import fetch_venue
from hedgewatch.settings import load_settings
from hedgewatch.storage.store import Store

NOW = datetime(2024, 3, 1, 12, 5, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
# The healthy venue gets room on a busy machine; the hostile one gets tiny limits.
ROOMY = {"timeout_s": 30.0, "request_deadline_s": 60.0, "run_deadline_s": 120.0}
LIMITS = {
    "timeout_s": 0.5,
    "max_attempts": 2,
    "request_deadline_s": 1.0,
    "run_deadline_s": 3.0,
    "max_body_bytes": 1_000_000,
}
MEMORY_CAP = 500 * 1024 * 1024


def config(tmp_path: Path, good: str, bad: str) -> Path:
    raw: dict[str, Any] = {
        "storage": {"database": str(tmp_path / "hw.duckdb")},
        "fetch": {"history_start": "2024-02-28T00:00:00Z", "max_workers": 2},
        "venues": [
            {"name": "healthy", "kind": "binance", "base_urls": {"spot": good}, **ROOMY},
            {
                "name": "hostile",
                "kind": "binance",
                "base_urls": {"spot": bad, "perp": bad},
                **LIMITS,
            },
        ],
        "instruments": [
            {"id": "BTC", "venue": "healthy", "symbol": "BTCUSDT"},
            {"id": "ETH", "venue": "healthy", "symbol": "ETHUSDT"},
            {"id": "BTC-H", "venue": "hostile", "symbol": "BTCUSDT"},
            {"id": "BTC-HP", "venue": "hostile", "symbol": "BTCUSDT", "market": "perp"},
        ],
        "hedges": [
            {
                "name": "pair",
                "legs": [
                    {"instrument": "BTC", "side": "long"},
                    {"instrument": "ETH", "side": "short"},
                ],
            }
        ],
    }
    path = tmp_path / "hedgewatch.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def run_fetch_and_load(tmp_path: Path, mode: str) -> tuple[pl.DataFrame, list[tuple[Any, ...]]]:
    healthy, hostile = HostileVenue("healthy", NOW_MS), HostileVenue(mode, NOW_MS)
    with serve(healthy) as good, serve(hostile) as bad:
        settings = load_settings(config(tmp_path, good, bad))
        tracemalloc.start()
        began = time.monotonic()
        fetches = [fetch_venue(settings, v, {}, {}) for v in settings.venues]
        took = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(
        f"\nhostile mode {mode}: {took:.2f} s, heap peak {peak / 2**20:.1f} MiB, "
        f"{hostile.requests} requests to the hostile venue"
    )
    assert peak < MEMORY_CAP
    with Store.open(settings.storage.database) as store:
        store.start_run("r1", NOW, NOW)
        pipeline.load(store, fetches, "r1")
        candles = store.con.sql(
            "select venue, symbol, count(*) n from candles group by all order by all"
        ).pl()
        log = store.con.sql(
            "select venue, market, dataset, error from fetch_log order by all"
        ).fetchall()
    return candles, log


HOSTILE = [
    ("nested", "nested too deep"),
    ("huge_ts", ""),
    ("endless", "byte limit"),
    ("drip", "request deadline"),
    ("stuck_pages", "does not advance"),
    ("junk", ""),
]


@pytest.mark.parametrize(("mode", "reason"), HOSTILE)
def test_a_hostile_venue_hurts_only_itself(tmp_path: Path, mode: str, reason: str) -> None:
    candles, log = run_fetch_and_load(tmp_path, mode)
    healthy = candles.filter(pl.col("venue") == "healthy")
    # 2024-02-28 00:00 up to the last closed hour before 12:05 on 03-01: 60 candles per series.
    assert healthy["n"].to_list() == [60, 60]
    assert all(error is None for venue, _, _, error in log if venue == "healthy")
    hostile_errors = [error for venue, _, _, error in log if venue == "hostile" and error]
    assert any(reason in e for e in hostile_errors), hostile_errors
    if mode != "stuck_pages":  # there the candles are fine and only funding fails
        assert candles.filter(pl.col("venue") == "hostile").is_empty()


def test_pages_that_do_not_advance_stop_after_a_few_requests(tmp_path: Path) -> None:
    hostile = HostileVenue("stuck_pages", NOW_MS)
    healthy = HostileVenue("healthy", NOW_MS)
    with serve(healthy) as good, serve(hostile) as bad:
        settings = load_settings(config(tmp_path, good, bad))
        result = fetch_venue(settings, settings.venue("hostile"), {}, {})
    funding = [s for s in result.series if s.dataset == "funding"]
    assert funding and "does not advance" in (funding[0].error or "")
    # time, spot klines, one funding page: the loop stops at the first page that stays put.
    assert hostile.requests <= 4
    assert HOUR_MS  # the venue's grid is hourly
