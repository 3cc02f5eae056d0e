"""Rebalance advice in notifications: one line, every channel, escaped like everything else."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from hedgewatch.alerts.render import render
from hedgewatch.alerts.state import AlertEvent

ADVICE = {
    "hedge": "btc-vs-eth-perp",
    "instrument": "ETH-PERP",
    "side": "sell",
    "units": 3.25,
    "notional": 6512.4,
    "price": 2003.8,
    "held_ratio": 0.8,
    "target_ratio": 0.93,
    "fee": 3.2562,
    "slippage": 1.1,
    "funding": -0.65,
    "cost": 3.7062,
    "variance_before": 1.0e6,
    "variance_after": 0.64e6,
    "variance_removed": 0.36e6,
    "variance_removed_pct": 0.36,
    "vol_before": 1000.0,
    "vol_after": 800.0,
}


def drift_event(advice: dict[str, Any] | None) -> AlertEvent:
    context: dict[str, Any] = {
        "rule_kind": "hedge_ratio_drift",
        "metric": "ratio_drift",
        "window": "7d",
        "n_obs": 160,
        "held_ratio": 0.8,
        "min_var_ratio": 0.93,
        "ratio_drift": 0.13,
        "beta": 0.93,
        "effectiveness": 0.9,
    }
    if advice is not None:
        context["rebalance"] = advice
    return AlertEvent(
        rule="hedge-ratio-drift",
        subject="btc-vs-eth-perp",
        ts=datetime(2022, 5, 10, 12, tzinfo=UTC),
        kind="firing",
        value=0.16,
        threshold=0.1,
        severity="info",
        episode=1,
        context=context,
    )


def test_every_channel_states_the_trade_its_cost_and_the_variance_it_removes() -> None:
    line = (
        "sell 3.25 ETH-PERP (notional 6,512) to the min-variance ratio 0.930 (held 0.800); "
        "est. cost 3.706 = fees 3.256 + slippage 1.1 + funding to the next settlement -0.65; "
        "removes 36.0 % of the daily P&L variance (σ 1,000 → 800)"
    )
    event = drift_event(ADVICE)
    email = render([event], "email")
    assert line in email.text
    assert re.search(r">Rebalance</td><td [^>]*>sell 3\.25 ETH-PERP", email.html or "")
    assert line in render([event], "file").text
    slack = render([event], "slack")
    assert "rebalance: sell 3.25 ETH-PERP" in json.dumps(slack.payload, ensure_ascii=False)
    webhook = render([event], "webhook")
    assert webhook.payload is not None
    assert webhook.payload["events"][0]["rebalance"]["side"] == "sell"


def test_no_advice_no_line_and_hostile_names_are_escaped() -> None:
    assert "rebalance" not in render([drift_event(None)], "email").text
    assert "rebalance" not in render([drift_event({"side": "hold"})], "file").text
    hostile = drift_event({**ADVICE, "instrument": "<script>x</script>"})
    html = render([hostile], "email").html or ""
    assert "<script>x" not in html and "&lt;script&gt;x" in html
