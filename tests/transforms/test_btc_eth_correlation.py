"""Rolling correlation on real Binance hourly candles (LUNA collapse week, May 2022)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hedgewatch.transforms.correlation import rolling_correlation
from hedgewatch.transforms.returns import to_log_returns, to_wide

DATA = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "candles"
    / "binance_spot_1h_BTC_ETH_2021-04_2023-12.csv.gz"
)


@pytest.fixture(scope="module")
def btc_eth_wide() -> pl.DataFrame:
    if not DATA.is_file():
        pytest.skip(f"real market data not found at {DATA}")
    raw = pl.read_csv(DATA, schema_overrides={"close": pl.Float64}).filter(
        pl.col("symbol").is_in(["BTCUSDT", "ETHUSDT"])
    )
    candles = raw.select(
        pl.col("symbol").alias("instrument"),
        pl.from_epoch("ts", "ms").dt.replace_time_zone("UTC").alias("open_time"),
        "close",
    )
    return to_wide(to_log_returns(candles), ["BTCUSDT", "ETHUSDT"])


def test_seven_day_btc_eth_correlation_on_9_may_2022_is_high_and_equals_pandas(
    btc_eth_wide: pl.DataFrame,
) -> None:
    out = rolling_correlation(btc_eth_wide, "BTCUSDT", "ETHUSDT", 168, 126)
    day = pl.col("open_time").is_between(
        datetime(2022, 5, 9, tzinfo=UTC), datetime(2022, 5, 9, 23, tzinfo=UTC)
    )
    ours = out.filter(day)
    assert ours.height == 24
    assert (ours["corr"] > 0.8).all()
    assert (ours["n_obs"] == 168).all()

    # pandas masks both series where either is missing, i.e. pairwise-complete, like ours.
    frame = btc_eth_wide.to_pandas().set_index("open_time")
    expected = frame["BTCUSDT"].rolling(168, min_periods=126).corr(frame["ETHUSDT"])
    on_day = expected.loc["2022-05-09"].to_numpy()
    np.testing.assert_allclose(ours["corr"].to_numpy(), on_day, rtol=0, atol=1e-9)
    # The gaps in the file (exchange downtime) must not shift the windows anywhere.
    whole = out["corr"].fill_null(np.nan).to_numpy()
    np.testing.assert_allclose(whole, expected.to_numpy(), rtol=0, atol=1e-9)
