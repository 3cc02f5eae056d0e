"""The fault matrix over HTTP, for every venue: each fault ends in complete, unique candles in
the store (or one clear error), with one log line per retry."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hedgewatch.replay import Fault
from hedgewatch.storage.store import Store
from hedgewatch.venues import VENUE_SPECS, make_exchange
from hedgewatch.venues.errors import InvalidRequest, RateLimited
from hedgewatch.venues.rest import RateLimit

H = timedelta(hours=1)
NOW = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
END = datetime(2024, 3, 1, 12, tzinfo=UTC)
CANDLES = {
    "binance": "/api/v3/klines",
    "bybit": "/v5/market/kline",
    "okx": "/api/v5/market/candles",
    "coinbase": "/products/",
    "kraken": "/0/public/OHLC",
}
# HTTP 200 bodies that carry an error: (invalid request, rate limited) per venue.
ERROR_BODIES: dict[str, tuple[Any, Any]] = {
    "okx": (
        {"code": "51001", "msg": "Instrument ID does not exist", "data": []},
        {"code": "50011", "msg": "Too Many Requests", "data": []},
    ),
    "bybit": (
        {"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {}},
        {"retCode": 10006, "retMsg": "Too many visits!", "result": {}},
    ),
    "kraken": ({"error": ["EQuery:Unknown asset pair"]}, {"error": ["EAPI:Rate limit exceeded"]}),
}


def fetch(case: Any, hours: int = 72) -> pl.DataFrame:
    return case.client.fetch_candles("spot", case.spot, "1h", END - hours * H, END)


def expected(case: Any, hours: int = 72) -> list[datetime]:
    frame = case.replay._candles.filter(
        (pl.col("market") == "spot")
        & (pl.col("symbol") == case.spot)
        & (pl.col("open_time") >= END - hours * H)
        & (pl.col("open_time") < END)
    )
    return sorted(frame["open_time"].to_list())


def stored_times(tmp_path: Path, frame: pl.DataFrame) -> list[datetime]:
    """Upsert twice through the store; what it then holds for the series."""
    with Store.open(tmp_path / "faults.duckdb") as store:
        store.upsert_candles(frame)
        store.upsert_candles(frame)
        rows = store.con.execute("SELECT open_time FROM candles ORDER BY open_time").fetchall()
    return [row[0] for row in rows]


def retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]


@pytest.fixture
def impatient(venue_case: Any) -> Iterator[Any]:
    """The venue's client with a 0.3 s read timeout, so a slow answer is a timeout."""
    with closing(
        make_exchange(
            venue_case.venue,
            venue=venue_case.venue,
            base_urls=venue_case.replay.base_urls,
            timeout_s=0.3,
            max_attempts=3,
            sleep=venue_case.clock.sleep,
            clock=venue_case.clock.time,
        )
    ) as client:
        yield dataclasses.replace(venue_case, client=client)


@pytest.mark.parametrize(
    ("fault", "log_part"),
    [
        (Fault("status", code=429, retry_after=7), "rate limited"),
        (Fault("status", code=503), "server error"),
        (Fault("status", code=502), "server error"),
        (Fault("truncate"), "not valid JSON"),
        (Fault("reset"), "connection failed"),
    ],
    ids=["429-retry-after", "503", "502", "truncated-json", "reset-mid-body"],
)
def test_a_transient_fault_is_retried_once_with_one_log_line_and_nothing_lost(
    venue_case: Any,
    fault: Fault,
    log_part: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    venue_case.replay.inject(dataclasses.replace(fault, path_prefix=CANDLES[venue_case.venue]))

    with caplog.at_level(logging.WARNING, logger="hedgewatch.venues.http"):
        frame = fetch(venue_case)

    assert stored_times(tmp_path, frame) == expected(venue_case)
    lines = retries(caplog)
    assert len(lines) == 1 and log_part in lines[0] and venue_case.venue in lines[0]
    if fault.code == 429:
        assert pytest.approx(7.0) in venue_case.clock.sleeps


def test_a_read_timeout_is_retried(
    impatient: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    impatient.replay.inject(Fault("timeout", path_prefix=CANDLES[impatient.venue], delay_s=0.6))

    with caplog.at_level(logging.WARNING, logger="hedgewatch.venues.http"):
        frame = fetch(impatient)

    assert stored_times(tmp_path, frame) == expected(impatient)
    assert ["no response within 0.3 s" in line for line in retries(caplog)] == [True]


@pytest.mark.parametrize("kind", ["duplicate", "shuffle"])
def test_duplicated_and_out_of_order_pages_store_each_candle_once(
    venue_case: Any, kind: str, tmp_path: Path
) -> None:
    hours = 700  # several pages on OKX and Coinbase, within Kraken's 720
    venue_case.replay.inject(Fault(kind, path_prefix=CANDLES[venue_case.venue], count=None))  # type: ignore[arg-type]

    frame = fetch(venue_case, hours)

    assert frame["open_time"].is_sorted() and frame["open_time"].is_unique().all()
    assert stored_times(tmp_path, frame) == expected(venue_case, hours)


def test_missing_candles_stay_missing(venue_case: Any, tmp_path: Path) -> None:
    hidden = (END - 30 * H, END - 29 * H, END - 5 * H)
    venue_case.replay.inject(
        Fault("drop_candles", path_prefix=CANDLES[venue_case.venue], count=None, open_times=hidden)
    )

    frame = fetch(venue_case)

    assert stored_times(tmp_path, frame) == [t for t in expected(venue_case) if t not in hidden]


@pytest.mark.parametrize("venue", sorted(ERROR_BODIES))
def test_http_200_with_an_error_code_is_an_error_not_data(
    venue: str, request: pytest.FixtureRequest
) -> None:
    case = _case(request, venue)
    invalid, _ = ERROR_BODIES[venue]
    case.replay.inject(Fault("status", path_prefix=CANDLES[venue], code=200, body=invalid))

    with pytest.raises(InvalidRequest, match="error body with HTTP 200") as caught:
        fetch(case)

    assert venue in str(caught.value)
    assert case.replay.statuses(CANDLES[venue]) == [200]  # not retried


@pytest.mark.parametrize("venue", sorted(ERROR_BODIES))
def test_http_200_with_a_rate_limit_code_is_retried(
    venue: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    case = _case(request, venue)
    _, limited = ERROR_BODIES[venue]
    case.replay.inject(Fault("status", path_prefix=CANDLES[venue], code=200, body=limited))

    with caplog.at_level(logging.WARNING, logger="hedgewatch.venues.http"):
        assert fetch(case)["open_time"].to_list() == expected(case)

    assert len(retries(caplog)) == 1 and "rate limited" in retries(caplog)[0]


def test_bybit_403_html_is_not_retried_and_names_the_alternative_host(
    request: pytest.FixtureRequest,
) -> None:
    case = _case(request, "bybit")
    case.replay.inject(Fault("status", path_prefix=CANDLES["bybit"], code=403))

    with pytest.raises(RateLimited, match=r"api\.bytick\.com") as caught:
        fetch(case)

    assert "403" in str(caught.value) and "?" not in str(caught.value)
    assert case.replay.statuses(CANDLES["bybit"]) == [403]


def test_okx_geo_block_names_the_regional_hosts(request: pytest.FixtureRequest) -> None:
    case = _case(request, "okx")
    case.replay.inject(Fault("status", path_prefix=CANDLES["okx"], code=451))

    with pytest.raises(Exception, match=r"us\.okx\.com"):
        fetch(case)


def test_kraken_history_beyond_720_candles_points_to_import(
    request: pytest.FixtureRequest,
) -> None:
    case = _case(request, "kraken")

    with pytest.raises(InvalidRequest, match="hedgewatch import"):
        case.client.fetch_candles("spot", case.spot, "1h", END - 2000 * H, END - 1000 * H)


def test_okx_switches_to_history_candles_for_old_windows(request: pytest.FixtureRequest) -> None:
    case = _case(request, "okx")

    frame = fetch(case, 2000)

    assert frame["open_time"].to_list() == expected(case, 2000)
    paths = {r.path for r in case.replay.requests}
    assert {"/api/v5/market/candles", "/api/v5/market/history-candles"} <= paths


def scaled(spec: Any, budget: int, window_s: float) -> Any:
    """The venue's spec with every rate budget scaled down, so a short test must wait."""
    limits = {name: RateLimit(budget, window_s) for name in spec.limits}
    return dataclasses.replace(spec, limits=limits)


# Binance's weighted per-minute budget has its own tests (test_exchange_faults).
@pytest.mark.parametrize("venue", sorted(set(VENUE_SPECS) - {"binance"}))
def test_concurrent_fetches_under_a_small_budget_wait_instead_of_hitting_the_limit(
    venue: str, case_for: Any
) -> None:
    case = case_for(venue, spec=scaled(VENUE_SPECS[venue], budget=2, window_s=1.0))
    hours = 700

    with ThreadPoolExecutor(max_workers=4) as pool:
        frames = list(pool.map(lambda _: fetch(case, hours), range(4)))

    assert all(f["open_time"].to_list() == expected(case, hours) for f in frames)
    assert case.replay.over_budget == 0
    assert not {403, 429} & set(case.replay.statuses())
    assert case.clock.sleeps  # the budget did bind: the client waited for the next window


def test_binance_budget_is_respected_under_concurrency(case_for: Any) -> None:
    case = case_for("binance")
    case.replay._weight_limit = 10  # the server's budget per minute, scaled down
    for http in case.client._http.values():
        http.limiter.budget = 10

    with ThreadPoolExecutor(max_workers=4) as pool:
        frames = list(pool.map(lambda _: fetch(case, 3000), range(4)))

    assert all(f["open_time"].to_list() == expected(case, 3000) for f in frames)
    assert 429 not in case.replay.statuses()
    assert case.clock.sleeps


def _case(request: pytest.FixtureRequest, venue: str) -> Any:
    return request.getfixturevalue("case_for")(venue)
