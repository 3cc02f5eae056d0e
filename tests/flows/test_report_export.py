"""`hedgewatch report` (one offline HTML page, checked in headless Chromium) and `export`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.demo import write_demo_config
from hedgewatch.report.html import build_report
from hedgewatch.settings import Settings, load_settings
from hedgewatch.storage.store import Store

NASTY = "</script><script>console.error('injected')</script>"
# One heatmap (majors), three hedges, the alert timeline, and three market stress charts: the
# average correlation, and what the default basket rules read (drawdown_z, corr_z).
FIGURES = 8


@pytest.fixture()
def metrics_db(tmp_path: Path) -> tuple[Settings, Path]:
    """The demo config and a database with two days of made-up metrics, alerts and a run."""
    config = write_demo_config(tmp_path, "http://127.0.0.1:9")
    settings = load_settings(config)
    database = settings.storage.database
    members = settings.baskets[0].members
    with Store.open(database) as store:
        con = store.con
        con.execute(
            "INSERT INTO hedge_metrics (hedge, window_hours, open_time, n_obs, correlation, beta,"
            " min_var_ratio, held_ratio, ratio_drift, effectiveness)"
            " SELECT h, w, TIMESTAMPTZ '2022-05-10 00:00:00+00' + i * INTERVAL 1 HOUR, w,"
            " -0.7 + 0.4 * sin(i / 6), 0.5, 0.5, 0.8, -0.3, 0.55"
            " FROM unnest($hedges) AS t(h), (VALUES (24), (168)) AS ws(w), range(48) AS r(i)",
            {"hedges": [h.name for h in settings.hedges]},
        ).fetchall()
        con.execute(
            "INSERT INTO basket_metrics (basket, window_hours, open_time, n_obs, n_pairs, avg_corr,"
            " drawdown_z, corr_z)"
            " SELECT 'majors', w, TIMESTAMPTZ '2022-05-10 00:00:00+00'"
            " + i * INTERVAL 1 HOUR, w, 28, 0.85 + 0.1 * sin(i / 5), 3 + 2 * sin(i / 7),"
            " 1 + sin(i / 9)"
            " FROM (VALUES (12), (24), (168)) AS ws(w), range(48) AS r(i)"
        ).fetchall()
        con.execute(
            "INSERT INTO pair_correlations (a, b, window_hours, open_time, n_obs, corr)"
            " SELECT a, b, w, TIMESTAMPTZ '2022-05-11 23:00:00+00', w,"
            " 0.6 + 0.03 * (length(a) + length(b))"
            " FROM unnest($m) AS x(a), unnest($m) AS y(b), (VALUES (24), (168)) AS ws(w)"
            " WHERE a < b",
            {"m": members},
        ).fetchall()
        for key, rule, subject, hour, kind in [
            ("k1", "market-stress", "majors", 10, "firing"),
            ("k2", "market-stress", "majors", 30, "resolved"),
            ("k3", "hedge-decoupling", "luna-vs-btc-perp", 40, "firing"),
            ("k4", "hedge-decoupling", NASTY, 41, "firing"),
        ]:
            con.execute(
                "INSERT INTO alert_events (key, rule, subject, ts, kind, value, threshold,"
                " severity, episode, context) VALUES ($k, $r, $s,"
                " TIMESTAMPTZ '2022-05-10 00:00:00+00' + $h * INTERVAL 1 HOUR, $kind, 0.95, 0.93,"
                " 'warning', 1, '{}')",
                {"k": key, "r": rule, "s": subject, "h": hour, "kind": kind},
            ).fetchall()
        con.execute(
            "INSERT INTO deliveries (key, channel, event_keys, created_run, attempts, last_error,"
            " delivered_at) VALUES ('d1|outbox', 'outbox', ['k1', 'k2'], 'r1', 1, NULL,"
            " TIMESTAMPTZ '2022-05-11 00:00:00+00')"
        ).fetchall()
        con.execute(
            "INSERT INTO runs (run_id, started_at, finished_at, as_of, status, summary)"
            " VALUES ('r1', TIMESTAMPTZ '2022-05-11 23:05:00+00',"
            " TIMESTAMPTZ '2022-05-11 23:05:02+00', TIMESTAMPTZ '2022-05-11 23:05:00+00', 'ok',"
            ' \'{"fetched": {"candles": 12, "funding": 0}, "gaps": [], "failures": [],'
            ' "alerts": [], "deliveries": {"delivered": 1, "failed": 0}}\')'
        ).fetchall()
    return settings, database


def test_the_report_has_every_section_and_needs_no_network(
    metrics_db: tuple[Settings, Path],
) -> None:
    settings, database = metrics_db
    html = build_report(settings, database, days=7)
    for heading in (
        "Hedge status",
        "Correlation heatmaps per basket",
        "Rolling correlation per hedge",
        "Market stress",
        "Alert timeline",
    ):
        assert f"<h2>{heading}</h2>" in html
    assert html.count("Plotly.newPlot(") == FIGURES
    rules = {rule.name: rule for rule in settings.alerts.rules}
    # A rule's thresholds are drawn on the chart of the metric it watches: the absolute level
    # on its hedge's correlation; the own-normal decoupling rule watches another metric.
    level, own = rules["hedge-decoupling-level"], rules["hedge-decoupling"]
    assert f"(24h) fires above {level.fire_threshold:+.2f}" in html
    assert f"(24h) clears below {level.clear_threshold:+.2f}" in html
    assert f"(24h) fires above {own.fire_threshold:+.2f}" not in html
    # The market-stress rule's level sits on the basket's drawdown chart.
    stress = rules["market-stress"]
    assert "fall from the window&#x27;s high" in html or "fall from the window's high" in html
    assert f"market-stress (12h) fires above {stress.fire_threshold:+.2f}" in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=", html), "the page loads something"
    assert NASTY not in html and "&lt;/script&gt;&lt;script&gt;" in html


def test_report_command_writes_the_file_and_rejects_bad_arguments(
    metrics_db: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, _ = metrics_db
    config = str(settings.source)
    out = tmp_path / "site" / "report.html"
    result = CliRunner().invoke(app, ["report", "-c", config, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not list(out.parent.glob(".*tmp"))
    result = CliRunner().invoke(app, ["report", "-c", config, "--out", str(tmp_path / "r.png")])
    assert result.exit_code == 2 and "should end in .html" in result.stderr
    missing = str(tmp_path / "absent.duckdb")
    result = CliRunner().invoke(app, ["report", "-c", config, "-d", missing])
    assert result.exit_code == 2 and "database not found" in result.stderr


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _console_lines(stderr: str) -> list[str]:
    # Chromium logs every console message and uncaught error of the page as INFO:CONSOLE.
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium_without_console_errors(
    metrics_db: tuple[Settings, Path], tmp_path: Path
) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "Chromium not installed (Debian: apt-get install chromium); .ci/run installs it"
        )
    settings, database = metrics_db
    page = tmp_path / "report.html"
    page.write_text(build_report(settings, database, days=7))

    # The check itself: a page that logs an error and throws is caught.
    broken = tmp_path / "broken.html"
    broken.write_text("<script>console.error('boom'); throw new Error('bad');</script>")
    caught = _headless(browser, tmp_path / "p0", "--dump-dom", broken.as_uri())
    assert len(_console_lines(caught.stderr)) == 2

    dom = _headless(browser, tmp_path / "p1", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_lines(dom.stderr) == []
    assert dom.stdout.count('class="main-svg"') >= FIGURES  # every chart was drawn

    shot = tmp_path / "report.png"
    screenshot = _headless(
        browser,
        tmp_path / "p2",
        "--hide-scrollbars",
        "--window-size=1280,4000",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_export_writes_every_view_and_table_as_parquet(
    metrics_db: tuple[Settings, Path], tmp_path: Path
) -> None:
    _, database = metrics_db
    out = tmp_path / "parquet"
    result = CliRunner().invoke(
        app, ["export", "--format", "parquet", str(out), "-d", str(database)]
    )
    assert result.exit_code == 0, result.stderr
    files = {p.stem: p for p in out.glob("*.parquet")}
    for name in (
        "candles",
        "returns",
        "gaps",
        "pair_correlations",
        "latest_correlations",
        "hedge_metrics",
        "hedge_status",
        "market_stress",
        "alert_history",
        "deliveries",
        "delivery_status",
        "runs",
        "run_history",
    ):
        assert name in files, name
    assert "schema_migrations" not in files and "cursors" not in files
    assert not list(out.glob(".*"))  # no temporary file left behind
    with Store.open(database, read_only=True) as store:
        for name in ("hedge_metrics", "hedge_status", "alert_history", "run_history"):
            expected = store.con.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]
            assert pl.read_parquet(files[name]).height == expected, name
    assert pl.read_parquet(files["run_history"])["candles"].to_list() == [12]


def test_export_rejects_bad_arguments(metrics_db: tuple[Settings, Path], tmp_path: Path) -> None:
    _, database = metrics_db
    result = CliRunner().invoke(
        app, ["export", "--format", "xlsx", str(tmp_path), "-d", str(database)]
    )
    assert result.exit_code == 2
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    result = CliRunner().invoke(app, ["export", str(afile), "-d", str(database)])
    assert result.exit_code == 2 and "not a directory" in result.stderr
    result = CliRunner().invoke(
        app, ["export", "--format", "csv", str(tmp_path / "csv"), "-d", str(database)]
    )
    assert result.exit_code == 0 and (tmp_path / "csv" / "hedge_status.csv").exists()
