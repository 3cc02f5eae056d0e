"""The offline demo: the May 2022 LUNA/UST collapse, replayed through the real pipeline.

The replay exchange serves the bundled Binance candles over HTTP on loopback; its clock steps
through the crash a day at a time and the hourly run's steps run at each step — fetching with the
Binance client, loading DuckDB, computing metrics, walking the alert state machines, filling the
outbox and publishing the read snapshot — as `hedgewatch run` runs them without a Prefect API.
With `prefect=True` each run is a Prefect flow run instead: on PREFECT_API_URL's server, else on a
`prefect server` the demo starts on loopback (its database in the demo's folder), waits for by
polling its health endpoint, and stops at the end — never on a temporary server's start-up race
(see flows/runtime.py). The default leaves Prefect out because a server the demo stops at its end
shows the user nothing afterwards, and its start-up alone took a third of a 30-second budget
(benchmarks/README.md, "The demo").
"""

from __future__ import annotations

import contextlib
import shutil
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from hedgewatch.flows.runtime import (
    api_configured,
    configured_api_url,
    prefect_server,
    quiet_prefect,
)
from hedgewatch.replay import ReplayExchange, load_candle_files, load_funding_files
from hedgewatch.storage.store import Store

HISTORY_START = datetime(2022, 4, 20, tzinfo=UTC)
FIRST_RUN = datetime(2022, 5, 5, 0, 5, tzinfo=UTC)
LAST_RUN = datetime(2022, 5, 14, 0, 5, tzinfo=UTC)


def demo_data_dir() -> Path:
    """The bundled candles (the repository's `demo/data`, installed as `hedgewatch/demo_data`)."""
    return Path(str(resources.files("hedgewatch") / "demo_data"))


def example_config() -> Path:
    """The documented example config, installed inside the package."""
    return Path(str(resources.files("hedgewatch") / "hedgewatch.example.toml"))


def write_demo_config(workdir: Path, replay_url: str) -> Path:
    """The example config, wired to the replay exchange and the demo's own folder."""
    config: dict[str, Any] = tomllib.loads(example_config().read_text(encoding="utf-8"))
    for venue in config["venues"]:
        venue["base_urls"] = {"spot": replay_url, "perp": replay_url}
    config["storage"]["database"] = str((workdir / "hedgewatch.duckdb").resolve())
    config["fetch"]["history_start"] = HISTORY_START
    config["fetch"]["clock"] = "venue"  # the replay's clock walks through May 2022
    for channel in config.get("channels", {}).values():
        if channel.get("kind") == "file":
            channel["dir"] = str((workdir / "outbox").resolve())
    path = workdir / "hedgewatch.toml"
    path.write_text(
        "# Written by `hedgewatch demo`: the example config pointed at the replay exchange.\n"
        + tomli_w.dumps(config),
        encoding="utf-8",
    )
    return path


def run_demo(
    workdir: Path = Path("var/demo"),
    step_hours: int = 24,
    echo: Callable[[str], None] = print,
    first_run: datetime = FIRST_RUN,
    last_run: datetime = LAST_RUN,
    api_url: str | None = None,
    prefect: bool = False,
) -> list[tuple[Any, ...]]:
    """Run the demo from scratch in `workdir`; returns the alert timeline rows.

    With `prefect`, each run is a flow run: on `api_url` when given, else on the Prefect server
    PREFECT_API_URL names, else on a server the demo starts for itself and stops at the end. That
    server starts while the demo loads the candles and starts the replay exchange, and is waited
    for (health endpoint) only when the first run needs it. Its database starts as a copy of a
    migrated empty one kept next to `workdir` (made by the first demo), not by running every
    migration. Without `prefect`, each run is `hedgewatch run`'s plain path: the same steps as
    functions, no server.
    """
    phases: dict[str, float] = {}
    started = time.perf_counter()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    if prefect and api_url is None and api_configured():
        api_url = configured_api_url()
    with contextlib.ExitStack() as stack:
        server = None
        if prefect and api_url is None:
            server = stack.enter_context(
                prefect_server(
                    workdir / "prefect", lean=True, template_cache=workdir.parent / ".prefect-cache"
                )
            )
        mark = time.perf_counter()
        from hedgewatch.flows.hourly import hourly, hourly_now

        data = demo_data_dir()
        candles = load_candle_files(sorted(data.glob("binance_*_1h_*.csv.gz")))
        funding = load_funding_files(sorted(data.glob("binance_funding_*.csv.gz")))
        exchange = stack.enter_context(ReplayExchange(candles, funding, now=first_run))
        config = write_demo_config(workdir, exchange.url)
        phases["load candles, start the replay exchange"] = time.perf_counter() - mark
        echo(
            f"hedgewatch demo: replaying Binance {first_run:%Y-%m-%d} → {last_run:%Y-%m-%d} "
            f"(LUNA/UST collapse), a run every {step_hours} h"
        )
        if server is not None:
            mark = time.perf_counter()
            ready = server.wait_ready()
            phases["wait for the Prefect server"] = time.perf_counter() - mark
            api_url = server.api_url
            echo(
                f"Prefect server on {api_url.removesuffix('/api')} "
                f"(ready {ready:.1f} s after its start; stopped at the end)"
            )
        if prefect:
            assert api_url is not None
            stack.enter_context(quiet_prefect(api_url=api_url))
        else:
            echo("each run calls the flow's steps as plain functions (no Prefect server)")
        echo(f"replay exchange on {exchange.url}; config {config}")
        mark = time.perf_counter()
        now = first_run
        runs = 0
        while now <= last_run:
            exchange.set_now(now)
            summary = hourly(config_path=str(config)) if prefect else hourly_now(str(config))
            runs += 1
            fired = sum(1 for a in summary.alerts if a["kind"] == "firing")
            echo(
                f"  run at {now:%Y-%m-%d %H:%M} UTC: "
                f"{summary.fetched.get('candles', 0):>5} candles, "
                f"{summary.computed.get('hours_evaluated', 0):>2} hours evaluated, "
                f"{len(summary.alerts)} alert events ({fired} firing), "
                f"{summary.deliveries.get('delivered', 0)} notifications"
                + (f", {len(summary.failures)} failures" if summary.failures else "")
            )
            now += timedelta(hours=step_hours)
        phases[f"{runs} {'flow ' if prefect else ''}runs"] = time.perf_counter() - mark
        mark = time.perf_counter()
    if server is not None:
        phases["stop the Prefect server"] = time.perf_counter() - mark
    database = workdir / "hedgewatch.duckdb"
    with Store.open(database, read_only=True) as store:
        timeline = store.demo_timeline()
        counts = store.demo_counts()
    echo("")
    echo("Alert timeline (hour of the candle that triggered it, UTC):")
    if not timeline:
        echo("  (no alerts)")
    for ts, kind, rule, subject, value, threshold, direction in timeline:
        above = direction == "above"
        relation = ">" if (kind != "resolved") == above else "<"
        echo(
            f"  {ts:%Y-%m-%d %H:%M}  {kind.upper():<9} {rule:<19} {subject:<18} "
            f"{value:+.3f} {relation} {threshold:+.2f}"
        )
    outbox = workdir / "outbox"
    files = sorted(outbox.glob("*")) if outbox.exists() else []
    echo("")
    echo(
        f"Stored {counts[0]} candles, {counts[1]} hedge and {counts[2]} basket metric rows; "
        f"{counts[3]} notifications delivered."
    )
    echo(
        f"Outbox: {outbox} ({len(files)} files: digest .md, email .email.txt/.email.html, "
        "Slack .slack.json)"
    )
    echo(f'Ask it: hedgewatch query -d {database} "select * from hedge_status"')
    echo(
        f"Demo finished in {time.perf_counter() - started:.1f} s ("
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
        + ")."
    )
    return timeline
