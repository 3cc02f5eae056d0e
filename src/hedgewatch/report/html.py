"""`hedgewatch report`: one self-contained HTML page, readable offline.

Plotly draws the charts; its JavaScript is inlined once in the page head, so the file needs no
network. Everything else is plain HTML with escaped text. Data comes from the public views
through a read-only connection.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from hedgewatch.alerts.rules import KINDS
from hedgewatch.settings import Settings, utc_now
from hedgewatch.storage.store import Store

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"]
_EVENT_STYLE = {
    "firing": ("#d62728", "triangle-up"),
    "escalated": ("#7b0000", "star"),
    "repeat": ("#ff7f0e", "diamond"),
    "resolved": ("#2ca02c", "circle"),
}
_OTHER_EVENT = ("#7f7f7f", "square")  # any other event kind
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class ReportData:
    generated_at: datetime
    start: datetime | None
    end: datetime | None
    hedges: pl.DataFrame
    baskets: pl.DataFrame
    latest_pairs: pl.DataFrame
    status: pl.DataFrame
    events: pl.DataFrame
    last_run: tuple[Any, ...] | None
    lab: list[Any] = field(default_factory=list)  # hedge lab backtests (or why not) per hedge


def load_report_data(
    settings: Settings, database: Path, *, days: int = 14, timeout_s: float = 30.0
) -> ReportData:
    with Store.open(database, read_only=True, timeout_s=timeout_s) as store:
        end = store.latest_metric_hour()
        start = end - timedelta(days=days) if end is not None else None
        frames = store.report_frames(start or datetime(1970, 1, 1, tzinfo=UTC))
        last_run = store.last_run()
        lab = _lab_backtests(store, settings, end, days)
    return ReportData(
        generated_at=utc_now(),
        start=start,
        end=end,
        hedges=frames["hedges"],
        baskets=frames["baskets"],
        latest_pairs=frames["latest_pairs"],
        status=frames["status"],
        events=frames["events"],
        last_run=last_run,
        lab=lab,
    )


def build_report(
    settings: Settings, database: Path, *, days: int = 14, timeout_s: float = 30.0
) -> str:
    return render_report(
        settings, load_report_data(settings, database, days=days, timeout_s=timeout_s)
    )


def render_report(settings: Settings, data: ReportData) -> str:
    from plotly.offline import get_plotlyjs

    sections = [
        _section("Hedge status", _status_table(data.status)),
        _section("Correlation heatmaps per basket", _heatmaps(settings, data)),
        _section("Rolling correlation per hedge", _hedge_charts(settings, data)),
        _section("Hedge lab: hedged vs unhedged P&L and the ratio path", _lab_charts(data)),
        _section("Market stress", _stress_charts(settings, data)),
        _section("Alert timeline", _alert_timeline(data)),
    ]
    span = (
        f"{data.start:%Y-%m-%d %H:%M} – {data.end:%Y-%m-%d %H:%M} UTC"
        if data.start and data.end
        else "no metrics yet"
    )
    run = (
        f"last run {data.last_run[0]:%Y-%m-%d %H:%M} UTC: {html.escape(str(data.last_run[1]))}"
        if data.last_run
        else "no runs recorded"
    )
    return _PAGE.format(
        plotly_js=get_plotlyjs(),
        generated=f"{data.generated_at:%Y-%m-%d %H:%M} UTC",
        span=span,
        run=run,
        body="\n".join(sections),
    )


# -- sections ------------------------------------------------------------------------------------


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def _figure_html(fig: Any) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config=_PLOT_CONFIG))


def _naive(values: Any) -> list[datetime]:
    """Plotly shows naive datetimes as they are: label axes UTC and drop the zone."""
    return [v.astimezone(UTC).replace(tzinfo=None) for v in values]


def _status_table(status: pl.DataFrame) -> str:
    if status.is_empty():
        return _empty("No hedge metrics yet: run `hedgewatch run` first.")
    header = (
        "<tr><th>hedge</th><th>window</th><th>hour (UTC)</th><th>correlation</th>"
        "<th>min-var ratio</th><th>held ratio</th><th>drift</th><th>effectiveness</th>"
        "<th>obs</th><th>alerts</th></tr>"
    )
    rows = []
    for r in status.iter_rows(named=True):
        firing = "firing" in str(r["alert_status"])
        rows.append(
            f'<tr class="{"firing" if firing else ""}">'
            f"<td>{html.escape(r['hedge'])}</td><td>{r['window_hours']}h</td>"
            f"<td>{r['open_time']:%Y-%m-%d %H:%M}</td><td>{_num(r['correlation'])}</td>"
            f"<td>{_num(r['min_var_ratio'])}</td><td>{_num(r['held_ratio'])}</td>"
            f"<td>{_num(r['ratio_drift'])}</td><td>{_pct(r['effectiveness'])}</td>"
            f"<td>{r['n_obs']}</td><td>{html.escape(str(r['alert_status']))}</td></tr>"
        )
    return f'<table class="status">{header}{"".join(rows)}</table>'


def _heatmaps(settings: Settings, data: ReportData) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not settings.baskets:
        return _empty("No baskets configured.")
    parts = []
    windows = settings.metrics.window_hours
    for basket in settings.baskets:
        members = list(basket.members)
        fig = make_subplots(
            rows=1,
            cols=len(windows),
            subplot_titles=[f"{w}h window" for w in windows],
            horizontal_spacing=0.12,
        )
        latest: datetime | None = None
        for col, window in enumerate(windows, start=1):
            pairs = data.latest_pairs.filter(pl.col("window_hours") == window)
            lookup = {(r["a"], r["b"]): r["corr"] for r in pairs.iter_rows(named=True)} | {
                (r["b"], r["a"]): r["corr"] for r in pairs.iter_rows(named=True)
            }
            if pairs.height:
                newest: datetime = pairs["open_time"].max()  # type: ignore[assignment]
                latest = newest if latest is None else max(latest, newest)
            z = [[1.0 if a == b else lookup.get((a, b)) for b in members] for a in members]
            text = [["" if v is None else f"{v:.2f}" for v in row] for row in z]
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    x=members,
                    y=members,
                    zmin=-1,
                    zmax=1,
                    colorscale="RdBu",
                    reversescale=True,
                    text=text,
                    texttemplate="%{text}",
                    hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>",
                    showscale=col == len(windows),
                    colorbar={"title": {"text": "corr"}},
                ),
                row=1,
                col=col,
            )
            fig.update_yaxes(autorange="reversed", row=1, col=col)
        when = f" at {latest:%Y-%m-%d %H:%M} UTC" if latest else " (no correlations yet)"
        fig.update_layout(
            title={"text": f"{basket.name}: pairwise correlation{when}"},
            height=430,
            margin={"l": 60, "r": 20, "t": 70, "b": 50},
        )
        parts.append(_figure_html(fig))
    return "\n".join(parts)


def _rules_for(settings: Settings, metric: str, subject: str) -> list[Any]:
    """Rules that watch `metric` of `subject` (their thresholds belong on its chart)."""
    return [
        rule
        for rule in settings.alerts.rules
        if rule.watched_metric == metric and ("*" in rule.subjects or subject in rule.subjects)
    ]


def _event_markers(fig: Any, events: pl.DataFrame, values: dict[datetime, float] | None) -> None:
    import plotly.graph_objects as go

    for kind in _kinds(events):
        color, symbol = _EVENT_STYLE.get(kind, _OTHER_EVENT)
        chosen = events.filter(pl.col("kind") == kind)
        xs = chosen["ts"].to_list()
        ys = [
            (values or {}).get(ts, value)
            for ts, value in zip(xs, chosen["value"].to_list(), strict=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=_naive(xs),
                y=ys,
                mode="markers",
                name=f"alert {kind}",
                marker={"color": color, "symbol": symbol, "size": 12, "line": {"width": 1}},
                text=chosen["rule"].to_list(),
                hovertemplate="%{text} " + kind + "<br>%{x} UTC: %{y:.3f}<extra></extra>",
            )
        )


def _kinds(events: pl.DataFrame) -> list[str]:
    """Event kinds present, the known ones in their usual order first."""
    present = set(events["kind"].to_list())
    return [k for k in _EVENT_STYLE if k in present] + sorted(present - set(_EVENT_STYLE))


def _line_chart(
    title: str,
    frame: pl.DataFrame,
    value: str,
    rules: list[Any],
    events: pl.DataFrame,
    y_title: str,
) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for n, window in enumerate(sorted(frame["window_hours"].unique().to_list())):
        series = frame.filter(pl.col("window_hours") == window)
        fig.add_trace(
            go.Scatter(
                x=_naive(series["open_time"].to_list()),
                y=series[value].to_list(),
                mode="lines",
                name=f"{window}h",
                line={"color": _COLORS[n % len(_COLORS)], "width": 1.8},
                connectgaps=False,
            )
        )
    for n, rule in enumerate(rules):
        other = "below" if rule.direction == "above" else "above"
        side = "left" if n % 2 == 0 else "right"  # two rules' labels do not overlap
        for level, dash, label, where in (
            (rule.fire_threshold, "dash", f"fires {rule.direction}", "top"),
            (rule.clear_threshold, "dot", f"clears {other}", "bottom"),
        ):
            fig.add_hline(
                y=level,
                line={"color": "#d62728" if dash == "dash" else "#2ca02c", "dash": dash},
                annotation_text=f"{rule.name} ({rule.window}) {label} {level:+.2f}",
                annotation_position=f"{where} {side}",
                annotation_font_size=11,
            )
    names = {rule.name for rule in rules}
    _event_markers(fig, events.filter(pl.col("rule").is_in(list(names))), None)
    fig.update_layout(
        title={"text": title},
        height=360,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        xaxis_title="hour (UTC)",
        yaxis_title=y_title,
        legend={"orientation": "h", "y": -0.2},
    )
    return _figure_html(fig)


def _hedge_charts(settings: Settings, data: ReportData) -> str:
    if not settings.hedges:
        return _empty("No hedges configured.")
    return _metric_charts(
        settings,
        data,
        data.hedges.rename({"hedge": "subject"}),
        [h.name for h in settings.hedges],
        "correlation",
        "{}: correlation of the signed legs (a working hedge is negative)",
        "correlation",
        "No hedge metrics yet.",
    )


# What each basket chart shows; the average correlation always, the others when a rule reads them.
_BASKET_CHARTS = {
    "avg_corr": ("{}: average pairwise correlation", "average correlation"),
    "drawdown_z": ("{}: fall from the window's high, in typical moves", "drawdown_z"),
    "vol_z": ("{}: realised volatility against its 30-day normal (robust z)", "vol_z"),
    "dispersion_z": ("{}: dispersion of the members' returns (robust z)", "dispersion_z"),
    "corr_z": ("{}: average correlation against its 30-day normal (robust z)", "corr_z"),
}


def _stress_charts(settings: Settings, data: ReportData) -> str:
    if not settings.baskets:
        return _empty("No baskets configured.")
    baskets = data.baskets.rename({"basket": "subject"})
    names = [b.name for b in settings.baskets]
    parts = []
    for column, (title, y_title) in _BASKET_CHARTS.items():
        windows = {
            rule.window_hours
            for rule in settings.alerts.rules
            if KINDS[rule.kind].source == "basket" and rule.watched_metric == column
        }
        if column != "avg_corr" and (not windows or column not in baskets.columns):
            continue
        if windows:
            frame = baskets.filter(pl.col("window_hours").is_in(sorted(windows)))
        else:
            frame = baskets
        nothing = "No market stress metrics yet."
        parts.append(_metric_charts(settings, data, frame, names, column, title, y_title, nothing))
    return "\n".join(parts)


def _lab_backtests(store: Store, settings: Settings, end: datetime | None, days: int) -> list[Any]:
    """Each hedge's backtest over the report's `days` up to `end` (default: the last hour both
    legs have a candle), or the reason there is none."""
    from hedgewatch.hedgelab import LabError, backtest, last_hour

    out: list[Any] = []
    for hedge in settings.hedges:
        last = end or last_hour(store, settings, hedge)
        if last is None:
            out.append(f"{hedge.name}: no stored candles of both legs yet.")
            continue
        try:
            out.append(
                backtest(
                    store,
                    settings,
                    hedge.name,
                    last - timedelta(days=days),
                    last + timedelta(hours=1),
                )
            )
        except LabError as exc:
            out.append(f"{hedge.name}: {exc}")
    return out


def _lab_charts(data: ReportData) -> str:
    """Per hedge: cumulative P&L of each policy against the unhedged position, and the held
    ratio of each policy against the min-variance target."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not data.lab:
        return _empty("No hedges configured.")
    parts = []
    for result in data.lab:
        if isinstance(result, str):
            parts.append(_empty(result))
            continue
        first = result.simulations[0]
        t0 = first.t0
        x = _naive(result.times[t0:])
        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.08,
            row_heights=[0.6, 0.4],
            subplot_titles=("cumulative P&L, net of costs", "hedge ratio (hedge / base notional)"),
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=first.unhedged_pnl[t0:].cumsum().tolist(),
                name="unhedged",
                line={"color": "#7f7f7f", "width": 1.8},
            ),
            row=1,
            col=1,
        )
        for n, (sim, metrics) in enumerate(zip(result.simulations, result.metrics, strict=True)):
            color = _COLORS[n % len(_COLORS)]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=sim.hedged_pnl[t0:].cumsum().tolist(),
                    name=f"{metrics.policy} (effectiveness {metrics.effectiveness:+.0%}, "
                    f"cost {metrics.cost:,.0f})",
                    line={"color": color, "width": 1.6},
                    legendgroup=metrics.policy,
                ),
                row=1,
                col=1,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[None if not math.isfinite(v) else v for v in sim.ratio[t0:]],
                    name=f"{metrics.policy} ratio",
                    line={"color": color, "width": 1.4},
                    legendgroup=metrics.policy,
                    showlegend=False,
                ),
                row=2,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[None if not math.isfinite(v) else v for v in first.target[t0:]],
                name="min-variance target",
                line={"color": "#d62728", "width": 1.2, "dash": "dot"},
            ),
            row=2,
            col=1,
        )
        fig.update_layout(
            title={"text": f"{html.escape(result.hedge)}: policies against the unhedged position"},
            height=520,
            margin={"l": 60, "r": 20, "t": 80, "b": 40},
            legend={"orientation": "h", "y": -0.12},
        )
        fig.update_xaxes(title_text="hour (UTC)", row=2, col=1)
        parts.append(_figure_html(fig))
    return "\n".join(parts)


def _metric_charts(
    settings: Settings,
    data: ReportData,
    metrics: pl.DataFrame,
    subjects: list[str],
    column: str,
    title: str,
    y_title: str,
    nothing_yet: str,
) -> str:
    """One line chart of `column` per subject, with its rules' thresholds and alert markers."""
    if metrics.is_empty():
        return _empty(nothing_yet)
    parts = []
    for subject in subjects:
        frame = metrics.filter(pl.col("subject") == subject)
        if frame.is_empty():
            parts.append(_empty(f"{subject}: no metrics yet."))
            continue
        parts.append(
            _line_chart(
                title.format(subject),
                frame,
                column,
                _rules_for(settings, column, subject),
                data.events.filter(pl.col("subject") == subject),
                y_title,
            )
        )
    return "\n".join(parts)


def _alert_timeline(data: ReportData) -> str:
    import plotly.graph_objects as go

    if data.events.is_empty():
        return _empty("No alert events in this period.")
    fig = go.Figure()
    labels = [
        f"{r} / {s}" for r, s in zip(data.events["rule"], data.events["subject"], strict=True)
    ]
    events = data.events.with_columns(pl.Series("label", labels))
    for kind in _kinds(events):
        color, symbol = _EVENT_STYLE.get(kind, _OTHER_EVENT)
        chosen = events.filter(pl.col("kind") == kind)
        fig.add_trace(
            go.Scatter(
                x=_naive(chosen["ts"].to_list()),
                y=chosen["label"].to_list(),
                mode="markers",
                name=kind,
                marker={"color": color, "symbol": symbol, "size": 13, "line": {"width": 1}},
                customdata=chosen["value"].to_list(),
                hovertemplate="%{y}<br>%{x} UTC: " + kind + " at %{customdata:.3f}<extra></extra>",
            )
        )
    rows = len(set(labels))
    fig.update_layout(
        height=160 + 40 * rows,
        margin={"l": 220, "r": 20, "t": 30, "b": 40},
        xaxis_title="hour (UTC)",
        legend={"orientation": "h", "y": -0.35},
    )
    table_rows = "".join(
        f'<tr class="{html.escape(r["kind"])}"><td>{r["ts"]:%Y-%m-%d %H:%M}</td>'
        f"<td>{html.escape(r['kind'])}</td><td>{html.escape(r['rule'])}</td>"
        f"<td>{html.escape(r['subject'])}</td><td>{html.escape(r['severity'])}</td>"
        f"<td>{_num(r['value'])}</td><td>{_num(r['threshold'])}</td>"
        f"<td>{r['delivered']}/{r['notifications']}</td></tr>"
        for r in data.events.sort("ts", descending=True).iter_rows(named=True)
    )
    table = (
        '<table class="events"><tr><th>hour (UTC)</th><th>event</th><th>rule</th>'
        "<th>subject</th><th>severity</th><th>value</th><th>threshold</th>"
        f"<th>delivered</th></tr>{table_rows}</table>"
    )
    return _figure_html(fig) + table


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:+.3f}"


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value * 100:.1f} %"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hedgewatch report</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1rem 2rem; color: #222; }}
header p {{ color: #555; margin: 0.2rem 0; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; margin: 0.5rem 0; }}
th, td {{ border-bottom: 1px solid #eee; padding: 0.3rem 0.5rem; text-align: left; }}
th {{ background: #f6f6f6; }}
tr.firing td {{ background: #fdecea; }}
p.empty {{ color: #777; font-style: italic; }}
</style>
<script>{plotly_js}</script>
</head>
<body>
<header>
<h1>hedgewatch report</h1>
<p>Generated {generated} · metrics {span} · {run}</p>
</header>
{body}
</body>
</html>
"""
