"""Dashboard figures (choices per day, acceptance per category, GPC share) and SVG charts.

Charts are rendered on the server as inline SVG: no JavaScript, nothing fetched from
elsewhere, readable in any browser and printable into an audit file.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from html import escape

import sqlalchemy as sa
from markupsafe import Markup

from .database import utcnow
from .extensions import db
from .ledger import ConsentEvent
from .readiness import site_gaps
from .refusals import recent_refusals
from .sites import ESSENTIAL, site_snapshot
from .subjects import Subject, keyed_ref

CHOICE_ACTIONS = ("accept_all", "reject_all", "custom", "preferences", "gpc", "withdraw",
                  "grant")
CHOICE_SERIES = (("accept_all", "Accept all", "#2e7d32"), ("reject_all", "Reject all", "#c62828"),
                 ("custom", "Custom", "#1f5fbf"), ("gpc", "GPC signal", "#6a1b9a"),
                 ("withdraw", "Withdrawn", "#ef6c00"))
COLOURS = {key: colour for key, _, colour in CHOICE_SERIES}
LINE_COLOURS = ("#1f5fbf", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")


def _day(value) -> date:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date()
    return value


def dashboard_data(site_key: str, days: int = 30, now: datetime | None = None) -> dict:
    """Figures of the last DAYS days for one site."""
    site = site_snapshot(site_key)
    now = now or utcnow()
    first = (now - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    labels = [first + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(labels)}
    choices = {key: [0] * days for key, _, _ in CHOICE_SERIES}
    cat_keys = [k for k in site.category_keys if k != ESSENTIAL]
    granted = {k: [0] * days for k in cat_keys}
    answered = {k: [0] * days for k in cat_keys}
    total = gpc = 0
    ev = ConsentEvent.__table__
    query = (sa.select(ev.c.recorded_at, ev.c.action, ev.c.categories, ev.c.meta)
             .where(ev.c.site_id == site.id, ev.c.recorded_at >= since,
                    ev.c.action.in_(CHOICE_ACTIONS))
             .execution_options(yield_per=5000))
    for row in db.session.execute(query):
        i = index.get(_day(row.recorded_at))
        if i is None:
            continue
        total += 1
        is_gpc = row.action == "gpc" or bool((row.meta or {}).get("gpc"))
        gpc += is_gpc
        series = {"preferences": "custom", "grant": "custom"}.get(row.action, row.action)
        choices[series][i] += 1
        for key, value in (row.categories or {}).items():
            if key in granted:
                answered[key][i] += 1
                granted[key][i] += bool(value)
    rates = {k: [(granted[k][i] / answered[k][i]) if answered[k][i] else None
                 for i in range(days)] for k in cat_keys}
    overall = {k: (sum(granted[k]) / sum(answered[k])) if sum(answered[k]) else None
               for k in cat_keys}
    return {"site": site, "days": labels, "choices": choices, "rates": rates,
            "overall_rates": overall, "total": total, "gpc": gpc,
            "gpc_share": (gpc / total) if total else None,
            # What the audit trail does not hold, and why the site may not be honoured.
            "refusals": recent_refusals(site.id, 24, now), "gaps": site_gaps(site.key)}


# ---------------------------------------------------------------- SVG

W, H, LEFT, BOTTOM, TOP, RIGHT = 720, 240, 44, 28, 12, 12


def _axis_labels(days: list[date]) -> list[str]:
    out = []
    step = max(1, len(days) // 6)
    plot_w = W - LEFT - RIGHT
    for i, d in enumerate(days):
        if i % step == 0 or i == len(days) - 1:
            x = LEFT + (i + 0.5) * plot_w / len(days)
            out.append(f'<text x="{x:.1f}" y="{H - 8}" text-anchor="middle">'
                       f'{d.strftime("%m-%d")}</text>')
    return out


def stacked_bar_chart(title: str, days: list[date],
                      series: list[tuple[str, str, list[int]]]) -> Markup:
    """An SVG stacked bar chart: one bar per day, one colour per series."""
    totals = [sum(s[2][i] for s in series) for i in range(len(days))]
    peak = max(totals + [1])
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    bar_w = plot_w / max(1, len(days))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H + 24}" '
             f'role="img" aria-label="{escape(title)}" class="chart" font-size="11">',
             f'<title>{escape(title)}</title>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" '
             'stroke="#888"/>',
             f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{peak}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>']
    for i, day in enumerate(days):
        y = TOP + plot_h
        for _key, label, values in [(s[0], s[1], s[2]) for s in series]:
            value = values[i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            colour = COLOURS.get(_key, "#888")
            parts.append(f'<rect class="bar" x="{LEFT + i * bar_w + 1:.1f}" y="{y:.1f}" '
                         f'width="{max(1.0, bar_w - 2):.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{day.isoformat()}: {value} '
                         f'{escape(label)}</title></rect>')
    parts += _axis_labels(days)
    x = LEFT
    for _key, label, _values in series:
        colour = COLOURS.get(_key, "#888")
        parts.append(f'<rect x="{x}" y="{H + 8}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="{H + 17}">{escape(label)}</text>')
        x += 24 + 7 * len(label)
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(title: str, days: list[date], series: dict[str, list[float | None]]) -> Markup:
    """An SVG line chart of shares (0-100 %) per day, gaps where there is no data."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / max(1, len(days))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H + 24}" '
             f'role="img" aria-label="{escape(title)}" class="chart" font-size="11">',
             f'<title>{escape(title)}</title>']
    for pct in (0, 50, 100):
        y = TOP + plot_h * (1 - pct / 100)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" '
                     f'stroke="#ddd"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{pct}%</text>')
    x_legend = LEFT
    for n, (name, values) in enumerate(series.items()):
        colour = LINE_COLOURS[n % len(LINE_COLOURS)]
        runs, current = [], []
        for i, v in enumerate(values):
            if v is None:
                if current:
                    runs.append(current)
                current = []
                continue
            current.append((LEFT + (i + 0.5) * step, TOP + plot_h * (1 - v)))
            parts.append(f'<circle class="point" cx="{current[-1][0]:.1f}" '
                         f'cy="{current[-1][1]:.1f}" r="2.5" fill="{colour}"><title>'
                         f'{days[i].isoformat()}: {escape(name)} {v * 100:.0f}%</title></circle>')
        if current:
            runs.append(current)
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline class="line" fill="none" stroke="{colour}" '
                             f'stroke-width="2" points="{points}"/>')
        parts.append(f'<rect x="{x_legend}" y="{H + 8}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{x_legend + 14}" y="{H + 17}">'
                     f'{escape(name)}</text>')
        x_legend += 24 + 7 * len(name)
    parts += _axis_labels(days)
    parts.append("</svg>")
    return Markup("".join(parts))


def share_bar(title: str, share: float | None) -> Markup:
    """A one-bar SVG showing a share (e.g. decisions that carried a GPC signal)."""
    pct = 0 if share is None else share * 100
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 30" role="img" '
        f'aria-label="{escape(title)}: {pct:.1f}%" class="chart share" font-size="12">'
        f'<title>{escape(title)}</title><rect x="0" y="4" width="240" height="18" '
        f'fill="#eee"/><rect class="bar" x="0" y="4" width="{2.4 * pct:.1f}" height="18" '
        f'fill="#6a1b9a"/><text x="246" y="18">{pct:.1f}%</text></svg>')


def charts(data: dict) -> dict[str, Markup]:
    """The dashboard's three charts for figures from dashboard_data."""
    series = [(k, label, data["choices"][k]) for k, label, _ in CHOICE_SERIES]
    return {
        "choices": stacked_bar_chart("Choices per day", data["days"], series),
        "acceptance": line_chart("Acceptance rate per category", data["days"],
                                 data["rates"]),
        "gpc": share_bar("Share of choices with a GPC signal", data["gpc_share"]),
    }


# ---------------------------------------------------------------- search


def search_events(site_key: str, query: str, limit: int = 500) -> tuple[Subject | None, list]:
    """A subject (by visitor id, pseudonym or the site's user id) and its events."""
    site = site_snapshot(site_key)
    query = (query or "").strip()[:200]
    if not query:
        return None, []
    subject = db.session.execute(db.select(Subject).where(
        Subject.site_id == site.id,
        sa.or_(Subject.public_id == query, Subject.pseudonym == query,
               Subject.user_ref == keyed_ref(site.key, "user", query)))
        .order_by(Subject.id.desc()).limit(1)).scalar_one_or_none()
    if subject is None:
        return None, []
    events = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == site.id, ConsentEvent.subject == subject.pseudonym)
        .order_by(ConsentEvent.seq).limit(limit)).scalars().all()
    return subject, list(events)
