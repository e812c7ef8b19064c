"""A report as CSV (the console's download; the mail's attachment can be the same). Pure.

One file for the whole report, in the order of its sections: a header line naming the report,
then each section's figures (section, figure, value, unit) and each of its tables under its
own title and columns. A spreadsheet reads it as one sheet; a script splits it at the blank
lines. Charts add nothing: their figures are in the tables and figures they are drawn from.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal

from chalicelib.reports.model import Cell, Report

# A spreadsheet runs a cell that starts with one of these as a formula. Labels come from
# couriers, marketplaces and staff, so such a text cell is written with a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, Decimal)):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _rows(report: Report) -> Iterable[list[str]]:
    yield ["report", report.kind, report.period.start.isoformat(),
           report.period.end.isoformat(), report.generated_at.isoformat()]
    figures = [(section, figure) for section in report.sections for figure in section.figures]
    if figures:
        yield []
        yield ["section", "figure", "value", "unit"]
        for section, figure in figures:
            yield [_cell(section.title), _cell(figure.label), _cell(figure.value), figure.unit]
    for section in report.sections:
        for table in section.tables:
            yield []
            yield [_cell(section.title), _cell(table.title)]
            yield [_cell(column) for column in table.columns]
            for row in table.rows:
                yield [_cell(value) for value in row]


def to_csv(report: Report) -> str:
    """The report's figures and tables as CSV text (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(_rows(report))
    return out.getvalue()
