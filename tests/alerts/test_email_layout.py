"""The HTML email as a person sees it: headless Chromium at a phone's 400 px and a desk's 1,200 px.

Every kind of event a digest can carry is rendered into one email. At each width the page must
not scroll sideways (the document is no wider than the window and no element reaches past its
right edge), every event's card and chart must be on the page, and a screenshot is taken. Set
HEDGEWATCH_SCREENSHOTS=<dir> to keep the PNGs to look at.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import struct
import subprocess
import threading
import zlib
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.alerts.chart import line_chart_png
from hedgewatch.alerts.render import render
from hedgewatch.alerts.state import AlertEvent
from hedgewatch.outbox.channels import SmtpChannel, build_email

TS = datetime(2024, 8, 5, 14, tzinfo=UTC)
WIDTHS = (400, 1200)
# The email in an iframe exactly `width` px wide (a headless window has a minimum width of its
# own), measured from the page around it once everything, pictures included, has loaded.
OUTER = """<!DOCTYPE html>
<html><body style="margin: 0;">
<iframe id="email" src="email.html" style="border: 0; width: WIDTHpx; height: 3000px;"></iframe>
<script>
window.addEventListener("load", () => {
  const doc = document.getElementById("email").contentDocument;
  const view = doc.defaultView;
  const root = doc.documentElement;
  const wide = [...doc.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > view.innerWidth + 0.5)
    .map((el) => el.tagName + "." + (el.className || "") + ":" + el.getBoundingClientRect().right);
  const images = [...doc.images].map((img) => [img.complete && img.naturalWidth > 0,
    img.getBoundingClientRect().width]);
  const result = {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
    innerWidth: view.innerWidth, wide: wide.slice(0, 10), images: images,
    cards: doc.querySelectorAll("table.card").length};
  const out = document.createElement("pre");
  out.id = "layout-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
</body></html>
"""


def _history(n: int, start: float, end: float, wobble: float) -> list[float | None]:
    values: list[float | None] = [
        start + (end - start) * i / (n - 1) + wobble * math.sin(i / 3) for i in range(n)
    ]
    values[n // 3] = None  # an hour without data
    return values


def digest() -> list[AlertEvent]:
    """One of every shape an email carries, with real-looking numbers and long names."""
    hedge = {
        "metric": "correlation",
        "window": "24h",
        "n_obs": 23,
        "ci_low": -0.21,
        "ci_high": 0.52,
        "beta": 0.12,
        "min_var_ratio": -0.12,
        "held_ratio": 1.0,
        "ratio_drift": -1.12,
        "effectiveness": 0.054,
        "residual_vol": 0.486,
        "z": 6.2,
        "z_metric": "break_z",
        "break_z": 6.2,
        "history": _history(72, -0.93, 0.21, 0.03),
        "rebalance": {
            "side": "sell",
            "units": 1.84,
            "instrument": "ETHUSDT perpetual",
            "notional": 5623.0,
            "target_ratio": 0.88,
            "held_ratio": 1.0,
            "cost": 4.1,
            "fee": 2.8,
            "slippage": 1.0,
            "funding": 0.3,
            "variance_removed_pct": 0.31,
            "vol_before": 412.0,
            "vol_after": 284.0,
        },
        "sql": "SELECT ts, correlation, ci_low, ci_high FROM hedge_metrics WHERE hedge ="
        " 'btc-perp-vs-eth-perp-long-name' AND window = '24h' ORDER BY ts DESC LIMIT 72",
    }
    basket = {
        "metric": "avg_corr",
        "window": "7d",
        "n_obs": 160,
        "ci_low": 0.81,
        "ci_high": 0.9,
        "n_pairs": 6,
        "members": "btc-perp, eth-perp, sol-perp, bnb-perp",
        "avg_corr_z": 3.4,
        "history": _history(72, 0.55, 0.86, 0.02),
    }
    stale = {
        "rule_kind": "data_staleness",
        "metric": "hours_since_last_candle",
        "venue": "okx",
        "market": "swap",
        "symbol": "BTC-USDT-SWAP",
        "last_open_time": "2024-08-05 09:00 UTC",
        "missing_hours": 5,
    }
    no_ci = {**hedge, "ci_low": None, "ci_high": None, "rebalance": None, "sql": None}
    failure = {
        "rule_kind": "pipeline_failure",
        "run_id": "3f2a9c1e-5b7d-4e0f-9a61-0c2b8d4e7f10",
        "message": "StoreError: database var/hedgewatch.duckdb is locked by another process"
        " (pid 4242) and the lock was not released within 30 s",
    }

    def ev(
        rule: str, subject: str, kind: Any, severity: Any, value: float, limit: float, ctx: dict
    ) -> AlertEvent:
        return AlertEvent(rule, subject, TS, kind, value, limit, severity, 2, ctx)

    return [
        ev(
            "hedge-decoupling-critical",
            "btc-perp-vs-eth-perp-long-name",
            "firing",
            "critical",
            0.21,
            -0.3,
            hedge,
        ),
        ev("market-stress", "majors", "escalated", "warning", 0.86, 0.8, basket),
        ev("stale-venue", "okx", "firing", "warning", 5.0, 2.0, stale),
        ev("hedge-decoupling", "sol-perp-vs-sol-spot", "resolved", "info", -0.71, -0.5, no_ci),
        ev("pipeline-failure", "hedgewatch-hourly", "firing", "critical", 1.0, 0.0, failure),
    ]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(browser: str, profile: Path, width: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            f"--window-size={width},2600",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_email_has_one_card_per_event_with_each_field_once() -> None:
    out = render(digest(), "email")
    html = out.html or ""
    assert html.count('class="card"') == 5
    assert "n/a to n/a" not in html and "n/a to n/a" not in out.text
    assert "Last days" not in html
    cards = html.split('class="card"')[1:]
    assert len(cards) == 5 and all(card.count(">break_z<") <= 1 for card in cards)
    assert html.count(">break_z<") == 2 and out.text.count("break_z") == 2  # two hedge events
    assert "last 72 h &middot; min -0.930 &middot; max 0.180 &middot; dashed: threshold" in html
    # Severity colours: critical red, warning amber, resolved green.
    for colour in ("#b91c1c", "#b45309", "#15803d"):
        assert f"border-left: 6px solid {colour}" in html
    assert "Members</td>" in html and "btc-perp, eth-perp, sol-perp, bnb-perp" in html
    assert "Rebalance</td>" in html and "sell 1.84 ETHUSDT perpetual" in html
    # Three charts (no history, no chart), attached as PNGs and shown by content id.
    cids = ["chart-1@hedgewatch", "chart-2@hedgewatch", "chart-3@hedgewatch"]
    assert [cid for cid, _ in out.images] == cids
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for _, png in out.images)
    assert html.count('src="cid:chart-') == 3


def test_the_email_carries_its_charts_as_related_parts() -> None:
    rendered = render(digest(), "email")
    channel = SmtpChannel(host="localhost", sender="hw@example.com", recipients=["a@example.com"])
    msg = build_email(rendered, channel, "key-1")
    parsed = message_from_bytes(msg.as_bytes())
    assert isinstance(parsed, EmailMessage) or parsed.is_multipart()
    images = [p for p in parsed.walk() if p.get_content_type() == "image/png"]
    assert sorted(p["Content-ID"] for p in images) == [
        "<chart-1@hedgewatch>",
        "<chart-2@hedgewatch>",
        "<chart-3@hedgewatch>",
    ]
    related = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1


@pytest.mark.slow
def test_the_email_reads_without_sideways_scrolling_at_400_and_1200_px(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "Chromium not installed (Debian: apt-get install chromium); .ci/run installs it"
        )
    html = render(digest(), "email").html_inline() or ""
    assert 'src="cid:' not in html and html.count('src="data:image/png;base64,') == 3
    (tmp_path / "email.html").write_text(html)
    keep = os.environ.get("HEDGEWATCH_SCREENSHOTS")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # The check itself: the old 12-column table layout scrolls sideways at 400 px.
        (tmp_path / "wide.html").write_text(
            html.replace("<body", '<body><table style="width: 900px"><tr><td>x</td></tr></table')
        )
        wide = OUTER.replace("WIDTH", "400").replace('src="email.html"', 'src="wide.html"')
        (tmp_path / "outer-wide.html").write_text(wide)
        caught = _measure(browser, tmp_path, 400, f"{base}/outer-wide.html")
        assert caught["scrollWidth"] > caught["clientWidth"] and caught["wide"]
        for width in WIDTHS:
            (tmp_path / f"outer-{width}.html").write_text(OUTER.replace("WIDTH", str(width)))
            _check_layout(browser, tmp_path, width, f"{base}/outer-{width}.html", keep)
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _measure(browser: str, tmp_path: Path, width: int, outer: str) -> dict[str, Any]:
    name = outer.rsplit("/", 1)[1]
    dom = _headless(browser, tmp_path / f"dom-{name}", 1300, "--dump-dom", outer)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    check: dict[str, Any] = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["innerWidth"] == width
    return check


def _check_layout(browser: str, tmp_path: Path, width: int, outer: str, keep: str | None) -> None:
    check = _measure(browser, tmp_path, width, outer)
    assert check["scrollWidth"] <= check["clientWidth"], check
    assert check["wide"] == [], check
    assert check["cards"] == 5
    assert [ok for ok, _ in check["images"]] == [True, True, True]
    assert all(0 < w <= min(560, width) for _, w in check["images"]), check
    page = outer.rsplit("/", 1)[0] + "/email.html"
    shot = tmp_path / f"email-{width}.png"
    result = _headless(browser, tmp_path / f"shot{width}", width, f"--screenshot={shot}", page)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def test_the_chart_is_a_png_of_its_size_with_gaps_and_the_newest_value_marked() -> None:
    red = (185, 28, 28)
    png = line_chart_png([1.0, None, 2.0, 3.0], colour=red, threshold=2.5, width=120, height=40)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (120, 40)
    (size,) = struct.unpack(">I", png[33:37])
    assert png[37:41] == b"IDAT"
    raw = zlib.decompress(png[41 : 41 + size])
    stride = 1 + 3 * 120

    def pixel(x: int, y: int) -> tuple[int, ...]:
        at = y * stride + 1 + 3 * x
        return tuple(raw[at : at + 3])

    assert pixel(113, 6) == red  # the newest value, the series' max, at the top right
    assert pixel(6, 33) == red  # the oldest, its min, at the bottom left
    assert all(pixel(30, y) != red for y in range(40))  # no line across the hour without data
    with pytest.raises(ValueError, match="no finite value"):
        line_chart_png([None, float("nan")], colour=red)
