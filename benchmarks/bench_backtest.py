"""Backtest speed: the 30-month command end to end, and its rule step against the plain walk.

    .venv/bin/python benchmarks/import_shared.py var/history.duckdb
    .venv/bin/python benchmarks/bench_backtest.py --repeat 3

1. `hedgewatch backtest` over 2021-06-01 .. 2023-11-30 (20 instruments, 1 basket, 5 hedges, the
   default rules of `benchmarks/backtest.toml`), as a user runs it: a fresh process each time,
   wall time and CPU time (user + system, all threads) from the operating system.
2. The rule step on the same computed history: the backtest's columnar walk (`walk_series`)
   against what a straightforward replay does — an `Observation` per rule, subject and hour
   (`observe_rows`) and `advance` on every one — with the events checked equal.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "2021-06-01T00:00:00Z", "2023-11-30T00:00:00Z"


def command_runs(database: Path, repeat: int) -> list[tuple[float, float]]:
    exe = Path(sys.executable).with_name("hedgewatch")
    args = [str(exe), "backtest", "-c", str(ROOT / "benchmarks" / "backtest.toml")]
    args += ["-d", str(database), "--from", START, "--to", END, "-f", "json"]
    out = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        clock = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - clock
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        out.append((wall, cpu))
    return out


def rule_step(database: Path) -> tuple[float, float, int]:
    from hedgewatch import backtest
    from hedgewatch.alerts.rules import KINDS, SUBJECT_COLUMN, observe_rows
    from hedgewatch.settings import load_settings

    settings = load_settings(ROOT / "benchmarks" / "backtest.toml")
    start = datetime.fromisoformat(START.replace("Z", "+00:00")).astimezone(UTC)
    end = datetime.fromisoformat(END.replace("Z", "+00:00")).astimezone(UTC)
    history = backtest.compute_history(settings, start, end, database)
    rules = [r for r in settings.alerts.rules if KINDS[r.kind].source]
    for rule in rules:  # the hour grids and series, built once for both walks
        backtest.series(history, rule)

    clock = time.process_time()
    fast = [e for rule in rules for e in backtest.walk_series(rule, backtest.series(history, rule))]
    columnar = time.process_time() - clock

    clock = time.process_time()
    plain = []
    for rule in rules:
        source = KINDS[rule.kind].source
        if source == "freshness":
            frame = history.frames["freshness"]
        else:
            frame = history.grids[(source, rule.window_hours)]
        frame = frame.sort("open_time", maintain_order=True)
        assert SUBJECT_COLUMN[source] in frame.columns
        plain += backtest.walk(rule, list(observe_rows(rule, frame, explain=False)))
    reference = time.process_time() - clock

    def key(e: backtest.AlertEvent) -> tuple[object, ...]:
        return (e.ts, e.rule, e.subject, e.kind, e.value, e.episode)

    if sorted(map(key, fast)) != sorted(map(key, plain)):
        raise SystemExit("the columnar walk and the plain walk disagree")
    return columnar, reference, len(fast)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, default=ROOT / "var" / "history.duckdb")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.database.exists():
        raise SystemExit(f"{args.database}: run benchmarks/import_shared.py first")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    runs = command_runs(args.database, args.repeat)
    for wall, cpu in runs:
        print(f"hedgewatch backtest {START[:10]} .. {END[:10]}: wall {wall:.2f} s, cpu {cpu:.2f} s")
    print(f"median wall {statistics.median(w for w, _ in runs):.2f} s")
    columnar, reference, events = rule_step(args.database)
    print(
        f"rule step, {events} events: columnar walk {columnar:.2f} s cpu, "
        f"observation per hour + advance {reference:.2f} s cpu: {reference / columnar:.1f}x"
    )


if __name__ == "__main__":
    main()
