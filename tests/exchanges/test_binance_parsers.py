"""Parsers on real recorded Binance payloads (tests/data/raw_api)."""

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hedgewatch.venues.base import CANDLE_SCHEMA, FUNDING_SCHEMA
from hedgewatch.venues.binance import parse_funding, parse_klines
from hedgewatch.venues.errors import BadResponse

SPOT_FILE = "binance_api_v3_klines_BTCUSDT_1h.json"
MARK_FILES = [
    "binance_fapi_v1_markPriceKlines_BTCUSDT_1h_2020-02-23_2020-04-04.json",
    "binance_fapi_v1_markPriceKlines_BTCUSDT_1h_2022-04-24_2022-06-05.json",
    "binance_fapi_v1_markPriceKlines_BTCUSDT_1h_2022-10-08_2022-11-19.json",
    "binance_fapi_v1_markPriceKlines_ETHUSDT_1h_2020-02-23_2020-04-04.json",
    "binance_fapi_v1_markPriceKlines_ETHUSDT_1h_2022-04-24_2022-06-05.json",
    "binance_fapi_v1_markPriceKlines_ETHUSDT_1h_2022-10-08_2022-11-19.json",
]


def load(raw_api: Path, name: str) -> Any:
    path = raw_api / name
    if not path.exists():
        pytest.skip(f"recorded payload {path} not found")
    return json.loads(path.read_text())


def parse_spot(payload: Any) -> pl.DataFrame:
    return parse_klines(payload, venue="binance", market="spot", symbol="BTCUSDT", interval="1h")


def test_recorded_spot_klines_parse_into_the_candle_schema(raw_api: Path) -> None:
    frame = parse_spot(load(raw_api, SPOT_FILE))

    assert frame.schema == CANDLE_SCHEMA
    assert frame.height == 500
    first = frame.row(0, named=True)
    assert first["open_time"] == datetime(2020, 11, 15, 21, tzinfo=UTC)
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        15845.10,
        15907.80,
        15821.44,
        15848.67,
    )
    assert first["volume"] == pytest.approx(1417.820972)
    assert first["quote_volume"] == pytest.approx(22497631.13380966)
    assert first["trades"] == 27423
    assert frame["open_time"].max() == datetime(2020, 12, 6, 17, tzinfo=UTC)


def test_a_candle_missing_from_the_recording_stays_missing(raw_api: Path) -> None:
    # Binance has no 2020-11-30 06:00 candle (maintenance): 500 rows span 501 hours.
    frame = parse_spot(load(raw_api, SPOT_FILE))

    steps = frame.select(pl.col("open_time").diff().dt.total_hours()).to_series().drop_nulls()
    assert steps.value_counts().sort("open_time").rows() == [(1, 498), (2, 1)]
    assert datetime(2020, 11, 30, 6, tzinfo=UTC) not in frame["open_time"].to_list()


@pytest.mark.parametrize("name", MARK_FILES)
def test_recorded_mark_price_klines_share_the_row_format(raw_api: Path, name: str) -> None:
    payload = load(raw_api, name)
    symbol = "BTCUSDT" if "BTCUSDT" in name else "ETHUSDT"

    frame = parse_klines(payload, venue="binance", market="perp", symbol=symbol, interval="1h")

    assert frame.height == 1000
    assert frame["open_time"].is_sorted()
    assert frame["open_time"].n_unique() == 1000
    assert (frame["low"] <= frame["high"]).all()
    assert frame["open_time"][0] == datetime.fromtimestamp(payload[0][0] / 1000, tz=UTC)
    assert frame["close"][-1] == float(payload[-1][4])


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (0, "1605474000000", "open_time"),
        (2, "not-a-number", "high"),
        (4, None, "close"),
        (5, "NaN", "volume"),
        (8, "27423", "trades"),
    ],
)
def test_a_malformed_field_names_the_row_and_field(
    raw_api: Path, index: int, value: Any, field: str
) -> None:
    payload = copy.deepcopy(load(raw_api, SPOT_FILE))
    payload[7][index] = value

    with pytest.raises(BadResponse, match=f"row 7 field '{field}'") as caught:
        parse_spot(payload)

    assert caught.value.venue == "binance"
    assert "/api/v3/klines" in str(caught.value)


def test_a_short_row_is_a_bad_response(raw_api: Path) -> None:
    payload = copy.deepcopy(load(raw_api, SPOT_FILE))
    payload[3] = payload[3][:5]

    with pytest.raises(BadResponse, match="row 3: expected a list of 12 fields"):
        parse_spot(payload)


def test_an_error_body_sent_with_http_200_is_a_bad_response() -> None:
    with pytest.raises(BadResponse, match=r"error body: code -1121: Invalid symbol\."):
        parse_spot({"code": -1121, "msg": "Invalid symbol."})


def test_an_empty_page_parses_to_an_empty_frame() -> None:
    frame = parse_spot([])

    assert frame.is_empty()
    assert frame.schema == CANDLE_SCHEMA


def test_funding_rows_parse_with_blank_mark_price_as_null() -> None:
    # The documented fundingRate row (EXCHANGES.md); old settlements carry markPrice "".
    payload = [
        {
            "symbol": "BTCUSDT",
            "fundingRate": "-0.03750000",
            "fundingTime": 1570608000000,
            "markPrice": "34287.54619963",
        },
        {
            "symbol": "BTCUSDT",
            "fundingRate": "0.00010000",
            "fundingTime": 1570636800000,
            "markPrice": "",
        },
    ]

    frame = parse_funding(payload, venue="binance")

    assert frame.schema == FUNDING_SCHEMA
    assert frame["funding_time"].to_list() == [
        datetime(2019, 10, 9, 8, tzinfo=UTC),
        datetime(2019, 10, 9, 16, tzinfo=UTC),
    ]
    assert frame["funding_rate"].to_list() == [-0.0375, 0.0001]
    assert frame["mark_price"].to_list() == [34287.54619963, None]


def test_funding_row_without_a_rate_names_the_field() -> None:
    with pytest.raises(BadResponse, match="row 0 field 'fundingRate'"):
        parse_funding([{"symbol": "BTCUSDT", "fundingTime": 1570608000000}], venue="binance")
