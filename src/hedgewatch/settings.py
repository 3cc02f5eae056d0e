"""Settings: one validated object built from the TOML config file and the environment.

Secrets never live in the file: a channel names the environment variable that holds its secret
(`password_env`, `webhook_url_env`) or a Prefect Secret block (`password_secret_block`,
`webhook_url_secret_block`); a missing variable or block is a start-up error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hedgewatch.alerts.rules import Rule, parse_window
from hedgewatch.channel_config import ChannelSettings, FileChannel, SmtpChannel
from hedgewatch.storage.store import Lake
from hedgewatch.transforms.hedges import HedgeSpec
from hedgewatch.transforms.stress import BasketSpec
from hedgewatch.venues import EXCHANGE_MARKETS

Market = Literal["spot", "perp"]
SECRET_FIELDS = {
    "password": "password_env",
    "webhook_url": "webhook_url_env",
    "url": "url_env",
    "token": "token_env",
    "routing_key": "routing_key_env",
}
SECRET_BLOCK_SUFFIX = "_secret_block"  # noqa: S105 (a key suffix, not a secret)
SecretLoader = Callable[[str], str]
# Bounds past which a run would overflow a date or wait for ever: twenty years of history,
# a year of catch-up hours, an hour for any single network or lock wait.
MAX_DAYS = 20 * 366
MAX_HOURS = 366 * 24
MAX_TIMEOUT_S = 3600.0
MAX_DELIVERY_RUNS = 24 * 31  # a month of hourly runs


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message names the file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(_Model):
    """Where the data lives. `duckdb` (default): one private DuckDB file written by hedgewatch,
    published after each command as a read snapshot beside it (`<name>.read.duckdb`, a views file
    over Parquet files in `<name>.read/`) for readers.
    `ducklake`: a DuckLake catalog (`postgres:dbname=… host=…`; the password from PGPASSWORD or
    ~/.pgpass, never here) and a shared data path, written by several workers at once."""

    backend: Literal["duckdb", "ducklake"] = "duckdb"
    database: Path = Path("var/hedgewatch.duckdb")
    catalog: str | None = None
    data_path: str | None = None
    lock_timeout_s: float = Field(default=30.0, gt=0, le=MAX_TIMEOUT_S)

    @model_validator(mode="after")
    def _lake_is_complete(self) -> StorageSettings:
        if self.backend == "ducklake":
            missing = [f for f in ("catalog", "data_path") if not getattr(self, f)]
            if missing:
                raise ValueError(f"backend 'ducklake' needs storage.{missing[0]}")
            if "password=" in (self.catalog or ""):
                raise ValueError(
                    "storage.catalog: no password in the config; set PGPASSWORD or use ~/.pgpass"
                )
        return self

    @property
    def target(self) -> Path | Lake:
        """What `Store.open` opens: the database file, or the lake."""
        if self.backend == "ducklake":
            assert self.catalog is not None and self.data_path is not None
            return Lake(self.catalog, self.data_path)
        return self.database


class MetricsExportSettings(_Model):
    """Prometheus exposition: `textfile` is rewritten after each run (for node_exporter's
    textfile collector); `hedgewatch serve --metrics-port N` serves the same gauges over HTTP."""

    textfile: Path | None = None


class FeeSettings(_Model):
    """A fee schedule in basis points of traded notional (negative maker = a rebate)."""

    maker_bps: float = Field(ge=-100, le=100)
    taker_bps: float = Field(ge=-100, le=100)


class VenueSettings(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    kind: Literal["binance", "bybit", "okx", "coinbase", "kraken", "ccxt"]
    # kind = "ccxt": the ccxt exchange id (needs the hedgewatch[ccxt] extra); symbols are ccxt's.
    exchange: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$")
    base_urls: dict[Market, str] | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_S)
    max_attempts: int = Field(default=6, ge=1, le=10)
    # What one venue may cost a run: a whole request (a dripped body too), all its requests
    # together, and the largest body read (streamed, aborted past it).
    request_deadline_s: float = Field(default=60.0, gt=0, le=MAX_TIMEOUT_S)
    run_deadline_s: float = Field(default=900.0, gt=0, le=MAX_TIMEOUT_S)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    enabled: bool = True
    # What the hedge lab charges per trade on this venue; an instrument may override it.
    fees: FeeSettings = FeeSettings(maker_bps=10.0, taker_bps=10.0)

    @model_validator(mode="after")
    def _ccxt_names_its_exchange(self) -> VenueSettings:
        if self.kind == "ccxt" and not self.exchange:
            raise ValueError("exchange: a ccxt venue needs the ccxt exchange id, e.g. 'kraken'")
        if self.kind != "ccxt" and self.exchange:
            raise ValueError("exchange: only a ccxt venue takes an exchange id")
        return self


class InstrumentSettings(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    venue: str
    market: Market = "spot"
    symbol: str = Field(pattern=r"^[A-Za-z0-9_./-]+$")
    interval: Literal["1h"] = "1h"
    fees: FeeSettings | None = None  # overrides the venue's schedule (e.g. perps vs spot)


class LegSettings(_Model):
    instrument: str
    side: Literal["long", "short"]
    ratio: float = Field(default=1.0, gt=0)
    # The size held, for the hedge lab and rebalance advice: units of the instrument, or a
    # notional in its quote currency (not both).
    units: float | None = Field(default=None, gt=0)
    notional: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_size(self) -> LegSettings:
        if self.units is not None and self.notional is not None:
            raise ValueError("notional: give units or notional for a leg, not both")
        return self

    @property
    def sized(self) -> bool:
        return self.units is not None or self.notional is not None


class HedgeSettings(_Model):
    name: str
    legs: list[LegSettings] = Field(min_length=2, max_length=2)
    note: str = ""

    def spec(self) -> HedgeSpec:
        base, hedge = self.legs
        return HedgeSpec(
            name=self.name,
            base=base.instrument,
            hedge=hedge.instrument,
            base_side=1 if base.side == "long" else -1,
            hedge_side=1 if hedge.side == "long" else -1,
            held_ratio=hedge.ratio / base.ratio,
            base_units=base.ratio,
        )


class ScenarioSettings(_Model):
    """A stress scenario: a window [start, end) of stored history, optionally shocked."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    start: datetime
    end: datetime
    shock_corr: float = 0.0  # Fisher z added to the legs' correlation (> 0: toward +1)
    vol_mult: float = Field(default=1.0, gt=0)
    description: str = ""

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> ScenarioSettings:
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self


class HedgeLabSettings(_Model):
    """The hedge lab's cost model and policies (`hedgewatch hedges backtest|stress`)."""

    # Square-root impact: slippage = impact_coefficient * hourly vol * sqrt(trade / hour's volume).
    impact_coefficient: float = Field(default=1.0, ge=0, le=10)
    vol_hours: int = Field(default=24, ge=2, le=24 * 90)  # trailing hours of that volatility
    liquidity: Literal["taker", "maker"] = "taker"  # which side of the fee schedule trades pay
    window: str = "7d"  # of the rolling min-variance ratio the dynamic policies trade to
    min_coverage: float = Field(default=0.75, gt=0, le=1)
    cadence: str = "24h"  # the fixed-cadence policy's interval
    band: float = Field(default=0.25, ge=0, le=10)  # the band policy: |held - target| / target
    min_gap: str = "8h"  # the band policy's shortest time between two trades
    notional: float = Field(default=100_000.0, gt=0)  # base-leg notional of a hedge without sizes
    scenarios: list[ScenarioSettings] = []

    @field_validator("window", "cadence", "min_gap")
    @classmethod
    def _durations(cls, value: str) -> str:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _unique_scenarios(self) -> HedgeLabSettings:
        names = [s.name for s in self.scenarios]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"scenarios: duplicate name {name!r}")
        return self


class BasketSettings(_Model):
    name: str
    members: list[str] = Field(min_length=2)

    def spec(self, absorption_k: int | None = None) -> BasketSpec:
        return BasketSpec(name=self.name, members=tuple(self.members), absorption_k=absorption_k)


class MetricsSettings(_Model):
    windows: list[str] = ["24h", "7d"]
    min_coverage: float = Field(default=0.75, gt=0, le=1)
    spearman: bool = False  # also store rank correlation per pair and window
    ewma_halflife_hours: list[int] = []  # EWMA correlation per pair for each half-life
    absorption_k: int | None = Field(default=None, ge=1)  # default: about a fifth of a basket
    baseline_days: int = Field(default=30, ge=1, le=365)  # trailing baseline of the z-scores
    daily_baskets: list[str] = []  # baskets computed on daily returns (slow baskets)
    funding: bool = True  # add funding payments to the perp legs of hedges
    confidence: float = Field(default=0.95, gt=0, lt=1)  # of the correlation intervals

    @field_validator("ewma_halflife_hours")
    @classmethod
    def _halflives_positive(cls, value: list[int]) -> list[int]:
        if any(h < 1 for h in value):
            raise ValueError("half-lives must be >= 1 hour")
        return sorted(set(value))

    @field_validator("windows")
    @classmethod
    def _windows_parse(cls, value: list[str]) -> list[str]:
        for window in value:
            parse_window(window)
        if not value:
            raise ValueError("at least one window is required")
        return value

    @property
    def window_hours(self) -> list[int]:
        return sorted({parse_window(w) for w in self.windows})

    def min_obs(self, window_hours: int) -> int:
        return max(3, int(window_hours * self.min_coverage))

    def daily_min_obs(self, window_hours: int) -> int:
        """Observations (days) a daily basket needs in a window of window_hours."""
        return max(3, int(window_hours // 24 * self.min_coverage))

    @property
    def baseline_hours(self) -> int:
        return self.baseline_days * 24

    @property
    def z(self) -> float:
        """Two-sided normal quantile of `confidence`."""
        return NormalDist().inv_cdf(0.5 + self.confidence / 2)


class SilenceSettings(_Model):
    """A silence from the config: events of `rule` for `subject` until `until` are not sent."""

    rule: str = "*"
    subject: str = "*"
    until: datetime
    reason: str = ""

    @field_validator("until")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AlertSettings(_Model):
    catch_up_hours: int = Field(default=24, ge=1, le=MAX_HOURS)
    template_dir: Path | None = None
    # Hours of each metric kept with an alert, drawn as its sparkline.
    sparkline_hours: int = Field(default=72, ge=0, le=24 * 31)
    # Delivery: attempts per notification within one run, and the first backoff between them.
    delivery_attempts: int = Field(default=3, ge=1, le=10)
    delivery_backoff_s: float = Field(default=1.0, ge=0, le=MAX_TIMEOUT_S)
    # Runs a notification is tried before it is given up ('dead', reported once): a day hourly.
    delivery_max_runs: int = Field(default=24, ge=1, le=MAX_DELIVERY_RUNS)
    # A channel that cannot drop a duplicate (Slack, Discord, Telegram, a templated webhook) gets
    # a send that went out unanswered once more, no sooner than this after it.
    delivery_uncertain_delay_s: float = Field(default=1800.0, ge=0, le=24 * 3600)
    rules: list[Rule] = []
    silences: list[SilenceSettings] = []


class FetchSettings(_Model):
    history_start: datetime | None = None
    backfill_days: int = Field(default=30, ge=1, le=MAX_DAYS)
    max_workers: int = Field(default=4, ge=1, le=32)
    # Whose clock says which candles have closed: "system" (ours, checked against the venue's;
    # the earlier wins) or "venue" (the venue's alone: a replay exchange serving past history).
    clock: Literal["system", "venue"] = "system"

    @field_validator("history_start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def start_for(self, now: datetime) -> datetime:
        return self.history_start or (now - timedelta(days=self.backfill_days))


# minute, hour, day of month, month, day of week (0 and 7 are Sunday)
_CRON_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _plain_cron(fields: list[str]) -> bool:
    """Whether five cron fields are plainly valid: `*`, numbers and ascending ranges within each
    field's bounds, steps on `*` or a range, lists of these; a day of month past 28 only in every
    month. Prefect's parser accepts all of them; anything else (names, L, W, #, ?) is left to it.
    """
    for i, (text, (lo, hi)) in enumerate(zip(fields, _CRON_BOUNDS, strict=True)):
        for part in text.split(","):
            span, slash, step = part.partition("/")
            if slash and not (step.isdigit() and 0 < int(step) <= hi and span != ""):
                return False
            if span == "*":
                continue
            first, dash, last = span.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()) or (slash and not dash):
                return False
            top = int(last) if dash else int(first)
            if not lo <= int(first) <= top <= hi:
                return False
            if i == 2 and top > 28 and fields[3] != "*":
                return False
    return True


class ScheduleSettings(_Model):
    """How `hedgewatch serve` and `prefect.yaml` schedule the hourly run."""

    deployment: str = Field(default="hourly", pattern=r"^[A-Za-z0-9_.-]+$")
    cron: str = "5 * * * *"  # a few minutes past the hour, once the hourly candle has closed
    timezone: str = "UTC"
    run_timeout_s: float = Field(
        default=3300.0, gt=0, le=24 * 3600
    )  # a whole scheduled run, under the hour
    step_timeout_s: float = Field(
        default=900.0, gt=0, le=24 * 3600
    )  # each database step and the delivery

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(
                f"expected five cron fields (minute hour day month weekday): {value!r}"
            )
        if _plain_cron(fields):
            return value  # no need to load Prefect (seconds) to read a plain cron line
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=value, timezone="UTC")
        except ValueError:
            raise ValueError(f"not a valid cron expression: {value!r}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_known(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'UTC')"
            ) from None
        return value


class Settings(_Model):
    storage: StorageSettings = StorageSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    fetch: FetchSettings = FetchSettings()
    venues: list[VenueSettings] = Field(min_length=1)
    instruments: list[InstrumentSettings] = Field(min_length=1)
    hedges: list[HedgeSettings] = []
    baskets: list[BasketSettings] = []
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertSettings = AlertSettings()
    hedge_lab: HedgeLabSettings = HedgeLabSettings()
    channels: dict[str, ChannelSettings] = {}
    metrics_export: MetricsExportSettings = MetricsExportSettings()
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        venues = {v.name for v in self.venues}
        ids = [i.id for i in self.instruments]
        _unique("instruments", "id", ids)
        _unique("venues", "name", [v.name for v in self.venues])
        _unique("hedges", "name", [h.name for h in self.hedges])
        _unique("baskets", "name", [b.name for b in self.baskets])
        kinds = {v.name: v.kind for v in self.venues}
        for n, inst in enumerate(self.instruments):
            if inst.venue not in venues:
                raise ValueError(f"instruments.{n}.venue: unknown venue {inst.venue!r}")
            offered = EXCHANGE_MARKETS.get(kinds[inst.venue], ("spot", "perp"))
            if inst.market not in offered:
                raise ValueError(
                    f"instruments.{n}.market: {kinds[inst.venue]} venue {inst.venue!r} offers "
                    f"{' and '.join(offered)} only, not {inst.market!r}"
                )
        known = set(ids)
        for n, hedge in enumerate(self.hedges):
            for m, leg in enumerate(hedge.legs):
                if leg.instrument not in known:
                    raise ValueError(
                        f"hedges.{n}.legs.{m}.instrument: unknown instrument {leg.instrument!r}"
                    )
        for n, basket in enumerate(self.baskets):
            for member in basket.members:
                if member not in known:
                    raise ValueError(f"baskets.{n}.members: unknown instrument {member!r}")
        subjects = self.subjects_by_kind()
        windows = set(self.metrics.window_hours)
        _unique("alerts.rules", "name", [r.name for r in self.alerts.rules])
        for n, rule in enumerate(self.alerts.rules):
            for subject in rule.subjects:
                if rule.kind == "pipeline_failure":
                    continue
                if subject != "*" and subject not in subjects.get(rule.kind, set()):
                    raise ValueError(
                        f"alerts.rules.{n}.subjects: unknown subject {subject!r} "
                        f'(rule "{rule.name}")'
                    )
            if rule.kind in ("pipeline_failure", "data_staleness"):
                pass
            elif rule.window_hours not in windows:
                raise ValueError(
                    f"alerts.rules.{n}.window: {rule.window!r} is not one of metrics.windows "
                    f'(rule "{rule.name}")'
                )
            for channel in rule.channels:
                if channel not in self.channels:
                    raise ValueError(
                        f"alerts.rules.{n}.channels: unknown channel {channel!r} "
                        f'(rule "{rule.name}")'
                    )
        names = {r.name for r in self.alerts.rules} | {"*"}
        for n, silence in enumerate(self.alerts.silences):
            if silence.rule not in names:
                raise ValueError(f"alerts.silences.{n}.rule: unknown rule {silence.rule!r}")
            known_subjects = self.silence_subjects(silence.rule)
            if (
                silence.subject != "*"
                and known_subjects is not None
                and (silence.subject not in known_subjects)
            ):
                raise ValueError(
                    f"alerts.silences.{n}.subject: unknown subject {silence.subject!r} "
                    f"for rule {silence.rule!r}"
                )
        return self

    def subjects_by_kind(self) -> dict[str, set[str]]:
        """The subjects each rule kind can name: hedges, baskets or instruments."""
        hedge_names = {h.name for h in self.hedges}
        basket_names = {b.name for b in self.baskets}
        return {
            "hedge_decoupling": hedge_names,
            "hedge_ratio_drift": hedge_names,
            "hedge_effectiveness": hedge_names,
            "correlation_spike": basket_names,
            "market_stress": basket_names,
            "data_staleness": {i.id for i in self.instruments},
        }

    def silence_subjects(self, rule: str) -> set[str] | None:
        """Subjects a silence of `rule` ('*': any rule) can name; None: any (a flow's name)."""
        by_kind = self.subjects_by_kind()
        kinds = (
            list(by_kind) if rule == "*" else [r.kind for r in self.alerts.rules if r.name == rule]
        )
        if "pipeline_failure" in kinds:
            return None
        found: set[str] = set()
        for kind in kinds:
            found |= by_kind.get(kind, set())
        return found

    @model_validator(mode="after")
    def _metrics_resolve(self) -> Settings:
        sizes = {b.name: len(b.members) for b in self.baskets}
        for n, name in enumerate(self.metrics.daily_baskets):
            if name not in sizes:
                raise ValueError(f"metrics.daily_baskets.{n}: unknown basket {name!r}")
        k = self.metrics.absorption_k
        for name, size in sizes.items():
            if k is not None and k > size:
                raise ValueError(
                    f"metrics.absorption_k: {k} is more than basket {name!r} has members ({size})"
                )
        return self

    def instrument(self, instrument_id: str) -> InstrumentSettings:
        return next(i for i in self.instruments if i.id == instrument_id)

    def venue(self, name: str) -> VenueSettings:
        return next(v for v in self.venues if v.name == name)

    def fees(self, instrument_id: str) -> FeeSettings:
        """The instrument's own fee schedule, else its venue's."""
        inst = self.instrument(instrument_id)
        return inst.fees or self.venue(inst.venue).fees


def _unique(section: str, key: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{section}: duplicate {key} {value!r}")
        seen.add(value)


def load_prefect_secret(block: str) -> str:
    """The value of the Prefect Secret block `block` (from the Prefect API in use)."""
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(block)
    except ValueError:
        raise ConfigError(f"Prefect Secret block {block!r} not found") from None
    except Exception as exc:  # the API is unreachable or refuses: say which, never the value
        raise ConfigError(
            f"Prefect Secret block {block!r} could not be loaded ({type(exc).__name__})"
        ) from None
    return str(secret.get())  # type: ignore[union-attr]


UNLOADED_SECRET = "(not loaded)"  # noqa: S105 - a placeholder, never a secret


def _inject_secrets(
    raw: dict[str, Any],
    env: Mapping[str, str],
    load_secret: SecretLoader = load_prefect_secret,
    *,
    resolve: bool = True,
) -> None:
    """Replace `<secret>_env` / `<secret>_secret_block` names in channel tables by the values
    (by a placeholder when `resolve` is false: nothing is read from the environment or Prefect)."""
    channels = raw.get("channels")
    if not isinstance(channels, dict):
        return
    for name, table in channels.items():
        if not isinstance(table, dict):
            continue
        for secret, env_key in SECRET_FIELDS.items():
            block_key = secret + SECRET_BLOCK_SUFFIX
            if secret in table:
                raise ConfigError(
                    f"channels.{name}.{secret}: secrets do not belong in the config file; "
                    f"set {env_key} to the name of an environment variable "
                    f"(or {block_key} to a Prefect Secret block) instead"
                )
            if env_key in table and block_key in table:
                raise ConfigError(
                    f"channels.{name}.{block_key}: give {env_key} or {block_key}, not both"
                )
            if not resolve:
                if table.pop(block_key, None) is not None or table.pop(env_key, None) is not None:
                    table[secret] = UNLOADED_SECRET
                continue
            if block_key in table:
                block = str(table.pop(block_key))
                try:
                    block_value = load_secret(block)
                except ConfigError as exc:
                    raise ConfigError(f"channels.{name}.{block_key}: {exc}") from None
                if not block_value:
                    raise ConfigError(
                        f"channels.{name}.{block_key}: Prefect Secret block {block!r} is empty"
                    )
                table[secret] = block_value
            if env_key in table:
                variable = table.pop(env_key)
                value = env.get(str(variable))
                if not value:
                    raise ConfigError(
                        f"channels.{name}.{env_key}: environment variable {variable} is not set"
                    )
                table[secret] = value


def _format_errors(path: Path, error: ValidationError, raw: Mapping[str, Any]) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {loc}{_rule_label(item['loc'], raw)}: {item['msg']}")
    return "\n".join(lines)


def _rule_label(loc: tuple[Any, ...], raw: Mapping[str, Any]) -> str:
    """' (rule "name")' when an error sits inside alerts.rules.N, so the rule is named."""
    if len(loc) >= 3 and loc[0] == "alerts" and loc[1] == "rules" and isinstance(loc[2], int):
        rules = raw.get("alerts", {}).get("rules", [])
        if isinstance(rules, list) and loc[2] < len(rules) and isinstance(rules[loc[2]], dict):
            name = rules[loc[2]].get("name")
            if isinstance(name, str):
                return f' (rule "{name}")'
    return ""


def load_settings(
    path: Path | str,
    env: Mapping[str, str] | None = None,
    load_secret: SecretLoader = load_prefect_secret,
    *,
    secrets: bool = True,
) -> Settings:
    """Read and validate a config file; raises ConfigError naming the file and the field.

    With `secrets=False` (commands that only read the database) no channel secret is looked up:
    each is replaced by a placeholder, and a missing variable or block is no error.
    """
    path = Path(path)
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        _inject_secrets(raw, env, load_secret, resolve=secrets)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    database = env.get("HEDGEWATCH_DATABASE")
    if database:
        raw.setdefault("storage", {})["database"] = database
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc, raw)) from None
    base = path.parent
    storage = settings.storage
    if not storage.database.is_absolute() and not database:
        storage = storage.model_copy(update={"database": (base / storage.database).resolve()})
    channels = {
        name: channel.model_copy(update={"dir": (base / channel.dir).resolve()})
        if isinstance(channel, FileChannel) and not channel.dir.is_absolute()
        else channel.model_copy(update={"ca_file": (base / channel.ca_file).resolve()})
        if isinstance(channel, SmtpChannel)
        and channel.ca_file is not None
        and not channel.ca_file.is_absolute()
        else channel
        for name, channel in settings.channels.items()
    }
    alerts = settings.alerts
    if alerts.template_dir is not None and not alerts.template_dir.is_absolute():
        alerts = alerts.model_copy(update={"template_dir": (base / alerts.template_dir).resolve()})
    metrics_export = settings.metrics_export
    textfile = metrics_export.textfile
    if textfile is not None and not textfile.is_absolute():
        metrics_export = metrics_export.model_copy(update={"textfile": (base / textfile).resolve()})
    return settings.model_copy(
        update={
            "storage": storage,
            "channels": channels,
            "alerts": alerts,
            "metrics_export": metrics_export,
            "source": path.resolve(),
        }
    )


CONFIG_ENV = "HEDGEWATCH_CONFIG"
DEFAULT_CONFIG = "hedgewatch.toml"


def resolve_config(config_path: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The config a run reads, decided when it runs: `config_path` when given (a deployment's
    parameter, the -c option), else $HEDGEWATCH_CONFIG, else hedgewatch.toml in the working
    directory."""
    env = os.environ if env is None else env
    return Path(config_path or env.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()


def utc_now() -> datetime:
    return datetime.now(UTC)
