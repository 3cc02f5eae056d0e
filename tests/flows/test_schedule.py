"""Scheduling with Prefect: the deployment and its schedule, venue limits, Secret blocks."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hedgewatch.flows.scheduling import FLOW_NAME, build_deployment, ensure_venue_limits
from hedgewatch.settings import ConfigError, ScheduleSettings, _plain_cron, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_hourly_deployment_registers_with_its_cron_schedule(
    prefect_harness: None, small_config: Any, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    config = small_config(
        tmp_path,
        "http://127.0.0.1:9",
        "2022-05-01T00:00:00Z",
        schedule={"cron": "7 * * * *", "deployment": "hourly-test"},
    )
    settings = load_settings(config)
    deployment_id = build_deployment(settings, config).apply()
    try:
        assert ensure_venue_limits(settings) == ["venue:binance"]
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"{FLOW_NAME}/hourly-test")
            limit = client.read_concurrency_limit_by_tag("venue:binance")
    finally:
        # The session's other flows share this server: a run killed mid-fetch (the crash test)
        # would hold the venue's slot until its lease expires (300 s).
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("venue:binance")
    assert deployment.id == deployment_id
    assert deployment.parameters == {"config_path": str(config.resolve())}
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == 1
    (schedule,) = deployment.schedules
    assert schedule.active
    assert schedule.schedule.cron == "7 * * * *"  # type: ignore[union-attr]
    assert schedule.schedule.timezone == "UTC"  # type: ignore[union-attr]
    assert limit.concurrency_limit == 1


def test_prefect_yaml_declares_the_same_flow_and_schedule_as_serve_under_its_own_name() -> None:
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = declared["deployments"]
    defaults = ScheduleSettings()
    # Its own name: deploying it never replaces the deployment `hedgewatch serve` registers.
    assert deployment["name"] != defaults.deployment
    assert deployment["concurrency_limit"] == 1
    assert deployment["schedules"] == [
        {"cron": defaults.cron, "timezone": defaults.timezone, "active": True}
    ]
    module, function = deployment["entrypoint"].split(":")
    from hedgewatch.flows.hourly import hourly

    assert getattr(importlib.import_module(module), function) is hourly
    assert hourly.name == FLOW_NAME
    # No config_path: the run resolves it when it starts ($HEDGEWATCH_CONFIG or hedgewatch.toml).
    assert deployment["parameters"] == {}


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"cron": "every hour"}, "schedule.cron"),
        ({"cron": "61 * * * *"}, "schedule.cron"),
        ({"timezone": "Mars/Olympus"}, "schedule.timezone"),
        ({"deployment": "hourly run"}, "schedule.deployment"),
    ],
)
def test_a_bad_schedule_names_the_field(
    small_config: Any, tmp_path: Path, schedule: dict[str, Any], field: str
) -> None:
    config = small_config(tmp_path, "http://127.0.0.1:9", "2022-05-01T00:00:00Z", schedule=schedule)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(config)


def _with_slack_block(small_config: Any, tmp_path: Path, block: str) -> Path:
    return small_config(
        tmp_path,
        "http://127.0.0.1:9",
        "2022-05-01T00:00:00Z",
        channels={"slack": {"kind": "slack", "webhook_url_secret_block": block}},
    )


@pytest.mark.slow
def test_a_channel_secret_can_come_from_a_prefect_secret_block(
    prefect_harness: None, small_config: Any, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret

    url = "http://127.0.0.1:9/services/T0/B0/block-secret-token"
    Secret(value=url).save("hw-desk-slack", overwrite=True)
    settings = load_settings(_with_slack_block(small_config, tmp_path, "hw-desk-slack"))
    assert settings.channels["slack"].webhook_url.get_secret_value() == url  # type: ignore[union-attr]
    assert "block-secret-token" not in repr(settings)

    with pytest.raises(ConfigError) as missing:
        load_settings(_with_slack_block(small_config, tmp_path, "hw-no-such-block"))
    assert "channels.slack.webhook_url_secret_block" in str(missing.value)
    assert "'hw-no-such-block' not found" in str(missing.value)


def test_env_and_block_for_one_secret_is_an_error(small_config: Any, tmp_path: Path) -> None:
    config = small_config(
        tmp_path,
        "http://127.0.0.1:9",
        "2022-05-01T00:00:00Z",
        channels={
            "slack": {
                "kind": "slack",
                "webhook_url_env": "SLACK_URL",
                "webhook_url_secret_block": "desk",
            }
        },
    )
    with pytest.raises(ConfigError, match="not both"):
        load_settings(config, env={"SLACK_URL": "http://x"}, load_secret=lambda name: "unused")


def test_serve_rejects_a_bad_cron_and_needs_a_prefect_server(
    small_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from hedgewatch.cli import app

    config = str(small_config(tmp_path, "http://127.0.0.1:9", "2022-05-01T00:00:00Z"))
    result = CliRunner().invoke(app, ["serve", "-c", config, "--cron", "whenever"])
    assert result.exit_code == 2 and "--cron" in result.stderr
    from hedgewatch.flows import runtime

    monkeypatch.setattr(runtime, "configured_api_url", lambda: None)
    result = CliRunner().invoke(app, ["serve", "-c", config])
    assert result.exit_code == 2 and "PREFECT_API_URL" in result.stderr


def test_only_database_steps_retry_and_only_when_the_file_was_busy() -> None:
    from prefect.states import Failed

    from hedgewatch.flows import hourly
    from hedgewatch.storage.store import StoreBusy, StoreError

    assert hourly.retry_when_busy(None, None, Failed(data=StoreBusy("held by another process")))
    assert not hourly.retry_when_busy(None, None, Failed(data=StoreError("cannot open")))
    assert not hourly.retry_when_busy(None, None, Failed(data=ValueError("a bug")))
    # The exchange client retries HTTP and the outbox retries deliveries: never the task.
    assert hourly.fetch.retries == 0 and hourly.deliver.retries == 0
    for step in (hourly.read_watermarks, hourly.load_compute_evaluate, hourly.publish):
        assert step.retries == 1 and step.retry_condition_fn is hourly.retry_when_busy


_NUMBER = st.sampled_from(
    ["0", "1", "5", "05", "7", "12", "23", "24", "28", "29", "31", "32", "59", "60"]
)
_STEP = st.sampled_from(["0", "1", "2", "15", "30", "59", "60"])
_PART = st.one_of(
    st.just("*"),
    st.builds("*/{}".format, _STEP),
    _NUMBER,
    st.builds("{}-{}".format, _NUMBER, _NUMBER),
    st.builds("{}-{}/{}".format, _NUMBER, _NUMBER, _STEP),
    st.builds("{}/{}".format, _NUMBER, _STEP),
    st.sampled_from(["MON", "jan", "L", "15W", "?", "5#2", "H", "-", "1-", "/5"]),
)
_FIELD = st.one_of(st.just("*"), st.lists(_PART, min_size=1, max_size=3).map(",".join))


@settings(max_examples=400, deadline=None)
@given(fields=st.lists(_FIELD, min_size=5, max_size=5))
def test_a_cron_line_is_accepted_exactly_when_prefect_accepts_it(fields: list[str]) -> None:
    # Plain lines are checked without loading Prefect (seconds for every command that reads the
    # config); the verdict must stay Prefect's.
    from prefect.client.schemas.schedules import CronSchedule

    value = " ".join(fields)
    try:
        CronSchedule(cron=value, timezone="UTC")
        expected = True
    except ValueError:
        expected = False
    try:
        ScheduleSettings(cron=value)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == expected
    assert expected or not _plain_cron(fields)


def test_the_usual_cron_lines_are_plain() -> None:
    for line in (
        ScheduleSettings().cron,
        "0 * * * *",
        "*/15 * * * *",
        "5 1-23/2 * * 1-5",
        "0 0 31 * 0,7",
    ):
        assert _plain_cron(line.split()), line
