from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hedgewatch.alerts.rules import parse_window
from hedgewatch.cli import app
from hedgewatch.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "hedgewatch.example.toml"

MINIMAL = """
[[venues]]
name = "binance"
kind = "binance"

[[instruments]]
id = "BTC"
venue = "binance"
symbol = "BTCUSDT"

[[instruments]]
id = "ETH-PERP"
venue = "binance"
market = "perp"
symbol = "ETHUSDT"

[[hedges]]
name = "btc-eth"
legs = [
    { instrument = "BTC", side = "long" },
    { instrument = "ETH-PERP", side = "short", ratio = 0.8 },
]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid_and_complete() -> None:
    settings = load_settings(EXAMPLE)
    assert {h.name for h in settings.hedges} >= {"luna-vs-btc-perp", "btc-vs-btcdown"}
    assert settings.metrics.window_hours == [12, 24, 168]
    assert settings.storage.database == (ROOT / "var" / "hedgewatch.duckdb").resolve()


def test_hedge_spec_carries_sides_and_held_ratio(tmp_path: Path) -> None:
    spec = load_settings(write(tmp_path, MINIMAL)).hedges[0].spec()
    assert (spec.base, spec.hedge, spec.base_side, spec.hedge_side) == ("BTC", "ETH-PERP", 1, -1)
    assert spec.held_ratio == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ('\n[metrics]\nwindows = ["24 hours"]\n', "metrics.windows"),
        ("\n[metrics]\nmin_coverage = 1.5\n", "metrics.min_coverage"),
        (
            '\n[[instruments]]\nid = "X"\nvenue = "nowhere"\nsymbol = "XUSDT"\n',
            "instruments.2.venue",
        ),
        ("\n[fetch]\nmax_workers = 0\n", "fetch.max_workers"),
        ("\n[storage]\nunknown_key = 1\n", "storage.unknown_key"),
    ],
)
def test_bad_value_names_file_and_field(tmp_path: Path, patch: str, field: str) -> None:
    path = write(tmp_path, MINIMAL + patch)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message


def test_hedge_leg_must_name_a_configured_instrument(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('instrument = "ETH-PERP"', 'instrument = "DOGE"'))
    with pytest.raises(
        ConfigError, match=r"hedges\.0\.legs\.1\.instrument: unknown instrument 'DOGE'"
    ):
        load_settings(path)


def test_rule_must_use_a_configured_window_and_channel(tmp_path: Path) -> None:
    rule = """
[[alerts.rules]]
name = "decoupling"
kind = "hedge_decoupling"
window = "3d"
fire_above = -0.3
clear_below = -0.5
channels = ["outbox"]
"""
    with pytest.raises(ConfigError, match=r"alerts\.rules\.0\.window"):
        load_settings(write(tmp_path, MINIMAL + rule))
    fixed = rule.replace('"3d"', '"24h"')
    with pytest.raises(ConfigError, match=r"alerts\.rules\.0\.channels: unknown channel 'outbox'"):
        load_settings(write(tmp_path, MINIMAL + fixed))


def test_secrets_come_from_the_environment_only(tmp_path: Path) -> None:
    channel = """
[channels.desk]
kind = "slack"
webhook_url_env = "DESK_SLACK_URL"
"""
    path = write(tmp_path, MINIMAL + channel)
    secret = "https://hooks.example.test/services/T000/B000/very-secret-token"
    settings = load_settings(path, env={"DESK_SLACK_URL": secret})
    assert settings.channels["desk"].webhook_url.get_secret_value() == secret  # type: ignore[union-attr]
    assert secret not in repr(settings)
    assert secret not in settings.model_dump_json()

    with pytest.raises(ConfigError, match="environment variable DESK_SLACK_URL is not set") as info:
        load_settings(path, env={})
    assert secret not in str(info.value)


def test_literal_secret_in_file_is_refused(tmp_path: Path) -> None:
    channel = '\n[channels.desk]\nkind = "slack"\nwebhook_url = "https://hooks.example.test/x"\n'
    with pytest.raises(ConfigError, match="secrets do not belong in the config file") as info:
        load_settings(write(tmp_path, MINIMAL + channel))
    assert "hooks.example.test" not in str(info.value)


def test_missing_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[[venues]\n"))


def test_parse_window() -> None:
    assert parse_window("24h") == 24
    assert parse_window("7d") == 168
    with pytest.raises(ValueError):
        parse_window("0h")


def test_cli_check_config_exits_2_on_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[metrics]\nwindows = ["soon"]\n')
    result = CliRunner().invoke(app, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert "metrics.windows" in result.output
    ok = CliRunner().invoke(app, ["check-config", "--config", str(EXAMPLE)])
    assert ok.exit_code == 0, ok.output
    assert "12 instruments" in ok.output


def test_cli_rejects_unknown_arguments() -> None:
    result = CliRunner().invoke(app, ["query", "select 1", "--format", "xml"])
    assert result.exit_code == 2


BASKET = """
[[baskets]]
name = "pair"
members = ["BTC", "ETH-PERP"]
"""


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ('\n[metrics]\ndaily_baskets = ["nope"]\n', "metrics.daily_baskets.0"),
        ("\n[metrics]\nabsorption_k = 3\n", "metrics.absorption_k"),
        ("\n[metrics]\nabsorption_k = 0\n", "metrics.absorption_k"),
        ("\n[metrics]\newma_halflife_hours = [0]\n", "metrics.ewma_halflife_hours"),
        ("\n[metrics]\nbaseline_days = 0\n", "metrics.baseline_days"),
        ("\n[metrics]\nconfidence = 1.0\n", "metrics.confidence"),
    ],
)
def test_bad_metrics_setting_names_the_field(tmp_path: Path, patch: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(write(tmp_path, MINIMAL + BASKET + patch))


def test_metrics_settings_reach_the_specs(tmp_path: Path) -> None:
    patch = '\n[metrics]\nabsorption_k = 2\nconfidence = 0.9\ndaily_baskets = ["pair"]\n'
    settings = load_settings(write(tmp_path, MINIMAL + BASKET + patch))
    assert settings.baskets[0].spec(settings.metrics.absorption_k).k == 2
    assert settings.metrics.z == pytest.approx(1.6448536, abs=1e-6)
    assert settings.metrics.baseline_hours == 30 * 24
    spec = settings.hedges[0].spec()
    assert spec.base_units == 1.0
    assert spec.held_ratio == pytest.approx(0.8)
