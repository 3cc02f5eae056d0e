"""Hedge lab commands: `hedges backtest`, `hedges stress` and `hedges scenarios`."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hedgewatch.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    _json_default,
    _settings,
    fail,
    parse_time,
)

if TYPE_CHECKING:
    from hedgewatch.settings import ScenarioSettings, Settings
    from hedgewatch.storage.store import Store

app = typer.Typer()
hedges_app = typer.Typer(
    help="The hedge lab: backtest rebalancing policies with costs, stress-test hedges.",
    no_args_is_help=True,
)
app.add_typer(hedges_app, name="hedges")


class LabFormat(StrEnum):
    table = "table"
    json = "json"


DatabaseOption = Annotated[
    Path | None, typer.Option("--database", "-d", help="DuckDB file (overrides the config).")
]
WaitOption = Annotated[float, typer.Option(help="Seconds to wait while a run holds the file.")]


@contextmanager
def _store(settings: Settings, database: Path | None, wait: float) -> Iterator[Store]:
    from hedgewatch.hedgelab import LabError
    from hedgewatch.storage.store import Store, StoreBusy, StoreError

    path = database or settings.storage.database
    if not path.exists():
        raise fail(f"{path}: no database yet (run `hedgewatch run` or `hedgewatch backfill`)", 2)
    try:
        with Store.open(path, read_only=True, timeout_s=wait) as store:
            yield store
    except StoreBusy as exc:
        raise fail(str(exc), 3) from None
    except StoreError as exc:
        raise fail(str(exc), 2) from None
    except LabError as exc:
        raise fail(str(exc), 2) from None


# Rows of the backtest table: (label, PolicyMetrics field, format).
_BACKTEST_ROWS = (
    ("trades", "trades", "int"),
    ("turnover (x base notional)", "turnover", "num"),
    ("effectiveness", "effectiveness", "pct"),
    ("tracking RMSE of the ratio", "tracking_rmse", "num"),
    ("max drawdown", "max_drawdown", "money"),
    ("fees", "fees", "money"),
    ("slippage", "slippage", "money"),
    ("cost (fees + slippage)", "cost", "money"),
    ("cost per trade", "cost_per_trade", "money"),
    ("cost (bps of base notional)", "cost_bps", "num"),
    ("effectiveness per bp of cost", "eff_per_cost_bp", "num"),
    ("funding (paid > 0)", "funding", "money"),
    ("net P&L hedged", "pnl_hedged", "money"),
)


@hedges_app.command("backtest")
def backtest_command(
    name: Annotated[str, typer.Argument(help="The hedge, as named in the config.")],
    start: Annotated[str, typer.Option("--from", help="First hour (ISO 8601, UTC).")],
    end: Annotated[str, typer.Option("--to", help="End (exclusive, ISO 8601, UTC).")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="static, cadence or band (repeatable). Default: all three."),
    ] = None,
    fmt: Annotated[LabFormat, typer.Option("--format", "-f")] = LabFormat.table,
    config: ConfigOption = DEFAULT_CONFIG,
    database: DatabaseOption = None,
    wait: WaitOption = 30.0,
) -> None:
    """Simulate the hedge hour by hour under each policy, with fees, slippage and funding."""
    from hedgewatch.hedgelab import LabError, backtest

    settings = _settings(config)
    first, last = parse_time(start, "--from"), parse_time(end, "--to")
    if last <= first:
        raise fail("--to must be after --from", 2)
    with _store(settings, database, wait) as store:
        try:
            result = backtest(store, settings, name, first, last, policy)
        except LabError as exc:
            raise fail(str(exc), 2) from None
    book = result.simulations[0].book
    t0 = result.simulations[0].t0
    if fmt is LabFormat.json:
        out = {
            "hedge": name,
            "from": result.times[t0],
            "to": last,
            "base_units": book.base_units,
            "held_ratio": book.held_ratio,
            "policies": [m.as_dict() for m in result.metrics],
        }
        typer.echo(json.dumps(out, default=_json_default, indent=2))
        return
    typer.echo(_backtest_table(settings, result))


def _backtest_table(settings: Settings, result: Any) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from hedgewatch.hedgelab import hedge_settings

    hedge = hedge_settings(settings, result.hedge)
    sim = result.simulations[0]
    metrics = result.metrics
    base, leg = hedge.legs
    lab = settings.hedge_lab
    table = Table("", *[m.policy for m in metrics], "unhedged", box=box.SIMPLE_HEAD)
    unhedged = {
        "max_drawdown": metrics[0].unhedged_max_drawdown,
        "pnl_hedged": metrics[0].pnl_unhedged,
    }
    for label, field, kind in _BACKTEST_ROWS:
        cells = [_fmt(getattr(m, field), kind) for m in metrics]
        table.add_row(label, *cells, _fmt(unhedged[field], kind) if field in unhedged else "")
    console = Console(file=io.StringIO(), width=140, record=True)
    start = result.times[sim.t0]
    console.print(
        f"{hedge.name}: {base.side} {sim.book.base_units:,.6g} {base.instrument}, "
        f"hedge {leg.side} {leg.instrument} at ratio {sim.book.held_ratio:.4g} "
        f"from {start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC "
        f"({metrics[0].hours} h)"
    )
    console.print(
        f"target: min-variance ratio over {lab.window}; cadence {lab.cadence}; band "
        f"{lab.band:.0%} (>= {lab.min_gap} apart); fees {lab.liquidity}; impact "
        f"{lab.impact_coefficient:g} x vol x sqrt(share of the hour's volume)"
    )
    console.print(table)
    return console.export_text()


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if kind == "int":
        return f"{int(value):d}"
    if kind == "pct":
        return f"{value:+.1%}"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{value:.4g}"


# -- stress ---------------------------------------------------------------------------------------


@hedges_app.command("stress")
def stress_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Hedges (default: every configured hedge).")
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", "-s", help="A named scenario (repeatable; see `scenarios`)."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option("--window", help="Replay a stored window instead: A..B (UTC, B exclusive)."),
    ] = None,
    shock_corr: Annotated[
        float,
        typer.Option(help="With --window: Fisher z added to the legs' correlation (> 0: to +1)."),
    ] = 0.0,
    vol_mult: Annotated[
        float, typer.Option(help="With --window: multiply both legs' volatility.")
    ] = 1.0,
    fmt: Annotated[LabFormat, typer.Option("--format", "-f")] = LabFormat.table,
    config: ConfigOption = DEFAULT_CONFIG,
    database: DatabaseOption = None,
    wait: WaitOption = 30.0,
) -> None:
    """Put today's hedged book through scenarios: its loss, effectiveness and ratio drift.

    Without --scenario or --window, every shipped and configured scenario runs.
    """
    from hedgewatch.hedgelab import LabError, hedge_settings, scenarios, stress_many

    settings = _settings(config)
    known = scenarios(settings)
    chosen: list[ScenarioSettings]
    if window is not None:
        if scenario:
            raise fail("give --scenario or --window, not both", 2)
        chosen = [_window_scenario(window, shock_corr, vol_mult)]
    else:
        if shock_corr != 0.0 or vol_mult != 1.0:
            raise fail("--shock-corr and --vol-mult apply to a --window", 2)
        for wanted in scenario or []:
            if wanted not in known:
                raise fail(f"--scenario: unknown {wanted!r} (known: {', '.join(known)})", 2)
        chosen = [known[s] for s in scenario] if scenario else list(known.values())
    targets = names or [h.name for h in settings.hedges]
    if not targets:
        raise fail("no hedges configured", 2)
    for target in targets:
        try:
            hedge_settings(settings, target)
        except LabError as exc:
            raise fail(str(exc), 2) from None
    rows: list[dict[str, Any]] = []
    with _store(settings, database, wait) as store:
        results = stress_many(store, settings, targets, chosen)
        for target in targets:
            result = results[target]
            if isinstance(result, LabError):
                rows.append({"hedge": target, "scenario": "*", "error": str(result)})
                continue
            position, runs = result
            for run in runs:
                if run.result is None:
                    rows.append(
                        {"hedge": target, "scenario": run.scenario.name, "error": run.reason}
                    )
                    continue
                row = run.result.as_dict()
                row["base_notional"] = position.base_notional
                row["hedge_notional"] = position.hedge_notional
                rows.append(row)
    if fmt is LabFormat.json:
        typer.echo(json.dumps(rows, default=_json_default, indent=2))
        return
    typer.echo(_stress_table(rows))


def _window_scenario(window: str, shock_corr: float, vol_mult: float) -> ScenarioSettings:
    from pydantic import ValidationError

    from hedgewatch.settings import ScenarioSettings

    if ".." not in window:
        raise fail(f"--window: expected A..B, e.g. 2022-05-07..2022-05-14, got {window!r}", 2)
    a, b = window.split("..", 1)
    start, end = parse_time(a, "--window"), parse_time(b, "--window")
    if vol_mult <= 0:
        raise fail("--vol-mult must be > 0", 2)
    try:
        return ScenarioSettings(
            name=f"{start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H}",
            start=start,
            end=end,
            shock_corr=shock_corr,
            vol_mult=vol_mult,
        )
    except ValidationError:
        raise fail("--window: the end must be after the start", 2) from None


def _stress_table(rows: list[dict[str, Any]]) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "hedge",
        "scenario",
        "hours",
        "corr",
        "hedged P&L",
        "hedged loss",
        "unhedged loss",
        "effectiveness",
        "ratio start→end",
        "min-var ratio",
        box=box.SIMPLE_HEAD,
    )
    for row in rows:
        if "error" in row:
            table.add_row(row["hedge"], row["scenario"], "–", "", "(no data)")
            continue
        table.add_row(
            row["hedge"],
            row["scenario"],
            str(row["hours"]),
            _fmt(row["correlation"], "num"),
            _fmt(row["pnl"], "money"),
            _fmt(row["loss"], "money"),
            _fmt(row["unhedged_loss"], "money"),
            _fmt(row["effectiveness"], "pct"),
            f"{_fmt(row['ratio_start'], 'num')}→{_fmt(row['ratio_end'], 'num')}",
            _fmt(row["min_var_ratio"], "num"),
        )
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(table)
    missing = sorted({row["error"] for row in rows if "error" in row})
    for reason in missing:
        console.print(f"(no data): {reason}")
    return console.export_text()


@hedges_app.command("scenarios")
def scenarios_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """List the stress scenarios: shipped and from the config."""
    from hedgewatch.hedgelab import scenarios

    for s in scenarios(_settings(config)).values():
        shock = ""
        if s.shock_corr or s.vol_mult != 1.0:
            shock = f"  shock: corr z {s.shock_corr:+g}, vol x{s.vol_mult:g}"
        typer.echo(
            f"{s.name:<22} {s.start:%Y-%m-%d %H:%M} .. {s.end:%Y-%m-%d %H:%M}{shock}"
            f"  {s.description}"
        )
