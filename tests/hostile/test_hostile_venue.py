"""A venue can only hurt itself: whatever one venue answers, the run ends within its deadlines,
memory stays small, the healthy venue's candles are stored and the reason is in fetch_log.

Bounds come from the config (tiny here): per request `timeout_s` per read and
`request_deadline_s` in all, per venue `run_deadline_s`, and `max_body_bytes` per body. No timing
is asserted; each test reports its wall time and Python heap peak on stdout (`pytest -s`).
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime, timedelta
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
        fetches = [fetch_venue(settings, v, {}, {}, clock=lambda: NOW) for v in settings.venues]
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


def stored(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with Store.open(tmp_path / "hw.duckdb", read_only=True) as store:
        return store.con.sql(sql).fetchall()


HOSTILE = [
    ("nested", "nested too deep"),
    ("huge_ts", "out of range"),
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


def test_impossible_rows_are_rejected_counted_and_never_stored(tmp_path: Path) -> None:
    candles, _ = run_fetch_and_load(tmp_path, "impossible")
    assert candles.filter(pl.col("venue") == "healthy")["n"].to_list() == [60, 60]
    rows = stored(
        tmp_path,
        "select rejected, note from fetch_log where venue = 'hostile' and dataset = 'candles'",
    )
    # Each page's first rows: negative open, zero prices, high < low (a row in seconds, read as
    # 1970, falls outside the requested range and is dropped before it).
    assert rows and all(rejected >= 3 for rejected, _ in rows)
    notes = " ".join(note for _, note in rows)
    for reason in ("not finite and positive", "outside low..high"):
        assert reason in notes
    bad = stored(
        tmp_path,
        "select count(*) from candles where venue = 'hostile' and (open <= 0 or isnan(close) "
        "or low > least(open, close) or high < greatest(open, close) or open_time < '2009-01-03')",
    )
    assert bad == [(0,)]
    assert stored(tmp_path, "select count(*) from candles where venue = 'hostile'")[0][0] > 0


def test_a_venue_clock_ahead_cannot_pass_its_open_candle_off_as_closed(tmp_path: Path) -> None:
    run_fetch_and_load(tmp_path, "skew")
    newest = stored(
        tmp_path,
        "select max(open_time) from candles where venue = 'hostile' and market = 'spot'",
    )[0][0]
    # Our clock says 12:05: the 12:00 candle is still open, whatever the venue's clock says.
    assert newest == datetime(2024, 3, 1, 11, tzinfo=UTC)
    notes = stored(tmp_path, "select note from fetch_log where venue = 'hostile'")
    assert any("venue clock +7200 s off ours" in (n or "") for (n,) in notes)


def test_a_replay_of_past_history_runs_on_the_venue_clock_alone(tmp_path: Path) -> None:
    # `[fetch] clock = "venue"`: the replay's clock (2024-03-01 12:05) is the run's, though
    # ours is years later; no skew note, and the candles it has closed are taken.
    with (
        serve(HostileVenue("healthy", NOW_MS)) as good,
        serve(HostileVenue("healthy", NOW_MS)) as other,
    ):
        settings = load_settings(config(tmp_path, good, other))
        later = NOW + timedelta(days=1000)
        system = fetch_venue(settings, settings.venue("healthy"), {}, {}, clock=lambda: later)
        replay = settings.model_copy(
            update={"fetch": settings.fetch.model_copy(update={"clock": "venue"})}
        )
        venue = fetch_venue(replay, replay.venue("healthy"), {}, {}, clock=lambda: later)
    assert any("off ours" in (s.note or "") for s in system.series)
    assert not any("off ours" in (s.note or "") for s in venue.series)
    newest = venue.candles.filter(pl.col("market") == "spot")["open_time"].max()
    assert newest == datetime(2024, 3, 1, 11, tzinfo=UTC)


def test_each_run_rereads_the_last_stored_candles_and_takes_a_revision(tmp_path: Path) -> None:
    venue = HostileVenue("healthy", NOW_MS)
    last = datetime(2024, 3, 1, 11, tzinfo=UTC)
    with serve(venue) as good, serve(HostileVenue("healthy", NOW_MS)) as other:
        settings = load_settings(config(tmp_path, good, other))
        healthy = settings.venue("healthy")
        first = fetch_venue(settings, healthy, {}, {}, clock=lambda: NOW)
        venue.revised[NOW_MS - NOW_MS % HOUR_MS - HOUR_MS] = 179.0  # the venue corrects 11:00
        marks = {("healthy", "spot", s, "1h"): last for s in ("BTCUSDT", "ETHUSDT")}
        second = fetch_venue(settings, healthy, marks, {}, clock=lambda: NOW)
    before = first.candles.filter(pl.col("open_time") == last)["close"].to_list()
    after = second.candles.filter(pl.col("open_time") == last)["close"].to_list()
    assert before != [179.0, 179.0] and after == [179.0, 179.0]
