"""The hourly compute step through a DuckDB file: hour-by-hour runs equal one full recompute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hedgewatch.fetching import VenueFetch
from hedgewatch.pipeline import compute, load
from hedgewatch.settings import Settings
from hedgewatch.storage.store import Store
from hedgewatch.venues.base import CANDLE_SCHEMA, FUNDING_SCHEMA

T0 = datetime(2022, 5, 1, tzinfo=UTC)
HOURS = 24 * 9
SYMBOLS = {"BTC": ("spot", "BTCUSDT"), "ETH": ("spot", "ETHUSDT"), "BTC-PERP": ("perp", "BTCUSDT")}
TABLES = ("pair_correlations", "hedge_metrics", "basket_metrics", "ewma_correlations")


def settings(db: Path) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": db},
            "venues": [{"name": "binance", "kind": "binance"}],
            "instruments": [
                {"id": i, "venue": "binance", "market": market, "symbol": symbol}
                for i, (market, symbol) in SYMBOLS.items()
            ],
            "hedges": [
                {
                    "name": "basis",
                    "legs": [
                        {"instrument": "BTC", "side": "long", "ratio": 2.0},
                        {"instrument": "BTC-PERP", "side": "short", "ratio": 1.8},
                    ],
                }
            ],
            "baskets": [
                {"name": "majors", "members": ["BTC", "ETH", "BTC-PERP"]},
                {"name": "slow", "members": ["BTC", "ETH", "BTC-PERP"]},
            ],
            "metrics": {
                "windows": ["6h", "24h", "3d"],
                "spearman": True,
                "ewma_halflife_hours": [3],
                "baseline_days": 1,
                "daily_baskets": ["slow"],
            },
        }
    )


def market() -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(4)
    common = rng.normal(0, 0.01, HOURS)
    rows = []
    for n, (instrument, (mkt, symbol)) in enumerate(SYMBOLS.items()):
        path = np.cumsum(common + rng.normal(0, 0.004 * (n + 1), HOURS))
        closes = 100.0 * (n + 1) * np.exp(path)
        for h in range(HOURS):
            if instrument == "ETH" and 40 <= h < 43:
                continue  # a gap in one series only
            rows.append(
                {
                    "venue": "binance",
                    "market": mkt,
                    "symbol": symbol,
                    "interval": "1h",
                    "open_time": T0 + timedelta(hours=h),
                    "open": closes[h],
                    "high": closes[h],
                    "low": closes[h],
                    "close": closes[h],
                    "volume": 1.0,
                    "quote_volume": None,
                    "trades": None,
                }
            )
    candles = pl.DataFrame(rows, schema=CANDLE_SCHEMA)
    funding = pl.DataFrame(
        [
            {
                "venue": "binance",
                "symbol": "BTCUSDT",
                "funding_time": T0 + timedelta(hours=h, milliseconds=3),
                "funding_rate": 0.0001 * ((h // 8) % 5 - 2),
                "mark_price": None,
            }
            for h in range(8, HOURS, 8)
        ],
        schema=FUNDING_SCHEMA,
    )
    return candles, funding


def fetched(candles: pl.DataFrame, funding: pl.DataFrame) -> VenueFetch:
    return VenueFetch(venue="binance", server_time=None, candles=candles, funding=funding)


def run(store: Store, conf: Settings, candles: pl.DataFrame, funding: pl.DataFrame) -> None:
    loaded = load(store, [fetched(candles, funding)], "run")
    compute(store, conf, loaded.earliest_new)


def tables(store: Store) -> dict[str, pl.DataFrame]:
    return {t: store.con.sql(f"SELECT * FROM {t} ORDER BY ALL").pl() for t in TABLES}


def assert_same(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame]) -> None:
    for name in TABLES:
        assert want[name].height > 0, name
        assert got[name].equals(want[name]), name


def test_hour_by_hour_runs_equal_one_full_recompute(tmp_path: Path) -> None:
    candles, funding = market()
    full_conf = settings(tmp_path / "full.duckdb")
    with Store.open(full_conf.storage.database) as store:
        run(store, full_conf, candles, funding)
        full = tables(store)
    step_conf = settings(tmp_path / "steps.duckdb")
    with Store.open(step_conf.storage.database) as store:
        start = T0 + timedelta(hours=HOURS - 30)
        run(
            store,
            step_conf,
            candles.filter(pl.col("open_time") < start),
            funding.filter(pl.col("funding_time") < start),
        )
        for h in range(HOURS - 30, HOURS):
            hour = T0 + timedelta(hours=h)
            run(
                store,
                step_conf,
                candles.filter(pl.col("open_time") == hour),
                funding.filter(pl.col("funding_time").dt.truncate("1h") == hour),
            )
        # Fetching the newest candles again changes nothing.
        before = tables(store)
        loaded = load(store, [fetched(candles.tail(5), funding.tail(1))], "again")
        assert loaded.earliest_new is None
        assert_same(tables(store), before)
        steps = tables(store)
    assert full["basket_metrics"]["absorption_z"].drop_nulls().len() > 0
    assert full["pair_correlations"]["spearman"].drop_nulls().len() > 0
    assert_same(steps, full)


def test_late_candle_recomputes_exactly_the_hours_it_affects(tmp_path: Path) -> None:
    candles, funding = market()
    late_hour = T0 + timedelta(hours=42)  # last hour of ETH's gap: adds the return of hour 43
    late = candles.filter(
        pl.col("symbol") == "ETHUSDT", pl.col("open_time") == late_hour - timedelta(hours=3)
    ).with_columns(pl.lit(late_hour).cast(CANDLE_SCHEMA["open_time"]).alias("open_time"))
    full_conf = settings(tmp_path / "full.duckdb")
    with Store.open(full_conf.storage.database) as store:
        run(store, full_conf, pl.concat([candles, late]), funding)
        full = tables(store)
    conf = settings(tmp_path / "late.duckdb")
    with Store.open(conf.storage.database) as store:
        run(store, conf, candles, funding)
        before = tables(store)
        loaded = load(store, [fetched(pl.concat([candles.tail(3), late]), funding.head(0))], "late")
        assert loaded.earliest_new == late_hour
        compute(store, conf, loaded.earliest_new)
        after = tables(store)
    assert_same(after, full)
    # Rows before the late hour (day, for the daily basket) are untouched; later ones changed.
    for name in TABLES:
        cut = late_hour.replace(hour=0) if name == "basket_metrics" else late_hour
        old = before[name].filter(pl.col("open_time") < cut)
        assert after[name].filter(pl.col("open_time") < cut).equals(old), name
    changed = after["basket_metrics"].filter(pl.col("open_time") >= late_hour)
    assert not changed.equals(before["basket_metrics"].filter(pl.col("open_time") >= late_hour))
