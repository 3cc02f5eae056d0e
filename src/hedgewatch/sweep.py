"""`backtest --sweep`: score a grid of rule parameters over one computed history.

A grid axis is `RULE.FIELD=V1,V2,...` (on the command line) or, in a TOML grid file,
`"RULE".FIELD = [V1, V2, ...]` (a table per rule). The grid is every combination of its axes.
Metrics do not depend on rule parameters, so the history (and each rule's observations) is
computed once; at each grid point only the rules that changed walk their state machines again.
"""

from __future__ import annotations

import itertools
import statistics
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hedgewatch.alerts.rules import Rule
from hedgewatch.alerts.scorecard import LabelledEvent, Scorecard, score
from hedgewatch.alerts.state import AlertEvent
from hedgewatch.backtest import History, replay


class GridError(ValueError):
    """A grid axis or file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Axis:
    rule: str
    field: str
    values: tuple[Any, ...]

    @property
    def label(self) -> str:
        return f"{self.rule}.{self.field}"


def _value(text: str) -> Any:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_axis(text: str) -> Axis:
    """'market-stress.fire_above=2,2.5,3' -> Axis('market-stress', 'fire_above', (2, 2.5, 3))."""
    target, sep, values = text.partition("=")
    rule, dot, name = target.strip().rpartition(".")
    if not sep or not dot or not rule or not name or not values.strip():
        raise GridError(f"--sweep: expected RULE.FIELD=V1,V2,... got {text!r}")
    return Axis(rule, name, tuple(_value(v) for v in values.split(",")))


def parse_grid_file(path: Path) -> list[Axis]:
    """Axes from a TOML file: a table per rule, each field a list of values."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path}: not valid TOML: {exc}") from None
    axes = []
    for rule, fields in data.items():
        if not isinstance(fields, dict):
            raise GridError(f"{path}: {rule!r} must be a table of FIELD = [values]")
        for name, values in fields.items():
            listed = values if isinstance(values, list) else [values]
            if not listed:
                raise GridError(f"{path}: {rule}.{name} has no values")
            axes.append(Axis(rule, name, tuple(listed)))
    if not axes:
        raise GridError(f"{path}: no grid axes")
    return axes


def parse_sweep(specs: Sequence[str]) -> list[Axis]:
    """Each `--sweep` value is an axis, or the path of a TOML grid file."""
    axes: list[Axis] = []
    for spec in specs:
        if "=" not in spec and spec.endswith(".toml"):
            axes.extend(parse_grid_file(Path(spec)))
        else:
            axes.append(parse_axis(spec))
    labels = [a.label for a in axes]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise GridError(f"--sweep: {', '.join(twice)} given twice")
    return axes


def check_axes(axes: Sequence[Axis], rules: Sequence[Rule]) -> None:
    names = {rule.name for rule in rules}
    for axis in axes:
        if axis.rule not in names:
            raise GridError(f"--sweep {axis.label}: no rule named {axis.rule!r}")
        if axis.field not in Rule.model_fields or axis.field == "name":
            raise GridError(f"--sweep {axis.label}: rules have no field {axis.field!r}")


def grid_rules(rules: Sequence[Rule], axes: Sequence[Axis], point: Sequence[Any]) -> list[Rule]:
    """The rule set at one grid point (raises ValidationError for an impossible combination)."""
    changes: dict[str, dict[str, Any]] = {}
    for axis, value in zip(axes, point, strict=True):
        changes.setdefault(axis.rule, {})[axis.field] = value
    out = []
    for rule in rules:
        if rule.name in changes:
            rule = Rule.model_validate({**rule.model_dump(), **changes[rule.name]})
        out.append(rule)
    return out


@dataclass
class SweepRow:
    params: dict[str, Any]
    card: Scorecard | None = None
    error: str | None = None
    lags: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = dict(self.params)
        if self.card is None:
            row["error"] = self.error
            return row
        card = self.card
        worst = card.max_calm_month
        per_calm = card.pages_per_calm_month
        row.update(
            events=len(card.events),
            alerted=card.alerted,
            caught=card.caught,
            within_hours=card.within_hours,
            median_lag_hours=statistics.median(self.lags) if self.lags else None,
            pages_outside_events=card.pages_outside,
            pages_per_calm_month=None if per_calm is None else round(per_calm, 3),
            max_calm_month=None if worst is None else worst.month,
            max_calm_month_pages=None if worst is None else worst.pages,
        )
        return row


def run_sweep(
    history: History,
    labelled: Sequence[LabelledEvent],
    axes: Sequence[Axis],
    *,
    within_hours: float,
    only_rules: set[str] | None = None,
) -> tuple[list[SweepRow], float]:
    """One scorecard per grid point; returns the rows and the seconds the grid took."""
    rules = list(history.settings.alerts.rules)
    check_axes(axes, rules)
    walked: dict[str, list[AlertEvent]] = {}
    rows = []
    clock = time.perf_counter()
    for point in itertools.product(*(axis.values for axis in axes)):
        params = {axis.label: value for axis, value in zip(axes, point, strict=True)}
        try:
            point_rules = grid_rules(rules, axes, point)
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors())
            rows.append(SweepRow(params, error=problems))
            continue
        events = replay(history, point_rules, walked)
        if only_rules is not None:
            events = [e for e in events if e.rule in only_rules]
        card = score(
            labelled,
            events,
            point_rules,
            history.start,
            history.end,
            within_hours=within_hours,
        )
        lags = [s.lag_hours for s in card.events if s.lag_hours is not None]
        rows.append(SweepRow(params, card=card, lags=lags))
    return rows, time.perf_counter() - clock
