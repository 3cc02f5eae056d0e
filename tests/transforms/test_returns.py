from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hedgewatch.transforms.returns import to_log_returns, to_wide

T0 = datetime(2022, 5, 1, tzinfo=UTC)


def hours(n: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(hours=i) for i in range(n)]


def candles(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    """(instrument, hour offset from T0, close) rows."""
    return pl.DataFrame(
        {
            "instrument": [r[0] for r in rows],
            "open_time": [T0 + timedelta(hours=r[1]) for r in rows],
            "close": [r[2] for r in rows],
        },
        schema_overrides={"open_time": pl.Datetime("us", "UTC")},
    )


def returns(rows: list[tuple[str, int, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instrument": [r[0] for r in rows],
            "open_time": [T0 + timedelta(hours=r[1]) for r in rows],
            "log_return": [r[2] for r in rows],
        },
        schema={
            "instrument": pl.Utf8,
            "open_time": pl.Datetime("us", "UTC"),
            "log_return": pl.Float64,
        },
    )


def test_log_return_is_log_of_consecutive_close_ratio() -> None:
    out = to_log_returns(candles([("A", 0, 100.0), ("A", 1, 110.0), ("A", 2, 99.0)]))
    expected = returns([("A", 1, math.log(1.1)), ("A", 2, math.log(99 / 110))])
    assert_frame_equal(out, expected)


def test_gap_breaks_the_return_and_first_candle_has_none() -> None:
    out = to_log_returns(
        candles([("A", 0, 1.0), ("A", 1, 2.0), ("A", 3, 4.0), ("A", 4, 8.0), ("A", 6, 8.0)])
    )
    # Hour 3 follows a missing hour 2 and hour 6 a missing hour 5: no return across either gap.
    assert_frame_equal(out, returns([("A", 1, math.log(2)), ("A", 4, math.log(2))]))


def test_non_positive_or_nan_close_gives_null_return_never_inf() -> None:
    closes = [1.0, 0.0, 2.0, -1.0, float("nan"), 3.0, 6.0]
    out = to_log_returns(candles([("A", h, c) for h, c in enumerate(closes)]))
    expected = returns([("A", h, None) for h in range(1, 6)] + [("A", 6, math.log(2))])
    assert_frame_equal(out, expected)


def test_instruments_never_share_returns_and_output_is_sorted() -> None:
    out = to_log_returns(
        candles([("B", 1, 4.0), ("A", 1, 2.0), ("B", 0, 1.0), ("A", 0, 1.0), ("A", 2, 1.0)])
    )
    expected = returns([("A", 1, math.log(2)), ("A", 2, -math.log(2)), ("B", 1, math.log(4))])
    assert_frame_equal(out, expected)


def test_other_columns_are_ignored() -> None:
    frame = candles([("A", 0, 1.0), ("A", 1, 2.0)]).with_columns(
        pl.lit("binance").alias("venue"), pl.lit(3.0).alias("volume")
    )
    assert to_log_returns(frame).columns == ["instrument", "open_time", "log_return"]


def test_duplicate_candles_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        to_log_returns(candles([("A", 0, 1.0), ("A", 0, 2.0)]))


def test_naive_timestamps_are_rejected() -> None:
    frame = candles([("A", 0, 1.0)]).with_columns(pl.col("open_time").dt.replace_time_zone(None))
    with pytest.raises(ValueError, match="time-zone aware"):
        to_log_returns(frame)


def test_other_time_zones_and_units_are_normalised_to_utc_us() -> None:
    frame = candles([("A", 0, 1.0), ("A", 1, 2.0)]).with_columns(
        pl.col("open_time").dt.cast_time_unit("ms").dt.convert_time_zone("Asia/Tokyo")
    )
    assert_frame_equal(to_log_returns(frame), returns([("A", 1, math.log(2))]))


def test_since_keeps_later_rows_and_still_uses_the_candle_before() -> None:
    frame = candles([("A", h, float(h + 1)) for h in range(5)])
    out = to_log_returns(frame, since=T0 + timedelta(hours=3))
    assert_frame_equal(out, returns([("A", 3, math.log(4 / 3)), ("A", 4, math.log(5 / 4))]))


def test_since_must_be_time_zone_aware() -> None:
    with pytest.raises(ValueError, match="since"):
        to_log_returns(candles([("A", 0, 1.0)]), since=datetime(2022, 5, 1))


@settings(max_examples=40, deadline=None)
@given(
    log_scale=st.floats(min_value=-8.0, max_value=5.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_returns_do_not_depend_on_the_price_level(log_scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    closes = np.exp(np.cumsum(rng.normal(0, 0.02, 50)))
    base = to_log_returns(candles([("A", i, float(c)) for i, c in enumerate(closes)]))
    scaled = to_log_returns(
        candles([("A", i, float(c * 10.0**log_scale)) for i, c in enumerate(closes)])
    )
    np.testing.assert_allclose(scaled["log_return"], base["log_return"], rtol=0, atol=1e-14)


def test_wide_covers_every_hour_with_nulls_and_requested_column_order() -> None:
    long = returns([("A", 1, 0.1), ("B", 1, 0.2), ("A", 4, 0.4)])
    out = to_wide(long, ["B", "A", "C"])
    expected = pl.DataFrame(
        {
            "open_time": hours(4, T0 + timedelta(hours=1)),
            "B": [0.2, None, None, None],
            "A": [0.1, None, None, 0.4],
            "C": [None, None, None, None],
        },
        schema={
            "open_time": pl.Datetime("us", "UTC"),
            "B": pl.Float64,
            "A": pl.Float64,
            "C": pl.Float64,
        },
    )
    assert_frame_equal(out, expected)


def test_wide_grid_spans_all_instruments_even_unrequested_ones() -> None:
    long = returns([("A", 2, 0.1), ("Z", 0, 0.2), ("Z", 5, 0.3)])
    out = to_wide(long, ["A"])
    assert out["open_time"].to_list() == hours(6)
    assert out["A"].to_list() == [None, None, 0.1, None, None, None]


def test_wide_since_starts_at_the_first_whole_hour_not_before_since() -> None:
    long = returns([("A", h, float(h)) for h in range(6)])
    out = to_wide(long, ["A"], since=T0 + timedelta(hours=2, minutes=30))
    assert out["open_time"].to_list() == hours(3, T0 + timedelta(hours=3))
    assert out["A"].to_list() == [3.0, 4.0, 5.0]


def test_wide_of_nothing_is_an_empty_frame_with_the_columns() -> None:
    out = to_wide(returns([]), ["A", "B"])
    assert out.columns == ["open_time", "A", "B"]
    assert out.is_empty()


def test_wide_rejects_off_hour_timestamps_and_repeated_instruments() -> None:
    long = returns([("A", 0, 0.1)]).with_columns(pl.col("open_time") + timedelta(minutes=1))
    with pytest.raises(ValueError, match="whole UTC hours"):
        to_wide(long, ["A"])
    with pytest.raises(ValueError, match="unique"):
        to_wide(returns([("A", 0, 0.1)]), ["A", "A"])


def test_funding_goes_to_the_hour_it_settles_in_as_a_long_pays_it() -> None:
    from hedgewatch.transforms.returns import add_funding

    opens = [T0 + timedelta(hours=h) for h in range(10)]
    wide = pl.DataFrame({"open_time": opens, "PERP": [0.01] * 10, "SPOT": [0.01] * 10})
    funding = pl.DataFrame(
        {
            "venue": ["binance", "binance", "other"],
            "symbol": ["BTCUSDT", "BTCUSDT", "BTCUSDT"],
            # Settlements are stamped a few ms late; 08:00 closes the 07:00 candle.
            "funding_time": [
                T0 + timedelta(hours=8, milliseconds=4),
                T0 + timedelta(hours=4),
                T0 + timedelta(hours=2),
            ],
            "funding_rate": [0.0003, -0.0001, 0.5],
        }
    )
    out = add_funding(wide, funding, {"PERP": ("binance", "BTCUSDT")})
    perp = out["PERP"].to_list()
    assert perp[7] == pytest.approx(0.01 - 0.0003)
    assert perp[3] == pytest.approx(0.01 + 0.0001)
    assert [p for i, p in enumerate(perp) if i not in (3, 7)] == [0.01] * 8
    assert out["SPOT"].to_list() == [0.01] * 10


def test_daily_returns_sum_whole_days_only() -> None:
    from hedgewatch.transforms.returns import to_daily

    hours = 72
    values = np.full(hours, 0.001)
    values[30] = np.nan  # day 2 misses an hour
    wide = pl.DataFrame(
        {"open_time": [T0 + timedelta(hours=h) for h in range(hours)], "x": values}
    ).with_columns(pl.col("x").fill_nan(None))
    daily = to_daily(wide)
    assert daily["open_time"].to_list() == [T0 + timedelta(days=d) for d in range(3)]
    assert daily["x"].to_list()[0] == pytest.approx(0.024)
    assert daily["x"][1] is None
    assert daily["x"].to_list()[2] == pytest.approx(0.024)
