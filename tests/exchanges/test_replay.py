"""The replay exchange's wire format, limits and data loading (raw HTTP, no client)."""

import gzip
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import polars as pl
import pytest

from hedgewatch.replay import ReplayExchange, load_candle_files
from hedgewatch.replay import serve as serve_module
from hedgewatch.replay.server import CLOCK_PATH

OPEN_TIME_MS = 1709294400000  # 2024-03-01 12:00 UTC, the candle open at the fixture's now (12:30)


def get(replay: ReplayExchange, path: str, **params: Any) -> httpx.Response:
    return httpx.get(replay.url + path, params=params, timeout=5)


def test_klines_rows_have_the_binance_wire_format(replay: ReplayExchange) -> None:
    rows = get(replay, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=3).json()

    assert len(rows) == 3
    for row in rows:
        assert len(row) == 12
        assert isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
        assert all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
        assert row[6] == row[0] + 3_600_000 - 1


def test_the_latest_row_is_the_open_candle_flat_at_its_open_with_volume_so_far(
    replay: ReplayExchange, stored_candles: pl.DataFrame
) -> None:
    rows = get(replay, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=2).json()
    stored = stored_candles.filter(
        (pl.col("market") == "spot") & (pl.col("open_time") == datetime(2024, 3, 1, 12, tzinfo=UTC))
    ).row(0, named=True)

    open_row = rows[-1]
    assert open_row[0] == OPEN_TIME_MS
    assert {float(v) for v in open_row[1:5]} == {stored["open"]}
    assert float(open_row[5]) == pytest.approx(stored["volume"] / 2, rel=1e-6)  # 30 of 60 minutes
    assert rows[0][0] == OPEN_TIME_MS - 3_600_000


def test_set_now_moves_what_is_visible(replay: ReplayExchange) -> None:
    replay.set_now(datetime(2024, 3, 1, 14, 5, tzinfo=UTC))

    rows = get(replay, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=1).json()
    time = get(replay, "/fapi/v1/time").json()

    assert rows[0][0] == OPEN_TIME_MS + 2 * 3_600_000
    assert time == {"serverTime": 1709301900000}


def test_start_and_end_time_are_inclusive_open_time_filters(replay: ReplayExchange) -> None:
    start = OPEN_TIME_MS - 5 * 3_600_000
    rows = get(
        replay,
        "/api/v3/klines",
        symbol="BTCUSDT",
        interval="1h",
        startTime=start,
        endTime=start + 2 * 3_600_000,
    ).json()

    assert [r[0] for r in rows] == [start, start + 3_600_000, start + 2 * 3_600_000]


@pytest.mark.parametrize(("path", "limit"), [("/api/v3/klines", 1001), ("/fapi/v1/klines", 1501)])
def test_limits_above_the_venue_maximum_are_rejected(
    replay: ReplayExchange, path: str, limit: int
) -> None:
    response = get(replay, path, symbol="BTCUSDT", interval="1h", limit=limit)

    assert response.status_code == 400
    assert response.json()["code"] == -1130


def test_used_weight_header_counts_by_endpoint_weight(replay: ReplayExchange) -> None:
    first = get(replay, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=1000)
    second = get(replay, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=1000)
    perp = get(replay, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", limit=1500)

    spot_used = int(second.headers["X-MBX-USED-WEIGHT-1M"]) - int(
        first.headers["X-MBX-USED-WEIGHT-1M"]
    )
    assert spot_used == 2
    assert int(perp.headers["X-MBX-USED-WEIGHT-1M"]) in (10, 20)  # 10 unless a minute just turned


def test_over_budget_requests_get_429_with_retry_after(stored_candles: pl.DataFrame) -> None:
    frozen = SimpleNamespace(now=1_709_294_410.0)
    with ReplayExchange(
        stored_candles,
        now=datetime(2024, 3, 1, tzinfo=UTC),
        weight_limit_per_minute=4,
        weight_clock=lambda: frozen.now,
    ) as replay:
        statuses = [
            get(replay, "/api/v3/klines", symbol="BTCUSDT", interval="1h").status_code
            for _ in range(3)
        ]
        refused = get(replay, "/api/v3/time")
        frozen.now += 60
        after_reset = get(replay, "/api/v3/time")

    assert statuses == [200, 200, 429]
    assert refused.status_code == 429 and refused.json()["code"] == -1003
    assert refused.headers["Retry-After"] == "50"
    assert after_reset.status_code == 200


def test_funding_rows_have_the_binance_wire_format(replay: ReplayExchange) -> None:
    rows = get(
        replay, "/fapi/v1/fundingRate", symbol="BTCUSDT", startTime=1577836800000, limit=2
    ).json()

    assert rows == [
        {
            "symbol": "BTCUSDT",
            "fundingTime": 1577836800000,
            "fundingRate": "-0.00012359",
            "markPrice": "",
        },
        {
            "symbol": "BTCUSDT",
            "fundingTime": 1577865600000,
            "fundingRate": "-0.00012383",
            "markPrice": "",
        },
    ]


def test_unknown_symbols_get_the_binance_error_body(replay: ReplayExchange) -> None:
    response = get(replay, "/api/v3/klines", symbol="NOPE", interval="1h")

    assert response.status_code == 400
    assert response.json() == {"code": -1121, "msg": "Invalid symbol."}


def test_loaders_infer_market_and_interval_from_the_file_name(tmp_path: Path) -> None:
    perp = tmp_path / "binance_usdm_perp_30m_sample.csv.gz"
    spot = tmp_path / "binance_spot_1h_sample.csv.gz"
    perp.write_bytes(
        gzip.compress(b"ts,symbol,open,high,low,close,volume\n0,BTCUSDT,1,2,0.5,1.5,10\n")
    )
    spot.write_bytes(
        gzip.compress(
            b"ts,symbol,open,high,low,close,volume,quote_volume,trades\n"
            b"3600000,ETHUSDT,1,2,0.5,1.5,10,15,7\n"
        )
    )

    frame = load_candle_files([perp, spot])

    assert frame.columns == [
        "market",
        "symbol",
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "interval",
    ]
    assert frame.select("market", "symbol", "interval", "quote_volume", "trades").rows() == [
        ("perp", "BTCUSDT", "30m", None, None),
        ("spot", "ETHUSDT", "1h", 15.0, 7),
    ]
    assert frame["open_time"].to_list() == [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1970, 1, 1, 1, tzinfo=UTC),
    ]


def test_funding_loader_keeps_exchange_symbol_time_and_rate(stored_funding: pl.DataFrame) -> None:
    assert stored_funding.schema == pl.Schema(
        {
            "exchange": pl.Utf8(),
            "symbol": pl.Utf8(),
            "funding_time": pl.Datetime("us", "UTC"),
            "funding_rate": pl.Float64(),
        }
    )
    assert "binance" in stored_funding["exchange"].to_list()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_moves_its_clock_and_stops_on_a_signal(tmp_path: Path, signum: int) -> None:
    data = tmp_path / "binance_spot_1h_tiny.csv.gz"
    data.write_bytes(
        gzip.compress(b"ts,symbol,open,high,low,close,volume\n0,BTCUSDT,1,2,0.5,1.5,10\n")
    )
    answers: list[Any] = []
    said: list[str] = []

    def echo(line: str) -> None:
        said.append(line)
        if line.startswith("Replay exchange at "):
            url = line.split("Replay exchange at ")[1].split()[0]
            answers.append(httpx.get(url + "/api/v3/time", timeout=5).json())
            moved = httpx.post(url + CLOCK_PATH, json={"advance_s": 7200}, timeout=5)
            answers.append(moved.json())
            answers.append(httpx.get(url + "/api/v3/time", timeout=5).json())
            bad = httpx.post(url + CLOCK_PATH, json={"now": "yesterday"}, timeout=5)
            answers.append(bad.status_code)
            # Delivered to this process while serve() waits: it must stop, not hang or die.
            threading.Timer(0.1, os.kill, (os.getpid(), signum)).start()

    serve_module.serve([data], echo=echo)

    # now defaults to the end of the last stored candle: 1970-01-01 01:00.
    assert answers == [
        {"serverTime": 3_600_000},
        {"now": "1970-01-01T03:00:00+00:00"},
        {"serverTime": 10_800_000},
        400,
    ]
    assert said[-1] == "stopped"
