"""Research scorecard for the market-stress and hedge signals, straight from ../shared/data.

    python benchmarks/scorecard_research.py [--window 12h] [--fire 4] [--clear 2] [--cooldown 48]

Reads the Binance spot majors and hedges files with polars, computes the basket stress columns
and the hedge departure columns with the project's own transforms, and walks a minimal rule
(fire past a level for `for_hours` consecutive hours, clear below the clear level, cooldown after
a resolve) over 2021-04..2023-12. Prints, per development event, the lag of the first alert, and
per calm month (event months left out) the pages. Independent of `hedgewatch backtest`, which is
the tool for a user's own history; this script is for looking at the signals themselves.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hedgewatch.transforms.market import basket_stress  # noqa: E402
from hedgewatch.transforms.returns import to_log_returns, to_wide  # noqa: E402

DATA = next(
    (
        p / "shared" / "data" / "candles"
        for p in (ROOT.parent, ROOT.parent.parent)
        if (p / "shared" / "data" / "candles").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "candles",
)
MAJORS = "binance_spot_1h_majors_2021-04_2023-12.csv.gz"
HEDGES = "binance_spot_1h_hedges_stables_leveraged_2021-04_2023-12.csv.gz"
BASKET = ("BTC", "ETH", "BNB", "SOL", "ADA", "XRP", "AVAX", "DOT")
# Development events: (name, onset UTC). See benchmarks/README.md for the one moved onset.
ONSETS = {
    "2021-12-04 weekend crash": "2021-12-04 00:00",
    "2022-05 LUNA/UST": "2022-05-09 10:00",
    "2022-06 Celsius": "2022-06-13 00:00",
    "2022-11 FTX": "2022-11-08 00:00",
    "2023-03 SVB/USDC": "2023-03-09 18:00",
    "2023-08-17 flush": "2023-08-17 20:00",
}
EVENT_MONTHS = {"2021-12", "2022-05", "2022-06", "2022-11", "2023-03", "2023-08"}


def load(file: str, symbols: list[str]) -> pl.DataFrame:
    frame = pl.read_csv(
        DATA / file,
        columns=["ts", "symbol", "close"],
        schema_overrides={"close": pl.Float64},
    ).filter(pl.col("symbol").is_in(symbols))
    return frame.select(
        pl.col("symbol").str.replace("USDT$", "").alias("instrument"),
        pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC").alias("open_time"),
        "close",
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def walk(
    times: list[datetime],
    values: np.ndarray,
    fire: float,
    clear: float,
    for_hours: int,
    cooldown: int,
) -> list[datetime]:
    """Firing hours of a minimal above-threshold rule (no data = keep state)."""
    fired: list[datetime] = []
    firing, run, resolved = False, 0, None
    for ts, v in zip(times, values, strict=True):
        if not np.isfinite(v):
            continue
        if firing:
            if v < clear:
                firing, resolved = False, ts
            continue
        run = run + 1 if v > fire else 0
        cool = resolved is None or ts - resolved >= timedelta(hours=cooldown)
        if run >= for_hours and cool:
            firing, run = True, 0
            fired.append(ts)
    return fired


def scorecard(
    fired: list[datetime], pre_hours: int = 24
) -> tuple[dict[str, float | None], dict[str, int]]:
    lags: dict[str, float | None] = {}
    for name, onset in ONSETS.items():
        t = at(onset)
        near = [f for f in fired if t - timedelta(hours=pre_hours) <= f <= t + timedelta(hours=48)]
        lags[name] = (near[0] - t) / timedelta(hours=1) if near else None
    months: dict[str, int] = {}
    start = datetime(2021, 4, 1, tzinfo=UTC)
    while start < datetime(2024, 1, 1, tzinfo=UTC):
        key = start.strftime("%Y-%m")
        if key not in EVENT_MONTHS:
            months[key] = 0
        start = (start + timedelta(days=32)).replace(day=1)
    for f in fired:
        key = f.strftime("%Y-%m")
        if key in months:
            months[key] += 1
    return lags, months


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument("--metric", default="drawdown_z")
    parser.add_argument("--fire", type=float, default=4.0)
    parser.add_argument("--clear", type=float, default=2.0)
    parser.add_argument("--for-hours", type=int, default=1)
    parser.add_argument("--cooldown", type=int, default=48)
    args = parser.parse_args()
    candles = load(MAJORS, [f"{s}USDT" for s in BASKET])
    wide = to_wide(to_log_returns(candles), list(BASKET))
    min_obs = max(2, round(0.75 * args.window))
    stress = basket_stress(wide, BASKET, args.window, min_obs)
    times = stress["open_time"].to_list()
    values = stress[args.metric].fill_null(np.nan).to_numpy()
    fired = walk(times, values, args.fire, args.clear, args.for_hours, args.cooldown)
    lags, months = scorecard(fired)
    for name, lag in lags.items():
        print(f"{name:28s} lag {'-' if lag is None else f'{lag:+.0f} h'}")
    busy = {k: v for k, v in months.items() if v}
    print(
        f"calm months {len(months)}, pages {sum(months.values())}, "
        f"per month {sum(months.values()) / len(months):.2f}, max {max(months.values())}: {busy}"
    )


if __name__ == "__main__":
    main()
