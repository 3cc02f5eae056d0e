"""The evaluate step on a real DuckDB file: no data made visible, staleness against the venue's
clock with fetch errors from fetch_log, and a retried run that repeats nothing."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from hedgewatch import pipeline
from hedgewatch.settings import Settings, load_settings
from hedgewatch.storage.store import Store
from hedgewatch.venues.base import CANDLE_SCHEMA

T0 = datetime(2022, 5, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)


def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(
        textwrap.dedent(
            """
            [storage]
            database = "hw.duckdb"
            [[venues]]
            name = "binance"
            kind = "binance"
            [[instruments]]
            id = "BTC"
            venue = "binance"
            symbol = "BTCUSDT"
            [[instruments]]
            id = "ETH"
            venue = "binance"
            symbol = "ETHUSDT"
            [[baskets]]
            name = "majors"
            members = ["BTC", "ETH"]
            [metrics]
            windows = ["24h"]
            [alerts]
            catch_up_hours = 48
            sparkline_hours = 6
            [[alerts.rules]]
            name = "spike"
            kind = "correlation_spike"
            fire_above = 0.9
            clear_below = 0.8
            min_obs = 12
            [[alerts.rules]]
            name = "stale"
            kind = "data_staleness"
            fire_above = 2
            clear_below = 1
            critical_at = 6
            min_obs = 1
            [[alerts.rules]]
            name = "fetch-errors"
            kind = "data_staleness"
            metric = "fetch_errors"
            fire_above = 2.5
            clear_below = 0.5
            min_obs = 1
            [channels.outbox]
            kind = "file"
            dir = "outbox"
            """
        )
    )
    return load_settings(path)


def candles(symbol: str, hours: range) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "venue": "binance",
                "market": "spot",
                "symbol": symbol,
                "interval": "1h",
                "open_time": T0 + h * HOUR,
                "open": 1.0,
                "high": 1.0,
                "low": 1.0,
                "close": 1.0 + h,
                "volume": 1.0,
                "quote_volume": None,
                "trades": None,
            }
            for h in hours
        ],
        schema=CANDLE_SCHEMA,
    )


def baskets(values: list[float | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "basket": ["majors"] * len(values),
            "window_hours": [24] * len(values),
            "open_time": [T0 + h * HOUR for h in range(len(values))],
            "n_obs": [24] * len(values),
            "n_pairs": [1] * len(values),
            "avg_corr": values,
        },
        schema_overrides={"open_time": pl.Datetime("us", "UTC")},
    )


def fetch_log(store: Store, errors: list[str | None]) -> None:
    store.log_fetches(
        [
            {
                "run_id": f"r{n}",
                "venue": "binance",
                "market": "spot",
                "symbol": "ETHUSDT",
                "dataset": "candles",
                "start_time": T0 + n * HOUR,
                "end_time": T0 + (n + 1) * HOUR,
                "rows": 0,
                "error": error,
            }
            for n, error in enumerate(errors)
        ]
    )


def test_no_data_is_visible_and_staleness_follows_the_venue_clock(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with Store.open(s.storage.database) as store:
        store.upsert_candles(candles("BTCUSDT", range(0, 10)))
        store.upsert_candles(candles("ETHUSDT", range(0, 4)))  # ETH stops after hour 3
        fetch_log(store, [None, "HTTP 503", "timeout", "HTTP 503"])
        with store.staged(b=baskets([0.95, 0.95, None, None])), store.transaction():
            store.con.execute("INSERT INTO basket_metrics BY NAME SELECT * FROM b").fetchall()
        venue_now = T0 + 10 * HOUR + timedelta(minutes=5)
        result = pipeline.evaluate(store, s, "run-1", {"binance": venue_now})
        status = store.con.sql(
            "SELECT rule, subject, status, no_data, severity FROM alert_status ORDER BY ALL"
        ).fetchall()
        events = store.con.sql(
            "SELECT rule, subject, kind, value, severity FROM alert_events ORDER BY ALL"
        ).fetchall()
        [(context,)] = store.con.sql(
            "SELECT context FROM alert_events WHERE rule = 'spike'"
        ).fetchall()
        again = pipeline.evaluate(store, s, "run-2", {"binance": T0 + 10 * HOUR})
    # The spike fired at hour 0, then the basket had no data: it stays firing, marked no data.
    assert ("spike", "majors", "firing", True, "warning") in status
    # At 10:05 the venue's last closed candle opened at 09:00: ETH's newest is 03:00, 6 h behind.
    assert ("stale", "ETH", "firing", False, "critical") in status
    assert ("stale", "BTC", "ok", False, None) in status
    assert ("fetch-errors", "ETH", "firing", False, "warning") in status
    assert ("stale", "ETH", "firing", 6.0, "critical") in events
    assert ("fetch-errors", "ETH", "firing", 3.0, "warning") in events
    assert ("stale", "BTC", "firing", 0.0, "warning") not in events
    # The sparkline's values travel with the event: 6 hours up to the firing hour.
    assert '"history": [null, null, null, null, null, 0.95]' in context
    assert len(result.deliveries) == 1  # one digest for the outbox channel
    assert again.events == [] and again.deliveries == []  # the same hour again changes nothing


def test_staleness_mutes_the_baskets_holding_the_instrument(tmp_path: Path) -> None:
    s = settings(tmp_path)
    rows = baskets([0.5, 0.5, 0.95, 0.95, 0.5])
    with Store.open(s.storage.database) as store:
        store.upsert_candles(candles("BTCUSDT", range(0, 10)))
        store.upsert_candles(candles("ETHUSDT", range(0, 4)))  # ETH stops after hour 3
        with store.staged(b=rows.head(2)), store.transaction():
            store.con.execute("INSERT INTO basket_metrics BY NAME SELECT * FROM b").fetchall()
        venue_now = T0 + 10 * HOUR + timedelta(minutes=5)
        first = pipeline.evaluate(store, s, "run-1", {"binance": venue_now})
        assert ("stale", "ETH", "firing") in [(e.rule, e.subject, e.kind) for e in first.events]
        # The next hours of metrics: the majors basket (which holds ETH) breaches at hour 2.
        with store.staged(b=rows.slice(2, 2)), store.transaction():
            store.con.execute("INSERT INTO basket_metrics BY NAME SELECT * FROM b").fetchall()
        second = pipeline.evaluate(store, s, "run-2", {"binance": venue_now})
        recorded = store.con.sql(
            "SELECT rule, subject, kind, silenced, json_extract_string(context, '$.muted_by')"
            " FROM alert_events WHERE rule = 'spike' ORDER BY ts"
        ).fetchall()
        status = store.con.sql(
            "SELECT status, muted_by FROM alert_status WHERE rule = 'spike'"
        ).fetchall()
        # The basket comes back under its clear threshold: the resolve of a muted alert is muted.
        with store.staged(b=rows.slice(4, 1)), store.transaction():
            store.con.execute("INSERT INTO basket_metrics BY NAME SELECT * FROM b").fetchall()
        third = pipeline.evaluate(store, s, "run-3", {"binance": venue_now})
        resolved = store.con.sql(
            "SELECT kind, silenced FROM alert_events WHERE rule = 'spike' AND kind = 'resolved'"
        ).fetchall()
    assert recorded == [("spike", "majors", "firing", True, "stale/ETH")]
    assert status == [("firing", "stale/ETH")]
    assert second.deliveries == []  # recorded, not sent
    assert resolved == [("resolved", True)] and third.deliveries == []
