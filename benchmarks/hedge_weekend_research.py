"""Weekend and thin hours of the own-normal hedge rule (benchmarks/README.md, "Weekend and thin
hours"): variants of its watched column, built from the hedge columns the backtest computes.

    .venv/bin/python benchmarks/import_shared.py var/history.duckdb
    .venv/bin/python benchmarks/hedge_weekend_research.py var/history.duckdb

For each variant, the `hedge-decoupling` rule of `benchmarks/backtest.toml` walks its state machine
on every hedge over 2021-05-05 .. 2023-12-28 with the variant as its column. Printed: the markdown
table (BTC vs BTCDOWN in its two labelled weeks and in 2021-H2; firings and those that start on a
weekend outside the labelled weeks), then per hedge, then (a): hours without volume.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hedgewatch import backtest  # noqa: E402
from hedgewatch.settings import load_settings  # noqa: E402

START, END = datetime(2021, 5, 5, tzinfo=UTC), datetime(2023, 12, 28, tzinfo=UTC)
FTX = (datetime(2022, 11, 7, tzinfo=UTC), datetime(2022, 11, 14, tzinfo=UTC))
AUG23 = (datetime(2023, 8, 21, tzinfo=UTC), datetime(2023, 8, 28, tzinfo=UTC))
H2_2021 = (datetime(2021, 7, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))
LABELLED = {"btc-vs-btcdown": (FTX, AUG23)}

Arrays = dict[str, npt.NDArray[np.float64]]


def _run(streak: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Length of the run of True ending at each hour."""
    out = np.zeros(len(streak), dtype=np.int64)
    count = 0
    for i, flag in enumerate(streak):
        count = count + 1 if flag else 0
        out[i] = count
    return out


def _longer_when_thin(hours: int) -> Callable[[Arrays], npt.NDArray[np.float64]]:
    """(b): a thin window (position variance under half its normal) needs `hours` of breach
    instead of 6: hours that have not yet breached that long are shown between clear and fire."""

    def column(a: Arrays) -> npt.NDArray[np.float64]:
        with np.errstate(invalid="ignore"):
            breach = a["drop"] > 0.30
            thin = a["activity"] < 0.5
        run = _run(breach)
        counts = ~thin | (run > hours - 6)
        return np.where(breach & ~counts, 0.2, a["drop"])

    return column


VARIANTS: dict[str, Callable[[Arrays], npt.NDArray[np.float64]]] = {
    "plain drop (`effectiveness_drop`, the old default)": lambda a: a["drop"],
    "(b) 12 h confirmation when thin": _longer_when_thin(12),
    "(b) 24 h confirmation when thin": _longer_when_thin(24),
    "drop x min(1, activity)": lambda a: a["drop"] * np.minimum(a["activity"], 1.0),
    "drop only if activity >= 0.5": lambda a: np.where(a["activity"] >= 0.5, a["drop"], 0.0),
    "(c) sign arm alone (drop only if eff < 0)": lambda a: np.where(
        a["effectiveness"] < 0, a["drop"], 0.0
    ),
    "(c) drop only if activity >= 0.5 or eff < 0": lambda a: np.where(
        (a["activity"] >= 0.5) | (a["effectiveness"] < 0), a["drop"], 0.0
    ),
    "(c) drop x min(1, activity), in full if eff < 0 (`effectiveness_loss`, default)": lambda a: a[
        "loss"
    ],
}


def zero_volume_hours(database: Path, symbols: list[str]) -> int:
    """(a): hours with no volume of these spot symbols over the period."""
    with duckdb.connect(str(database), read_only=True) as con:
        found = con.execute(
            "SELECT count(*) FROM candles WHERE market = 'spot' AND list_contains($s, symbol) "
            "AND open_time BETWEEN $a AND $b AND volume = 0",
            {"s": symbols, "a": START, "b": END},
        ).fetchone()
    return int(found[0]) if found else 0


def arrays(frame: pl.DataFrame) -> Arrays:
    def column(name: str) -> npt.NDArray[np.float64]:
        return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    out = {
        "effectiveness": column("effectiveness"),
        "drop": column("effectiveness_drop"),
        "activity": column("activity"),
        "loss": column("effectiveness_loss"),
    }
    with np.errstate(invalid="ignore"):
        scaled = out["drop"] * np.minimum(out["activity"], 1.0)
        formula = np.where(out["effectiveness"] < 0, out["drop"], scaled)
    assert np.allclose(formula, out["loss"], rtol=0, atol=1e-12, equal_nan=True)
    return out


def inside(ts: datetime, spans: tuple[tuple[datetime, datetime], ...]) -> bool:
    return any(lo <= ts < hi for lo, hi in spans)


def main(database: Path) -> None:
    settings = load_settings(ROOT / "benchmarks" / "backtest.toml")
    history = backtest.compute_history(settings, START, END, database)
    rule = next(r for r in settings.alerts.rules if r.name == "hedge-decoupling")
    hedges = history.frames["hedge"].filter(pl.col("window_hours") == rule.window_hours)
    parts = hedges.sort("open_time").partition_by("hedge", as_dict=True, maintain_order=True)
    per_hedge = {str(key[0]): (part, arrays(part)) for key, part in parts.items()}
    months = (END - START).days / 30.44
    print(
        "| variant | BTC/BTCDOWN FTX week | BTC/BTCDOWN 2023-08 | BTC/BTCDOWN 2021-H2 | "
        "BTC/BTCDOWN firings (weekend, outside labels) | all 5 hedges: firings "
        "(weekend, outside labels) |"
    )
    print("|---|---|---|---|---|---|")
    detail: list[str] = []
    for label, make in VARIANTS.items():
        total = weekend_all = 0
        row: dict[str, str] = {}
        for name, (frame, a) in per_hedge.items():
            column = pl.Series(rule.watched_metric, make(a)).fill_nan(None)
            frames = {"hedge": frame.with_columns(column), "basket": pl.DataFrame()}
            one = backtest.History(settings, START, END, frames)
            fires = [
                e.ts
                for e in backtest.walk_series(rule, backtest.series(one, rule))
                if e.kind == "firing"
            ]
            labelled = LABELLED.get(name, ())
            weekend = [t for t in fires if t.weekday() >= 5 and not inside(t, labelled)]
            total += len(fires)
            weekend_all += len(weekend)
            detail.append(f"{label:42s} {name:17s} {len(fires):3d} weekend {len(weekend):3d}")
            if name == "btc-vs-btcdown":
                for key, span in (("ftx", FTX), ("aug", AUG23)):
                    hits = [f"{t:%m-%d %H}h" for t in fires if inside(t, (span,))]
                    row[key] = ", ".join(hits) or "—"
                row["h2"] = str(sum(inside(t, (H2_2021,)) for t in fires))
                row["btc"] = f"{len(fires)} ({len(weekend)})"
                row["list"] = " ".join(f"{t:%Y-%m-%d %a %H}h" for t in fires)
        print(
            f"| {label} | {row['ftx']} | {row['aug']} | {row['h2']} | {row['btc']} | "
            f"{total} ({weekend_all}), {total / months:.2f}/month |"
        )
        detail.append(f"{label:42s} btc-vs-btcdown firings: {row['list']}")
    print()
    print("\n".join(detail))
    print(
        "(a) hours without volume over the period: BTCUSDT + BTCDOWNUSDT "
        f"{zero_volume_hours(database, ['BTCUSDT', 'BTCDOWNUSDT'])}, all 16 spot legs and members "
        f"{zero_volume_hours(database, [i.symbol for i in settings.instruments])}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/history.duckdb"))
