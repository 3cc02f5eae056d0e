"""Exchange test fixtures: the real data set, a fake clock, a running replay exchange, a client."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hedgewatch.replay import (
    ReplayExchange,
    load_candle_files,
    load_funding_files,
    make_replay,
)
from hedgewatch.venues import make_exchange
from hedgewatch.venues.base import Exchange

# Real recorded data vendored under tests/data (see its SOURCES.md).
DATA = Path(__file__).resolve().parents[1] / "data"
SPOT_BTC = DATA / "candles" / "binance_spot_1h_BTCUSDT_2024-01_2026-01.csv.gz"
SPOT_MAJORS = DATA / "candles" / "binance_spot_1h_BTC_ETH_2021-04_2023-12.csv.gz"
PERP = DATA / "candles" / "binance_usdm_perp_1h_BTC_ETH_2020-01_2024-04.csv.gz"
FUNDING = DATA / "funding" / "funding_rates_BTC_ETH_7exchanges_2020-2023.csv.gz"
RAW_API = DATA / "raw_api"

# The replay's notion of now: 30 minutes into the 2024-03-01 12:00 spot candle.
NOW = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)


def require(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            pytest.skip(f"real market data not found at {path} (see tests/data/SOURCES.md)")


class FakeClock:
    """Wall clock for tests: sleep() records the duration and moves time forward instantly."""

    def __init__(self, start: float = 1_709_294_410.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.fixture(scope="session")
def raw_api() -> Path:
    require(RAW_API)
    return RAW_API


@pytest.fixture(scope="session")
def majors_btc() -> pl.DataFrame:
    """Spot BTCUSDT 2021-04..2023-12, which has real exchange-downtime gaps."""
    require(SPOT_MAJORS)
    return load_candle_files([SPOT_MAJORS]).filter(pl.col("symbol") == "BTCUSDT")


@pytest.fixture
def replay_now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def stored_candles() -> pl.DataFrame:
    require(SPOT_BTC, PERP)
    perp = load_candle_files([PERP]).filter(pl.col("symbol").is_in(["BTCUSDT", "ETHUSDT"]))
    return pl.concat([load_candle_files([SPOT_BTC]), perp])


@pytest.fixture(scope="session")
def stored_funding() -> pl.DataFrame:
    require(FUNDING)
    return load_funding_files([FUNDING])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def replay(stored_candles: pl.DataFrame, stored_funding: pl.DataFrame) -> Iterator[ReplayExchange]:
    with ReplayExchange(stored_candles, stored_funding, now=NOW) as server:
        yield server


@pytest.fixture
def client(replay: ReplayExchange, clock: FakeClock) -> Iterator[Exchange]:
    exchange = make_exchange(
        "binance",
        venue="binance",
        base_urls=replay.base_urls,
        timeout_s=5.0,
        max_attempts=4,
        sleep=clock.sleep,
        clock=clock.time,
    )
    yield exchange
    exchange.close()


# -- every venue over the same contract ------------------------------------------------------------

VENUES = ("binance", "bybit", "okx", "coinbase", "kraken")
# The venue's own symbol for the stored Binance series (market, symbol) -> venue symbol.
VENUE_SYMBOLS: dict[str, dict[tuple[str, str], str]] = {
    "binance": {("spot", "BTCUSDT"): "BTCUSDT", ("perp", "BTCUSDT"): "BTCUSDT"},
    "bybit": {("spot", "BTCUSDT"): "BTCUSDT", ("perp", "BTCUSDT"): "BTCUSDT"},
    "okx": {("spot", "BTCUSDT"): "BTC-USDT", ("perp", "BTCUSDT"): "BTC-USDT-SWAP"},
    "coinbase": {("spot", "BTCUSDT"): "BTC-USD"},
    "kraken": {("spot", "BTCUSDT"): "XXBTZUSD"},
}


def relabel(
    venue: str, candles: pl.DataFrame, funding: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The stored Binance series under `venue`'s own symbols (real prices, venue's labels)."""
    mapping = VENUE_SYMBOLS[venue]
    parts = [
        candles.filter((pl.col("market") == market) & (pl.col("symbol") == symbol)).with_columns(
            pl.lit(own).alias("symbol")
        )
        for (market, symbol), own in mapping.items()
    ]
    perp = mapping.get(("perp", "BTCUSDT"))
    rates = funding.filter((pl.col("exchange") == "binance") & (pl.col("symbol") == "BTCUSDT"))
    rates = rates.with_columns(pl.lit(venue).alias("exchange"), pl.lit(perp or "-").alias("symbol"))
    return pl.concat(parts), rates


@dataclass
class VenueCase:
    venue: str
    replay: ReplayExchange
    client: Exchange
    clock: FakeClock
    spot: str
    perp: str | None


@contextmanager
def open_case(
    venue: str,
    candles: pl.DataFrame,
    funding: pl.DataFrame,
    clock: FakeClock,
    *,
    spec: Any = None,
    max_attempts: int = 4,
) -> Iterator[VenueCase]:
    """A replay speaking `venue` (with `spec`'s facts, when given) and that venue's client."""
    own_candles, own_funding = relabel(venue, candles, funding)
    options: dict[str, Any] = {} if spec is None else {"spec": spec}
    with make_replay(
        venue, own_candles, own_funding, now=NOW, weight_clock=clock.time, **options
    ) as server:
        exchange = make_exchange(
            venue,
            venue=venue,
            base_urls=server.base_urls,
            timeout_s=5.0,
            max_attempts=max_attempts,
            sleep=clock.sleep,
            clock=clock.time,
            **options,
        )
        symbols = VENUE_SYMBOLS[venue]
        try:
            yield VenueCase(
                venue,
                server,
                exchange,
                clock,
                symbols[("spot", "BTCUSDT")],
                symbols.get(("perp", "BTCUSDT")),
            )
        finally:
            exchange.close()


@pytest.fixture(params=VENUES)
def venue_case(
    request: pytest.FixtureRequest,
    stored_candles: pl.DataFrame,
    stored_funding: pl.DataFrame,
    clock: FakeClock,
) -> Iterator[VenueCase]:
    with open_case(request.param, stored_candles, stored_funding, clock) as case:
        yield case


@pytest.fixture
def case_for(
    stored_candles: pl.DataFrame, stored_funding: pl.DataFrame, clock: FakeClock
) -> Iterator[Callable[..., VenueCase]]:
    """Open a case for a named venue inside a test: case_for("okx", spec=...)."""
    with ExitStack() as stack:

        def opener(venue: str, **options: Any) -> VenueCase:
            return stack.enter_context(
                open_case(venue, stored_candles, stored_funding, clock, **options)
            )

        yield opener
