"""The console's report pages: choose a kind and a day, see the report of the period holding
that day (computed on request by flows/reports.py `build_report`, from stored events, so any
past period can be looked at), or download it as CSV. Whatever sections the report has are
shown the same way: figures, tables, and charts drawn by chalicelib/cs/charts.py.

XLSX is not offered here: API Gateway would have to be told to pass a binary answer through
(an Accept header matching its binary media types), which a plain link does not send; the
XLSX comes with the report's email."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

from chalice.app import Response
from markupsafe import Markup

from chalicelib.console import web
from chalicelib.console.web import Visit, href
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ApiError
from chalicelib.cs import charts
from chalicelib.reports.model import Chart, Figure, Kind, Period, Section, local_day

KINDS: tuple[Kind, ...] = get_args(Kind)
RECENT = {"daily": 7, "weekly": 4, "monthly": 3}  # how many recent periods each kind links to
_EARLIEST = date(2020, 1, 1)  # before the business ran on this system: nothing to report


def period_containing(kind: Kind, day: date) -> Period:
    """The period of `kind` holding `day`: the day; its Monday–Sunday week; its calendar
    month. (The report mail's schedule has its own rules for which period is due.)"""
    if kind == "daily":
        return Period(kind=kind, start=day, end=day + timedelta(days=1))
    if kind == "weekly":
        start = day - timedelta(days=day.weekday())
        return Period(kind=kind, start=start, end=start + timedelta(days=7))
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return Period(kind=kind, start=start, end=end)


def recent_periods(kind: Kind, today: date) -> list[Period]:
    """The period holding today and the ones before it, newest first."""
    found: list[Period] = []
    day = today
    for _ in range(RECENT[kind]):
        period = period_containing(kind, day)
        found.append(period)
        day = period.start - timedelta(days=1)
    return found


def chosen_period(kind: str, day: str, now: datetime) -> Period:
    """The period a path names; 400 for a kind or a day that is not one, or a future day."""
    if kind not in KINDS:
        raise ApiError(400, "invalid_kind", f"kind is one of {', '.join(KINDS)}")
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise ApiError(400, "invalid_day", "day is a date, YYYY-MM-DD") from None
    if not _EARLIEST <= when <= local_day(now):
        raise ApiError(400, "invalid_day", f"day is from {_EARLIEST} to today")
    return period_containing(kind, when)


def _path(period: Period) -> str:
    return href(f"/console/reports/{period.kind}/{period.start.isoformat()}")


# Pages -----------------------------------------------------------------------------------------

def choose(current: Visit) -> Response:
    """The form (a kind and a day), or, once both are chosen, their report's page."""
    kind, day = current.query.get("kind", ""), current.query.get("day", "")
    now = utcnow()
    if kind or day:
        return current.redirect(_path(chosen_period(kind, day, now)))
    today = local_day(now)
    recent = {k: [(p.label, _path(p)) for p in recent_periods(k, today)] for k in KINDS}
    return current.page("reports.html", kinds=KINDS, recent=recent, today=today.isoformat())


def report(current: Visit, kind: str, day: str) -> Response:
    from chalicelib.flows.reports import build_report

    now = utcnow()
    period = chosen_period(kind, day, now)
    built = build_report(period, now)
    return current.page("report.html", report=built, sections=[_section(s) for s in
                                                                 built.sections],
                        csv_href=_path(period) + "/csv",
                        earlier=_path(period_containing(period.kind,
                                                        period.start - timedelta(days=1))),
                        later=_later(period, now))


def _later(period: Period, now: datetime) -> str:
    """The next period's page, unless it has not begun."""
    return _path(period_containing(period.kind, period.end)) \
        if period.end <= local_day(now) else ""


def report_csv(current: Visit, kind: str, day: str) -> Response:
    from chalicelib.flows.reports import build_report
    from chalicelib.reports.render import to_csv

    now = utcnow()
    period = chosen_period(kind, day, now)
    body = to_csv(build_report(period, now))
    name = f"report-{period.kind}-{period.start.isoformat()}.csv"
    headers = dict(web.SECURITY_HEADERS)
    # A byte-order mark: Excel on a Chinese Windows reads the file as UTF-8, not GB18030.
    headers |= {"Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"'}
    return Response(body="\ufeff" + body, status_code=200, headers=headers)


# What a template shows of a section -------------------------------------------------------------

def _section(section: Section) -> dict[str, Any]:
    return {"key": section.key, "title": section.title, "notes": section.notes,
            "figures": [(f.key, f.label, figure_text(f)) for f in section.figures],
            "tables": [{"key": t.key, "title": t.title, "columns": t.columns,
                        "rows": [[cell_text(c) for c in row] for row in t.rows]}
                       for t in section.tables],
            # charts.py escaped every text in each <svg>: shown as markup.
            "charts": [(c.key, c.title, Markup(chart_svg(c))) for c in section.charts]}


_UNITS = {"percent": "%", "minutes": "min", "hours": "h", "CNY": "¥", "count": ""}


def figure_text(figure: Figure) -> str:
    """A figure with its unit; an em dash when there was nothing to measure."""
    if figure.value is None:
        return "—"
    value = cell_text(figure.value)
    if figure.unit == "CNY":
        return f"¥{value}"
    unit = _UNITS[figure.unit]
    return f"{value} {unit}" if unit else value


def cell_text(value: int | Decimal | str | None) -> str:
    return "" if value is None else str(value)


def chart_svg(chart: Chart) -> str:
    if chart.kind == "stacked":
        return charts.stacked_bars(
            [(label, list(zip(chart.parts, values, strict=True)))
             for label, values in chart.rows], chart.title)
    return charts.bar_chart([(label, values[0]) for label, values in chart.rows], chart.title)

