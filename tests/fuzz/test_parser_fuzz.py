"""Property-based fuzzing: no payload makes a venue parser, and no file makes import, raise
anything but the project's own error types (ExchangeError, CandleFileError)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hedgewatch.importing import CandleFileError, Defaults, read_checked
from hedgewatch.venues import VENUE_SPECS, ExchangeError
from hedgewatch.venues.binance import parse_funding, parse_klines

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
numbers = st.one_of(
    st.integers(min_value=-(10**22), max_value=10**22),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1", "0", "-1", "1e308", "NaN", "inf", "1709251200000", "", "x"]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
)
# Rows shaped like the real ones (lists of 6 to 12 fields, or objects with the real keys).
kline_rows = st.lists(st.lists(numbers, min_size=6, max_size=12), max_size=5)
keys = ["symbol", "fundingTime", "fundingRate", "markPrice", "ts", "t", "start", "time"]
object_rows = st.lists(st.dictionaries(st.sampled_from(keys), scalars, max_size=6), max_size=5)
payloads = st.one_of(json_values, kline_rows, object_rows)


def only_our_errors(call: Any) -> None:
    with contextlib.suppress(ExchangeError):
        call()


HUGE_KLINE = [[10**20, "1", "2", "0.5", "1.5", "3", 10**20 + 1, "0", 1, "0", "0", "0"]]


@FUZZ
@given(payloads)
@example(HUGE_KLINE)
@example([{"symbol": "BTCUSDT", "fundingTime": 10**20, "fundingRate": "0.1"}])
def test_binance_parsers(payload: Any) -> None:
    only_our_errors(
        lambda: parse_klines(payload, venue="v", market="spot", symbol="BTCUSDT", interval="1h")
    )
    only_our_errors(lambda: parse_funding(payload, venue="v"))


@pytest.mark.parametrize("kind", sorted(VENUE_SPECS))
def test_venue_spec_decoders(kind: str) -> None:
    spec = VENUE_SPECS[kind]

    @FUZZ
    @given(payloads)
    def check(payload: Any) -> None:
        for market_name, market in spec.markets.items():
            endpoint = market.candles

            def candles(endpoint: Any = endpoint, market_name: str = market_name) -> None:
                endpoint.rows.decode(
                    payload,
                    endpoint.rows_path,
                    venue="v",
                    market=market_name,
                    symbol="BTCUSDT",
                    interval="1h",
                    endpoint=endpoint.path,
                )

            only_our_errors(candles)
            if market.funding is not None:
                funding = market.funding

                def rates(funding: Any = funding) -> None:
                    funding.decode(payload, venue="v", symbol="BTCUSDT")

                only_our_errors(rates)

    check()


csv_cells = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "x", "NaN", "1e400", "-0", '"', ","]),
)


@FUZZ
@given(
    header=st.sampled_from(["ts,symbol,open,high,low,close,volume\n", "", "open_time,open\n"]),
    rows=st.lists(st.lists(csv_cells, min_size=1, max_size=12), max_size=6),
)
def test_import_reads_any_csv_or_says_why(
    tmp_path: Path, header: str, rows: list[list[str]]
) -> None:
    path = tmp_path / "binance_spot_1h_fuzz.csv"
    path.write_text(header + "".join(",".join(r) + "\n" for r in rows))
    try:
        for _ in read_checked(
            path, Defaults(symbol="BTCUSDT"), now=datetime(2026, 1, 1, tzinfo=UTC)
        ):
            pass
    except CandleFileError:
        pass


@pytest.mark.parametrize("kind", sorted(k for k, s in VENUE_SPECS.items() if s.markets))
def test_a_time_in_seconds_too_large_for_milliseconds_is_a_bad_response(kind: str) -> None:
    """Seconds within the integer bound can still overflow once scaled to milliseconds."""
    spec = VENUE_SPECS[kind]
    for market_name, market in spec.markets.items():
        endpoint = market.candles
        row = [10**15, "1", "2", "0.5", "1.5", "3", "4", "5", "6", "7", "8", "9"]
        payload: Any = {"result": {"list": [row]}, "data": [row], "candles": [row]}
        for shaped in (payload, [row]):
            only_our_errors(
                lambda shaped=shaped, endpoint=endpoint, market_name=market_name: (
                    endpoint.rows.decode(
                        shaped,
                        endpoint.rows_path,
                        venue="v",
                        market=market_name,
                        symbol="BTCUSDT",
                        interval="1h",
                        endpoint=endpoint.path,
                    )
                )
            )
