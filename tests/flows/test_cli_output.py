"""What the command line loads and prints: tables as rich draws them, no stack a command does not
use."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hedgewatch.cli.common import OutputFormat, format_rows, plain_table, rich_table

# What rich would read as markup or emoji codes if it parsed cells, one-column and wide characters.
CELLS = st.text(st.sampled_from(" abcXYZ019.:-+_[]/\\()≤→é—日\u0301"), max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    columns=st.lists(CELLS, min_size=1, max_size=8),
    rows=st.lists(st.lists(CELLS, min_size=8, max_size=8), max_size=6),
    width=st.integers(80, 240),
)
def test_the_plain_table_is_rich_s_table_when_it_draws_one(
    columns: list[str], rows: list[list[str]], width: int
) -> None:
    cells = [row[: len(columns)] for row in rows]
    plain = plain_table(columns, cells, width)
    rich = rich_table(columns, cells, width)
    if plain is not None:
        assert plain == rich
    else:  # left to rich: a table wider than the console, or a wide or combining character
        wide = sum(max(len(c) for c in col) + 3 for col in zip(columns, *cells, strict=True)) + 1
        texts = [*columns, *(c for row in cells for c in row)]
        assert wide > width or any(ch in text for ch in "日\u0301" for text in texts)


def test_rich_draws_what_the_plain_table_cannot() -> None:
    wide = [["x" * 70, "y" * 70, "→"]]
    assert plain_table(["a", "b", "c"], wide, 80) is None
    out = format_rows(["a", "b", "c"], [("x" * 70, "y" * 70, "→")], OutputFormat.table)
    assert "→" in out and out.endswith("(1 row)\n")
    # A cell is text, never markup: brackets and emoji codes print as they are.
    out = format_rows(["rule"], [("[bold]hedge :warning:",)], OutputFormat.table)
    assert "[bold]hedge :warning:" in out


def test_version_loads_neither_settings_nor_the_data_stack(modules_after: Any) -> None:
    loaded = modules_after("--version")
    heavy = {"hedgewatch.settings", "pydantic", "polars", "numpy", "duckdb", "httpx", "prefect"}
    assert not heavy & loaded
    assert not {m for m in loaded if m.startswith(("jinja2", "rich", "hedgewatch.venues"))}
