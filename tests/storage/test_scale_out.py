"""Scale-out: a DuckLake with a real PostgreSQL catalog, written by three worker processes at once.

Each worker loads its own venue's candles round after round through `pipeline.load` (what the
hourly flow's shards run), starting together behind a barrier. DuckLake reports a commit that
lost a race as a conflict even for disjoint rows; the store retries the whole transaction. No
row may be lost or written twice, and the migrations, raced by the three, apply once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hedgewatch.storage.store import Lake, Store, StoreError

pytestmark = pytest.mark.slow

WORKERS, ROUNDS, SYMBOLS, HOURS = 3, 5, 4, 48

# One shard worker: open the lake (racing the others' migrations), wait for the start signal,
# then load ROUNDS batches of SYMBOLS x HOURS candles, each batch also re-sending the previous
# batch's last hours (an overlap a real fetch has), through the hourly flow's load step.
WORKER = """
import json, sys, time
from datetime import UTC, datetime, timedelta
import polars as pl
from hedgewatch import pipeline
from hedgewatch.fetching import SeriesFetch, VenueFetch
from hedgewatch.storage.store import Lake, Store

catalog, data_path, venue = sys.argv[1:4]
rounds, symbols, hours = (int(a) for a in sys.argv[4:7])
t0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)

def batch(r):
    first = max(r * hours - 6, 0)
    times = [t0 + h * H for h in range(first, (r + 1) * hours)]
    frames = [
        pl.DataFrame({
            "venue": venue, "market": "spot", "symbol": f"S{s}",
            "interval": "1h", "open_time": times, "open": 1.0, "high": 2.0,
            "low": 0.5, "close": [float(h) for h in range(len(times))],
            "volume": 1.0, "quote_volume": 1.0, "trades": 1,
        }).cast({"open_time": pl.Datetime("us", "UTC")})
        for s in range(symbols)
    ]
    return pl.concat(frames)

with Store.open(Lake(catalog, data_path)) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    for r in range(rounds):
        frame = batch(r)
        series = [
            SeriesFetch(venue, "spot", f"S{s}", "candles", t0, t0, hours)
            for s in range(symbols)
        ]
        fetch = VenueFetch(venue, None, candles=frame, series=series)
        pipeline.load(store, [fetch], f"{venue}-{r}")
    seconds = time.perf_counter() - started
    report = {"venue": venue, "conflicts": store.conflicts, "seconds": seconds}
    print(json.dumps(report), flush=True)
"""


def test_three_workers_write_one_lake_without_losing_or_doubling_a_row(
    catalog: str, tmp_path: Path
) -> None:
    data_path = str(tmp_path / "lake")
    venues = [f"venue{i}" for i in range(WORKERS)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, catalog, data_path, venue]
            + [str(n) for n in (ROUNDS, SYMBOLS, HOURS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for venue in venues
    ]
    reports = []
    try:
        for worker in workers:  # every worker has opened the lake and migrated
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line.strip() == "ready", worker.communicate(timeout=60)[1]
        for worker in workers:  # go
            assert worker.stdin is not None
            worker.stdin.write("\n")
            worker.stdin.flush()
        for worker in workers:
            out, err = worker.communicate(timeout=600)
            assert worker.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    lake = Lake(catalog, data_path)
    with Store.open(lake, read_only=True) as store:
        rows = store.con.execute(
            "SELECT venue, count(*), count(DISTINCT (symbol, open_time)) FROM candles"
            " GROUP BY venue ORDER BY venue"
        ).fetchall()
        migrations = store.con.execute(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version HAVING count(*) > 1"
        ).fetchall()
        logged = store.con.execute("SELECT count(*) FROM fetch_log").fetchall()[0][0]
        dirty = store.metrics_dirty_since()
    expected = ROUNDS * HOURS * SYMBOLS
    assert rows == [(venue, expected, expected) for venue in venues]  # none lost, none doubled
    assert migrations == []  # raced by three, applied once
    assert logged == WORKERS * ROUNDS * SYMBOLS
    assert dirty is not None  # the shards marked their hours for the metrics deployment
    print("\nworkers:", json.dumps(reports))


def test_a_lake_config_without_a_catalog_names_the_field() -> None:
    from pydantic import ValidationError

    from hedgewatch.settings import StorageSettings

    with pytest.raises(ValidationError, match=r"storage\.catalog"):
        StorageSettings(backend="ducklake", data_path="/srv/lake")
    with pytest.raises(ValidationError, match="no password in the config"):
        StorageSettings(backend="ducklake", catalog="postgres:password=x", data_path="/srv/lake")


def test_an_unreachable_catalog_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    lake = Lake("postgres:host=127.0.0.1 port=1 password=hunter2 connect_timeout=1", str(tmp_path))
    with pytest.raises(StoreError) as raised, Store.open(lake):
        pass
    assert "hunter2" not in str(raised.value)
