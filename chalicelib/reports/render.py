"""A report as email: an HTML body with charts, and the same figures and tables attached as CSV
and XLSX. Pure: no I/O; chalicelib/flows/report_mail.py computes the report and sends this
message through SES (`SendRawEmail`).

Labels come from marketplaces, couriers and partners (carrier codes, reasons, SKUs): the HTML
is a Jinja2 template with autoescaping, every text also made `inert` (no hidden characters, no
URL a mail client would link); the charts are cs/charts.py's inline SVG, escaped there, and
since many mail clients drop inline SVG, each chart's figures follow it as a table. The CSV and
XLSX cells keep text as text: a cell a spreadsheet would run as a formula is defused.

The CSV is one file: a header, then every section's figures (section, "", key, label, value,
unit); then each table after an empty line, its columns first (section, table key, columns...),
then its rows (section, table key, cells...). The XLSX has one sheet per section: its figures,
then each table under its title.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from chalicelib.cs import charts
from chalicelib.cs.channels.email import EmailConfig, envelope
from chalicelib.cs.channels.escaping import inert, one_line, spreadsheet_cell
from chalicelib.reports.model import REPORT_ZONE, Cell, Chart, Figure, Kind, Report

TEMPLATES = Path(__file__).with_name("templates")
TITLES: dict[Kind, str] = {"daily": "发货日报 Daily dispatch report",
                           "weekly": "周报 Weekly report", "monthly": "月报 Monthly report"}
TO_DATE = "截至目前 to date"
CSV_HEADER = ("section", "table", "key", "label", "value", "unit")
_SHEET_UNSAFE = re.compile(r"[\[\]:*?/\\]")  # characters Excel refuses in a sheet name
SHEET_NAME_MAX = 31
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def subject(report: Report, to_date: bool = False) -> str:
    """`to_date`: the period is still running, so its figures are so far."""
    suffix = f"（{TO_DATE}）" if to_date else ""
    return f"{TITLES[report.kind]} {report.period.label}{suffix}"


def shown(figure: Figure) -> str:
    """A figure's value with its unit, as a reader reads it ("–" when there is nothing)."""
    if figure.value is None:
        return "–"
    unit = {"count": "", "percent": " %", "minutes": " min", "hours": " h", "CNY": " CNY"}
    return f"{figure.value}{unit[figure.unit]}"


def _cell_text(cell: Cell) -> str:
    return "" if cell is None else str(cell)


def _svg(chart: Chart) -> Markup:
    # cs/charts.py escaped every text it placed in the SVG.
    if chart.kind == "stacked":
        rows = [(label, list(zip(chart.parts, values, strict=True)))
                for label, values in chart.rows]
        return Markup(charts.stacked_bars(rows, chart.title))
    return Markup(charts.bar_chart([(label, values[0]) for label, values in chart.rows],
                                   chart.title))


def _inert(value: Any) -> Any:
    # Every text placed in the page, before autoescaping: nothing hidden, no link of its own.
    if isinstance(value, str) and not isinstance(value, Markup):
        return inert(value)
    return value


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, finalize=_inert)
    env.filters["shown"] = shown
    env.filters["cell"] = _cell_text
    env.filters["svg"] = _svg
    return env


def html_body(report: Report, to_date: bool = False) -> str:
    generated = report.generated_at.astimezone(REPORT_ZONE).strftime("%Y-%m-%d %H:%M")
    return _environment().get_template("report.html").render(
        report=report, subject=subject(report, to_date),
        generated=f"生成于 generated {generated} (Asia/Shanghai)")


def plain_text(report: Report, to_date: bool = False) -> str:
    lines = [subject(report, to_date), ""]
    for section in report.sections:
        lines.append(inert(one_line(section.title)))
        lines += [f"  {inert(one_line(f.label))}: {shown(f)}" for f in section.figures]
        lines.append("")
    lines.append("明细见附件 CSV 和 XLSX。 The figures and tables are attached as CSV and XLSX.")
    return "\n".join(lines) + "\n"


def _csv_value(cell: Cell) -> str:
    # Numbers as they are (a negative one is no formula); text defused.
    if isinstance(cell, (int, Decimal)):
        return str(cell)
    return spreadsheet_cell(_cell_text(cell))


def to_csv(report: Report) -> str:
    """The report as one CSV (see the module's note), with a byte-order mark so Excel reads
    the Chinese as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for section in report.sections:
        for figure in section.figures:
            writer.writerow([spreadsheet_cell(section.key), "", spreadsheet_cell(figure.key),
                             spreadsheet_cell(figure.label), _csv_value(figure.value),
                             figure.unit])
    for section in report.sections:
        for table in section.tables:
            writer.writerow([])
            key = [spreadsheet_cell(section.key), spreadsheet_cell(table.key)]
            writer.writerow(key + [spreadsheet_cell(column) for column in table.columns])
            for row in table.rows:
                writer.writerow(key + [_csv_value(cell) for cell in row])
    return "\ufeff" + out.getvalue()


def _sheet_name(title: str, taken: set[str]) -> str:
    base = _SHEET_UNSAFE.sub(" ", inert(one_line(title))).strip("' ")[:SHEET_NAME_MAX] or "report"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name, n = base[:SHEET_NAME_MAX - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def _xlsx_row(sheet: Any, cells: list[Cell]) -> None:
    values: list[Any] = [inert(c) if isinstance(c, str) else c for c in cells]
    sheet.append(values)
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"  # text, never a formula, whatever it starts with


def to_xlsx(report: Report) -> bytes:
    """The report as a workbook: one sheet per section (see the module's note)."""
    from openpyxl import Workbook  # a large import: only when a workbook is made

    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    taken: set[str] = set()
    for section in report.sections:
        sheet = book.create_sheet(_sheet_name(section.title, taken))
        _xlsx_row(sheet, ["key", "label", "value", "unit"])
        for figure in section.figures:
            _xlsx_row(sheet, [figure.key, figure.label, figure.value, figure.unit])
        for table in section.tables:
            sheet.append([])
            _xlsx_row(sheet, [table.title])
            _xlsx_row(sheet, list(table.columns))
            for row in table.rows:
                _xlsx_row(sheet, list(row))
    if not report.sections:
        _xlsx_row(book.create_sheet("report"), ["nothing to report"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def attachment_name(report: Report, extension: str) -> str:
    period = report.period
    return f"report-{report.kind}-{period.start.isoformat()}.{extension}"


def message(report: Report, config: EmailConfig, to_date: bool = False) -> EmailMessage:
    """The report's email (text and HTML, CSV and XLSX attached) from the channel's sender to
    its recipients; SES `SendRawEmail` takes `bytes(message)`."""
    mail = envelope(config, subject(report, to_date),
                    f"report-{report.kind}-{report.period.start.isoformat()}")
    mail.set_content(plain_text(report, to_date))
    mail.add_alternative(html_body(report, to_date), subtype="html")
    mail.add_attachment(to_csv(report).encode("utf-8"), maintype="text", subtype="csv",
                        filename=attachment_name(report, "csv"), params={"charset": "utf-8"})
    maintype, _, subtype = XLSX_TYPE.partition("/")
    mail.add_attachment(to_xlsx(report), maintype=maintype, subtype=subtype,
                        filename=attachment_name(report, "xlsx"))
    return mail

