"""Venues in the config: every kind builds a client; markets a venue lacks are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgewatch.settings import ConfigError, load_settings
from hedgewatch.venues import EXCHANGE_KINDS, EXCHANGE_MARKETS, make_exchange

CONFIG = """
[[venues]]
name = "{name}"
kind = "{kind}"

[[instruments]]
id = "X"
venue = "{name}"
market = "{market}"
symbol = "{symbol}"
"""


def test_every_exchange_kind_declares_its_markets() -> None:
    assert set(EXCHANGE_KINDS) == set(EXCHANGE_MARKETS)


@pytest.mark.parametrize(
    ("kind", "market", "symbol"),
    [
        ("bybit", "perp", "BTCUSDT"),
        ("okx", "perp", "BTC-USDT-SWAP"),
        ("okx", "spot", "BTC-USDT"),
        ("coinbase", "spot", "BTC-USD"),
        ("kraken", "spot", "XXBTZUSD"),
    ],
)
def test_each_venue_kind_loads_and_builds(
    tmp_path: Path, kind: str, market: str, symbol: str
) -> None:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(CONFIG.format(name=f"my-{kind}", kind=kind, market=market, symbol=symbol))

    settings = load_settings(path)

    venue = settings.venues[0]
    client = make_exchange(venue.kind, venue=venue.name)
    assert client.venue == f"my-{kind}"
    client.close()


@pytest.mark.parametrize("kind", ["coinbase", "kraken"])
def test_a_perp_on_a_spot_only_venue_is_refused_naming_the_field(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(CONFIG.format(name="v", kind=kind, market="perp", symbol="BTC-USD"))

    with pytest.raises(ConfigError, match=r"instruments\.0\.market: .*spot only"):
        load_settings(path)


def test_an_unknown_kind_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(CONFIG.format(name="v", kind="ftx", market="spot", symbol="BTC-USD"))

    with pytest.raises(ConfigError, match=r"venues\.0\.kind.*'kraken'"):
        load_settings(path)
