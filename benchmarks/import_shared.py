"""Import real Binance history from ../shared/data into a DuckDB file, for backtests.

    python benchmarks/import_shared.py var/history.duckdb
    python benchmarks/import_shared.py var/perps.duckdb binance_usdm_perp_1h_2022-10_2025-10.csv.gz

Loads the spot majors (2021-04..2023-12), the spot hedges/stables/leveraged tokens and the
USD-M perpetuals (2020-01..2024-04) through the store's own upsert, as venue "binance"; or the
files of ../shared/data/candles named after the target.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hedgewatch.replay import load_candle_files  # noqa: E402
from hedgewatch.storage.store import Store  # noqa: E402

# ../shared/data beside the checkout (or beside its parent, for a worktree one level deeper).
DATA = next(
    (
        p / "shared" / "data" / "candles"
        for p in (ROOT.parent, ROOT.parent.parent)
        if (p / "shared" / "data" / "candles").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "candles",
)
FILES = (
    "binance_spot_1h_majors_2021-04_2023-12.csv.gz",
    "binance_spot_1h_hedges_stables_leveraged_2021-04_2023-12.csv.gz",
    "binance_usdm_perp_1h_2020-01_2024-04.csv.gz",
)


def main(target: Path, files: tuple[str, ...] = FILES) -> None:
    started = time.perf_counter()
    with Store.open(target) as store:
        for name in files:
            path = DATA / name
            if not path.exists():
                raise SystemExit(f"{path}: not found (the shared data folder is missing)")
            candles = load_candle_files([path]).with_columns(pl.lit("binance").alias("venue"))
            written = store.upsert_candles(candles)
            print(f"{name}: {written} candles")
        [(total,)] = store.con.execute("SELECT count(*) FROM candles").fetchall()
    print(f"{target}: {total} candles in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(
        Path(sys.argv[1] if len(sys.argv) > 1 else "var/history.duckdb"),
        tuple(sys.argv[2:]) or FILES,
    )
