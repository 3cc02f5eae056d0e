"""`--sweep` axes from the command line and from a TOML grid file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgewatch.alerts.rules import Rule
from hedgewatch.sweep import Axis, GridError, check_axes, grid_rules, parse_sweep

RULES = [
    Rule.model_validate(
        {"name": "market-stress", "kind": "correlation_spike", "fire_above": 0.9,
         "clear_below": 0.8}
    ),
    Rule.model_validate(
        {"name": "other", "kind": "correlation_spike", "fire_above": 0.9, "clear_below": 0.8}
    ),
]  # fmt: skip


def test_command_line_axes_parse_numbers_and_words() -> None:
    axes = parse_sweep(["market-stress.fire_above=2,2.5,3", "market-stress.no_data=resolve,alert"])
    assert axes == [
        Axis("market-stress", "fire_above", (2, 2.5, 3)),
        Axis("market-stress", "no_data", ("resolve", "alert")),
    ]


def test_a_toml_grid_file_gives_the_same_axes(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('["market-stress"]\nfire_above = [2, 2.5, 3]\nfor_hours = [1, 2]\n')
    assert parse_sweep([str(grid)]) == [
        Axis("market-stress", "fire_above", (2, 2.5, 3)),
        Axis("market-stress", "for_hours", (1, 2)),
    ]


def test_grid_rules_change_only_the_named_rule() -> None:
    axes = parse_sweep(["market-stress.fire_above=0.95", "market-stress.for_hours=3"])
    changed, same = grid_rules(RULES, axes, (0.95, 3))
    assert (changed.fire_above, changed.for_hours) == (0.95, 3)
    assert same is RULES[1]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("market-stress.fire_above", "RULE.FIELD=V1"),
        ("fire_above=1,2", "RULE.FIELD=V1"),
        ("nope.fire_above=1", "no rule named 'nope'"),
        ("market-stress.loudness=1", "no field 'loudness'"),
        ("market-stress.name=x", "no field 'name'"),
    ],
)
def test_bad_axes_are_named(spec: str, message: str) -> None:
    with pytest.raises(GridError, match=message):
        check_axes(parse_sweep([spec]), RULES)


def test_an_axis_given_twice_is_refused() -> None:
    with pytest.raises(GridError, match="given twice"):
        parse_sweep(["other.for_hours=1", "other.for_hours=2"])
