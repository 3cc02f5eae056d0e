"""What a run would crash on is caught by check-config and alerts silence: exit 2 naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app

BASE = """
[storage]
database = "{db}"

[[venues]]
name = "binance"
kind = "binance"
{venue}

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
legs = [{{ instrument = "BTC", side = "long" }}, {{ instrument = "ETH", side = "short" }}]

[metrics]
windows = {windows}

[[alerts.rules]]
name = "decoupling"
kind = "hedge_decoupling"
window = "24h"
fire_below = 0.3
clear_above = 0.5
channels = ["outbox"]
{alerts}
{extra}

[channels.outbox]
kind = "file"
dir = "outbox"
"""


def config(tmp_path: Path, **parts: str) -> Path:
    values = {
        "db": str(tmp_path / "var" / "hw.duckdb"),
        "venue": "",
        "windows": '["24h"]',
        "alerts": "",
        "extra": "",
    }
    values.update(parts)
    path = tmp_path / "hedgewatch.toml"
    path.write_text(BASE.format(**values), encoding="utf-8")
    return path


def check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check-config", "-c", str(path)])
    return result.exit_code, result.output


def test_a_sound_config_passes(tmp_path: Path) -> None:
    code, out = check(config(tmp_path))
    assert code == 0, out


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ({"extra": "[fetch]\nbackfill_days = 99999999"}, "fetch.backfill_days"),
        ({"windows": '["24h", "99999999h"]'}, "metrics.windows"),
        ({"venue": "timeout_s = inf"}, "venues.0.timeout_s"),
        ({"venue": "timeout_s = nan"}, "venues.0.timeout_s"),
        ({"db": "/proc/hw.duckdb"}, "storage.database"),
        (
            {
                "extra": '[[alerts.silences]]\nrule = "decoupling"\nsubject = "NOPE"\n'
                "until = 2030-01-01T00:00:00"
            },
            "alerts.silences.0.subject",
        ),
    ],
)
def test_check_config_exits_2_naming_the_field(
    tmp_path: Path, parts: dict[str, str], field: str | None
) -> None:
    if field is None:
        pytest.skip("shape covered by the catch-up test")
    code, out = check(config(tmp_path, **parts))
    assert code == 2, out
    assert field in out
    assert "Traceback" not in out


def test_catch_up_hours_are_bounded(tmp_path: Path) -> None:
    path = config(tmp_path)
    text = path.read_text().replace(
        "[[alerts.rules]]", "[alerts]\ncatch_up_hours = 999999999\n\n[[alerts.rules]]", 1
    )
    path.write_text(text)
    code, out = check(path)
    assert code == 2 and "alerts.catch_up_hours" in out


def test_silence_from_the_cli_refuses_unknown_subjects_and_huge_untils(tmp_path: Path) -> None:
    path = config(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["alerts", "silence", "decoupling", "NOPE", "-c", str(path)])
    assert result.exit_code == 2 and "unknown subject 'NOPE'" in result.stderr
    for until in ("99999999h", "99999999d", "9999-12-31T23:00:00"):
        result = runner.invoke(
            app, ["alerts", "silence", "decoupling", "btc-eth", "--until", until, "-c", str(path)]
        )
        assert result.exit_code == 2, (until, result.output)
        assert "--until" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(
        app, ["alerts", "silence", "decoupling", "btc-eth", "--until", "2h", "-c", str(path)]
    )
    assert result.exit_code == 0, result.output
