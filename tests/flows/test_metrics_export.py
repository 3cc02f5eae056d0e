"""Prometheus exposition: the gauges as printed, written to a textfile and scraped over HTTP."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.demo import write_demo_config
from hedgewatch.metrics_export import serve
from hedgewatch.settings import Settings, load_settings
from hedgewatch.storage.store import Store, reader_path


@pytest.fixture()
def database(tmp_path: Path) -> tuple[Settings, Path]:
    """Two hedges' and a basket's metrics over two days, alert states, two runs, an undelivered
    notification."""
    settings = load_settings(write_demo_config(tmp_path, "http://127.0.0.1:9"))
    path = settings.storage.database
    with Store.open(path) as store:
        con = store.con
        con.execute(
            "INSERT INTO hedge_metrics (hedge, window_hours, open_time, n_obs, correlation, beta,"
            " min_var_ratio, held_ratio, ratio_drift, effectiveness)"
            " SELECT h, w, TIMESTAMPTZ '2022-05-10 00:00:00+00' + i * INTERVAL 1 HOUR, w,"
            " -0.5 - i / 100, 0.5, 0.5, 0.8, -0.3, CASE WHEN i = 47 THEN NULL ELSE 0.55 END"
            " FROM (VALUES ('h1'), ('h2')) AS t(h), (VALUES (24), (168)) AS ws(w),"
            " range(48) AS r(i)"
        ).fetchall()
        con.execute(
            "INSERT INTO basket_metrics (basket, window_hours, open_time, n_obs, n_pairs, avg_corr)"
            " SELECT 'majors', 24, TIMESTAMPTZ '2022-05-10 00:00:00+00' + i * INTERVAL 1 HOUR,"
            " 24, 6, 0.5 + i / 100 FROM range(48) AS r(i)"
        ).fetchall()
        for rule, subject, status, severity in [
            ("decouple", "h1", "firing", "critical"),
            ("decouple", "h2", "ok", None),
            ("stress", "majors", "pending", None),
        ]:
            con.execute(
                "INSERT INTO alert_state (rule, subject, status, episode, evaluated_at, severity)"
                " VALUES ($r, $s, $st, 1, TIMESTAMPTZ '2022-05-11 23:00:00+00', $sev)",
                {"r": rule, "s": subject, "st": status, "sev": severity},
            ).fetchall()
        for run_id, hour, status in [("r1", 22, "ok"), ("r2", 23, "partial")]:
            con.execute(
                "INSERT INTO runs (run_id, started_at, finished_at, as_of, status, summary)"
                " VALUES ($id, TIMESTAMPTZ '2022-05-11 00:05:00+00' + $h * INTERVAL 1 HOUR,"
                " TIMESTAMPTZ '2022-05-11 00:05:03+00' + $h * INTERVAL 1 HOUR,"
                " TIMESTAMPTZ '2022-05-11 00:05:00+00', $st,"
                ' \'{"fetched": {"candles": 12}, "failures": ["okx: timed out"]}\')',
                {"id": run_id, "h": hour, "st": status},
            ).fetchall()
        con.execute(
            "INSERT INTO deliveries (key, channel, event_keys, created_run)"
            " VALUES ('d1|outbox', 'outbox', ['k1'], 'r2')"
        ).fetchall()
    return settings, path


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _check(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
    hedge = (("hedge", "h1"), ("window_hours", "24"))
    assert samples[("hedgewatch_hedge_correlation", hedge)] == pytest.approx(-0.97)
    assert samples[("hedgewatch_hedge_held_ratio", hedge)] == 0.8
    # The newest hour's effectiveness is unknown: left out, not exported as NaN or 0.
    assert ("hedgewatch_hedge_effectiveness", hedge) not in samples
    assert (
        samples[("hedgewatch_hedge_metric_timestamp_seconds", hedge)] == 1652310000.0
    )  # 2022-05-11 23:00 UTC
    basket = (("basket", "majors"), ("window_hours", "24"))
    assert samples[("hedgewatch_basket_avg_corr", basket)] == pytest.approx(0.97)
    assert samples[("hedgewatch_basket_n_pairs", basket)] == 6
    firing = (("rule", "decouple"), ("severity", "critical"), ("subject", "h1"))
    assert samples[("hedgewatch_alert_firing", firing)] == 1
    pending = (("rule", "stress"), ("state", "pending"), ("subject", "majors"))
    assert samples[("hedgewatch_alert_state", pending)] == 1
    assert samples[("hedgewatch_last_run_status", (("status", "partial"),))] == 1
    assert samples[("hedgewatch_last_run_status", (("status", "ok"),))] == 0
    assert samples[("hedgewatch_last_run_duration_seconds", ())] == 3.0
    assert samples[("hedgewatch_last_run_venue_failures", ())] == 1
    assert (
        samples[("hedgewatch_last_ok_run_timestamp_seconds", ())] == 1652306703.0
    )  # r1 (ok) ended 22:05:03
    assert samples[("hedgewatch_outbox_undelivered", ())] == 1
    assert all(math.isfinite(v) for v in samples.values())


def test_metrics_command_prints_and_writes_the_gauges(
    database: tuple[Settings, Path], tmp_path: Path
) -> None:
    _, path = database
    printed = CliRunner().invoke(app, ["metrics", "-d", str(path)])
    assert printed.exit_code == 0, printed.output
    _check(_samples(printed.stdout))
    textfile = tmp_path / "textfile" / "hedgewatch.prom"
    written = CliRunner().invoke(app, ["metrics", "-d", str(path), "--textfile", str(textfile)])
    assert written.exit_code == 0, written.output
    assert textfile.read_text() == printed.stdout
    assert not list(textfile.parent.glob(".*"))  # no temporary file left behind
    missing = CliRunner().invoke(app, ["metrics", "-d", str(tmp_path / "absent.duckdb")])
    assert missing.exit_code == 2 and "database not found" in missing.stderr


def test_the_http_endpoint_is_scraped_on_loopback(database: tuple[Settings, Path]) -> None:
    _, path = database
    server, thread = serve(path, 0)
    try:
        port = server.server_address[1]
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = _samples(response.text)
        _check(samples)
        assert samples[("hedgewatch_exporter_up", ())] == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_a_scrape_while_another_process_writes_serves_the_last_values_and_says_so(
    database: tuple[Settings, Path],
) -> None:
    _, path = database
    server, thread = serve(path, 0)
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/metrics"
    writer = None
    try:
        first = _samples(httpx.get(url, timeout=30).text)
        assert first[("hedgewatch_exporter_up", ())] == 1
        # Another process holds the file the exporter reads (the read snapshot; the run's own
        # file is never read) for writing — a DuckDB CLI opened without -readonly — until told.
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
                " sys.stdin.read(); con.close()",
                str(reader_path(path)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        busy = _samples(httpx.get(url, timeout=60).text)
        assert busy[("hedgewatch_exporter_up", ())] == 0
        _check(busy)  # the last good values, not an empty page
        assert writer.stdin is not None
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0
        writer = None
        assert _samples(httpx.get(url, timeout=30).text)[("hedgewatch_exporter_up", ())] == 1
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
