"""The hourly flow end to end: replay exchange → DuckDB → metrics → alerts → real peers."""

from __future__ import annotations

import email
import email.policy
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hedgewatch.demo import demo_data_dir, write_demo_config
from hedgewatch.fetching import OVERLAP
from hedgewatch.flows.hourly import hourly
from hedgewatch.replay import Fault, ReplayExchange, load_candle_files, load_funding_files
from hedgewatch.storage.store import Store

pytestmark = pytest.mark.slow

SPIKE_SEEN = datetime(2022, 5, 11, 12, 5, tzinfo=UTC)  # market stress on the majors has fired
LUNA_BROKEN = datetime(2022, 5, 13, 0, 5, tzinfo=UTC)  # the LUNA hedge has decoupled
DATA_TABLES = (
    "candles",
    "funding",
    "pair_correlations",
    "hedge_metrics",
    "basket_metrics",
    "alert_state",
    "alert_events",
    "deliveries",
    "cursors",
)


@pytest.fixture(scope="module")
def market() -> tuple[Any, Any]:
    data = demo_data_dir()
    return (
        load_candle_files(sorted(data.glob("binance_*_1h_*.csv.gz"))),
        load_funding_files(sorted(data.glob("binance_funding_*.csv.gz"))),
    )


def configure(workdir: Path, url: str, **channels: dict[str, Any]) -> Path:
    """The demo config wired to `url`, with extra channels added to every rule."""
    path = write_demo_config(workdir, url)
    config = tomllib.loads(path.read_text())
    config["channels"].update(channels)
    for rule in config["alerts"]["rules"]:
        rule["channels"] = ["outbox", *channels]
    config["venues"][0]["max_attempts"] = 2
    config["alerts"]["delivery_attempts"] = 1  # one try per run: the next run retries
    path.write_text(tomli_w.dumps(config))
    return path


def snapshot(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    with Store.open(database, read_only=True) as store:
        return {t: store.con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in DATA_TABLES}


def test_hourly_flow_fetches_computes_alerts_and_delivers(
    prefect_harness: None,
    market: tuple[Any, Any],
    tmp_path: Path,
    smtp_inbox: Any,
    webhook: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESK_SLACK_URL", webhook.url)
    candles, funding = market
    with ReplayExchange(candles, funding, now=SPIKE_SEEN) as exchange:
        config = configure(
            tmp_path,
            exchange.url,
            email={
                "kind": "smtp",
                "host": "127.0.0.1",
                "port": smtp_inbox.port,
                "security": "none",
                "sender": "hedgewatch@example.test",
                "recipients": ["desk@example.test"],
            },
            slack={"kind": "slack", "webhook_url_env": "DESK_SLACK_URL"},
        )
        first = hourly(config_path=str(config))
        exchange.set_now(LUNA_BROKEN)
        second = hourly(config_path=str(config))

    assert first.status == second.status == "ok"
    assert first.fetched["candles"] > 4000  # backfill from history_start
    # 12 series, 36 new hours each, plus the last hours every run re-reads for late corrections.
    assert second.fetched["candles"] == 12 * (36 + OVERLAP // timedelta(hours=1))
    fired = {
        (a["rule"], a["subject"]) for a in first.alerts + second.alerts if a["kind"] == "firing"
    }
    assert ("market-stress", "majors") in fired
    assert ("hedge-decoupling", "luna-vs-btc-perp") in fired

    database = tmp_path / "hedgewatch.duckdb"
    with Store.open(database, read_only=True) as store:
        pending = store.con.sql("SELECT count(*) FROM deliveries WHERE delivered_at IS NULL")
        assert pending.fetchall() == [(0,)]
        runs = store.con.sql("SELECT status FROM runs").fetchall()
        assert runs == [("ok",), ("ok",)]
        # The view that users query answers the classic question.
        corr = store.con.sql(
            "SELECT corr FROM pair_correlations WHERE a = 'BTC' AND b = 'ETH'"
            " AND window_hours = 168 AND open_time = TIMESTAMPTZ '2022-05-09 23:00:00+00'"
        ).fetchall()
        assert len(corr) == 1 and corr[0][0] > 0.8

    # One digest per channel per run that had events: two runs, two emails, two Slack posts.
    assert len(smtp_inbox.messages) == 2
    message = email.message_from_bytes(smtp_inbox.messages[-1], policy=email.policy.default)
    # The second run's digest: the subject names its first event and counts the others; the
    # body lists every one, the broken LUNA hedge among them.
    assert "firing" in message["Subject"]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and "luna-vs-btc-perp" in body.get_content()
    assert {part.get_content_type() for part in message.walk()} >= {"text/plain", "text/html"}
    assert len(webhook.payloads) == 2
    assert all("blocks" in p and p["text"] for p in webhook.payloads)
    assert webhook.url.split("/services/")[1] not in (tmp_path / "hedgewatch.toml").read_text()


def test_rerunning_the_same_hour_changes_nothing_and_sends_nothing(
    prefect_harness: None,
    market: tuple[Any, Any],
    tmp_path: Path,
    webhook: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESK_SLACK_URL", webhook.url)
    candles, funding = market
    with ReplayExchange(candles, funding, now=LUNA_BROKEN) as exchange:
        config = configure(
            tmp_path, exchange.url, slack={"kind": "slack", "webhook_url_env": "DESK_SLACK_URL"}
        )
        hourly(config_path=str(config))
        before = snapshot(tmp_path / "hedgewatch.duckdb")
        posts = len(webhook.payloads)
        again = hourly(config_path=str(config))
    # Only the overlap every run re-reads comes back, and it changes nothing.
    assert again.fetched == {"candles": 12 * (OVERLAP // timedelta(hours=1)), "funding": 0}
    assert again.alerts == []
    assert snapshot(tmp_path / "hedgewatch.duckdb") == before
    assert len(webhook.payloads) == posts


def test_failed_delivery_stays_queued_then_goes_out_exactly_once(
    prefect_harness: None,
    market: tuple[Any, Any],
    tmp_path: Path,
    webhook: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESK_SLACK_URL", webhook.url)
    candles, funding = market
    webhook.status = 503
    with ReplayExchange(candles, funding, now=LUNA_BROKEN) as exchange:
        config = configure(
            tmp_path, exchange.url, slack={"kind": "slack", "webhook_url_env": "DESK_SLACK_URL"}
        )
        first = hourly(config_path=str(config))
        assert first.deliveries["failed"] >= 1
        database = tmp_path / "hedgewatch.duckdb"
        with Store.open(database, read_only=True) as store:
            queued = store.con.sql(
                "SELECT attempts, last_error FROM deliveries WHERE channel = 'slack'"
            ).fetchall()
        assert queued and all(attempts == 1 and "503" in error for attempts, error in queued)
        assert all("secret-token-xyz" not in error for _, error in queued)

        webhook.status = 200
        second = hourly(config_path=str(config))
        third = hourly(config_path=str(config))
    assert second.deliveries["delivered"] == len(queued)
    assert third.deliveries == {"delivered": 0, "failed": 0, "errors": [], "dead": []}
    assert len(webhook.payloads) == len(queued)


def test_a_failing_market_is_recorded_and_the_rest_is_stored(
    prefect_harness: None, market: tuple[Any, Any], tmp_path: Path
) -> None:
    candles, funding = market
    with ReplayExchange(candles, funding, now=SPIKE_SEEN) as exchange:
        exchange.inject(Fault("status", path_prefix="/fapi/v1/klines", code=502, count=None))
        config = configure(tmp_path, exchange.url)
        summary = hourly(config_path=str(config))
    assert summary.status == "partial"
    assert any("perp BTCUSDT candles" in f for f in summary.failures)
    with Store.open(tmp_path / "hedgewatch.duckdb", read_only=True) as store:
        markets = store.con.sql("SELECT DISTINCT market FROM candles").fetchall()
        errors = store.con.sql(
            "SELECT market, symbol FROM fetch_log WHERE error IS NOT NULL ORDER BY ALL"
        ).fetchall()
    assert markets == [("spot",)]
    assert errors == [("perp", "BTCUSDT"), ("perp", "ETHUSDT")]
