"""Parsers and error envelopes on real recorded responses (raw_api; see SOURCES.md for which
ones are testnet or hand-written in the real shape — those are shape checks only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.venues import CANDLE_SCHEMA, FUNDING_SCHEMA
from hedgewatch.venues.bybit import BYBIT
from hedgewatch.venues.coinbase import COINBASE
from hedgewatch.venues.errors import BadResponse
from hedgewatch.venues.kraken import KRAKEN
from hedgewatch.venues.okx import OKX
from hedgewatch.venues.rest import VenueSpec, dig, parse_funding_rows, parse_rows


def load(raw_api: Path, name: str) -> Any:
    return json.loads((raw_api / name).read_text())


def candles(spec: VenueSpec, market: str, payload: Any, symbol: str, interval: str) -> Any:
    endpoint = spec.markets[market].candles
    rows = dig(payload, endpoint.rows_path, spec.venue, endpoint.path)
    return parse_rows(
        rows,
        endpoint.rows,
        venue=spec.venue,
        market=market,
        symbol=symbol,
        interval=interval,
        endpoint=endpoint.path,
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_kraken_hourly_ohlc_real_response(raw_api: Path) -> None:
    payload = load(raw_api, "kraken_0_public_OHLC_XXBTZUSD_60.json")

    frame = candles(KRAKEN, "spot", payload, "XXBTZUSD", "1h")

    assert frame.schema == CANDLE_SCHEMA
    assert frame.height == 720  # the venue's whole history for this interval
    assert frame["open_time"][0] == utc(2020, 11, 5, 18)
    assert frame["open_time"].diff().drop_nulls().dt.total_hours().unique().to_list() == [1]
    first = frame.row(0, named=True)
    # [1604599200,"15050.0","15100.0","14874.9","14954.7","14964.5","616.14350768",2504]
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        15050.0,
        15100.0,
        14874.9,
        14954.7,
    )
    assert first["volume"] == pytest.approx(616.14350768)  # not the vwap in field 5
    assert first["trades"] == 2504
    # `last` is the newest committed candle: the row after it is the open one.
    assert datetime.fromtimestamp(payload["result"]["last"], UTC) == frame["open_time"][-2]


@pytest.mark.parametrize(
    ("name", "pair", "rows"),
    [
        ("kraken_0_public_OHLC_XXBTZEUR_1440.json", "XXBTZEUR", 720),
        ("kraken_0_public_OHLC_XETHZCAD_1440.json", "XETHZCAD", 720),
        ("kraken_0_public_OHLC_XTZXBT_1440.json", "XTZXBT", 658),
        ("kraken_0_public_OHLC_XXBTZEUR_1.json", "XXBTZEUR", 720),
    ],
)
def test_kraken_result_is_keyed_by_the_internal_pair_name(
    raw_api: Path, name: str, pair: str, rows: int
) -> None:
    payload = load(raw_api, name)
    assert pair in payload["result"]

    frame = candles(KRAKEN, "spot", payload, pair, "1d")

    assert frame.height == rows
    assert frame["open_time"].is_sorted()
    assert (frame["low"] <= frame["high"]).all()


def test_okx_candles_real_response_newest_first_with_confirm(raw_api: Path) -> None:
    payload = load(raw_api, "okx_api_v5_market_candles_BTC-USDT-SWAP_1m.json")

    frame = candles(OKX, "perp", payload, "BTC-USDT-SWAP", "1m").sort("open_time")

    assert frame["open_time"].to_list() == [utc(2025, 5, 12, 23, 53), utc(2025, 5, 12, 23, 54)]
    newest = frame.row(1, named=True)
    assert (newest["open"], newest["high"], newest["close"]) == (102806.1, 102820.4, 102820.4)
    assert newest["volume"] == pytest.approx(10.4037)  # volCcy (BTC), not contracts
    assert newest["quote_volume"] == pytest.approx(1069603.34883)


def test_okx_open_candle_is_dropped_by_its_confirm_flag(raw_api: Path) -> None:
    payload = load(raw_api, "okx_api_v5_market_candles_BTC-USDT-SWAP_1m.json")
    payload["data"][0][8] = "0"

    frame = candles(OKX, "perp", payload, "BTC-USDT-SWAP", "1m")

    assert frame["open_time"].to_list() == [utc(2025, 5, 12, 23, 53)]


def test_okx_funding_history_real_response(raw_api: Path) -> None:
    payload = load(raw_api, "okx_api_v5_public_funding_rate_history_BTC-USDT-SWAP.json")
    endpoint = OKX.markets["perp"].funding
    assert endpoint is not None

    frame = parse_funding_rows(
        dig(payload, endpoint.rows_path, "okx", endpoint.path),
        endpoint,
        venue="okx",
        symbol="BTC-USDT-SWAP",
    ).sort("funding_time")

    assert frame.schema == FUNDING_SCHEMA
    assert frame["funding_time"].to_list() == [utc(2023, 12, 31, 16), utc(2024, 1, 1)]
    assert frame["funding_rate"].to_list() == [-0.00002, 0.00015]  # realizedRate


def test_bybit_kline_shape_newest_first(raw_api: Path) -> None:
    # Testnet prices (a 34343 high): a check of the shape and field order only.
    payload = load(raw_api, "bybit_v5_market_kline_linear_BTCUSDT_D.json")

    frame = candles(BYBIT, "perp", payload, "BTCUSDT", "1d").sort("open_time")

    assert frame["open_time"].to_list() == [utc(2023, 9, 12), utc(2023, 9, 13), utc(2023, 9, 14)]
    assert frame.row(0, named=True)["open"] == 25155.5
    assert frame.row(0, named=True)["volume"] == pytest.approx(56642.088)
    assert frame.row(0, named=True)["quote_volume"] == pytest.approx(1469420524.0455)


def test_bybit_funding_shape(raw_api: Path) -> None:
    # Hand-written in the real shape: field names and types only.
    payload = load(raw_api, "bybit_v5_market_funding_history_linear_BTCUSDT.json")
    endpoint = BYBIT.markets["perp"].funding
    assert endpoint is not None

    frame = parse_funding_rows(
        dig(payload, endpoint.rows_path, "bybit", endpoint.path),
        endpoint,
        venue="bybit",
        symbol="BTCUSDT",
    )

    assert sorted(frame["funding_rate"].to_list()) == [0.0001, 0.00015]
    assert frame["funding_time"].max() == utc(2024, 3, 8, 8)


def test_coinbase_row_order_is_low_high_open_close(raw_api: Path) -> None:
    payload = load(raw_api, "coinbase_exchange_products_BTC-USDT_candles_3600.json")

    frame = candles(COINBASE, "spot", payload, "BTC-USDT", "1h")

    row = frame.row(0, named=True)
    assert row["open_time"] == utc(2024, 3, 13, 11)
    assert (row["open"], row["high"], row["low"], row["close"]) == (
        73243.33,
        73402.47,
        73241.5,
        73370.65,
    )
    assert row["volume"] == pytest.approx(1.56794406)


@pytest.mark.parametrize(
    ("spec", "body", "kind"),
    [
        (OKX, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}, "invalid"),
        (OKX, {"code": "50011", "msg": "Too Many Requests", "data": []}, "rate"),
        (OKX, {"code": "50026", "msg": "System error", "data": []}, "busy"),
        (BYBIT, {"retCode": 10001, "retMsg": "params error", "result": {}}, "invalid"),
        (BYBIT, {"retCode": 10006, "retMsg": "Too many visits!", "result": {}}, "rate"),
        (KRAKEN, {"error": ["EQuery:Unknown asset pair"]}, "invalid"),
        (KRAKEN, {"error": ["EAPI:Rate limit exceeded"]}, "rate"),
        (KRAKEN, {"error": ["EService:Unavailable"]}, "busy"),
    ],
)
def test_http_200_error_envelopes_are_classified(
    spec: VenueSpec, body: dict[str, Any], kind: str
) -> None:
    found = spec.envelope.error(body)
    assert found is not None and found[0] == kind


@pytest.mark.parametrize(
    ("spec", "body"),
    [
        (OKX, {"code": "0", "msg": "", "data": []}),
        (BYBIT, {"retCode": 0, "retMsg": "OK", "result": {"list": []}}),
        (KRAKEN, {"error": [], "result": {"XXBTZUSD": [], "last": 0}}),
    ],
)
def test_success_envelopes_are_not_errors(spec: VenueSpec, body: dict[str, Any]) -> None:
    assert spec.envelope.error(body) is None


def test_a_body_without_the_rows_is_a_bad_response() -> None:
    with pytest.raises(BadResponse, match=r"result\.list"):
        dig({"retCode": 0, "result": {}}, ("result", "list"), "bybit", "/v5/market/kline")
