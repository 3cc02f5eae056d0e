"""Rules and silences in the config: a bad one stops start-up naming the rule and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.settings import ConfigError, load_settings

BASE = """
[[venues]]
name = "binance"
kind = "binance"

[[instruments]]
id = "BTC"
venue = "binance"
symbol = "BTCUSDT"

[[instruments]]
id = "ETH"
venue = "binance"
symbol = "ETHUSDT"

[[hedges]]
name = "btc-eth"
legs = [{ instrument = "BTC", side = "long" }, { instrument = "ETH", side = "short" }]

[channels.outbox]
kind = "file"
dir = "outbox"
"""


def load(tmp_path: Path, rules: str) -> None:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(BASE + rules, encoding="utf-8")
    load_settings(path)


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ('kind = "hedge_decoupling"\nfire_above = 0.1\nclear_below = 0.3', "clear_below"),
        ('kind = "hedge_effectiveness"\nfire_below = 0.3', "clear_above"),
        (
            'kind = "hedge_decoupling"\nfire_above = 0.1\nclear_below = 0\nfor_hours = -2',
            "for_hours",
        ),
        ('kind = "hedge_decoupling"\nfire_above = 0.1\nclear_below = 0\nmetric = "a b"', "metric"),
        ('kind = "hedge_decouple"\nfire_above = 0.1\nclear_below = 0', "kind"),
        (
            'kind = "correlation_spike"\nfire_above = 0.9\nclear_below = 0.8\ncritical_at = 0.5',
            "critical_at",
        ),
    ],
)
def test_a_bad_rule_names_the_rule_and_the_field(tmp_path: Path, rule: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f'[[alerts.rules]]\nname = "desk-rule"\n{rule}\n')
    message = str(caught.value)
    assert 'rule "desk-rule"' in message and field in message and "alerts.rules.0" in message


def test_staleness_subjects_are_instruments(tmp_path: Path) -> None:
    ok = '[[alerts.rules]]\nname = "stale"\nkind = "data_staleness"\nsubjects = ["BTC"]\n'
    load(tmp_path, ok + "fire_above = 2\nclear_below = 1\n")
    with pytest.raises(ConfigError, match=r"unknown subject 'btc-eth' \(rule \"stale\"\)"):
        load(tmp_path, ok.replace('"BTC"', '"btc-eth"') + "fire_above = 2\nclear_below = 1\n")


def test_a_silence_must_name_a_configured_rule(tmp_path: Path) -> None:
    rules = (
        '[[alerts.rules]]\nname = "stale"\nkind = "data_staleness"\nfire_above = 2\n'
        "clear_below = 1\n"
    )
    load(tmp_path, rules + '[[alerts.silences]]\nrule = "stale"\nuntil = 2030-01-01T00:00:00\n')
    with pytest.raises(ConfigError, match=r"alerts\.silences\.0\.rule: unknown rule 'nope'"):
        load(tmp_path, rules + '[[alerts.silences]]\nrule = "nope"\nuntil = 2030-01-01T00:00:00\n')


def test_check_config_exits_2_naming_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(
        BASE + '[[alerts.rules]]\nname = "x1"\nkind = "hedge_decoupling"\nfire_above = 2\n'
        "clear_below = 0\n"
    )
    result = CliRunner().invoke(app, ["check-config", "-c", str(path)])
    assert result.exit_code == 2 and 'rule "x1"' in result.output
