"""Prometheus exposition: the newest hedge and basket metrics, alert states and run health as
gauges, for Grafana and Alertmanager users to chart and alert on themselves.

Two ways out, both in the Prometheus text format: a textfile written atomically after each run
(`[metrics_export] textfile`, for node_exporter's textfile collector), and an HTTP endpoint
(`hedgewatch serve --metrics-port N`, or `hedgewatch metrics --port N`) that reads the database
read-only at every scrape. May import: settings, storage, prometheus_client.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hedgewatch.storage.store import Store, StoreError

log = logging.getLogger(__name__)

PREFIX = "hedgewatch"
HEDGE_GAUGES = {
    "correlation": "Correlation of the signed leg returns over the window (a working hedge is "
    "strongly negative).",
    "beta": "Cov(r_base, r_hedge) / Var(r_hedge) over the window.",
    "min_var_ratio": "Hedge units per base unit that minimise the position's variance.",
    "held_ratio": "Hedge units per base unit actually held (config).",
    "ratio_drift": "min_var_ratio - held_ratio.",
    "effectiveness": "1 - Var(hedged) / Var(unhedged) at the held ratio.",
    "n_obs": "Hourly observations in the window.",
}
BASKET_GAUGES = {
    "avg_corr": "Mean pairwise correlation of the basket over the window.",
    "avg_corr_adj": "Mean pairwise correlation, adjusted for the window's volatility.",
    "avg_corr_baseline": "The basket's own normal mean correlation (robust baseline).",
    "avg_corr_z": "How far avg_corr is from its baseline, in robust z.",
    "absorption_ratio": "Share of the basket's variance explained by its first factor.",
    "absorption_z": "How far the absorption ratio is from its baseline, in robust z.",
    "n_pairs": "Pairs with a correlation value.",
    "n_obs": "Fewest hourly observations over the basket's pairs.",
}
ALERT_STATES = ("ok", "pending", "firing")
RUN_STATUSES = ("running", "ok", "partial", "failed")


def families(store: Store) -> list[Metric]:
    """Every gauge, read from `store` now."""
    out: list[Metric] = []
    hedges = store.query("metrics_export_hedges").to_dicts()
    out += _per_row(hedges, "hedge", HEDGE_GAUGES, "hedge")
    baskets = store.query("metrics_export_baskets").to_dicts()
    out += _per_row(baskets, "basket", BASKET_GAUGES, "basket")

    state = GaugeMetricFamily(
        f"{PREFIX}_alert_state",
        "1 for the state each (rule, subject) is in: ok, pending or firing.",
        labels=["rule", "subject", "state"],
    )
    firing = GaugeMetricFamily(
        f"{PREFIX}_alert_firing",
        "1 while the (rule, subject) alert is firing, with the severity last announced.",
        labels=["rule", "subject", "severity"],
    )
    no_data = GaugeMetricFamily(
        f"{PREFIX}_alert_no_data",
        "1 while the rule has no data for the subject.",
        labels=["rule", "subject"],
    )
    for row in store.query("metrics_export_alerts").to_dicts():
        for name in ALERT_STATES:
            state.add_metric([row["rule"], row["subject"], name], float(row["status"] == name))
        firing.add_metric(
            [row["rule"], row["subject"], row["severity"]], float(row["status"] == "firing")
        )
        no_data.add_metric([row["rule"], row["subject"]], float(bool(row["no_data"])))
    out += [state, firing, no_data]

    [run] = store.query("metrics_export_runs").to_dicts()
    status = GaugeMetricFamily(
        f"{PREFIX}_last_run_status",
        "1 for the status of the newest run (running, ok, partial, failed).",
        labels=["status"],
    )
    for name in RUN_STATUSES:
        status.add_metric([name], float(run["status"] == name))
    out.append(status)
    for key, name, text in (
        ("started_s", "last_run_start_timestamp_seconds", "When the newest run started."),
        ("finished_s", "last_run_end_timestamp_seconds", "When the newest run finished."),
        ("duration_s", "last_run_duration_seconds", "How long the newest run took."),
        ("failures", "last_run_venue_failures", "Venues that failed in the newest run."),
        ("candles", "last_run_candles", "Candles the newest run stored."),
        ("last_ok_s", "last_ok_run_timestamp_seconds", "When the newest fully ok run finished."),
        ("undelivered", "outbox_undelivered", "Notifications in the outbox not yet delivered."),
        ("runs", "runs", "Runs recorded in the database."),
    ):
        value = run[key]
        if _finite(value):
            out.append(GaugeMetricFamily(f"{PREFIX}_{name}", text, value=float(value)))
    return out


def exposition(store: Store) -> bytes:
    """The Prometheus text format of every gauge."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families(store)))
    return generate_latest(registry)


def write_textfile(database: Path, target: Path, *, timeout_s: float = 30.0) -> int:
    """Write the exposition to `target` atomically (temp file + rename); returns its size."""
    with Store.open(database, read_only=True, timeout_s=timeout_s) as store:
        text = exposition(store)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".prom.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # the textfile collector runs as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(text)


class ScrapeCollector(Collector):
    """Reads the database read-only at every scrape. While it cannot be opened (a run holds
    it), the last good gauges are served and `hedgewatch_exporter_up` is 0."""

    def __init__(self, database: Path, *, timeout_s: float = 2.0) -> None:
        self.database = database
        self.timeout_s = timeout_s
        self._last: list[Metric] = []
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        up = 1.0
        with self._lock:
            try:
                with Store.open(self.database, read_only=True, timeout_s=self.timeout_s) as store:
                    self._last = families(store)
            except StoreError as exc:
                up = 0.0
                log.warning("metrics scrape could not read the database: %s", exc)
            last = list(self._last)
        yield GaugeMetricFamily(
            f"{PREFIX}_exporter_up",
            "1 if this scrape read the database, 0 if it served the last good values.",
            value=up,
        )
        yield from last


def serve(database: Path, port: int, host: str = "127.0.0.1") -> tuple[Any, threading.Thread]:
    """Serve /metrics on host:port in a background thread; returns (server, thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(database))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread


class _Fixed(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def _per_row(
    rows: list[dict[str, Any]], what: str, gauges: dict[str, str], key: str
) -> list[Metric]:
    labels = [what, "window_hours"]
    out: list[Metric] = []
    for column, text in gauges.items():
        family = GaugeMetricFamily(f"{PREFIX}_{what}_{column}", text, labels=labels)
        for row in rows:
            if _finite(row.get(column)):
                family.add_metric([row[key], str(row["window_hours"])], float(row[column]))
        out.append(family)
    stamp = GaugeMetricFamily(
        f"{PREFIX}_{what}_metric_timestamp_seconds",
        f"Open time of the newest {what} metrics hour.",
        labels=labels,
    )
    for row in rows:
        stamp.add_metric([row[key], str(row["window_hours"])], float(row["open_time_s"]))
    out.append(stamp)
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
