from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest

from hedgewatch.venues import CANDLE_SCHEMA, FUNDING_SCHEMA, make_exchange
from hedgewatch.venues.base import (
    Exchange,
    datetime_to_ms,
    interval_to_timedelta,
    ms_to_datetime,
)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("1m", timedelta(minutes=1)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("4h", timedelta(hours=4)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_interval_strings_parse_to_their_length(interval: str, expected: timedelta) -> None:
    assert interval_to_timedelta(interval) == expected


@pytest.mark.parametrize("interval", ["1M", "h", "0h", "1 h", "60", ""])
def test_intervals_without_a_fixed_length_are_rejected(interval: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        interval_to_timedelta(interval)


def test_milliseconds_round_trip_through_utc_datetimes() -> None:
    # The first row of the recorded spot payload: 2020-11-15 21:00 UTC.
    assert ms_to_datetime(1605474000000) == datetime(2020, 11, 15, 21, tzinfo=UTC)
    assert datetime_to_ms(datetime(2020, 11, 15, 21, tzinfo=UTC)) == 1605474000000
    plus_two = timezone(timedelta(hours=2))
    assert datetime_to_ms(datetime(2020, 11, 15, 23, tzinfo=plus_two)) == 1605474000000


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        datetime_to_ms(datetime(2020, 1, 1))


def test_schemas_use_utc_microsecond_timestamps() -> None:
    assert CANDLE_SCHEMA["open_time"] == pl.Datetime("us", "UTC")
    assert FUNDING_SCHEMA["funding_time"] == pl.Datetime("us", "UTC")


def test_factory_builds_a_client_that_satisfies_the_protocol() -> None:
    exchange = make_exchange("binance", venue="binance")
    try:
        assert isinstance(exchange, Exchange)
        assert exchange.venue == "binance"
    finally:
        exchange.close()


def test_factory_names_the_known_kinds_for_an_unknown_one() -> None:
    with pytest.raises(ValueError, match="binance, bybit, ccxt, coinbase, kraken, okx"):
        make_exchange("deribit", venue="deribit")


def test_factory_rejects_base_urls_for_unknown_markets() -> None:
    with pytest.raises(ValueError, match="futures"):
        make_exchange("binance", venue="binance", base_urls={"futures": "http://127.0.0.1:1"})
