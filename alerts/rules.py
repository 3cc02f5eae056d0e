"""Alert rules as data, and `observe`: the value each rule watches for each subject at one hour.

Pure: frames and the hour are arguments; nothing here reads the clock, the environment or files.

A rule watches one metric column (by name, with a default per kind) of one frame:

- hedge_decoupling    hedge_metrics.correlation (signed legs: a working hedge is strongly
                      negative), or also a significant rise against its baseline (`z_fire_above`
                      on `break_z`, the Fisher z of the rise);
- hedge_ratio_drift   |hedge_metrics.ratio_drift|, or relative to the held ratio;
- hedge_effectiveness hedge_metrics.effectiveness, firing when it drops (`fire_below`);
- correlation_spike   basket_metrics.avg_corr (or absorption_ratio, avg_corr_z, absorption_z,
                      corr_z), optionally also on a baseline z (`z_fire_above` on `avg_corr_z`);
- market_stress       basket_metrics.drawdown_z (or vol_z, dispersion_z, basket_return, ...):
                      the basket's fall from its high within the window, in typical moves;
- data_staleness      freshness.age_hours per instrument (or missing_hours, fetch_errors);
- pipeline_failure    no metric: events come from `pipeline_failure_event` when a run fails.

A column the frame does not have, a null or a NaN is "no data" — never a fire, never a resolve.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hedgewatch.transforms.significance import fisher_ci

RuleKind = Literal[
    "hedge_decoupling",
    "hedge_ratio_drift",
    "hedge_effectiveness",
    "correlation_spike",
    "market_stress",
    "data_staleness",
    "pipeline_failure",
]
Severity = Literal["info", "warning", "critical"]
Direction = Literal["above", "below"]
# How a value breached: past the fire threshold, past the baseline z, at or past critical_at, or
# no data for long enough (a rule with `no_data = "alert"`).
Arm = Literal["level", "z", "critical", "no_data"]
NoDataPolicy = Literal["keep_state", "resolve", "alert"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

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
FRESHNESS_COLUMNS = (
    "instrument",
    "venue",
    "market",
    "symbol",
    "open_time",
    "last_open_time",
    "age_hours",
    "missing_hours",
    "fetch_errors",
)
# Columns that only some versions of the metrics carry: read when present, shown when present.
HEDGE_EXTRA = (
    "corr_ci_low",
    "corr_ci_high",
    "corr_baseline",
    "break_z",
    "residual_vol",
    "rebalance",
    "corr_z",
    "effectiveness_drop",
    "residual_vol_z",
    "activity",
    "effectiveness_loss",
)
BASKET_EXTRA = (
    "absorption_ratio",
    "avg_corr_adj",
    "avg_corr_baseline",
    "avg_corr_z",
    "absorption_z",
    "corr_z",
    "members",
    "n_members",
    "basket_return",
    "drawdown",
    "drawdown_z",
    "vol",
    "vol_z",
    "dispersion",
    "dispersion_z",
)


@dataclass(frozen=True)
class KindSpec:
    source: str  # "hedge" | "basket" | "freshness" | "" (no frame)
    metric: str  # default metric column
    z_metric: str | None  # default column of the optional "significant change" condition
    context: tuple[str, ...]  # columns copied into every observation's context


_HEDGE_CONTEXT = ("beta", "min_var_ratio", "held_ratio", "ratio_drift", "effectiveness")
KINDS: dict[str, KindSpec] = {
    "hedge_decoupling": KindSpec("hedge", "correlation", "break_z", _HEDGE_CONTEXT + HEDGE_EXTRA),
    "hedge_ratio_drift": KindSpec("hedge", "ratio_drift", None, _HEDGE_CONTEXT + HEDGE_EXTRA),
    "hedge_effectiveness": KindSpec("hedge", "effectiveness", None, _HEDGE_CONTEXT + HEDGE_EXTRA),
    "correlation_spike": KindSpec("basket", "avg_corr", "avg_corr_z", ("n_pairs", *BASKET_EXTRA)),
    "market_stress": KindSpec("basket", "drawdown_z", "vol_z", ("n_pairs", *BASKET_EXTRA)),
    "data_staleness": KindSpec(
        "freshness",
        "age_hours",
        None,
        (
            "venue",
            "market",
            "symbol",
            "last_open_time",
            "age_hours",
            "missing_hours",
            "fetch_errors",
        ),
    ),
    "pipeline_failure": KindSpec("", "failed", None, ()),
}
SUBJECT_COLUMN = {"hedge": "hedge", "basket": "basket", "freshness": "instrument"}
TABLE = {"hedge": "hedge_metrics", "basket": "basket_metrics", "freshness": "candles"}
# Metrics whose values are bounded: a threshold outside the range can never be crossed.
_CORRELATIONS = {
    "correlation",
    "avg_corr",
    "corr_ci_low",
    "corr_ci_high",
    "corr_baseline",
    "avg_corr_adj",
    "avg_corr_baseline",
}
_BOUNDS: dict[str, tuple[float, float]] = {
    **{m: (-1.0, 1.0) for m in _CORRELATIONS},
    "absorption_ratio": (0.0, 1.0),
    "effectiveness": (-math.inf, 1.0),
}

_WINDOW = re.compile(r"^\s*(\d+)\s*([hd])\s*$", re.IGNORECASE)
# Names and subjects end up in '|'-separated idempotency keys, so '|' would make keys ambiguous.
_NAME = re.compile(r"^[^|\s](?:[^|]*[^|\s])?$")
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


MAX_WINDOW_HOURS = 3660 * 24  # ten years: longer windows overflow dates


def parse_window(window: str) -> int:
    """Window length in hours: '24h' -> 24, '7d' -> 168, '168h' -> 168."""
    match = _WINDOW.match(window)
    if not match:
        raise ValueError(f"window must look like '24h' or '7d' (hours or days), got {window!r}")
    hours = int(match.group(1)) * (24 if match.group(2).lower() == "d" else 1)
    if hours <= 0:
        raise ValueError(f"window must be longer than zero hours, got {window!r}")
    if hours > MAX_WINDOW_HOURS:
        raise ValueError(f"window must be at most {MAX_WINDOW_HOURS // 24}d, got {window!r}")
    return hours


class Rule(BaseModel):
    """One alert rule from the config file.

    Direction "above" (`fire_above`, `clear_below`): fires when the watched value is above
    `fire_above` for `for_hours` consecutive hours (0 and 1: the first such hour) and resolves only
    once it falls below `clear_below`;
    direction "below" (`fire_below`, `clear_above`) mirrors it. In between, the alert keeps its
    state (hysteresis). `critical_at` (beyond the fire threshold) escalates a firing alert to
    critical. `z_fire_above`/`z_clear_below` add a second way to breach: the `z_metric` column
    (a Fisher z against a baseline) rising above `z_fire_above`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: RuleKind
    # Hedge, basket or instrument names (by kind); "*" means all of them.
    subjects: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    metric: str | None = None
    # hedge_ratio_drift: "absolute" |min_var_ratio - held_ratio|, or "relative" to held_ratio.
    drift: Literal["absolute", "relative"] = "absolute"
    window: str = "24h"
    fire_above: float | None = None
    clear_below: float | None = None
    fire_below: float | None = None
    clear_above: float | None = None
    critical_at: float | None = None
    z_metric: str | None = None
    z_fire_above: float | None = Field(default=None, gt=0)
    z_clear_below: float | None = None
    for_hours: int = Field(default=0, ge=0)
    # Once the value clears, stay firing this many more hours before resolving.
    keep_firing_hours: int = Field(default=0, ge=0)
    # After a resolve, the same subject does not fire again for this many hours.
    cooldown_hours: int = Field(default=6, ge=0)
    repeat_hours: int | None = Field(default=None, gt=0)
    min_obs: int = Field(default=12, gt=0)
    # An hour without data (no row, a null, or fewer than min_obs): "keep_state" keeps a firing
    # alert firing; "resolve" resolves it; "alert" fires after no_data_alert_after_hours hours.
    no_data: NoDataPolicy = "keep_state"
    no_data_alert_after_hours: int = Field(default=3, gt=0)
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

    @field_validator("metric", "z_metric")
    @classmethod
    def _metric_is_a_column_name(cls, value: str | None) -> str | None:
        if value is not None and not _COLUMN.match(value):
            raise ValueError(f"must be a metric column name such as 'avg_corr', got {value!r}")
        return value

    @field_validator("window")
    @classmethod
    def _window_parses(cls, value: str) -> str:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _thresholds_leave_a_gap(self) -> Rule:
        if self.kind == "pipeline_failure":
            return self
        above = (self.fire_above, self.clear_below)
        below = (self.fire_below, self.clear_above)
        if any(v is not None for v in above) and any(v is not None for v in below):
            raise ValueError(
                "give either fire_above and clear_below, or fire_below and clear_above, not both"
            )
        if self.fire_below is not None or self.clear_above is not None:
            if self.fire_below is None or self.clear_above is None:
                raise ValueError("fire_below and clear_above must be given together")
            if not self.clear_above > self.fire_below:
                raise ValueError(
                    f"clear_above ({self.clear_above}) must be higher than fire_below "
                    f"({self.fire_below}) so an alert can settle between them (hysteresis)"
                )
            fire, clear = self.fire_below, self.clear_above
        else:
            if self.fire_above is None:
                raise ValueError(
                    "fire_above (with clear_below) or fire_below (with clear_above) is required"
                )
            if self.clear_below is None:
                raise ValueError("clear_below is required with fire_above")
            if not self.clear_below < self.fire_above:
                raise ValueError(
                    f"clear_below ({self.clear_below}) must be lower than fire_above "
                    f"({self.fire_above}) so an alert can settle between them (hysteresis)"
                )
            fire, clear = self.fire_above, self.clear_below
        lo, hi = _BOUNDS.get(self.watched_metric, (-math.inf, math.inf))
        out_of_range = min(fire, clear) < -1.0 or (
            max(fire, clear) >= 1.0 and self.direction == "above"
        )
        if self.watched_metric in _CORRELATIONS and out_of_range:
            raise ValueError(
                f"thresholds watch a correlation: need -1 <= clear_below ({clear}) "
                f"and fire_above ({fire}) < 1"
            )
        if not (lo <= fire <= hi and lo <= clear <= hi):
            raise ValueError(
                f"thresholds for {self.watched_metric} must lie within [{lo}, {hi}], "
                f"got fire {fire} and clear {clear}"
            )
        if self.critical_at is not None and not self.beyond(self.critical_at, fire):
            raise ValueError(
                f"critical_at ({self.critical_at}) must be beyond the fire threshold ({fire}) "
                f"in the rule's direction ({self.direction})"
            )
        if (self.z_fire_above is None) != (self.z_clear_below is None):
            raise ValueError("z_fire_above and z_clear_below must be given together")
        if self.z_fire_above is not None:
            assert self.z_clear_below is not None
            if self.z_metric_name is None:
                raise ValueError(f"kind {self.kind} has no default z_metric; name one")
            if not self.z_clear_below < self.z_fire_above:
                raise ValueError(
                    f"z_clear_below ({self.z_clear_below}) must be lower than z_fire_above "
                    f"({self.z_fire_above})"
                )
        return self

    @property
    def window_hours(self) -> int:
        return parse_window(self.window)

    @property
    def watched_metric(self) -> str:
        return self.metric or KINDS[self.kind].metric

    @property
    def z_metric_name(self) -> str | None:
        return self.z_metric or KINDS[self.kind].z_metric

    @property
    def direction(self) -> Direction:
        return "below" if self.fire_below is not None else "above"

    @property
    def fire_threshold(self) -> float:
        value = self.fire_below if self.direction == "below" else self.fire_above
        return float(value) if value is not None else 0.0

    @property
    def clear_threshold(self) -> float:
        value = self.clear_above if self.direction == "below" else self.clear_below
        return float(value) if value is not None else 0.0

    def beyond(self, value: float, threshold: float) -> bool:
        """Is `value` strictly past `threshold` in the rule's direction?"""
        return value < threshold if self.direction == "below" else value > threshold

    def breaching(self, value: float, z: float | None = None) -> bool:
        if self.beyond(value, self.fire_threshold):
            return True
        return self.z_fire_above is not None and z is not None and z > self.z_fire_above

    def clearing(self, value: float, z: float | None = None) -> bool:
        back = (
            value > self.clear_threshold
            if self.direction == "below"
            else (value < self.clear_threshold)
        )
        if not back:
            return False
        if self.z_clear_below is not None and z is not None:
            return z < self.z_clear_below
        return True

    def at_critical(self, value: float) -> bool:
        """Is `value` at or past `critical_at`?"""
        return self.critical_at is not None and (
            value == self.critical_at or self.beyond(value, self.critical_at)
        )

    def arm(self, value: float, z: float | None = None) -> Arm:
        """The arm a breaching value breaches on: critical before level before z."""
        if self.at_critical(value):
            return "critical"
        if self.beyond(value, self.fire_threshold):
            return "level"
        return "z" if self.breaching(value, z) else "level"

    def arm_threshold(self, arm: Arm) -> float:
        """The threshold an arm crosses (the no-data arm's is its hours)."""
        if arm == "critical" and self.critical_at is not None:
            return float(self.critical_at)
        if arm == "z" and self.z_fire_above is not None:
            return float(self.z_fire_above)
        if arm == "no_data":
            return float(self.no_data_alert_after_hours)
        return self.fire_threshold

    def severity_for(self, value: float) -> Severity:
        if self.critical_at is not None and (
            value == self.critical_at or self.beyond(value, self.critical_at)
        ):
            return "critical"
        return self.severity


@dataclass(frozen=True)
class Observation:
    """The value a rule sees for one subject at one hour; `value` is None when there is no data.

    `threshold` is the rule's fire threshold. `z` is the baseline z (for rules with z_fire_above).
    `context` holds the numbers that explain an alert: metric, window, window_hours, n_obs,
    ci_low/ci_high (Fisher-z 95 %), the SQL that reproduces the value and, for hedges, beta,
    min_var_ratio, held_ratio, ratio_drift, effectiveness; for baskets, n_pairs.
    """

    rule: str
    subject: str
    ts: datetime
    value: float | None
    n_obs: int
    threshold: float
    context: dict[str, Any] = field(default_factory=dict)
    z: float | None = None


def observe(
    rules: Sequence[Rule],
    hedge_metrics: pl.DataFrame,
    basket_metrics: pl.DataFrame,
    ts: datetime,
    freshness: pl.DataFrame | None = None,
) -> list[Observation]:
    """One observation per (rule, subject) at the hour `ts` (an open_time, timezone-aware).

    Rows are matched on open_time == ts and window_hours == the rule's window. "*" expands to every
    hedge/basket/instrument present in the frame for that window (at any hour), so a subject whose
    row is missing at `ts` still gets an observation with value None rather than silently
    vanishing. `freshness` (one row per instrument, see FRESHNESS_COLUMNS) feeds data_staleness
    rules; without it they observe nothing.
    """
    ((_, observations),) = observe_hours(rules, hedge_metrics, basket_metrics, [ts], freshness)
    return observations


def observe_hours(
    rules: Sequence[Rule],
    hedge_metrics: pl.DataFrame,
    basket_metrics: pl.DataFrame,
    hours: Sequence[datetime],
    freshness: pl.DataFrame | None = None,
) -> Iterator[tuple[datetime, list[Observation]]]:
    """`observe` at each of `hours` in turn (the same observations), the frames split by rule
    and hour once rather than once per hour."""
    for ts in hours:
        if ts.tzinfo is None:
            raise ValueError(f"ts must be timezone-aware (UTC), got naive {ts.isoformat()}")
    frames = {
        "hedge": _checked(hedge_metrics, HEDGE_COLUMNS, "hedge_metrics"),
        "basket": _checked(basket_metrics, BASKET_COLUMNS, "basket_metrics"),
        "freshness": _checked(
            freshness if freshness is not None else pl.DataFrame(),
            FRESHNESS_COLUMNS,
            "freshness",
        ),
    }
    prepared: list[tuple[Rule, dict[datetime, pl.DataFrame], pl.DataFrame, list[str]]] = []
    for rule in rules:
        spec = KINDS[rule.kind]
        if not spec.source:
            continue
        frame = frames[spec.source]
        if spec.source != "freshness":
            frame = frame.filter(pl.col("window_hours") == rule.window_hours)
        present = frame.get_column(SUBJECT_COLUMN[spec.source]).unique().sort().to_list()
        by_hour: dict[datetime, pl.DataFrame] = {}
        if hours and not frame.is_empty():
            first, last = min(hours).astimezone(UTC), max(hours).astimezone(UTC)
            span = frame.filter(pl.col("open_time").is_between(first, last))
            by_hour = {
                key[0]: part for key, part in span.partition_by("open_time", as_dict=True).items()
            }
        prepared.append((rule, by_hour, frame.clear(), _expand(rule.subjects, present)))
    for hour in hours:
        ts = hour.astimezone(UTC)
        observations: list[Observation] = []
        for rule, by_hour, empty, subjects in prepared:
            at_ts = by_hour.get(ts, empty)
            observations.extend(observe_rows(rule, at_ts, subjects=subjects, ts=ts))
        yield hour, observations


def observe_rows(
    rule: Rule,
    frame: pl.DataFrame,
    *,
    subjects: Sequence[str] | None = None,
    ts: datetime | None = None,
    explain: bool = True,
) -> Iterator[Observation]:
    """Observations of `rule` for every row of `frame` (already filtered to the rule's window).

    With `subjects` and `ts`, the frame holds the rows of one hour: every listed subject gets an
    observation, None where its row is missing. Without them (a backtest over many hours), each
    row matching the rule's subjects gives one observation, in the frame's order. `explain=False`
    leaves out the context that only a notification needs (CI, hedge numbers, SQL).
    """
    spec = KINDS[rule.kind]
    subject_col = SUBJECT_COLUMN[spec.source]
    metric = rule.watched_metric
    z_col = rule.z_metric_name if rule.z_fire_above is not None else None
    context_cols = [c for c in spec.context if c in frame.columns and c != metric]
    has_metric = metric in frame.columns
    has_z = z_col is not None and z_col in frame.columns
    has_members = "members" in frame.columns
    window_hours = rule.window_hours

    def build(subject: str, at: datetime, row: dict[str, Any] | None) -> Observation:
        raw = row[metric] if row is not None and has_metric else None
        value = _finite(raw)
        if value is not None and rule.kind == "hedge_ratio_drift":
            value = abs(value)
            if rule.drift == "relative":
                held = _finite(row.get("held_ratio")) if row is not None else None
                value = value / held if held else None
        n_obs = int(row.get("n_obs") or 0) if row is not None else 0
        if spec.source == "freshness":
            n_obs = rule.min_obs if row is not None else 0  # freshness is a count, not a sample
        context: dict[str, Any] = {"rule_kind": rule.kind, "metric": metric, "window": rule.window}
        z = _finite(row.get(z_col)) if row is not None and has_z and z_col else None
        if not explain:
            if has_members and row is not None:
                context["members"] = _plain(row.get("members"))
            threshold = rule.fire_threshold
            return Observation(rule.name, subject, at, value, n_obs, threshold, context, z)
        if spec.source != "freshness":
            context["window_hours"] = window_hours
            context["n_obs"] = n_obs
            if metric in _CORRELATIONS:
                ci_low, ci_high = fisher_ci(value, n_obs)
            else:
                ci_low, ci_high = None, None
            if row is not None and metric == "correlation" and "corr_ci_low" in row:
                ci_low = _finite(row.get("corr_ci_low"), ci_low)
                ci_high = _finite(row.get("corr_ci_high"), ci_high)
            context["ci_low"], context["ci_high"] = ci_low, ci_high
        if rule.kind == "hedge_ratio_drift":
            context["drift"] = rule.drift
        if has_members and row is not None:
            context["members"] = _plain(row.get("members"))
        for col in context_cols:
            cell = row.get(col) if row is not None else None
            context[col] = _finite(cell) if isinstance(cell, float) else _plain(cell)
        if z_col is not None:
            context["z_metric"] = z_col
            context["z"] = z
        context["sql"] = reproduce_sql(rule, subject, at, row)
        return Observation(
            rule=rule.name,
            subject=subject,
            ts=at,
            value=value,
            n_obs=n_obs,
            threshold=rule.fire_threshold,
            context=context,
            z=z,
        )

    if subjects is not None and ts is not None:
        rows: dict[str, dict[str, Any]] = {}
        for found in frame.iter_rows(named=True):
            subject = found[subject_col]
            if subject in rows:
                raise ValueError(
                    f"{spec.source}_metrics has several rows for {subject!r}, "
                    f"window_hours={window_hours}, open_time={ts.isoformat()}"
                )
            rows[subject] = found
        for subject in subjects:
            yield build(subject, ts, rows.get(subject))
        return
    wanted = None if "*" in rule.subjects else set(rule.subjects)
    if wanted is not None:
        frame = frame.filter(pl.col(subject_col).is_in(sorted(wanted)))
    if not explain:  # read only what build() reads: far fewer cells per row
        needed = (subject_col, "open_time", metric, z_col, "n_obs", "held_ratio", "members")
        frame = frame.select(list(dict.fromkeys(c for c in needed if c and c in frame.columns)))
    for found in frame.iter_rows(named=True):
        subject = found[subject_col]
        if wanted is None or subject in wanted:
            yield build(subject, found["open_time"], found)


def reproduce_sql(rule: Rule, subject: str, ts: datetime, row: dict[str, Any] | None = None) -> str:
    """Read-only SQL (for `hedgewatch query`) that returns the number the rule saw."""
    spec = KINDS[rule.kind]
    quoted = subject.replace("'", "''")
    at = ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    if spec.source == "freshness":
        series = " AND ".join(
            f"{col} = '{str((row or {}).get(col, '')).replace(chr(39), chr(39) * 2)}'"
            for col in ("venue", "market", "symbol")
        )
        return (
            f"SELECT date_diff('hour', max(open_time), TIMESTAMPTZ '{at}') AS age_hours "
            f"FROM candles WHERE {series} AND open_time <= TIMESTAMPTZ '{at}'"
        )
    if not spec.source:
        return "SELECT * FROM runs ORDER BY started_at DESC LIMIT 5"
    table = TABLE[spec.source]
    column = SUBJECT_COLUMN[spec.source]
    metric = rule.watched_metric
    if rule.kind == "hedge_ratio_drift":
        metric = (
            "abs(ratio_drift) AS abs_drift"
            if rule.drift == "absolute"
            else "abs(ratio_drift) / held_ratio AS relative_drift"
        )
    z = f", {rule.z_metric_name}" if rule.z_fire_above is not None else ""
    return (
        f"SELECT {metric}{z}, n_obs FROM {table} WHERE {column} = '{quoted}' "
        f"AND window_hours = {rule.window_hours} AND open_time = TIMESTAMPTZ '{at}'"
    )


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


def _finite(value: Any, default: float | None = None) -> float | None:
    if value is None or isinstance(value, bool):
        return default if value is None else float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _plain(value: Any) -> Any:
    if isinstance(value, pl.Series):
        value = value.to_list()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value
