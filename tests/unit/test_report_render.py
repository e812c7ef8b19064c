"""A report as email (chalicelib/reports/render.py): HTML that shows hostile labels as text,
each chart also as a table, CSV and XLSX that carry exactly the report's figures and tables."""

from __future__ import annotations

import email
import email.policy
import io
from datetime import UTC, date, datetime
from decimal import Decimal

from openpyxl import load_workbook

from chalicelib.cs.channels.email import EmailConfig
from chalicelib.reports import render
from chalicelib.reports.model import Chart, Figure, Period, Report, Section, Table
from tests.report_files import attachments, csv_figures, csv_tables

HOSTILE = '<script>alert("x")</script>'
FORMULA = '=cmd|" /C calc"!A0'
CONFIG = EmailConfig(sender="Reports <reports@brand.cn>", verified_identities=("brand.cn",),
                     to=("manager@brand.cn",))

DISPATCH = Section(
    key="dispatch", title="发货 Dispatch",
    figures=(Figure(key="paid", label="Orders paid", value=42),
             Figure(key="on_time", label="On time", value=Decimal("97.6"), unit="percent"),
             Figure(key="late_rate", label="Late", value=None, unit="percent")),
    tables=(Table(key="by_cutoff", title="Per cut-off",
                  columns=("cut-off", "paid", "shipped", "late"),
                  rows=(("11:00", 10, 9, 1), ("15:00", 20, 20, 0), ("19:30", 12, 11, None))),),
    charts=(Chart(key="cutoffs", title="Per cut-off", kind="stacked", parts=("on time", "late"),
                  rows=(("11:00", (9, 1)), ("15:00", (20, 0)))),))
HOSTILE_SECTION = Section(
    key="carriers", title=f"Carriers {HOSTILE}",
    figures=(Figure(key="refunds", label=HOSTILE, value=-3, unit="CNY"),),
    tables=(Table(key="exceptions", title=HOSTILE, columns=("carrier", "count"),
                  rows=((FORMULA, 3), (HOSTILE, Decimal("2.5")))),),
    charts=(Chart(key="by_carrier", title=HOSTILE, rows=((HOSTILE, (7,)), ("STO", (2,)))),))
REPORT = Report(kind="weekly", period=Period(kind="weekly", start=date(2026, 12, 4),
                                             end=date(2026, 12, 11)),
                generated_at=datetime(2026, 12, 11, 1, 0, tzinfo=UTC),
                sections=(DISPATCH, HOSTILE_SECTION))


def test_the_html_shows_hostile_labels_as_text() -> None:
    page = render.html_body(REPORT)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'alert("x")' not in page  # quotes escaped too
    assert "<svg" in page  # the charts, inline
    assert page.count("<svg") == 2


def test_each_chart_is_also_a_table_of_its_figures() -> None:
    page = render.html_body(REPORT)
    for label, values in DISPATCH.charts[0].rows:
        cells = "".join(f'<td align="right">{v}</td>' for v in values)
        assert f'<th align="left">{label}</th>{cells}' in page
    assert "<th>on time</th><th>late</th>" in page


def test_the_subject_names_the_period_and_says_when_it_is_not_over() -> None:
    assert render.subject(REPORT) == "周报 Weekly report 2026-12-04 – 2026-12-10"
    assert render.subject(REPORT, to_date=True).endswith("（截至目前 to date）")


def test_the_csv_has_every_figure_then_every_table() -> None:
    text = render.to_csv(REPORT)
    expected = {(s.key, f.key): "" if f.value is None else str(f.value)
                for s in REPORT.sections for f in s.figures}
    assert csv_figures(text) == expected
    tables = csv_tables(text)
    assert list(tables) == [(s.key, t.key) for s in REPORT.sections for t in s.tables]
    table = DISPATCH.tables[0]
    assert tables[("dispatch", "by_cutoff")] == [list(table.columns)] + [
        ["" if c is None else str(c) for c in row] for row in table.rows]
    # A formula is defused (shown as text), a negative number is left a number.
    assert tables[("carriers", "exceptions")][1][0] == "'" + FORMULA
    assert csv_figures(text)[("carriers", "refunds")] == "-3"


def test_the_xlsx_has_a_sheet_per_section_with_its_figures_and_tables() -> None:
    book = load_workbook(io.BytesIO(render.to_xlsx(REPORT)))
    first, second = (sheet.title for sheet in book.worksheets)
    assert first == "发货 Dispatch"
    assert len(second) <= 31 and not set(second) & set("[]:*?/\\")
    for section, sheet in zip(REPORT.sections, book.worksheets, strict=True):
        rows = [list(row) for row in sheet.iter_rows(values_only=True)]
        figures = rows[1:1 + len(section.figures)]
        assert [[r[0], r[1], _number(r[2]), r[3]] for r in figures] == [
            [f.key, f.label, f.value, f.unit] for f in section.figures]
        rest = rows[1 + len(section.figures):]
        for table in section.tables:
            assert rest[0] == [None] * len(rest[0]) or rest[0] == []  # the gap
            assert rest[1][0] == table.title
            assert tuple(rest[2][:len(table.columns)]) == table.columns
            got = [tuple(_number(c) for c in row[:len(table.columns)])
                   for row in rest[3:3 + len(table.rows)]]
            assert got == list(table.rows)
            rest = rest[3 + len(table.rows):]
    # Text that starts with "=" is a string cell, not a formula.
    cell = book.worksheets[1].cell(row=6, column=1)
    assert (cell.value, cell.data_type) == (FORMULA, "s")


def _number(value: object) -> object:
    # The workbook gives back floats where the report had decimals.
    return Decimal(str(value)) if isinstance(value, float) else value


def test_sheet_names_are_what_excel_accepts_and_unique() -> None:
    taken: set[str] = set()
    names = [render._sheet_name(title, taken)
             for title in ("a/b:c*d?[e]", "x" * 40, "x" * 40, "")]
    assert names[0] == "a b c d  e"
    assert len(names[1]) == 31 and names[2].endswith(" (2)") and len(names[2]) == 31
    assert names[3] == "report"


def test_the_message_has_text_html_and_both_attachments() -> None:
    mail = email.message_from_bytes(bytes(render.message(REPORT, CONFIG, to_date=True)),
                                    policy=email.policy.default)
    assert mail["To"] == "manager@brand.cn" and "to date" in str(mail["Subject"])
    files = attachments(mail)
    assert sorted(files) == ["report-weekly-2026-12-04.csv", "report-weekly-2026-12-04.xlsx"]
    assert files["report-weekly-2026-12-04.csv"].decode("utf-8") == render.to_csv(REPORT)
    book = load_workbook(io.BytesIO(files["report-weekly-2026-12-04.xlsx"]))
    assert len(book.worksheets) == len(REPORT.sections)
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    assert "&lt;script&gt;" in html.get_content()
