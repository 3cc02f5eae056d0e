"""Rendering digests: escaping per channel, Slack limits, and user template overrides."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.alerts.render import RenderError, escape_mrkdwn, render
from hedgewatch.alerts.state import AlertEvent

TS = datetime(2024, 8, 5, 14, tzinfo=UTC)
HEDGE_CONTEXT = {
    "metric": "correlation",
    "window": "24h",
    "window_hours": 24,
    "n_obs": 23,
    "ci_low": -0.21,
    "ci_high": 0.52,
    "beta": 0.12,
    "min_var_ratio": -0.12,
    "held_ratio": 1.0,
    "ratio_drift": -1.12,
    "effectiveness": 0.054,
}
BASKET_CONTEXT = {
    "metric": "avg_corr",
    "window": "7d",
    "window_hours": 168,
    "n_obs": 160,
    "ci_low": 0.81,
    "ci_high": 0.9,
    "n_pairs": 6,
}


def event(
    subject: str = "btc-eth",
    kind: Any = "firing",
    *,
    rule: str = "decouple",
    value: float = 0.21,
    severity: Any = "critical",
    context: dict[str, Any] | None = None,
    hour: int = 0,
) -> AlertEvent:
    return AlertEvent(
        rule=rule,
        subject=subject,
        ts=TS + timedelta(hours=hour),
        kind=kind,
        value=value,
        threshold=0.0 if kind != "resolved" else -0.3,
        severity=severity,
        episode=1,
        context=HEDGE_CONTEXT if context is None else context,
    )


def test_email_shows_every_number_that_explains_the_alert() -> None:
    spike = event(
        "majors", "resolved", rule="spike", value=0.62, severity="info", context=BASKET_CONTEXT
    )
    out = render([spike, event()], "email")
    for text in (out.text, out.html or ""):
        # Most urgent first: the firing hedge before the resolved basket.
        assert text.index("btc-eth") < text.index("majors")
        for expected in (
            "FIRING", "RESOLVED", "decouple", "critical", "+0.210", "+0.000", "24h", "23",
            "-0.210", "+0.520", "0.120", "-1.120", "5.4 %", "2024-08-05 14:00 UTC",
            "avg_corr", "+0.620", "-0.300", "7d", "160", "6 pairs",
        ):  # fmt: skip
            assert expected.lower() in text.lower(), expected
    assert out.subject == (
        "[hedgewatch] 1 firing, 1 resolved: decouple / btc-eth and 1 more (2024-08-05 14:00 UTC)"
    )


def test_html_email_escapes_a_hostile_subject_name() -> None:
    out = render([event("<script>alert(1)</script>")], "email")
    assert out.html is not None
    assert "<script>" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    # Plain text is not HTML: it keeps the name as is.
    assert "<script>alert(1)</script>" in out.text


def test_slack_payload_is_json_with_escaped_mrkdwn() -> None:
    out = render([event("<!channel> & <@U123|x>")], "slack")
    assert out.payload is not None
    payload = json.loads(json.dumps(out.payload))
    section = payload["attachments"][0]["blocks"][0]["text"]
    assert section["type"] == "mrkdwn"
    assert "&lt;!channel&gt; &amp; &lt;@U123|x&gt;" in section["text"]
    everything = json.dumps(payload)
    assert "<!channel>" not in everything and "<@U123" not in everything
    assert payload["text"] == out.text and "&lt;!channel&gt;" in payload["text"]
    assert payload["blocks"][0]["type"] == "header"


def test_slack_shows_twenty_events_as_coloured_attachments_and_counts_the_rest() -> None:
    events = [event(f"hedge-{n:03d}", hour=n) for n in range(120)]
    events += [event("calm", "resolved", severity="info"), event("w", severity="warning", hour=200)]
    payload = render(events, "slack").payload
    assert payload is not None
    blocks, attachments = payload["blocks"], payload["attachments"]
    assert len(attachments) == 19 and len(blocks) == 2
    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "…and 103 more"}],
    }
    assert len(payload["text"]) <= 3000
    assert {a["color"] for a in attachments} == {"#b91c1c"}  # the most urgent first: critical
    few = render(events[-2:] + events[:1], "slack").payload
    assert few is not None
    assert [a["color"] for a in few["attachments"]] == ["#b91c1c", "#b45309", "#15803d"]


def test_slack_gives_the_sparkline_its_span_and_scale() -> None:
    history = [0.9, 0.8, None, 0.5, 0.21]
    payload = render([event(context={**HEDGE_CONTEXT, "history": history})], "slack").payload
    assert payload is not None
    [section, context] = payload["attachments"][0]["blocks"]
    assert context == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "`█▇ ▄▁`  last 5 h · min 0.210 · max 0.900"}],
    }
    assert "n/a" not in section["text"]["text"]


def test_slack_section_text_is_capped_at_3000_chars(tmp_path: Path) -> None:
    (tmp_path / "slack.event.j2").write_text("{{ event.subject }}" * 400)
    out = render([event("a&b" * 10)], "slack", template_dir=tmp_path)
    assert out.payload is not None
    text = out.payload["attachments"][0]["blocks"][0]["text"]["text"]
    assert len(text) <= 3000 and text.endswith("…")
    # The cut never leaves half an escape behind.
    assert re.search(r"&[a-z]{0,3}$", text[:-1]) is None


def test_slack_header_stays_within_block_kit_limits() -> None:
    out = render([event()], "slack", context={"title": "x" * 400})
    assert out.payload is not None
    assert len(out.payload["blocks"][0]["text"]["text"]) <= 150


def test_user_template_dir_overrides_one_template_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "email.subject.j2").write_text("{{ desk }}: {{ events|length }} alert(s)\n")
    out = render(
        [event(), event("sol-usdc")], "email", template_dir=tmp_path, context={"desk": "Risk"}
    )
    assert out.subject == "Risk: 2 alert(s)"
    assert out.html is not None and "sol-usdc" in out.html


def test_user_html_override_is_autoescaped_too(tmp_path: Path) -> None:
    (tmp_path / "email.html.j2").write_text("<p>{{ events[0].subject }}</p>")
    out = render([event("<b>x</b>")], "email", template_dir=tmp_path)
    assert out.html == "<p>&lt;b&gt;x&lt;/b&gt;</p>"


def test_undefined_template_variable_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file.md.j2").write_text("{{ no_such_thing }}")
    with pytest.raises(RenderError, match=r"file\.md\.j2.*no_such_thing"):
        render([event()], "file", template_dir=tmp_path)


def test_file_rendering_is_markdown_with_the_idempotency_keys() -> None:
    ev = event()
    out = render([ev], "file")
    assert out.html is None and out.payload is None
    assert out.text.startswith("# hedgewatch alerts, 2024-08-05 14:00 UTC")
    assert ev.key in out.text


def test_subject_never_spans_lines(tmp_path: Path) -> None:
    (tmp_path / "email.subject.j2").write_text(
        "a\r\nBcc: victim@example.com\n{{ events[0].subject }}"
    )
    out = render([event("x\ny")], "email", template_dir=tmp_path)
    assert "\n" not in out.subject and "\r" not in out.subject


def test_missing_hedge_numbers_render_as_n_a_and_an_unknown_ci_is_left_out() -> None:
    context = {**HEDGE_CONTEXT, "beta": None, "ci_low": None, "ci_high": None}
    for kind in ("email", "file", "slack"):
        out = render([event(context=context)], kind)  # type: ignore[arg-type]
        shown = out.text + (out.html or "") + json.dumps(out.payload or {}, ensure_ascii=False)
        assert "n/a to n/a" not in shown and "CI" not in shown.replace("CIRCLE", "")
    assert "beta n/a" in render([event(context=context)], "email").text


def test_a_z_given_both_as_the_z_and_by_name_is_shown_once() -> None:
    context = {**HEDGE_CONTEXT, "z": 3.1, "z_metric": "break_z", "break_z": 3.1}
    for kind in ("email", "file", "slack", "webhook"):
        out = render([event(context=context)], kind)  # type: ignore[arg-type]
        shown = json.dumps(out.payload["attachments"]) if kind == "slack" else out.text
        assert shown.count("break_z") == 1, kind
    html = render([event(context=context)], "email").html or ""
    assert html.count(">break_z<") == 1


def test_rendering_is_deterministic() -> None:
    events = [event("b", hour=1), event("a", "resolved"), event("c", "repeat", severity="info")]
    assert render(events, "slack") == render(list(reversed(events)), "slack")


def test_nothing_to_render_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        render([], "email")


def test_escape_mrkdwn_escapes_ampersand_first() -> None:
    assert escape_mrkdwn("<&>") == "&lt;&amp;&gt;"


def test_a_z_breach_shows_the_z_against_its_threshold_and_the_level_beside_it() -> None:
    context = {**HEDGE_CONTEXT, "arm": "z", "breach": "z", "z": 6.2, "z_metric": "break_z"}
    ev = AlertEvent(
        rule="decouple",
        subject="btc-vs-btcdown",
        ts=TS,
        kind="firing",
        value=-0.86,
        threshold=5.0,
        severity="warning",
        episode=1,
        context=context,
    )
    file_text = render([ev], "file").text
    assert "- break_z (baseline z): +6.200 (above threshold +5.000, breached on the" in file_text
    assert "- correlation: -0.860" in file_text
    email_text = render([ev], "email").text
    assert "break_z (baseline z) +6.200 above threshold +5.000" in email_text
    assert "correlation -0.860" in email_text
    payload = render([ev], "webhook").payload
    assert isinstance(payload, dict)
    [row] = payload["events"]
    assert (row["value"], row["threshold"], row["arm"]) == (6.2, 5.0, "z")


@pytest.mark.parametrize(
    "attack",
    [
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ joiner.__init__.__globals__.os.environ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ events[0].__class__.__init__.__globals__ }}",
    ],
)
def test_user_templates_are_sandboxed_from_python_internals(tmp_path: Path, attack: str) -> None:
    (tmp_path / "file.md.j2").write_text(attack)
    with pytest.raises(RenderError, match=r"unsafe|has no attribute|undefined"):
        render([event()], "file", template_dir=tmp_path)


def test_every_channel_lists_the_members_a_basket_value_was_computed_on() -> None:
    context = {**BASKET_CONTEXT, "members": "BTC,ETH,SOL,BNB", "sql": "SELECT 1"}
    stress = event("majors", rule="market-stress", value=5.1, context=context)
    for channel in ("file", "email", "slack"):
        out = render([stress], channel)  # type: ignore[arg-type]
        texts = [out.text, out.html or "", json.dumps(out.payload or {})]
        assert any("BTC,ETH,SOL,BNB" in text for text in texts), channel
    # The members end their own line: what follows starts on the next one.
    file_text = render([stress], "file").text  # type: ignore[arg-type]
    line = next(x for x in file_text.splitlines() if "BTC,ETH,SOL,BNB" in x)
    assert line.rstrip().endswith("6 pairs of BTC,ETH,SOL,BNB")
