"""Any exchange ccxt supports, as a venue (`kind = "ccxt"`, `exchange = "<ccxt id>"`).

Needs the optional extra: `pip install 'hedgewatch[ccxt]'`. Symbols are ccxt's unified ones
(`BTC/USDT`, perps `BTC/USDT:USDT`). ccxt paces requests with its own rate limiter and reports
errors as its own exceptions, which are mapped onto ours here; candles are paged with ccxt's
`fetch_ohlcv` from `since` forward and, like every venue, only closed candles are returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from hedgewatch.venues.base import (
    CANDLE_SCHEMA,
    FUNDING_SCHEMA,
    UTC_US,
    datetime_to_ms,
    empty_candles,
    empty_funding,
    interval_ms,
    ms_to_datetime,
)
from hedgewatch.venues.errors import (
    BadResponse,
    ExchangeError,
    ExchangeUnavailable,
    InvalidRequest,
    RateLimited,
)
from hedgewatch.venues.paging import FUNDING_STEP_MS, PageGuard

INSTALL_HINT = "install the optional extra: pip install 'hedgewatch[ccxt]'"


class CcxtClient:
    """An Exchange over a ccxt exchange instance (sync API)."""

    def __init__(
        self,
        *,
        venue: str,
        exchange: str | None = None,
        base_urls: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        page_size: int = 1000,
        config: Mapping[str, Any] | None = None,
        budget: Any = None,  # ccxt bounds its own requests by `timeout`
    ) -> None:
        try:
            import ccxt
        except ImportError:
            raise ValueError(
                f"venue {venue!r} uses ccxt, which is not installed; {INSTALL_HINT}"
            ) from None
        if not exchange or not hasattr(ccxt, exchange):
            raise ValueError(f"venue {venue!r}: unknown ccxt exchange {exchange!r}")
        self.venue = venue
        self._page_size = page_size
        self._ccxt = ccxt
        self._clock = clock
        self.exchange = getattr(ccxt, exchange)(
            {"enableRateLimit": True, "timeout": int(timeout_s * 1000), **(config or {})}
        )
        hosts = set((base_urls or {}).values())
        if len(hosts) > 1:
            raise ValueError("a ccxt venue takes one base URL for all its API hosts")
        if hosts:
            self.exchange.urls["api"] = _rehost(self.exchange.urls["api"], next(iter(hosts)))

    def close(self) -> None:
        closer = getattr(self.exchange, "close", None)
        if callable(closer):
            closer()

    def server_time(self) -> datetime:
        return ms_to_datetime(self._now_ms())

    def page_size(self, market: str) -> int:
        """Candles asked for per fetch_ohlcv call (the `page_size` option)."""
        return self._page_size

    @property
    def history_bars(self) -> int | None:
        return None  # ccxt does not say; the exchange answers what it has

    def fetch_candles(
        self,
        market: str,
        symbol: str,
        interval: str,
        start: datetime,
        end: datetime,
        *,
        now: datetime | None = None,
    ) -> pl.DataFrame:
        """Every closed candle with start <= open_time < end, ascending, one row per open_time."""
        step = interval_ms(interval)
        start_ms, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        now_ms = self._now_ms() if now is None else datetime_to_ms(now)
        last_open = min(end_ms - 1, now_ms - step)
        rows: dict[int, list[Any]] = {}
        since = start_ms
        guard = PageGuard(
            self.venue,
            "fetch_ohlcv",
            span_ms=last_open - start_ms,
            step_ms=step,
            page_limit=min(self._page_size, 100),  # exchanges may cap pages below page_size
        )
        while since <= last_open:
            page = self._call(
                "fetch_ohlcv", symbol, interval, since, self._page_size, {"until": last_open}
            )
            fresh = [r for r in page if since <= int(r[0]) <= last_open]
            if not fresh:
                break
            for row in fresh:
                rows[int(row[0])] = row
            since = guard.advance(since, max(int(r[0]) for r in fresh) + step)
        if not rows:
            return empty_candles()
        ordered = [rows[t] for t in sorted(rows)]
        frame = pl.DataFrame(
            {
                "open_ms": [int(r[0]) for r in ordered],
                **{
                    name: [None if r[i] is None else float(r[i]) for r in ordered]
                    for i, name in enumerate(("open", "high", "low", "close", "volume"), start=1)
                },
            },
            schema_overrides={"open_ms": pl.Int64},
        )
        return frame.select(
            pl.lit(self.venue).alias("venue"),
            pl.lit(market).alias("market"),
            pl.lit(symbol).alias("symbol"),
            pl.lit(interval).alias("interval"),
            pl.col("open_ms").cast(pl.Datetime("ms", "UTC")).cast(UTC_US).alias("open_time"),
            "open",
            "high",
            "low",
            "close",
            "volume",
            pl.lit(None, pl.Float64).alias("quote_volume"),
            pl.lit(None, pl.Int64).alias("trades"),
        ).cast(CANDLE_SCHEMA)

    def fetch_funding(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        start_ms, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        seen: dict[int, float] = {}
        since = start_ms
        # ccxt pages funding by its own limit (often 100 to 1000): the guard assumes the smallest.
        guard = PageGuard(
            self.venue,
            "fetch_funding_rate_history",
            span_ms=end_ms - start_ms,
            step_ms=FUNDING_STEP_MS,
            page_limit=100,
        )
        while since < end_ms:
            page = self._call(
                "fetch_funding_rate_history", symbol, since, None, {"until": end_ms - 1}
            )
            fresh = [r for r in page if since <= int(r["timestamp"]) < end_ms]
            if not fresh:
                break
            for row in fresh:
                seen[int(row["timestamp"])] = float(row["fundingRate"])
            since = guard.advance(since, max(seen) + 1)
        if not seen:
            return empty_funding()
        times = sorted(seen)
        return pl.DataFrame(
            {
                "venue": [self.venue] * len(times),
                "symbol": [symbol] * len(times),
                "funding_time": pl.Series(times, dtype=pl.Int64)
                .cast(pl.Datetime("ms", "UTC"))
                .cast(UTC_US),
                "funding_rate": [seen[t] for t in times],
                "mark_price": pl.Series([None] * len(times), dtype=pl.Float64),
            }
        ).cast(FUNDING_SCHEMA)

    def _now_ms(self) -> int:
        if self.exchange.has.get("fetchTime"):
            value = self._call("fetch_time")
            if isinstance(value, int | float):
                return int(value)
        return int(self._clock() * 1000)

    def _call(self, method: str, *args: Any) -> Any:
        ccxt = self._ccxt
        try:
            return getattr(self.exchange, method)(*args)
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
            raise RateLimited(self.venue, method, _short(exc)) from None
        except ccxt.NetworkError as exc:  # timeouts, unavailable, bad gateway
            raise ExchangeUnavailable(self.venue, method, _short(exc)) from None
        except (ccxt.BadSymbol, ccxt.BadRequest, ccxt.ArgumentsRequired, ccxt.NotSupported) as exc:
            raise InvalidRequest(self.venue, method, _short(exc)) from None
        except ccxt.BaseError as exc:
            raise BadResponse(self.venue, method, _short(exc)) from None


def _rehost(urls: Any, base: str) -> Any:
    """Every URL in ccxt's nested `urls["api"]` with its scheme and host replaced by `base`'s."""
    if isinstance(urls, dict):
        return {key: _rehost(value, base) for key, value in urls.items()}
    if isinstance(urls, str) and urls.startswith("http"):
        target = urlsplit(base)
        parts = urlsplit(urls)
        return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))
    return urls


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    if "?" in text:
        text = text.split("?", 1)[0] + "?…"
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["CcxtClient", "ExchangeError"]
