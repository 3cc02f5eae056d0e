"""Prefect's overhead for one hourly run, against the same code called without Prefect; the demo.

    .venv/bin/python benchmarks/bench_prefect.py [--repeat 4] [--no-demo]

Every run is a typical hourly run: the database already holds the demo config's history up to
T, the replay exchange's clock moves to T + 1 h, and the run fetches, stores, computes, evaluates,
delivers and records that hour (12 series). Measured:

1. In one process, with the Prefect server already up (as under `hedgewatch serve`'s server):
   the flow `hourly(...)` against the same steps called as plain functions (`task.fn`, in the
   flow's order, the run recorded in DuckDB but no Prefect artifact). Runs alternate.
2. A fresh process per run, talking to a running Prefect server (`serve` starts each scheduled run
   in its own process): the flow, against the plain steps in a fresh process.
3. A fresh process per run with no server configured and Prefect's temporary server allowed
   (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180): option (c), which hedgewatch no longer
   uses — a bare `hedgewatch run` now takes the plain path of 2.
4. Option (a): a `prefect server` owned by the caller, start to healthy: as the tests start it
   (`local_prefect_server`: a new database, every migration, all services), and as the demo does
   (`prefect_server(lean=True, template_cache=...)`: a copy of a migrated database, only the
   services that record runs).
5. `hedgewatch demo` end to end (19 runs through the LUNA crash, its own server): the first demo
   (its server migrates a new database and keeps it as the template) and the ones after it.

Prints wall and CPU seconds (user + system, of the child processes: for the demo that includes its
Prefect server); take the median, and re-run on a quiet machine before quoting figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
HISTORY = datetime(2022, 5, 1, tzinfo=UTC)
SEED_AT = datetime(2022, 5, 11, 12, 5, tzinfo=UTC)
RUN_AT = SEED_AT + timedelta(hours=1)

PLAIN = """
import sys, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[2])
from bench_prefect import plain_run
plain_run(sys.argv[1])
print(f"{time.perf_counter() - started:.3f}")
"""
FLOW = """
import sys, time
started = time.perf_counter()
from hedgewatch.flows.hourly import hourly
from hedgewatch.flows.runtime import quiet_prefect
with quiet_prefect():
    hourly(config_path=sys.argv[1])
print(f"{time.perf_counter() - started:.3f}")
"""


def plain_run(config_path: str) -> None:
    """The hourly flow's steps as plain functions: what `hedgewatch run` does with no server."""
    from hedgewatch.flows.hourly import hourly_now

    hourly_now(config_path)


def write_config(workdir: Path, url: str) -> Path:
    from hedgewatch.demo import write_demo_config

    workdir.mkdir(parents=True, exist_ok=True)
    path = write_demo_config(workdir, url)
    config = tomllib.loads(path.read_text())
    config["fetch"]["history_start"] = HISTORY
    path.write_text(tomli_w.dumps(config))
    return path


def fresh_copy(seed: Path, workdir: Path, url: str) -> Path:
    """A workdir whose database is a copy of the seeded one; returns its config."""
    if workdir.exists():
        shutil.rmtree(workdir)
    config = write_config(workdir, url)
    shutil.copy(seed / "hedgewatch.duckdb", workdir / "hedgewatch.duckdb")
    return config


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values)


def row(label: str, values: list[float]) -> str:
    stats = f"{median(values):.2f} | {min(values):.2f} | {max(values):.2f}"
    return f"| {label} | {stats} | {len(values)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--no-temporary", action="store_true", help="skip row 3")
    parser.add_argument("--no-server-start", action="store_true", help="skip row 4")
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    tmp = Path(tempfile.mkdtemp(prefix="hedgewatch-bench-"))
    os.environ["PREFECT_HOME"] = str(tmp / "prefect-home")

    from hedgewatch.demo import demo_data_dir
    from hedgewatch.flows.hourly import hourly
    from hedgewatch.flows.runtime import local_prefect_server, prefect_server, quiet_prefect
    from hedgewatch.replay import ReplayExchange, load_candle_files, load_funding_files

    data = demo_data_dir()
    candles = load_candle_files(sorted(data.glob("binance_*_1h_*.csv.gz")))
    funding = load_funding_files(sorted(data.glob("binance_funding_*.csv.gz")))
    results: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    try:
        with ReplayExchange(candles, funding, now=SEED_AT) as exchange:
            seed = tmp / "seed"
            plain_run(str(write_config(seed, exchange.url)))
            exchange.set_now(RUN_AT)

            # A server of our own, waited for on its health endpoint: Prefect's test harness
            # gives up after a fixed timeout, which a loaded machine exceeds.
            with (
                prefect_server(tmp / "bench-server", lean=True) as server,
                quiet_prefect(api_url=server.api_url),
            ):
                server.wait_ready()
                api = server.api_url
                hourly(config_path=str(fresh_copy(seed, tmp / "warmup", exchange.url)))
                for n in range(args.repeat):
                    for label, call in (
                        ("1. in process, server up: Prefect flow", None),
                        ("1. in process: plain functions", plain_run),
                    ):
                        config = fresh_copy(seed, tmp / f"run-{n}", exchange.url)
                        started = time.perf_counter()
                        if call is None:
                            hourly(config_path=str(config))
                        else:
                            call(str(config))
                        results.setdefault(label, []).append(time.perf_counter() - started)

                env = {**os.environ, "PREFECT_API_URL": api, "PYTHONPATH": str(ROOT)}
                for n in range(args.repeat):
                    for label, script in (
                        ("2. fresh process, server up: Prefect flow", FLOW),
                        ("2. fresh process: plain functions", PLAIN),
                    ):
                        config = fresh_copy(seed, tmp / f"proc-{n}", exchange.url)
                        started, cpu = time.perf_counter(), children_cpu()
                        subprocess.run(
                            [sys.executable, "-c", script, str(config), str(ROOT / "benchmarks")],
                            check=True,
                            env=env,
                            stdout=subprocess.DEVNULL,
                        )
                        results.setdefault(label, []).append(time.perf_counter() - started)
                        cpus.setdefault(label, []).append(children_cpu() - cpu)

            no_server = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
            for n in range(0 if args.no_temporary else max(2, args.repeat // 2)):
                config = fresh_copy(seed, tmp / f"cold-{n}", exchange.url)
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", FLOW, str(config)],
                    check=True,
                    env={**no_server, "PREFECT_SERVER_EPHEMERAL_ENABLED": "true"},
                    stdout=subprocess.DEVNULL,
                )
                results.setdefault("3. fresh process, temporary server: Prefect flow", []).append(
                    time.perf_counter() - started
                )

        for n in range(0 if args.no_server_start else max(2, args.repeat // 2)):
            started = time.perf_counter()
            with local_prefect_server(tmp / f"server-{n}"):
                results.setdefault(
                    "4. own prefect server, new database, all services: start to healthy", []
                ).append(time.perf_counter() - started)
            # The demo's way: the first start keeps the template, the others copy it.
            started = time.perf_counter()
            with prefect_server(
                tmp / f"lean-{n}", lean=True, template_cache=tmp / "template"
            ) as server:
                server.wait_ready()
                label = "4. own prefect server, " + (
                    "lean, new database (keeps the template)"
                    if n == 0
                    else "lean, from the template (the demo's way)"
                )
                results.setdefault(label, []).append(time.perf_counter() - started)

        if not args.no_demo:
            for n in range(3):
                started, cpu = time.perf_counter(), children_cpu()
                subprocess.run(
                    [
                        str(Path(sys.executable).parent / "hedgewatch"),
                        "demo",
                        "--workdir",
                        str(tmp / f"demo-{n}"),
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                label = "5. hedgewatch demo (19 runs, own server), " + (
                    "first (migrates)" if n == 0 else "later (from the template)"
                )
                results.setdefault(label, []).append(time.perf_counter() - started)
                cpus.setdefault(label, []).append(children_cpu() - cpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("| measurement | median s | best s | worst s | runs | CPU s (median) |")
    print("|---|---|---|---|---|---|")
    for label, values in results.items():
        cpu_s = f"{median(cpus[label]):.2f}" if label in cpus else "–"
        print(f"{row(label, values)} {cpu_s} |")
    pairs = [
        (
            "in process, server up",
            "1. in process, server up: Prefect flow",
            "1. in process: plain functions",
        ),
        (
            "fresh process, server up",
            "2. fresh process, server up: Prefect flow",
            "2. fresh process: plain functions",
        ),
        (
            "fresh process, temporary server",
            "3. fresh process, temporary server: Prefect flow",
            "2. fresh process: plain functions",
        ),
    ]
    print()
    print("| Prefect overhead per hourly run | median s |")
    print("|---|---|")
    for name, with_prefect, plain in pairs:
        if with_prefect in results and plain in results:
            overhead = median(results[with_prefect]) - median(results[plain])
            print(f"| {name} | {overhead:+.2f} |")


if __name__ == "__main__":
    main()
