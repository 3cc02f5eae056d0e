"""Hedge lab speed: a 2-year hourly backtest of 5 hedges x 3 policies, against the slow per-hour
reference loop; and every shipped stress scenario on every configured hedge.

    python benchmarks/bench_hedgelab.py [--repeat 5] [--reference]

Builds var/hedgelab-bench.duckdb from ../shared/data once (candles as `import_shared.py` loads
them, plus Binance funding), then times, with the hedges of benchmarks/backtest.toml over
2021-12-01 → 2023-11-30 (17,496 hours):

- core: `run_policies` on legs already in memory (min-variance targets, three policies, costs);
- shell: the same from the database (`backtest_many`: one DuckDB read for the five hedges);
- reference (with --reference, minutes): `hedgewatch.transforms.hedgelab.reference`, the plain
  per-hour loop (least squares per hour), on the same legs; results compared with the core's;
- stress: every scenario (shipped + config) on every hedge, DuckDB reads included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import import_shared  # noqa: E402

from hedgewatch.hedgelab import (  # noqa: E402
    backtest_many,
    cost_model,
    hedge_book,
    hedge_settings,
    load_legs,
    policies,
    scenarios,
    stress_many,
)
from hedgewatch.replay import load_funding_files  # noqa: E402
from hedgewatch.settings import load_settings  # noqa: E402
from hedgewatch.storage.store import Store  # noqa: E402
from hedgewatch.transforms.hedgelab import run_policies  # noqa: E402
from hedgewatch.transforms.hedgelab.reference import reference_run  # noqa: E402

START = datetime(2021, 12, 1, tzinfo=UTC)
END = datetime(2023, 11, 30, tzinfo=UTC)
DATABASE = ROOT / "var" / "hedgelab-bench.duckdb"


def build_database() -> None:
    if DATABASE.exists():
        return
    DATABASE.parent.mkdir(parents=True, exist_ok=True)
    import_shared.main(DATABASE)
    funding_file = (
        import_shared.DATA.parent / "funding" / "funding_rates_BTC_ETH_7exchanges_2020-2023.csv.gz"
    )
    funding = (
        load_funding_files([funding_file])
        .filter(pl.col("exchange") == "binance")
        .rename({"exchange": "venue"})
        .with_columns(pl.lit(None, pl.Float64).alias("mark_price"))
    )
    with Store.open(DATABASE) as store:
        print(f"funding: {store.upsert_funding(funding)} settlements")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time the slow loop")
    args = parser.parse_args()
    build_database()
    settings = load_settings(ROOT / "benchmarks" / "backtest.toml")
    settings = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"database": DATABASE})}
    )
    chosen = policies(settings)
    names = [h.name for h in settings.hedges]
    with Store.open(DATABASE, read_only=True) as store:
        warm = max(p.window_hours for p in chosen)
        prepared = []
        for name in names:
            hedge = hedge_settings(settings, name)
            legs = load_legs(store, settings, hedge, START - timedelta(hours=warm), END)
            first = warm  # the hours before START only feed the min-variance estimate
            base_price = float(legs.base.close[first:][np.isfinite(legs.base.close[first:])][0])
            book = hedge_book(settings, hedge, base_price)
            prepared.append((name, book, legs, cost_model(settings, hedge), first))
        hours = len(prepared[0][2].times) - prepared[0][4]

        core = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for _name, book, legs, costs, first in prepared:
                run_policies(book, legs.base, legs.hedge, costs, chosen, start_at=first)
            core.append(time.perf_counter() - t)
        shell = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            backtest_many(store, settings, names, START, END)
            shell.append(time.perf_counter() - t)
        print(f"{len(names)} hedges x {len(chosen)} policies, {hours} hours each")
        print(f"core  (in memory): median {statistics.median(core):.3f} s, best {min(core):.3f} s")
        print(
            f"shell (with reads): median {statistics.median(shell):.3f} s, best {min(shell):.3f} s"
        )

        everything = list(scenarios(settings).values())
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            results = stress_many(store, settings, names, everything)
            runs.append(time.perf_counter() - t)
        replayed = sum(
            r.result is not None
            for v in results.values()
            if not isinstance(v, Exception)
            for r in v[1]
        )
        print(
            f"stress: {len(everything)} scenarios x {len(names)} hedges ({replayed} with data): "
            f"median {statistics.median(runs):.3f} s, best {min(runs):.3f} s"
        )

        if args.reference:
            t = time.perf_counter()
            worst = 0.0
            for _name, book, legs, costs, first in prepared:
                sims = run_policies(book, legs.base, legs.hedge, costs, chosen, start_at=first)
                for policy, sim in zip(chosen, sims, strict=True):
                    ref = reference_run(book, legs.base, legs.hedge, costs, policy, start_at=first)
                    scale = max(1.0, float(np.max(np.abs(np.cumsum(ref["hedged"])))))
                    diff = np.max(np.abs(np.cumsum(sim.hedged_pnl) - np.cumsum(ref["hedged"])))
                    worst = max(worst, float(diff) / scale)
                    assert sim.trades.hour.tolist() == ref["trade_hours"], policy
            slow = time.perf_counter() - t
            print(
                f"reference loop: {slow:.1f} s; core median {statistics.median(core):.3f} s: "
                f"{slow / statistics.median(core):.0f}x faster; "
                f"max relative difference of cumulative P&L {worst:.1e}"
            )


if __name__ == "__main__":
    main()
