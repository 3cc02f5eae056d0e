"""The operator's CLI: exit codes as a contract, read-only commands without secrets, status,
check-config's listing, dry runs, JSON logs and --version."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.replay import ReplayExchange

pytestmark = pytest.mark.slow

NOW = datetime(2022, 5, 3, 0, 5, tzinfo=UTC)
WEBHOOK = {"desk": {"kind": "webhook", "url_env": "HW_TEST_UNSET_WEBHOOK_URL"}}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def exchange(replay_market: tuple[Any, Any]) -> Iterator[ReplayExchange]:
    candles, funding = replay_market
    with ReplayExchange(candles, funding, now=NOW) as replay:
        yield replay


@pytest.fixture()
def config(tmp_path: Path, exchange: ReplayExchange, small_config: Any) -> Path:
    """A small config whose webhook channel names a variable that is not set."""
    path: Path = small_config(tmp_path, exchange.url, "2022-05-01T00:00:00Z")
    raw = tomllib.loads(path.read_text())
    raw["channels"].update(WEBHOOK)
    path.write_text(tomli_w.dumps(raw))
    return path


def run_with_secret(config: Path, *args: str) -> tuple[int, str, str]:
    return invoke(
        "run",
        "-c",
        str(config),
        *args,
        env={"HW_TEST_UNSET_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
    )


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    code, out, _ = invoke("--version")
    assert code == 0 and out.strip() == f"hedgewatch {version('hedgewatch')}"


def test_exit_codes_ok_partial_usage_busy_failure(
    config: Path, tmp_path: Path, small_config: Any
) -> None:
    code, out, err = run_with_secret(config)
    assert code == 0, err
    assert " ok: " in out

    (tmp_path / "dead").mkdir()
    dead = small_config(tmp_path / "dead", "http://127.0.0.1:9", "2022-05-01T00:00:00Z")
    code, out, err = invoke("run", "-c", str(dead))
    assert code == 4, (out, err)  # every venue failed: the run is partial
    assert " partial: " in out and "failed: binance" in err

    code, _, err = invoke("run", "-c", str(tmp_path / "missing.toml"))
    assert code == 2 and "config file not found" in err
    code, _, err = invoke("run", "-c", str(config))  # the channel's secret is not set
    assert code == 2 and "HW_TEST_UNSET_WEBHOOK_URL is not set" in err

    # A writer holding the database never blocks a query: it reads the published snapshot.
    database = tmp_path / "hedgewatch.duckdb"
    holder = hold_database(database)
    try:
        code, _, err = invoke("query", "-d", str(database), "--wait", "0.5", "select 1")
        assert code == 0, err
    finally:
        holder.kill()
        holder.wait()
    # A database with no snapshot yet is read directly: held by a writer, it is busy (exit 3).
    fresh = tmp_path / "fresh.duckdb"
    holder = hold_database(fresh)
    try:
        code, _, err = invoke("query", "-d", str(fresh), "--wait", "0.5", "select 1")
        assert code == 3 and "another hedgewatch process" in err
    finally:
        holder.kill()
        holder.wait()

    broken = tmp_path / "broken"
    raw = tomllib.loads(config.read_text())
    raw["storage"]["database"] = str(tmp_path)  # a directory: the run cannot open it
    broken.mkdir()
    (broken / "hedgewatch.toml").write_text(tomli_w.dumps(raw))
    code, _, err = run_with_secret(broken / "hedgewatch.toml")
    assert code == 1 and "run failed" in err


def hold_database(path: Path) -> subprocess.Popen[str]:
    """Another process with the database open for writing, until killed."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('open', flush=True);"
            " sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


def test_read_only_commands_need_no_secret_and_fall_back_to_the_last_runs_settings(
    config: Path, tmp_path: Path
) -> None:
    assert run_with_secret(config)[0] == 0
    database = tmp_path / "hedgewatch.duckdb"
    # The config names a secret that is not set: reading commands do not care.
    for args in (
        ["query", "-c", str(config), "select count(*) from candles"],
        ["gaps", "-c", str(config)],
        ["alerts", "list", "-c", str(config)],
        ["status", "-c", str(config)],
        ["export", "-c", str(config), str(tmp_path / "export")],
    ):
        code, out, err = invoke(*args)
        assert code == 0, (args, out, err)
    # No config at all: -d and the settings the last run stored.
    config.rename(tmp_path / "elsewhere.toml")
    for args in (
        ["alerts", "list", "-d", str(database)],
        ["report", "-d", str(database), "--out", str(tmp_path / "report.html")],
        ["backtest", "-d", str(database), "--from", "2022-05-02", "--to", "2022-05-03"],
    ):
        code, out, err = invoke(*args)
        assert code == 0, (args, out, err)
    assert (tmp_path / "report.html").stat().st_size > 1000
    code, _, err = invoke("report", "-c", str(tmp_path / "none.toml"))
    assert code == 2 and "config file not found" in err


def test_status_shows_runs_staleness_firing_and_queued(config: Path, tmp_path: Path) -> None:
    assert run_with_secret(config)[0] == 0
    code, out, err = invoke("status", "-c", str(config))
    assert code == 0, err
    for title in ("Last runs:", "Staleness", "Firing alerts:", "Undelivered notifications"):
        assert title in out
    code, out, err = invoke("status", "-d", str(tmp_path / "hedgewatch.duckdb"), "-f", "json")
    assert code == 0, err
    document = json.loads(out)
    assert set(document) >= {"runs", "staleness", "firing", "queued"}
    (newest,) = document["runs"]
    assert newest["status"] == "ok" and newest["candles"] > 0
    assert {row["symbol"] for row in document["staleness"]} >= {"BTCUSDT", "LUNAUSDT"}


def test_check_config_lists_what_it_will_watch(config: Path) -> None:
    code, out, err = invoke(
        "check-config", "-c", str(config), env={"HW_TEST_UNSET_WEBHOOK_URL": "http://x/secret-path"}
    )
    assert code == 0, err
    for title in ("Venues:", "Instruments:", "Hedges:", "Baskets:", "Rules:", "Channels:"):
        assert title in out
    assert "luna-vs-btc-perp" in out and "desk" in out and "LUNAUSDT" in out
    assert "secret-path" not in out
    code, out, _ = invoke(
        "check-config",
        "-c",
        str(config),
        "-f",
        "json",
        env={"HW_TEST_UNSET_WEBHOOK_URL": "http://x/secret-path"},
    )
    document = json.loads(out)
    assert document["ok"] and {c["name"] for c in document["channels"]} >= {"desk"}


def test_dry_run_fetches_and_computes_but_writes_and_sends_nothing(
    config: Path, tmp_path: Path, exchange: ReplayExchange
) -> None:
    assert run_with_secret(config)[0] == 0
    database = tmp_path / "hedgewatch.duckdb"
    outbox = sorted(p.name for p in (tmp_path / "outbox").glob("*"))
    before = digest(database)
    exchange.set_now(datetime(2022, 5, 4, 0, 5, tzinfo=UTC))
    try:
        code, out, err = run_with_secret(config, "--dry-run")
    finally:
        exchange.set_now(NOW)
    assert code == 0, err
    assert out.startswith("dry run: ") and "nothing was written or sent" in out
    assert " 0 candles" not in out  # it did fetch the new day
    assert digest(database) == before
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*")) == outbox


def test_log_format_json_gives_one_json_object_a_line(config: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hedgewatch",
            "--log-level",
            "info",
            "--log-format",
            "json",
            "run",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "HW_TEST_UNSET_WEBHOOK_URL": "http://127.0.0.1:9/hook",
            "PREFECT_API_URL": "",
        },
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, "an info-level run logs what it fetched"
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any("candles" in r["message"] for r in records)
