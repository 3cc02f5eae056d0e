"""What each run leaves behind — artifact, runs table — and how runs fail and heal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.fetching import OVERLAP
from hedgewatch.flows.hourly import hourly
from hedgewatch.replay import ReplayExchange
from hedgewatch.storage.store import Store

pytestmark = pytest.mark.slow

HISTORY = datetime(2022, 5, 1, tzinfo=UTC)
FIRST = datetime(2022, 5, 11, 0, 5, tzinfo=UTC)
SERIES = 12  # candle series in the demo config
# Every run also re-reads the last hours of each series it holds (late corrections).
REREAD = OVERLAP // timedelta(hours=1)


def test_missed_runs_heal_from_the_watermark(
    prefect_harness: None, replay_market: Any, small_config: Any, data_tables: Any, tmp_path: Path
) -> None:
    candles, funding = replay_market
    every_hour, skipping = tmp_path / "every", tmp_path / "skip"
    every_hour.mkdir()
    skipping.mkdir()
    with ReplayExchange(candles, funding, now=FIRST) as exchange:
        config_every = small_config(every_hour, exchange.url, HISTORY)
        config_skip = small_config(skipping, exchange.url, HISTORY)
        hourly(config_path=str(config_every))
        hourly(config_path=str(config_skip))
        for hour in range(1, 6):
            exchange.set_now(FIRST + timedelta(hours=hour))
            hourly(config_path=str(config_every))
        # Five scheduled runs were missed; the next one fetches everything since the watermark.
        healed = hourly(config_path=str(config_skip))

    assert healed.status == "ok"
    assert healed.fetched["candles"] == SERIES * (5 + REREAD)
    assert healed.computed["hours_evaluated"] == 5
    # Same candles, metrics (to 12 significant digits), alert states and events as hourly runs.
    assert data_tables(skipping / "hedgewatch.duckdb") == data_tables(
        every_hour / "hedgewatch.duckdb"
    )
    with Store.open(skipping / "hedgewatch.duckdb", read_only=True) as store:
        gaps = store.con.sql("SELECT count(*) FROM gaps").fetchall()
        runs = store.con.sql("SELECT status, candles FROM run_history").fetchall()
    assert gaps == [(0,)]
    assert runs[0] == ("ok", SERIES * (5 + REREAD))


def test_each_run_publishes_an_artifact_and_records_the_same_in_runs(
    prefect_harness: None, replay_market: Any, small_config: Any, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    candles, funding = replay_market
    with ReplayExchange(candles, funding, now=datetime(2022, 5, 11, 12, 5, tzinfo=UTC)) as exchange:
        config = small_config(
            tmp_path,
            exchange.url,
            HISTORY,
            metrics_export={"textfile": "var/metrics/hedgewatch.prom"},
        )
        state = hourly(config_path=str(config), return_state=True)
    summary = state.result()
    # The run rewrote the Prometheus textfile from what it stored.
    gauges = (tmp_path / "var" / "metrics" / "hedgewatch.prom").read_text()
    assert 'hedgewatch_last_run_status{status="ok"} 1.0' in gauges
    assert 'hedgewatch_hedge_correlation{hedge="luna-vs-btc-perp",window_hours="24"}' in gauges
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    (artifact,) = artifacts
    markdown = str(artifact.data)
    for heading in ("## Fetched", "## Metrics (newest hour)", "## Alerts"):
        assert heading in markdown
    assert "| binance | spot | LUNAUSDT | candles |" in markdown
    assert "| hedge luna-vs-btc-perp | 24h |" in markdown
    assert "hedge-effectiveness | luna-vs-btc-perp | firing" in markdown

    with Store.open(tmp_path / "hedgewatch.duckdb", read_only=True) as store:
        (row,) = store.con.sql(
            "SELECT status, candles, alert_events, delivered, summary FROM run_history"
        ).fetchall()
    status, fetched, alert_events, delivered, recorded = row
    recorded = json.loads(recorded)
    assert (status, fetched) == ("ok", summary.fetched["candles"])
    assert alert_events == len(summary.alerts) >= 1
    assert delivered == summary.deliveries["delivered"] >= 1
    assert len(recorded["series"]) == len(summary.series) == SERIES + 2  # + two funding series
    assert {m["subject"] for m in recorded["metrics"]} >= {"luna-vs-btc-perp", "majors"}
    assert recorded["gaps"] == []


def test_a_failing_run_sends_a_pipeline_failure_alert(
    prefect_harness: None,
    replay_market: Any,
    small_config: Any,
    tmp_path: Path,
    webhook: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESK_SLACK_URL", webhook.url)
    broken = tmp_path / "not-a-database"
    broken.mkdir()  # a directory where the database file should be: DuckDB cannot open it
    candles, funding = replay_market
    with ReplayExchange(candles, funding, now=FIRST) as exchange:
        config = small_config(
            tmp_path,
            exchange.url,
            HISTORY,
            channels={"slack": {"kind": "slack", "webhook_url_env": "DESK_SLACK_URL"}},
            storage={"database": str(broken)},
        )
        state = hourly(config_path=str(config), return_state=True)

    # The database cannot hold the outbox, so the hook sends directly to every channel.
    assert state.is_failed()
    outbox = sorted((tmp_path / "outbox").glob("pipeline-failure*"))
    assert outbox, "the file channel got no pipeline-failure alert"
    digest = next(p for p in outbox if p.suffix == ".md").read_text()
    assert "pipeline-failure" in digest and "hedgewatch-hourly" in digest
    assert "cannot open database" in digest
    (payload,) = webhook.payloads
    assert "pipeline-failure" in payload["text"]
    for path in outbox:
        assert "secret-token-xyz" not in path.read_text()


def test_a_failing_step_queues_the_failure_alert_in_the_outbox_exactly_once(
    prefect_harness: None,
    small_config: Any,
    tmp_path: Path,
    webhook: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect import flow

    from hedgewatch.outbox.failure import on_flow_failure

    monkeypatch.setenv("DESK_SLACK_URL", webhook.url)
    config = small_config(
        tmp_path,
        "http://127.0.0.1:9",
        HISTORY,
        channels={"slack": {"kind": "slack", "webhook_url_env": "DESK_SLACK_URL"}},
    )

    @flow(name="hedgewatch-hourly", on_failure=[on_flow_failure])
    def failing(config_path: str) -> None:
        with Store.open(tmp_path / "hedgewatch.duckdb"):
            pass  # the database works
        raise RuntimeError(f"step exploded near {webhook.url}")

    state = failing(config_path=str(config), return_state=True)
    assert state.is_failed()
    with Store.open(tmp_path / "hedgewatch.duckdb", read_only=True) as store:
        rows = store.con.sql(
            "SELECT d.channel, d.delivered_at IS NOT NULL, e.rule, e.subject, e.context"
            " FROM deliveries AS d JOIN alert_events AS e ON list_contains(d.event_keys, e.key)"
            " ORDER BY d.channel"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("outbox", True, "pipeline-failure", "hedgewatch-hourly"),
        ("slack", True, "pipeline-failure", "hedgewatch-hourly"),
    ]
    assert "step exploded" in rows[0][4] and "secret-token-xyz" not in rows[0][4]
    (payload,) = webhook.payloads
    assert "step exploded" in json.dumps(payload)
    assert "secret-token-xyz" not in json.dumps(payload)
