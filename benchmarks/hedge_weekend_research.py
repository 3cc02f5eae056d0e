"""Weekend noise of the own-normal hedge rule: the plain effectiveness drop against the drop
scaled by how much the position moved (see benchmarks/README.md, "Weekend and thin hours").

    .venv/bin/python benchmarks/import_shared.py var/history.duckdb
    .venv/bin/python benchmarks/hedge_weekend_research.py

For each hedge of `benchmarks/backtest.toml` and each variant of the `effectiveness_drop`
column, the `hedge-decoupling` rule of that config walks its state machine over 2021-05-05 ..
2023-12-28; printed: firings, how many start on a weekend, and the firings in the two labelled
BTC vs BTCDOWN weeks and in 2021-H2.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hedgewatch import backtest  # noqa: E402
from hedgewatch.settings import load_settings  # noqa: E402
from hedgewatch.transforms._time import hour_index  # noqa: E402
from hedgewatch.transforms.market import robust_baseline  # noqa: E402

START, END = datetime(2021, 5, 5, tzinfo=UTC), datetime(2023, 12, 28, tzinfo=UTC)
WEEKS = {
    "ftx": (datetime(2022, 11, 7, tzinfo=UTC), datetime(2022, 11, 14, tzinfo=UTC)),
    "2023-08": (datetime(2023, 8, 21, tzinfo=UTC), datetime(2023, 8, 28, tzinfo=UTC)),
    "2021-H2": (datetime(2021, 7, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)),
}


def main(database: Path) -> None:
    settings = load_settings(ROOT / "benchmarks" / "backtest.toml")
    history = backtest.compute_history(settings, START, END, database)
    rule = next(r for r in settings.alerts.rules if r.name == "hedge-decoupling")
    hedges = history.frames["hedge"].filter(pl.col("window_hours") == rule.window_hours)
    months = (END - START).days / 30.44
    for (name,), frame in hedges.sort("open_time").partition_by("hedge", as_dict=True).items():
        hours = hour_index(frame["open_time"])[0].to_numpy().astype(np.int64)
        effectiveness = frame["effectiveness"].fill_null(np.nan).to_numpy()
        hedged = frame["residual_vol"].fill_null(np.nan).to_numpy() ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            position = hedged / (1.0 - effectiveness)  # the unhedged variance, per hour
        normal_eff, _ = robust_baseline(effectiveness, hours, settings.metrics.baseline_hours)
        normal_var, _ = robust_baseline(position, hours, settings.metrics.baseline_hours)
        drop = normal_eff - effectiveness
        with np.errstate(invalid="ignore", divide="ignore"):
            activity = position / normal_var
        variants = {
            "plain drop": drop,
            "x activity": drop * np.minimum(activity, 1.0),
            "activity>=.5": np.where(activity >= 0.5, drop, np.nan),
        }
        for label, values in variants.items():
            column = pl.Series("effectiveness_drop", values).fill_nan(None)
            frames = {"hedge": frame.with_columns(column), "basket": pl.DataFrame()}
            one = backtest.History(settings, START, END, frames)
            events = backtest.walk_series(rule, backtest.series(one, rule))
            fires = [e for e in events if e.kind == "firing"]
            weekend = sum(e.ts.weekday() >= 5 for e in fires)
            found = {
                week: [f"{e.ts:%m-%d %H}h" for e in fires if lo <= e.ts < hi]
                for week, (lo, hi) in WEEKS.items()
            }
            print(
                f"{name:18s} {label:13s} firings {len(fires):3d} ({len(fires) / months:.2f}/month)"
                f", weekend {weekend:3d}; ftx {found['ftx']}, 2023-08 {found['2023-08']}, "
                f"2021-H2 {len(found['2021-H2'])}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/history.duckdb"))
