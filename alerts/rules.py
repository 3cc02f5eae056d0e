"""Alert rules as data, and `observe`: the value each rule watches for each subject at one hour.

Pure: frames and the hour are arguments; nothing here reads the clock, the environment or files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from transforms.significance import fisher_ci

RuleKind = Literal["hedge_decoupling", "correlation_spike"]
Severity = Literal["info", "warning", "critical"]

HEDGE_COLUMNS = (
    "hedge",
    "window_hours",
    "open_time",
    "n_obs",
    "correlation",
    "beta",
    "min_var_ratio",
    "held_ratio",
    "ratio_drift",
    "effectiveness",
)
BASKET_COLUMNS = ("basket", "window_hours", "open_time", "n_obs", "n_pairs", "avg_corr")

# What each rule kind reads: (frame, subject column, value column, extra context columns).
_KIND_SOURCES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "hedge_decoupling": (
        "hedge",
        "hedge",
        "correlation",
        ("beta", "min_var_ratio", "held_ratio", "ratio_drift", "effectiveness"),
    ),
    "correlation_spike": ("basket", "basket", "avg_corr", ("n_pairs",)),
}

_WINDOW = re.compile(r"^\s*(\d+)\s*([hd])\s*$", re.IGNORECASE)
# Names and subjects end up in '|'-separated idempotency keys, so '|' would make keys ambiguous.
_NAME = re.compile(r"^[^|\s](?:[^|]*[^|\s])?$")


def parse_window(window: str) -> int:
    """Window length in hours: '24h' -> 24, '7d' -> 168, '168h' -> 168."""
    match = _WINDOW.match(window)
    if not match:
        raise ValueError(f"window must look like '24h' or '7d' (hours or days), got {window!r}")
    hours = int(match.group(1)) * (24 if match.group(2).lower() == "d" else 1)
    if hours <= 0:
        raise ValueError(f"window must be longer than zero hours, got {window!r}")
    return hours


class Rule(BaseModel):
    """One alert rule from the config file.

    Fires when the watched value rises above `fire_above` (for `for_hours` hours) and resolves only
    once it falls below `clear_below`; in between, the alert keeps its state (hysteresis).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: RuleKind
    # Hedge names (hedge_decoupling) or basket names (correlation_spike); "*" means all of them.
    subjects: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    window: str = "24h"
    fire_above: float
    clear_below: float
    for_hours: int = Field(default=0, ge=0)
    # After a resolve, the same subject does not fire again for this many hours.
    cooldown_hours: int = Field(default=6, ge=0)
    repeat_hours: int | None = Field(default=None, gt=0)
    min_obs: int = Field(default=12, gt=0)
    severity: Severity = "warning"
    channels: list[str] = Field(default_factory=lambda: ["outbox"])

    @field_validator("name")
    @classmethod
    def _name_is_usable(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"rule name must be non-empty, without surrounding spaces or '|', got {value!r}"
            )
        return value

    @field_validator("subjects")
    @classmethod
    def _subjects_are_usable(cls, value: list[str]) -> list[str]:
        for subject in value:
            if not _NAME.match(subject):
                raise ValueError(
                    f"subject must be '*' or a name without surrounding spaces or '|', "
                    f"got {subject!r}"
                )
        return value

    @field_validator("window")
    @classmethod
    def _window_parses(cls, value: str) -> str:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _thresholds_leave_a_gap(self) -> Rule:
        if not self.clear_below < self.fire_above:
            raise ValueError(
                f"clear_below ({self.clear_below}) must be lower than fire_above "
                f"({self.fire_above}) so an alert can settle between them (hysteresis)"
            )
        # Both kinds watch a correlation; a threshold outside [-1, 1] can never be crossed.
        if self.clear_below < -1.0 or self.fire_above >= 1.0:
            raise ValueError(
                f"thresholds watch a correlation: need -1 <= clear_below ({self.clear_below}) "
                f"and fire_above ({self.fire_above}) < 1"
            )
        return self

    @property
    def window_hours(self) -> int:
        return parse_window(self.window)


@dataclass(frozen=True)
class Observation:
    """The value a rule sees for one subject at one hour; `value` is None when there is no data.

    `threshold` is the rule's `fire_above`. `context` holds the numbers that explain an alert:
    metric, window, window_hours, n_obs, ci_low/ci_high (Fisher-z 95 %) and, for hedges, beta,
    min_var_ratio, held_ratio, ratio_drift, effectiveness; for baskets, n_pairs.
    """

    rule: str
    subject: str
    ts: datetime
    value: float | None
    n_obs: int
    threshold: float
    context: dict[str, Any] = field(default_factory=dict)


def observe(
    rules: Sequence[Rule],
    hedge_metrics: pl.DataFrame,
    basket_metrics: pl.DataFrame,
    ts: datetime,
) -> list[Observation]:
    """One observation per (rule, subject) at the hour `ts` (an open_time, timezone-aware).

    Rows are matched on open_time == ts and window_hours == the rule's window. "*" expands to every
    hedge/basket present in the frame for that window (at any hour), so a subject whose row is
    missing at `ts` still gets an observation with value None rather than silently vanishing.
    """
    if ts.tzinfo is None:
        raise ValueError(f"ts must be timezone-aware (UTC), got naive {ts.isoformat()}")
    ts = ts.astimezone(UTC)
    frames = {
        "hedge": _checked(hedge_metrics, HEDGE_COLUMNS, "hedge_metrics"),
        "basket": _checked(basket_metrics, BASKET_COLUMNS, "basket_metrics"),
    }
    observations: list[Observation] = []
    for rule in rules:
        frame_name, subject_col, value_col, extra_cols = _KIND_SOURCES[rule.kind]
        frame = frames[frame_name]
        window_hours = rule.window_hours
        in_window = frame.filter(pl.col("window_hours") == window_hours)
        at_ts = in_window.filter(pl.col("open_time") == ts)
        rows: dict[str, dict[str, Any]] = {}
        for found in at_ts.iter_rows(named=True):
            subject = found[subject_col]
            if subject in rows:
                raise ValueError(
                    f"{frame_name}_metrics has several rows for {subject!r}, "
                    f"window_hours={window_hours}, open_time={ts.isoformat()}"
                )
            rows[subject] = found
        present = in_window.get_column(subject_col).unique().sort().to_list()
        for subject in _expand(rule.subjects, present):
            row = rows.get(subject)
            value = _finite(row[value_col]) if row else None
            n_obs = int(row["n_obs"] or 0) if row else 0
            ci_low, ci_high = fisher_ci(value, n_obs)
            context: dict[str, Any] = {
                "metric": value_col,
                "window": rule.window,
                "window_hours": window_hours,
                "n_obs": n_obs,
                "ci_low": ci_low,
                "ci_high": ci_high,
            }
            for col in extra_cols:
                raw = row[col] if row else None
                context[col] = _finite(raw) if isinstance(raw, float) else raw
            observations.append(
                Observation(
                    rule=rule.name,
                    subject=subject,
                    ts=ts,
                    value=value,
                    n_obs=n_obs,
                    threshold=rule.fire_above,
                    context=context,
                )
            )
    return observations


def _expand(subjects: Iterable[str], present: Sequence[str]) -> list[str]:
    """Named subjects in the rule's order, then '*' expansions in sorted order, no duplicates."""
    out: list[str] = []
    for subject in subjects:
        for name in present if subject == "*" else [subject]:
            if name not in out:
                out.append(name)
    return out


def _checked(frame: pl.DataFrame, columns: Sequence[str], label: str) -> pl.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing and frame.height == 0:
        # An empty frame without a schema (e.g. no baskets configured) simply has no rows.
        schema: dict[str, pl.DataType] = {c: pl.Float64() for c in columns}
        schema.update({columns[0]: pl.Utf8(), "open_time": pl.Datetime("us", "UTC")})
        return pl.DataFrame(schema=schema)
    if missing:
        raise ValueError(f"{label} is missing columns: {', '.join(missing)}")
    return frame


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
