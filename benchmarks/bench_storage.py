"""Storage benchmark: whole history, readers beside the writer, and the DuckLake scale-out mode.

    .venv/bin/python benchmarks/bench_storage.py [--part all|backfill|recompute|readers|
                                                  publication|lake]

backfill   `run_backfill` 2022-01-01..2022-05-01 for the demo instruments from the replay exchange
           (real candles from ../shared/data), then one run's compute step: the metric tables'
           first and last hour against the range.
recompute  `pipeline.recompute` of 2022-01-01..2023-12-31 for benchmarks/backtest.toml's 20
           instruments (real candles imported from ../shared/data).
readers    a run-sized write (one new hour for 20 instruments, the metrics it changes, publish)
           alternated with the same write without publishing (the run before read snapshots),
           with and without a reader holding a connection on the read snapshot; wall and CPU
           time; and a reader holding the writer's own file, as readers did before (runs that
           failed on the lock).
publication  run-sized writes as in `readers`, each publishing, with the publication's steps
           timed: the views file, the changed partitions, the catalog read, pruning, the rest.
lake       3 worker processes x 5 rounds, each loading its own venue (20 symbols x 720 hours a
           round) into one DuckLake with a PostgreSQL catalog started here: rows lost/duplicated,
           per-worker throughput, commit conflicts retried.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "storage"))

from hedgewatch import pipeline  # noqa: E402
from hedgewatch.fetching import VenueFetch  # noqa: E402
from hedgewatch.replay.data import load_candle_files  # noqa: E402
from hedgewatch.settings import load_settings  # noqa: E402
from hedgewatch.storage.snapshot import data_dir  # noqa: E402
from hedgewatch.storage.store import Lake, Store, StoreBusy, snapshot_path  # noqa: E402

DATA = Path(os.environ.get("HEDGEWATCH_SHARED_DATA", ROOT.parent / "shared" / "data"))
FILES = (
    "binance_spot_1h_majors_2021-04_2023-12.csv.gz",
    "binance_spot_1h_hedges_stables_leveraged_2021-04_2023-12.csv.gz",
    "binance_usdm_perp_1h_2020-01_2024-04.csv.gz",
)
H = timedelta(hours=1)


def shared_candles() -> pl.DataFrame:
    frames = []
    for name in FILES:
        path = DATA / "candles" / name
        if not path.exists():
            raise SystemExit(f"{path}: not found (the shared data folder is missing)")
        frames.append(load_candle_files([path]).with_columns(pl.lit("binance").alias("venue")))
    return pl.concat(frames)


def history_config(workdir: Path) -> Path:
    """benchmarks/backtest.toml (20 instruments) pointed at a database in `workdir`."""
    import tomllib

    import tomli_w

    raw = tomllib.loads((ROOT / "benchmarks" / "backtest.toml").read_text())
    raw["storage"]["database"] = str(workdir / "history.duckdb")
    path = workdir / "hedgewatch.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def bench_backfill(workdir: Path) -> dict[str, Any]:
    from hedgewatch.demo import write_demo_config
    from hedgewatch.flows.backfill import run_backfill
    from hedgewatch.replay import ReplayExchange

    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 5, 1, tzinfo=UTC)
    candles = shared_candles().filter(
        pl.col("open_time") >= start - timedelta(days=1), pl.col("open_time") < end
    )
    with ReplayExchange(candles, None, now=end + timedelta(minutes=5)) as exchange:
        config = write_demo_config(workdir, exchange.url)
        settings = load_settings(config)
        clock = time.perf_counter()
        report = run_backfill(settings, start, end)
        fetched = time.perf_counter() - clock
    clock = time.perf_counter()
    with Store.open(settings.storage.target) as store:  # what the next run's compute does
        done = pipeline.compute(store, settings, pipeline.dirty_since(store, settings))
        hedges = store.metrics_since("hedge_metrics", start - timedelta(days=30))
        baskets = store.metrics_since("basket_metrics", start - timedelta(days=30))
        first, last = store.first_candle_hour(), store.last_candle_hour()
    computed = time.perf_counter() - clock
    return {
        "range": f"{start:%Y-%m-%d}..{end:%Y-%m-%d}",
        "backfill_rows": report.rows,
        "backfill_s": round(fetched, 1),
        "compute_s": round(computed, 1),
        "candles": f"{first} .. {last}",
        "hedge_metrics": f"{hedges['open_time'].min()} .. {hedges['open_time'].max()}",
        "basket_metrics": f"{baskets['open_time'].min()} .. {baskets['open_time'].max()}",
        "rows": {"hedge": done.hedge_rows, "basket": done.basket_rows, "pair": done.pair_rows},
    }


def imported_history(workdir: Path) -> tuple[Path, Any]:
    config = history_config(workdir)
    settings = load_settings(config)
    wanted = {(i.market, i.symbol) for i in settings.instruments}
    candles = shared_candles().filter(
        pl.struct("market", "symbol").map_elements(
            lambda r: (r["market"], r["symbol"]) in wanted, return_dtype=pl.Boolean
        )
    )
    with Store.open(settings.storage.target) as store:
        store.upsert_candles(candles)
    return config, settings


def bench_recompute(workdir: Path) -> dict[str, Any]:
    _, settings = imported_history(workdir)
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2023, 12, 31, 23, tzinfo=UTC)
    times, cpu, published = [], [], []
    for _ in range(2):
        with Store.open(settings.storage.target) as store:
            clock, used = time.perf_counter(), time.process_time()
            done = pipeline.recompute(store, settings, start, end)
            times.append(time.perf_counter() - clock)
            cpu.append(time.process_time() - used)
            clock = time.perf_counter()
        published.append(time.perf_counter() - clock)  # the read snapshot of what changed
    return {
        "range": f"{start:%Y-%m-%d}..{end:%Y-%m-%d}",
        "instruments": len(settings.instruments),
        "seconds": [round(t, 1) for t in times],
        "cpu_seconds": [round(t, 1) for t in cpu],
        "publish_seconds": [round(t, 1) for t in published],
        "rows": {"hedge": done.hedge_rows, "basket": done.basket_rows, "pair": done.pair_rows},
    }


HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SELECT count(*) FROM hedge_metrics").fetchall()
print("open", flush=True)
sys.stdin.readline()
"""


def _hold(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "open"
    return holder


def bench_readers(workdir: Path, runs: int = 8) -> dict[str, Any]:
    _, settings = imported_history(workdir)
    database = settings.storage.database
    with Store.open(database, publish=False) as store:  # metrics up to date
        pipeline.compute(store, settings, pipeline.dirty_since(store, settings))
        last = store.last_candle_hour()
        tail = store.candles_between(last - 23 * H, last)
    assert last is not None
    clock = time.perf_counter()
    with Store.open(database) as store:  # the first publication writes every partition
        pass
    first_publish = time.perf_counter() - clock
    hour = [last]

    def one_run(publish: bool) -> tuple[float, float]:
        """(wall, CPU) seconds of a run-sized write: load one hour, compute, publish or not."""
        hour[0] += H
        fresh = tail.filter(pl.col("open_time") == tail["open_time"].max()).with_columns(
            pl.lit(hour[0]).cast(pl.Datetime("us", "UTC")).alias("open_time")
        )
        clock, cpu = time.perf_counter(), time.process_time()
        with Store.open(database, timeout_s=2, publish=publish) as store:
            pipeline.load(store, [VenueFetch("binance", None, candles=fresh)], "bench")
            pipeline.compute(store, settings, pipeline.dirty_since(store, settings))
        return time.perf_counter() - clock, time.process_time() - cpu

    def alternate() -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        # Alternated, so both kinds see the same load on a shared machine.
        published, unpublished = [], []
        for _ in range(runs):
            published.append(one_run(True))
            unpublished.append(one_run(False))
        return published, unpublished

    one_run(True)  # warm
    plain, bare = alternate()
    holder = _hold(snapshot_path(database))
    try:
        held, held_bare = alternate()
    finally:
        holder.communicate("\n", timeout=60)
    failed = 0
    holder = _hold(database)  # the old way: a reader on the writer's own file
    try:
        for _ in range(3):
            try:
                one_run(False)
            except StoreBusy:
                failed += 1
    finally:
        holder.communicate("\n", timeout=60)

    def med(rows: list[tuple[float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    root = data_dir(database)
    generations = sorted(p for p in root.iterdir() if p.name.startswith("g"))
    newest = json.loads((generations[-1] / "manifest.json").read_text())
    parts = sum(len(t["parts"]) for t in newest["tables"].values())
    own = sum(f.stat().st_size for f in generations[-1].rglob("*.parquet"))  # files it wrote
    return {
        "database_mb": round(database.stat().st_size / 2**20, 1),
        "first_publish_s": round(first_publish, 2),
        "partitions_per_generation": parts,
        "new_kb_per_generation": round(own / 1024),
        "views_file_kb": round(snapshot_path(database).stat().st_size / 1024),
        "generations_kept": len(generations),
        "run_s_median": {
            "no_reader": round(med(plain, 0), 3),
            "no_reader_without_publishing": round(med(bare, 0), 3),
            "reader_on_snapshot": round(med(held, 0), 3),
            "reader_on_snapshot_without_publishing": round(med(held_bare, 0), 3),
        },
        "run_cpu_s_median": {
            "no_reader": round(med(plain, 1), 3),
            "no_reader_without_publishing": round(med(bare, 1), 3),
            "reader_on_snapshot": round(med(held, 1), 3),
        },
        "reader_ratio": round(med(held, 0) / med(plain, 0), 3),
        "publish_ratio_wall": round(med(plain, 0) / med(bare, 0), 3),
        "publish_ratio_cpu": round(med(plain, 1) / med(bare, 1), 3),
        "runs_failed_with_reader_on_snapshot": 0,
        "runs_failed_with_reader_on_writer_file": f"{failed} of 3",
    }


def bench_publication(workdir: Path, runs: int = 10) -> dict[str, Any]:
    """Where a run's publication goes: run-sized writes as in `readers`, each publishing, with
    the snapshot module's steps timed (mean seconds per run)."""
    from hedgewatch.storage import snapshot

    _, settings = imported_history(workdir)
    database = settings.storage.database
    with Store.open(database, publish=False) as store:
        pipeline.compute(store, settings, pipeline.dirty_since(store, settings))
        last = store.last_candle_hour()
        assert last is not None
        tail = store.candles_between(last - 23 * H, last)
    with Store.open(database):  # the first publication: every partition
        pass
    spent: dict[str, float] = {}
    steps = {
        "views_file": "_build_views",
        "partitions": "_publish_table",
        "catalog": "_columns",
        "pruning": "_prune",
        "publication": "publish",
    }
    originals = {name: getattr(snapshot, name) for name in steps.values()}

    def timed(label: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            clock = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - clock

        return wrapper

    for label, name in steps.items():
        setattr(snapshot, name, timed(label, originals[name]))
    hour, total = last, 0.0
    try:
        for i in range(runs + 1):
            hour += H
            fresh = tail.filter(pl.col("open_time") == tail["open_time"].max()).with_columns(
                pl.lit(hour).cast(pl.Datetime("us", "UTC")).alias("open_time")
            )
            if i == 0:  # warm: the first run of a process pays one-off imports
                spent.clear()
            clock = time.perf_counter()
            with Store.open(database, timeout_s=2) as store:
                pipeline.load(store, [VenueFetch("binance", None, candles=fresh)], "bench")
                pipeline.compute(store, settings, pipeline.dirty_since(store, settings))
            if i > 0:
                total += time.perf_counter() - clock
    finally:
        for name, function in originals.items():
            setattr(snapshot, name, function)
    mean = {label: round(spent.get(label, 0.0) / runs, 4) for label in steps}
    parts = ("views_file", "partitions", "catalog", "pruning")
    mean["other"] = round(mean["publication"] - sum(mean[p] for p in parts), 4)
    return {"runs": runs, "run_s_mean": round(total / runs, 3), "publication_s_mean": mean}


LAKE_WORKER = """
import json, sys, time
from datetime import UTC, datetime, timedelta
import polars as pl
from hedgewatch import pipeline
from hedgewatch.fetching import VenueFetch
from hedgewatch.storage.store import Lake, Store

catalog, data_path, venue = sys.argv[1:4]
rounds, symbols, hours = (int(a) for a in sys.argv[4:7])
t0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
with Store.open(Lake(catalog, data_path)) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    rows = 0
    for r in range(rounds):
        times = [t0 + h * H for h in range(r * hours, (r + 1) * hours)]
        frame = pl.concat([
            pl.DataFrame({
                "venue": venue, "market": "spot", "symbol": f"S{s}", "interval": "1h",
                "open_time": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
                "volume": 1.0, "quote_volume": 1.0, "trades": 1,
            }).cast({"open_time": pl.Datetime("us", "UTC")})
            for s in range(symbols)
        ])
        rows += pipeline.load(store, [VenueFetch(venue, None, candles=frame)], venue).candles
    seconds = time.perf_counter() - started
    print(json.dumps({"venue": venue, "rows": rows, "seconds": round(seconds, 2),
                      "rows_per_s": round(rows / seconds), "conflicts_retried": store.conflicts}))
"""


def bench_lake(workdir: Path, workers: int = 3, rounds: int = 5) -> dict[str, Any]:
    from postgres import postgres_server  # tests/storage/postgres.py

    symbols, hours = 20, 720
    with postgres_server() as dsn:
        catalog, data_path = f"postgres:{dsn}", str(workdir / "lake")
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    LAKE_WORKER,
                    catalog,
                    data_path,
                    f"venue{i}",
                    str(rounds),
                    str(symbols),
                    str(hours),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(workers)
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        clock = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=1800)[0] for proc in procs]
        reports = [json.loads(out.splitlines()[-1]) for out in outputs]
        wall = time.perf_counter() - clock
        with Store.open(Lake(catalog, data_path), read_only=True) as store:
            counts = store.con.execute(
                "SELECT count(*), count(DISTINCT (venue, symbol, open_time)) FROM candles"
            ).fetchall()[0]
    expected = workers * rounds * symbols * hours
    return {
        "workers": reports,
        "wall_s": round(wall, 1),
        "rows_expected": expected,
        "rows_stored": counts[0],
        "lost": expected - counts[1],
        "duplicated": counts[0] - counts[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="all")
    args = parser.parse_args()
    parts = {
        "backfill": bench_backfill,
        "recompute": bench_recompute,
        "readers": bench_readers,
        "publication": bench_publication,
        "lake": bench_lake,
    }
    chosen = list(parts) if args.part == "all" else [args.part]
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"hedgewatch-bench-{name}-") as tmp:
            result = parts[name](Path(tmp))
        print(json.dumps({name: result}, default=str, indent=1), flush=True)


if __name__ == "__main__":
    main()
