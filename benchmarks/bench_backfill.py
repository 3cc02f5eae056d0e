"""Backfill benchmark: one year of 1h candles for 20 symbols from the replay exchange under
Binance's weight budget (scaled down in rate, so a run takes seconds, not minutes), against the
rate-limit ceiling and, in the same run against the same server, ccxt's paginated fetch_ohlcv.
Then peak memory of a backfill as the range grows.

    .venv/bin/python benchmarks/bench_backfill.py [--repeat 2] [--scale 0.1] [--window 6]

Real candles: the 20 first symbols of ../shared/data's Binance spot majors file, 2022.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
sys.path.insert(0, str(ROOT))

from hedgewatch.flows.backfill import run_backfill  # noqa: E402
from hedgewatch.replay import ReplayExchange, load_candle_files  # noqa: E402
from hedgewatch.settings import Settings  # noqa: E402
from hedgewatch.venues import make_exchange  # noqa: E402
from hedgewatch.venues.binance import BINANCE  # noqa: E402

DATA = Path(os.environ.get("HEDGEWATCH_SHARED_DATA", ROOT.parent / "shared" / "data"))
MAJORS = DATA / "candles" / "binance_spot_1h_majors_2021-04_2023-12.csv.gz"
START = datetime(2022, 1, 1, tzinfo=UTC)
END = datetime(2023, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)  # the replay's clock: every 2022 candle is closed
KLINES_WEIGHT = 2  # /api/v3/klines, any limit up to 1000
PAGE = 1000


def load(symbols: int) -> pl.DataFrame:
    frame = load_candle_files([MAJORS])
    chosen = sorted(frame["symbol"].unique().to_list())[:symbols]
    return frame.filter(pl.col("symbol").is_in(chosen))


def settings_for(url: str, symbols: list[str], database: Path, workers: int) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": str(database)},
            "fetch": {"max_workers": workers},
            "venues": [{"name": "binance", "kind": "binance", "base_urls": {"spot": url}}],
            "instruments": [{"id": s, "venue": "binance", "symbol": s} for s in symbols],
        }
    )


def scaled_spec(budget: int, window_s: float) -> Any:
    spot = dataclasses.replace(BINANCE.limits["spot"], budget=budget, window_s=window_s)
    return dataclasses.replace(BINANCE, limits={**BINANCE.limits, "spot": spot})


def wait_for_window(window_s: float) -> None:
    """Start each run at a window boundary, so runs see the same budget phase."""
    time.sleep(window_s - (time.time() % window_s) + 0.01)


def ours(
    replay: ReplayExchange,
    symbols: list[str],
    start: datetime,
    end: datetime,
    budget: int,
    window_s: float,
    workers: int,
) -> tuple[float, int]:
    spec = scaled_spec(budget, window_s)
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(replay.url, symbols, Path(tmp) / "bench.duckdb", workers)

        def factory(venue: Any) -> Any:
            return make_exchange(
                "binance", venue=venue.name, base_urls={"spot": replay.url}, spec=spec
            )

        began = time.perf_counter()
        report = run_backfill(settings, start, end, factory=factory)
        wall = time.perf_counter() - began
        assert report.ok, report.failed
    return wall, report.rows


def with_ccxt(
    replay: ReplayExchange, symbols: list[str], start: datetime, end: datetime, scale: float
) -> tuple[float, int]:
    import ccxt

    from hedgewatch.venues.ccxt_venue import _rehost

    exchange = ccxt.binance({"enableRateLimit": True, "rateLimit": 50 / scale})
    exchange.urls["api"] = _rehost(exchange.urls["api"], replay.url)
    exchange.set_markets(
        [
            {
                "id": s,
                "symbol": f"{s[:-4]}/USDT",
                "base": s[:-4],
                "quote": "USDT",
                "baseId": s[:-4],
                "quoteId": "USDT",
                "type": "spot",
                "spot": True,
                "margin": False,
                "swap": False,
                "future": False,
                "option": False,
                "contract": False,
                "active": True,
                "precision": {},
                "limits": {},
                "info": {},
            }
            for s in symbols
        ]
    )
    since, until = int(start.timestamp() * 1000), int(end.timestamp() * 1000) - 1
    rows = 0
    began = time.perf_counter()
    for s in symbols:
        candles = exchange.fetch_ohlcv(
            f"{s[:-4]}/USDT",
            "1h",
            since,
            None,
            {"paginate": True, "until": until, "paginationCalls": 20},
        )
        rows += len({c[0] for c in candles if since <= c[0] <= until})
    return time.perf_counter() - began, rows


def memory_child(months: int, symbols: int, url: str) -> None:
    """Backfill `months` from the replay at `url` (full Binance budget); print this process's
    peak RSS. The replay runs in the parent, so only the backfill is measured."""
    end = START + timedelta(days=round(months * 365.25 / 12))
    names = [line for line in os.environ["BENCH_SYMBOLS"].split(",") if line][:symbols]
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(url, names, Path(tmp) / "bench.duckdb", 8)

        def factory(venue: Any) -> Any:
            return make_exchange("binance", venue=venue.name, base_urls={"spot": url})

        began = time.perf_counter()
        report = run_backfill(settings, START, end, factory=factory)
        wall = time.perf_counter() - began
        assert report.ok, report.failed
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"months": months, "rows": report.rows, "peak_kb": peak, "wall_s": wall}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument(
        "--scale",
        type=float,
        default=0.1,
        help="fraction of Binance's 6000 weight/min (rate), e.g. 0.1",
    )
    parser.add_argument("--window", type=float, default=6.0, help="budget window, seconds")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-ccxt", action="store_true")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.symbols, args.url)
        return
    if not MAJORS.exists():
        sys.exit(f"real data not found at {MAJORS} (set HEDGEWATCH_SHARED_DATA)")

    budget = max(1, round(6000 * args.scale * args.window / 60))  # weight per window
    rate = budget / args.window  # weight per second
    frame = load(args.symbols)
    symbols = sorted(frame["symbol"].unique().to_list())
    hours = int((END - START) / timedelta(hours=1))
    pages = math.ceil(hours / PAGE)
    min_weight = len(symbols) * pages * KLINES_WEIGHT
    # Least time the budget allows: the first window's budget is there at once, then `rate`.
    ceiling = max(min_weight - budget, 0) / rate
    print(
        f"{len(symbols)} symbols × {hours} h of 1h candles (2022), {pages} pages each; "
        f"budget {budget} weight per {args.window:g} s = {rate * 60:.0f}/min "
        f"({args.scale:g} of Binance's 6000/min); least weight {min_weight}; "
        f"ceiling {ceiling:.1f} s ({min_weight / rate:.1f} s at the sustained rate)"
    )

    results: dict[str, list[float]] = {"hedgewatch": [], "ccxt": []}
    counts: dict[str, int] = {}
    limited: dict[str, int] = {"hedgewatch": 0, "ccxt": 0}
    with ReplayExchange(
        frame, now=NOW, weight_limit_per_minute=budget, weight_window_s=args.window
    ) as replay:
        for _ in range(args.repeat):
            for name in ("hedgewatch", "ccxt"):
                if name == "ccxt" and args.skip_ccxt:
                    continue
                wait_for_window(args.window)
                before = replay.statuses().count(429)
                if name == "hedgewatch":
                    wall, rows = ours(
                        replay, symbols, START, END, budget, args.window, args.workers
                    )
                else:
                    wall, rows = with_ccxt(replay, symbols, START, END, args.scale)
                limited[name] += replay.statuses().count(429) - before
                results[name].append(wall)
                counts[name] = rows
    print()
    print(f"| run | wall s (best / median of {args.repeat}) | rows | 429s | ceiling / wall |")
    print("|---|---|---|---|---|")
    for name, walls in results.items():
        if not walls:
            continue
        best, median = min(walls), statistics.median(walls)
        print(
            f"| {name} | {best:.1f} / {median:.1f} | {counts[name]} | {limited[name]} "
            f"| {ceiling / median:.2f} |"
        )
    if results["ccxt"]:
        ratio = statistics.median(results["ccxt"]) / statistics.median(results["hedgewatch"])
        print(f"\nccxt wall / hedgewatch wall (medians): {ratio:.2f}")

    print("\n| months | rows | peak RSS MB of the backfill process | wall s (full budget) |")
    print("|---|---|---|---|")
    env = {**os.environ, "BENCH_SYMBOLS": ",".join(symbols)}
    with ReplayExchange(frame, now=NOW) as replay:
        for months in (3, 6, 12, 24):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    str(months),
                    "--symbols",
                    str(args.symbols),
                    "--url",
                    replay.url,
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout
            found = json.loads(out.strip().splitlines()[-1])
            print(
                f"| {months} | {found['rows']} | {found['peak_kb'] / 1024:.0f} "
                f"| {found['wall_s']:.1f} |"
            )


if __name__ == "__main__":
    main()
