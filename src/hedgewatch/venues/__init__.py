"""Venues: exchange clients behind one Protocol, built by `make_exchange`; they speak HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from hedgewatch.venues.base import CANDLE_SCHEMA, FUNDING_SCHEMA, Exchange
from hedgewatch.venues.binance import BINANCE, BinanceClient
from hedgewatch.venues.bybit import BYBIT, BybitClient
from hedgewatch.venues.ccxt_venue import CcxtClient
from hedgewatch.venues.coinbase import COINBASE, CoinbaseClient
from hedgewatch.venues.errors import (
    BadResponse,
    ExchangeError,
    ExchangeUnavailable,
    GeoBlocked,
    HistoryUnavailable,
    InvalidRequest,
    IPBanned,
    RateLimited,
)
from hedgewatch.venues.http import VenueBudget
from hedgewatch.venues.kraken import KRAKEN, KrakenClient
from hedgewatch.venues.okx import OKX, OkxClient
from hedgewatch.venues.rest import VenueSpec

__all__ = [
    "CANDLE_SCHEMA",
    "EXCHANGE_KINDS",
    "EXCHANGE_MARKETS",
    "FUNDING_SCHEMA",
    "VENUE_SPECS",
    "BadResponse",
    "Exchange",
    "ExchangeError",
    "ExchangeUnavailable",
    "GeoBlocked",
    "HistoryUnavailable",
    "IPBanned",
    "InvalidRequest",
    "RateLimited",
    "VenueBudget",
    "VenueSpec",
    "make_exchange",
]

# kind -> client class; a new REST venue is one spec module plus one entry here and in VENUE_SPECS.
EXCHANGE_KINDS: dict[str, Callable[..., Exchange]] = {
    "binance": BinanceClient,
    "bybit": BybitClient,
    "okx": OkxClient,
    "coinbase": CoinbaseClient,
    "kraken": KrakenClient,
    "ccxt": CcxtClient,
}
# Every REST venue's facts (the replay exchange serves the same specs).
VENUE_SPECS: dict[str, VenueSpec] = {
    "binance": BINANCE,
    "bybit": BYBIT,
    "okx": OKX,
    "coinbase": COINBASE,
    "kraken": KRAKEN,
}
# kind -> markets it offers (settings validate instruments against this); ccxt offers whatever
# its exchange does.
EXCHANGE_MARKETS: dict[str, tuple[str, ...]] = {
    **{kind: tuple(spec.markets) for kind, spec in VENUE_SPECS.items()},
    "ccxt": ("spot", "perp"),
}


def make_exchange(
    kind: str,
    *,
    venue: str,
    base_urls: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    max_attempts: int = 6,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> Exchange:
    """Build a client; `base_urls` overrides hosts per market ("spot", "perp"), e.g. for replay."""
    try:
        factory = EXCHANGE_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown exchange kind {kind!r}; available: {', '.join(sorted(EXCHANGE_KINDS))}"
        ) from None
    return factory(
        venue=venue,
        base_urls=base_urls,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        sleep=sleep,
        clock=clock,
        **options,
    )
