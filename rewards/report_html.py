"""The analytics report as one self-contained HTML page: inline SVG charts, inline CSS, no network.

`render(report)` returns the page; `rewards report --html FILE` writes it.
Every chart is an `<svg class="chart">` whose data points are `.mark`
elements, each with a `<title>` a browser shows on hover, and a table with the
same numbers follows it. A few lines of inline script mark each chart
`data-rendered="yes"` once the browser has laid out marks of non-zero size,
which is what the browser test looks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from rewards.analytics import Report

WIDTH, HEIGHT = 760, 240
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 56, 36, 16
COLORS = {"checkin": "#2f6fde", "streak_bonus": "#f2a33a", "task_reward": "#2ca58d",
          "adjustment": "#8f5bd6", "correction": "#d64f4f"}
PALETTE = ("#2f6fde", "#2ca58d", "#d64f4f", "#f2a33a", "#8f5bd6")

Series = tuple[str, Sequence[float], str]  # name, one value per label, colour


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _svg(chart_id: str, title: str, marks: list[str], axes: list[str], legend: list[Series]) -> str:
    keys = "".join(f'<span class="key"><i style="background:{colour}"></i>{escape(name)}</span>'
                   for name, _, colour in legend if len(legend) > 1)
    count = sum(mark.count('class="mark"') for mark in marks)
    return (f'<figure><figcaption>{escape(title)}</figcaption>'
            f'<svg class="chart" id="{chart_id}" data-marks="{count}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'role="img" aria-label="{escape(title)}">{"".join(axes)}{"".join(marks)}</svg>'
            f'<div class="legend">{keys}</div></figure>')


def _axes(top_value: float, labels: Sequence[str], top_label: str | None = None) -> list[str]:
    """A y axis with its top value and the x labels (at most ~12 shown)."""
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    axes = [f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{MARGIN_TOP + plot_h}" class="axis"/>',
            f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" x2="{WIDTH}" y2="{MARGIN_TOP + plot_h}" class="axis"/>',
            f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + 4}" class="tick" text-anchor="end">{top_label or _number(top_value)}</text>',
            f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + plot_h}" class="tick" text-anchor="end">0</text>']
    step = max(1, len(labels) // 12)
    slot = (WIDTH - MARGIN_LEFT) / max(len(labels), 1)
    for index in range(0, len(labels), step):
        x = MARGIN_LEFT + slot * (index + 0.5)
        axes.append(f'<text x="{x:.1f}" y="{HEIGHT - 14}" class="tick" text-anchor="middle">'
                    f'{escape(labels[index])}</text>')
    return axes


def bar_chart(chart_id: str, title: str, labels: Sequence[str], series: list[Series], *,
              stacked: bool = False) -> str:
    """Vertical bars per label: side by side, or stacked (negative values are left out of a stack)."""
    totals = [sum(max(0, s[1][i]) for s in series) if stacked else max(s[1][i] for s in series)
              for i in range(len(labels))]
    top_value = max(totals, default=0) or 1
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    slot = (WIDTH - MARGIN_LEFT) / max(len(labels), 1)
    width = slot * 0.8 / (1 if stacked else len(series))
    marks = []
    for index, label in enumerate(labels):
        base = 0.0
        for number, (name, values, colour) in enumerate(series):
            value = max(0, values[index])
            height = plot_h * value / top_value
            x = MARGIN_LEFT + slot * index + slot * 0.1 + (0 if stacked else number * width)
            y = MARGIN_TOP + plot_h - height - (base if stacked else 0)
            marks.append(f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
                         f'fill="{colour}"><title>{escape(label)} · {escape(name)}: {_number(value)}</title></rect>')
            base += height if stacked else 0
    return _svg(chart_id, title, marks, _axes(top_value, labels), series)


def line_chart(chart_id: str, title: str, labels: Sequence[str], values: Sequence[float | None],
               colour: str, *, percent: bool = False) -> str:
    """A line through the values (gaps where a value is None), a dot on each point."""
    known = [value for value in values if value is not None]
    top_value = max(known, default=0) or 1
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    slot = (WIDTH - MARGIN_LEFT) / max(len(labels), 1)
    points, marks = [], []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        x, y = MARGIN_LEFT + slot * (index + 0.5), MARGIN_TOP + plot_h * (1 - value / top_value)
        points.append(f"{x:.1f},{y:.1f}")
        shown = _percent(value) if percent else _number(value)
        marks.append(f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                     f'<title>{escape(label)}: {shown}</title></circle>')
    line = f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"/>'
    axes = _axes(top_value, labels, _percent(top_value) if percent else None)
    return _svg(chart_id, title, [line, *marks] if points else [], axes, [(title, values, colour)])


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(header))}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(value))}</td>" for value in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value)
    return str(value)


def _day(label_day) -> str:
    return label_day.strftime("%b %d")


def _checkin_sections(report: Report) -> str:
    labels = [_day(d.day) for d in report.daily]
    return "".join((
        bar_chart("checkins", "Check-ins per day", labels,
                  [("check-ins", [d.checkins for d in report.daily], PALETTE[0])]),
        line_chart("checkin-rate", "Check-in rate: share of partners active so far who checked in that day",
                   labels, [d.rate for d in report.daily], PALETTE[1], percent=True),
        table(["day", "check-ins", "active so far", "rate"],
              [(d.day.isoformat(), d.checkins, d.active_base, _percent(d.rate)) for d in reversed(report.daily)]),
    ))


def _streak_sections(report: Report) -> str:
    stats, back = report.streaks, report.retention
    labels = [label for label, _ in stats.distribution]
    return "".join((
        bar_chart("streaks", "Current streak lengths", labels,
                  [("partners", [count for _, count in stats.distribution], PALETTE[0])]),
        table(["partners", "with a streak", "average streak (days)", "median streak (days)"],
              [(stats.partners, stats.with_streak, stats.average_days, stats.median_days)]),
        bar_chart("retention", "Return rate of new partners (D1, D7), in %", ["D1", "D7"],
                  [("returned", [100 * (back.d1_rate or 0), 100 * (back.d7_rate or 0)], PALETTE[1])]),
        table(["new partners", "D1 measurable", "D1 returned", "D1 rate", "D7 measurable", "D7 returned",
               "D7 rate"],
              [(back.new_partners, back.d1_measurable, back.d1_returned, _percent(back.d1_rate),
                back.d7_measurable, back.d7_returned, _percent(back.d7_rate))]),
    ))


def _task_sections(report: Report) -> str:
    started = [task for task in report.funnel if task.started]
    labels = [task.task_id for task in started]
    return "".join((
        bar_chart("funnel", "Task funnel: attempts started in the window and how they ended", labels, [
            ("started", [t.started for t in started], PALETTE[0]),
            ("completed", [t.completed for t in started], PALETTE[1]),
            ("expired", [t.expired for t in started], PALETTE[2]),
        ]),
        table(["task", "started", "completed", "expired", "in progress", "conversion"],
              [(t.task_id, t.started, t.completed, t.expired, t.in_progress, _percent(t.conversion))
               for t in report.funnel]),
        bar_chart("popular", "Most popular tasks (attempts started)", [t.task_id for t in report.popular],
                  [("started", [t.started for t in report.popular], PALETTE[3])]),
    ))


def _xp_sections(report: Report) -> str:
    types = [name for name in COLORS if any(day.by_type[name] for day in report.xp_daily)]
    labels = [_day(day.day) for day in report.xp_daily]
    segments = report.segments
    return "".join((
        bar_chart("xp-issued", "XP issued per day (UTC) by entry type", labels,
                  [(name, [day.by_type[name] for day in report.xp_daily], COLORS[name]) for name in types],
                  stacked=True),
        table(["day", *types, "total"], [(day.day.isoformat(), *(day.by_type[name] for name in types), day.total)
                                         for day in reversed(report.xp_daily)]),
        bar_chart("segments", "PRO vs regular: check-ins per partner per day, in %",
                  [segment.name for segment in segments],
                  [("check-in rate", [100 * (s.checkin_rate(report.days) or 0) for s in segments], PALETTE[4])]),
        table(["segment", "partners", "average XP", "average streak", "check-ins", "check-in rate", "XP issued"],
              [(s.name, s.partners, s.average_xp, s.average_streak_days, s.checkins,
                _percent(s.checkin_rate(report.days)), s.xp_issued) for s in segments]),
    ))


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:820px;color:#1d2230}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde1ea}
.sub{color:#5b6478;margin:0 0 16px}figure{margin:12px 0}figcaption{font-weight:600;margin-bottom:4px}
svg.chart{width:100%;height:auto;background:#fafbfd;border:1px solid #e4e7ee;border-radius:4px}
.axis{stroke:#9aa3b5}.tick{font-size:11px;fill:#5b6478}.legend{font-size:12px;color:#5b6478}
.key{margin-right:14px}.key i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{padding:3px 10px;border-bottom:1px solid #e4e7ee;text-align:right}th:first-child,td:first-child{text-align:left}
"""

# Marks each chart once the browser has laid out at least one mark of non-zero size.
_SCRIPT = """
document.querySelectorAll("svg.chart").forEach(function (chart) {
  var drawn = Array.prototype.some.call(chart.querySelectorAll(".mark"), function (mark) {
    var box = mark.getBBox(); return box.width > 0 && box.height > 0;
  });
  chart.setAttribute("data-rendered", drawn ? "yes" : "no");
});
"""


def render(report: Report) -> str:
    """The whole page."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Rewards report {report.first_day} to {report.last_day}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Rewards report</h1><p class=\"sub\">{report.first_day} to {report.last_day} "
        f"({report.days} days) · generated {report.generated_at:%Y-%m-%d %H:%M} UTC</p>"
        f"<h2>Check-ins</h2>{_checkin_sections(report)}"
        f"<h2>Streaks and return</h2>{_streak_sections(report)}"
        f"<h2>Tasks</h2>{_task_sections(report)}"
        f"<h2>XP and plans</h2>{_xp_sections(report)}"
        f"<script>{_SCRIPT}</script></body></html>"
    )
