"""Render a digest of alert events for a channel: email (text + autoescaped HTML), Slack, file,
generic JSON webhook.

Pure: templates come from alerts/templates, or first from a user's `template_dir` (same names).
Slack payloads are built as dicts here; templates only render their mrkdwn text, escaped.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from hedgewatch.alerts.chart import line_chart_png
from hedgewatch.alerts.state import AlertEvent

ChannelKind = Literal["email", "slack", "file", "webhook", "pagerduty"]
# Body templates of the webhook channel's ready presets (a user's `template` replaces them).
WEBHOOK_PRESETS = {"discord": "webhook.discord.json.j2", "telegram": "webhook.telegram.json.j2"}
PAGERDUTY_SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}

TEMPLATE_NAMES: dict[str, tuple[str, ...]] = {
    "email": ("email.subject.j2", "email.txt.j2", "email.html.j2"),
    "slack": ("slack.header.j2", "slack.event.j2", "slack.text.j2"),
    "file": ("file.subject.j2", "file.md.j2"),
    "webhook": ("file.subject.j2", "email.txt.j2"),
    "pagerduty": ("file.subject.j2",),
}
# Block Kit limits: https://api.slack.com/reference/block-kit/blocks
SLACK_MAX_BLOCKS = 50
# Events shown as attachments in one Slack message; the rest are counted ("…and N more").
SLACK_MAX_EVENTS = 20
SLACK_MAX_SECTION_CHARS = 3000
SLACK_MAX_HEADER_CHARS = 150
SLACK_MAX_TEXT_CHARS = 3000
SUBJECT_MAX_CHARS = 200

_KIND_ORDER = {"firing": 0, "escalated": 1, "repeat": 2, "resolved": 3}
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
# Numbers beyond the core ones that explain an alert when present (baselines, z, freshness).
_EXTRA_NUMBERS = (
    "z",
    "corr_baseline",
    "break_z",
    "residual_vol",
    "absorption_ratio",
    "avg_corr_adj",
    "avg_corr_baseline",
    "avg_corr_z",
    "absorption_z",
    "corr_z",
    "effectiveness_drop",
    "effectiveness_loss",
    "activity",
    "residual_vol_z",
    "basket_return",
    "drawdown_z",
    "vol_z",
    "dispersion_z",
    "missing_hours",
    "fetch_errors",
)
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# One colour per severity (and green for a resolved alert), in the email card and Slack's bar.
SEVERITY_COLOURS = {"critical": "#b91c1c", "warning": "#b45309", "info": "#1d4ed8"}
RESOLVED_COLOUR = "#15803d"
_HEDGE_NUMBERS = ("beta", "min_var_ratio", "held_ratio", "ratio_drift", "effectiveness")


class RenderError(ValueError):
    """A template is missing, fails to parse, or uses a variable that does not exist."""


@dataclass(frozen=True)
class Rendered:
    """What a channel delivers. `payload` is the Slack JSON body (Block Kit + `text` fallback)."""

    subject: str
    text: str
    html: str | None = None
    payload: dict[str, Any] | None = None
    # Pictures the HTML refers to as `cid:<content id>` (PNG bytes): attached to the email.
    images: tuple[tuple[str, bytes], ...] = ()

    def html_inline(self) -> str | None:
        """The HTML with every `cid:` picture as a data URI, to open as a file in a browser."""
        if self.html is None:
            return None
        html = self.html
        for cid, png in self.images:
            data = base64.b64encode(png).decode("ascii")
            html = html.replace(f'src="cid:{cid}"', f'src="data:image/png;base64,{data}"')
        return html


def render(
    events: Sequence[AlertEvent],
    channel_kind: ChannelKind,
    *,
    template_dir: Path | None = None,
    context: Mapping[str, Any] | None = None,
    body_template: str | None = None,
) -> Rendered:
    """Render one digest of `events` (most urgent first) for `channel_kind`.

    `context` adds variables for (user) templates, e.g. `title`; names used by the default
    templates (`events`, `counts`, `hour`) take precedence. For a webhook, `body_template` names
    a template that renders the JSON body (a preset's or the user's); without one the body is
    the generic JSON digest. For PagerDuty the payload holds one Events v2 body per event,
    without the routing key (the channel adds it when sending).
    """
    if not events:
        raise ValueError("render needs at least one event")
    if channel_kind not in TEMPLATE_NAMES:
        raise ValueError(
            f"unknown channel kind {channel_kind!r};"
            " expected email, slack, file, webhook or pagerduty"
        )
    env = _environment(template_dir, channel_kind == "slack")
    views = [_event_view(e) for e in sorted(events, key=_urgency)]
    variables: dict[str, Any] = {
        **(context or {}),
        "events": views,
        "counts": {kind: sum(v["kind_name"] == kind for v in views) for kind in _KIND_ORDER},
        "hour": _utc_label(max(e.ts for e in events)),
    }
    if channel_kind == "email":
        images = _attach_charts(views)
        return Rendered(
            subject=_one_line(_render(env, "email.subject.j2", variables)),
            text=_render(env, "email.txt.j2", variables),
            html=_render(env, "email.html.j2", variables),
            images=images,
        )
    if channel_kind == "webhook":
        subject = _one_line(_render(env, "file.subject.j2", variables))
        text = _render(env, "email.txt.j2", variables)
        if body_template is not None:
            body = _render(env, body_template, {**variables, "subject": subject, "text": text})
            return Rendered(subject=subject, text=text, payload=_json_body(body, body_template))
        payload = {
            "subject": subject,
            "hour": variables["hour"],
            "counts": variables["counts"],
            "text": text,
            "events": [_json_view(v) for v in views],
        }
        return Rendered(subject=subject, text=text, payload=payload)
    if channel_kind == "pagerduty":
        subject = _one_line(_render(env, "file.subject.j2", variables))
        source = str((context or {}).get("source") or "hedgewatch")
        bodies = [_pagerduty_event(v, source) for v in views]
        return Rendered(subject=subject, text=subject, payload={"events": bodies})
    if channel_kind == "file":
        return Rendered(
            subject=_one_line(_render(env, "file.subject.j2", variables)),
            text=_render(env, "file.md.j2", variables),
        )
    return _render_slack(env, variables, views)


def _json_body(body: str, name: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise RenderError(
            f"template {name!r} did not render JSON: {exc.msg} (line {exc.lineno})"
        ) from None
    if not isinstance(payload, dict):
        raise RenderError(f"template {name!r} must render a JSON object")
    return payload


def _pagerduty_event(view: dict[str, Any], source: str) -> dict[str, Any]:
    """One Events v2 body (no routing key): resolve for a resolved alert, else trigger."""
    if view["kind_name"] == "resolved":
        return {"event_action": "resolve", "dedup_key": view["incident_key"]}
    summary = f"{view['kind']} {view['rule']} / {view['subject']}: "
    if view["rule_kind"] == "pipeline_failure":
        summary += f"run {view['run_id']} failed: {view['message']}"
    else:
        summary += (
            f"{view['metric']} {_signed(view['value'])} {view['comparison']} threshold "
            f"{_signed(view['threshold'])}"
        )
    return {
        "event_action": "trigger",
        "dedup_key": view["incident_key"],
        "payload": {
            "summary": _truncate(" ".join(summary.split()), 1024),
            "source": source,
            "severity": PAGERDUTY_SEVERITIES.get(view["severity"], "info"),
            "timestamp": view["ts"],
            "component": view["subject"],
            "group": view["rule"],
            "class": view["rule_kind"] or "alert",
            "custom_details": dict(view["fields"]),
        },
    }


def _attach_charts(views: list[dict[str, Any]]) -> tuple[tuple[str, bytes], ...]:
    """Draw each event's history as a PNG; the view gets the `cid:` its <img> shows."""
    images: list[tuple[str, bytes]] = []
    for view in views:
        view["chart_src"] = None
        history = view["history"]
        if view["history_min"] is None:
            continue
        colour = view["colour"].lstrip("#")
        rgb = (int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16))
        png = line_chart_png(history, colour=rgb, threshold=view["chart_threshold"])
        cid = f"chart-{len(images) + 1}@hedgewatch"
        images.append((cid, png))
        view["chart_src"] = f"cid:{cid}"
    return tuple(images)


def sparkline(values: Sequence[float | None]) -> str:
    """Unicode bars scaled between the series' min and max; a gap (None/NaN) is a space."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    top = len(SPARK_BLOCKS) - 1
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif hi == lo:
            out.append(SPARK_BLOCKS[top // 2])
        else:
            out.append(SPARK_BLOCKS[round((v - lo) / (hi - lo) * top)])
    return "".join(out)


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unescape_mrkdwn(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _render_slack(
    env: jinja2.Environment, variables: dict[str, Any], views: list[dict[str, Any]]
) -> Rendered:
    """Header block, then one attachment per event: its colour bar is the severity (green when
    resolved), its blocks the event's text and, under it, the history with its scale."""
    # The header is plain_text, shown literally: undo the escaping the Slack environment applied.
    header = _unescape_mrkdwn(_one_line(_render(env, "slack.header.j2", variables)))
    text = _truncate(_render(env, "slack.text.j2", variables).strip(), SLACK_MAX_TEXT_CHARS)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _truncate(header, SLACK_MAX_HEADER_CHARS)},
        }
    ]
    shown = views if len(views) <= SLACK_MAX_EVENTS else views[: SLACK_MAX_EVENTS - 1]
    attachments = []
    for view in shown:
        section = _render(env, "slack.event.j2", {**variables, "event": view}).strip()
        event_blocks: list[dict[str, Any]] = [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate(section, SLACK_MAX_SECTION_CHARS)},
            }
        ]
        if view["sparkline"]:
            scale = (
                f"`{view['sparkline']}`  last {view['history_hours']} h · "
                f"min {_num(view['history_min'])} · max {_num(view['history_max'])}"
            )
            event_blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": scale}]}
            )
        attachments.append(
            {
                "color": view["colour"],
                "fallback": _truncate(
                    escape_mrkdwn(f"{view['kind']} {view['rule']} / {view['subject']}"),
                    SLACK_MAX_HEADER_CHARS,
                ),
                "blocks": event_blocks,
            }
        )
    if len(shown) < len(views):
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"…and {len(views) - len(shown)} more"}],
            }
        )
    payload = {"text": text, "blocks": blocks, "attachments": attachments}
    return Rendered(subject=header, text=text, payload=payload)


@lru_cache(maxsize=32)
def _environment(template_dir: Path | None, slack: bool) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("hedgewatch.alerts", "templates")]
    if template_dir is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(template_dir)))
    # Sandboxed: a user template reaches its variables and filters, never Python internals.
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2", "html", "htm", "xml"),
            default_for_string=False,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # Every {{ expression }} in a Slack template is escaped; literal mrkdwn (*bold*) is kept.
        finalize=_finalize_mrkdwn if slack else None,
    )
    env.filters["num"] = _num
    env.filters["signed"] = _signed
    env.filters["pct"] = _pct
    env.filters["clip"] = _truncate
    env.filters["clip_lines"] = _clip_lines
    return env


def _render(env: jinja2.Environment, name: str, variables: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(variables)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name!r} not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(
            f"template {exc.name or name!r} line {exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name!r}: {exc.message or exc}") from None


def _finalize_mrkdwn(value: Any) -> Any:
    return escape_mrkdwn(value) if isinstance(value, str) else value


def _event_view(event: AlertEvent) -> dict[str, Any]:
    ctx = event.context
    has_hedge = any(k in ctx for k in _HEDGE_NUMBERS)
    hedge = {k: ctx.get(k) for k in _HEDGE_NUMBERS} if has_hedge else None
    history = [v if _finite(v) else None for v in ctx.get("history") or []]
    direction = ctx.get("direction", "above")
    opposite = "below" if direction == "above" else "above"
    extras = [(k, ctx[k]) for k in _EXTRA_NUMBERS if isinstance(ctx.get(k), int | float)]
    if isinstance(ctx.get("z"), int | float):
        extras = [(ctx.get("z_metric") or "z", ctx["z"])] + [e for e in extras if e[0] != "z"]
    extras = _unique_names(extras)
    metric, value = ctx.get("metric", "value"), event.value
    arm = ctx.get("arm")
    if arm == "z" and event.kind != "resolved" and isinstance(ctx.get("z"), int | float):
        # The baseline test fired: its z crossed the threshold; the level goes to the extras.
        z_name = ctx.get("z_metric") or "z"
        extras = [(metric, event.value)] + [e for e in extras if e[0] != z_name]
        metric, value = f"{z_name} (baseline z)", ctx["z"]
        extras = _unique_names(extras)
    elif arm == "no_data" and event.kind != "resolved":
        metric, value = "hours without data", event.threshold
    view: dict[str, Any] = {
        "rule": event.rule,
        "subject": event.subject,
        "kind_name": event.kind,
        "kind": event.kind.upper(),
        "severity": event.severity,
        "value": value,
        "threshold": event.threshold,
        "arm": arm,
        "muted_by": ctx.get("muted_by"),
        "comparison": opposite if event.kind == "resolved" else direction,
        "rule_kind": ctx.get("rule_kind", ""),
        "message": ctx.get("message"),
        "run_id": ctx.get("run_id"),
        "breach": ctx.get("breach"),
        "colour": RESOLVED_COLOUR
        if event.kind == "resolved"
        else SEVERITY_COLOURS.get(event.severity, SEVERITY_COLOURS["info"]),
        "history": history,
        "chart_threshold": event.threshold if arm not in ("z", "no_data") else None,
        "sparkline": sparkline(history),
        "history_hours": len(history),
        "history_min": min((v for v in history if v is not None), default=None),
        "history_max": max((v for v in history if v is not None), default=None),
        "extras": extras,
        "extras_text": ", ".join(f"{name} {_num(v)}" for name, v in extras),
        "sql": ctx.get("sql"),
        "venue": ctx.get("venue"),
        "market": ctx.get("market"),
        "symbol": ctx.get("symbol"),
        "last_open_time": ctx.get("last_open_time"),
        "metric": metric,
        "window": ctx.get("window"),
        "n_obs": ctx.get("n_obs"),
        "ci_low": ctx.get("ci_low"),
        "ci_high": ctx.get("ci_high"),
        # "a to b", only when both ends are known numbers
        "ci": f"{_signed(ctx['ci_low'])} to {_signed(ctx['ci_high'])}"
        if _finite(ctx.get("ci_low")) and _finite(ctx.get("ci_high"))
        else None,
        "n_pairs": ctx.get("n_pairs"),
        "members": _members(ctx.get("members")),
        "hedge": hedge,
        "rebalance": _rebalance_view(ctx.get("rebalance")),
        "episode": event.episode,
        "hour": _utc_label(event.ts),
        "ts": event.ts.astimezone(UTC).isoformat(),
        "key": event.key,
        # One incident per alert episode: its trigger, repeats and resolve share this key.
        "incident_key": f"{event.rule}|{event.subject}|{event.episode}",
    }
    low, high, limit = view["history_min"], view["history_max"], view["chart_threshold"]
    if limit is None or low is None or not low <= limit <= high:
        view["chart_threshold"] = None  # the chart draws a threshold only within its range
    view["colour_int"] = int(str(view["colour"]).lstrip("#"), 16)
    view["fields"] = _fields(view)
    return view


def _fields(view: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each of an event's details once, labelled, with unknown values left out: the rows of
    Discord's embed, Telegram's message and PagerDuty's custom details."""
    out: list[tuple[str, str]] = []
    if view["rule_kind"] == "pipeline_failure":
        out.append(("Run", f"{view['run_id']} failed: {view['message']}"))
    else:
        out.append((str(view["metric"]), _signed(view["value"])))
        out.append(("Threshold", f"{view['comparison']} {_signed(view['threshold'])}"))
        if view["rule_kind"] != "data_staleness" and view["window"]:
            n_obs = view["n_obs"]
            out.append(("Window", f"{view['window']}" + (f", {n_obs} obs" if n_obs else "")))
        if view["ci"]:
            out.append(("95% CI", view["ci"]))
        if view["breach"] == "z":
            out.append(("Breach", "on the baseline test, not the level"))
        out.extend((name, _num(v)) for name, v in view["extras"])
        hedge = view["hedge"]
        if hedge:
            out.append(("Held ratio", _num(hedge["held_ratio"])))
            out.append(
                (
                    "Min-variance ratio",
                    f"{_num(hedge['min_var_ratio'])} (drift {_signed(hedge['ratio_drift'])})",
                )
            )
            out.append(("Beta", _num(hedge["beta"])))
            out.append(("Effectiveness", _pct(hedge["effectiveness"])))
        if view["rebalance"]:
            out.append(("Rebalance", view["rebalance"]["text"]))
        if view["n_pairs"] is not None:
            out.append(("Basket", f"{view['n_pairs']} pairs"))
        if view["members"]:
            out.append(("Members", view["members"]))
        if view["venue"]:
            out.append(("Series", f"{view['venue']} {view['market']} {view['symbol']}"))
            out.append(("Last candle", str(view["last_open_time"])))
        if view["history_min"] is not None:
            out.append(
                (
                    f"Last {view['history_hours']} h",
                    f"{view['sparkline']} min {_num(view['history_min'])}"
                    f" · max {_num(view['history_max'])}",
                )
            )
    out.append(("Hour", f"{view['hour']}, episode {view['episode']}"))
    if view["sql"]:
        out.append(("Reproduce", view["sql"]))
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _unique_names(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Each named number once (the first), e.g. break_z given both as the z and by name."""
    seen: set[str] = set()
    out = []
    for name, value in pairs:
        if name not in seen:
            seen.add(name)
            out.append((name, value))
    return out


def _members(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, list | tuple) and value:
        return ", ".join(str(v) for v in value)
    return None


def _rebalance_view(advice: Any) -> dict[str, Any] | None:
    """The trade back to the min-variance ratio (from the hedge lab), with a one-line summary."""
    if not isinstance(advice, Mapping) or advice.get("side") not in ("buy", "sell"):
        return None
    view = dict(advice)
    removed = advice.get("variance_removed_pct")
    instrument = advice.get("instrument", "of the hedge")
    view["text"] = (
        f"{advice['side']} {_amount(advice.get('units'))} {instrument}"
        f" (notional {_amount(advice.get('notional'))}) to the min-variance ratio "
        f"{_num(advice.get('target_ratio'))} (held {_num(advice.get('held_ratio'))}); est. cost "
        f"{_amount(advice.get('cost'))} = fees {_amount(advice.get('fee'))} + slippage "
        f"{_amount(advice.get('slippage'))} + funding to the next settlement "
        f"{_amount(advice.get('funding'))}; removes {_pct(removed)} of the daily P&L variance "
        f"(σ {_amount(advice.get('vol_before'))} → {_amount(advice.get('vol_after'))})"
    )
    return view


def _amount(value: Any) -> str:
    """Money and sizes: thousands separated, significant digits kept for small ones."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.4g}"


def _json_view(view: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: v
        for k, v in view.items()
        if k not in {"hedge", "extras", "kind", "history", "chart_src", "chart_threshold", "fields"}
    }
    out["kind"] = view["kind_name"]
    out.update(dict(view["extras"]))
    if view["hedge"]:
        out.update(view["hedge"])
    return out


def _urgency(event: AlertEvent) -> tuple[int, int, float, str, str]:
    # Firing before resolved, critical before warning, then the newest first.
    return (
        _KIND_ORDER[event.kind],
        _SEVERITY_ORDER[event.severity],
        -event.ts.timestamp(),
        event.rule,
        event.subject,
    )


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}f}"


def _signed(value: Any, digits: int = 3) -> str:
    text = _num(value, digits)
    return text if text == "n/a" or text.startswith("-") else f"+{text}"


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value) * 100:.{digits}f} %"


def _utc_label(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str) -> str:
    # Subjects and headers must not carry newlines (an email header injection vector).
    return _truncate(" ".join(text.split()), SUBJECT_MAX_CHARS)


def _clip_lines(text: str, limit: int) -> str:
    """Whole lines while they fit in `limit` characters, then "…" (keeps each line's markup)."""
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size = 0
    for line in text.split("\n"):
        if size + len(line) + 1 > limit - 2:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept) + "\n…"


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Do not leave half an escape such as "&am" at the end.
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"
