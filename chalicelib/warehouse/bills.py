"""A courier's monthly bill read into lines: CSV or XLSX, in the issuer's columns
(chalicelib/warehouse/bill_formats.py). Pure: bytes in, lines or a list of problems out.

Bills come as exported from the courier's or aggregator's portal: a title row or two above
the header, a 合计 (total) row at the bottom, CSV in UTF-8 (with or without BOM) or GB18030
(Excel's default on a Chinese Windows), weights and fees as numbers or as text with a unit.
A bad file is refused whole with every problem it has, each naming the line (as a spreadsheet
numbers it: 1 is the first row) and the column (its header), so the sender can fix them all
at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict

from chalicelib.warehouse.bill_formats import BillFormat, normalise_header
from chalicelib.warehouse.carriers import carrier_named

_HEADER_SEARCH_ROWS = 10  # title rows above the header, as portals export them
_TOTAL_WORDS = ("合计", "总计", "小计", "total")
_MAX_LINES = 200_000
_FEN = Decimal("0.01")
_MAX_AMOUNT = Decimal(1_000_000)  # no parcel weighs or costs more: a typo, or a hostile cell


class Problem(BaseModel):
    """One thing wrong with a bill, where it is (pydantic's error list, for a file)."""

    model_config = ConfigDict(frozen=True)

    line: int  # the row as a spreadsheet numbers it; 0: the file as a whole
    column: str  # the header ("" for the file or the row as a whole)
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}, column {self.column}: {self.message}" if self.column \
            else f"{where}: {self.message}"


class BillError(ValueError):
    """The bill cannot be read; every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(map(str, self.problems[:20]))
                         + (f" (and {len(self.problems) - 20} more)"
                            if len(self.problems) > 20 else ""))


class BillLine(BaseModel):
    """One billed parcel."""

    model_config = ConfigDict(frozen=True)

    line: int
    waybill: str
    carrier_code: str
    shipped_on: date
    province: str
    city: str
    weight_kg: Decimal
    fee: Decimal
    surcharges: Decimal

    @property
    def total(self) -> Decimal:
        return self.fee + self.surcharges


class ParsedBill(BaseModel):
    model_config = ConfigDict(frozen=True)

    bill_id: str
    format: str
    lines: tuple[BillLine, ...]


def bill_id_of(data: bytes) -> str:
    """The bill's identity is its content: the same file imported twice is one bill."""
    return "bill_" + hashlib.sha256(data).hexdigest()[:24]


# Reading rows ---------------------------------------------------------------------------------

Row = tuple[Any, ...]


def _is_xlsx(filename: str, data: bytes) -> bool:
    return filename.lower().endswith((".xlsx", ".xlsm")) or data[:4] == b"PK\x03\x04"


def _csv_rows(data: bytes) -> list[Row]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # gb18030 decodes any bytes; kept for the type checker
        raise BillError([Problem(line=0, column="", message="not text in UTF-8 or GB18030")])
    return [tuple(row) for row in csv.reader(io.StringIO(text, newline=""))]


def _xlsx_rows(data: bytes) -> list[Row]:
    from openpyxl import load_workbook  # only bills need it: keep it off the handlers' cold start

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise BillError([Problem(line=0, column="", message=f"not a readable XLSX file "
                                                             f"({type(exc).__name__})")]) from exc
    try:
        sheet = book.worksheets[0]  # portals put the lines on the first sheet
        return [tuple(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def rows_of(filename: str, data: bytes) -> list[Row]:
    return _xlsx_rows(data) if _is_xlsx(filename, data) else _csv_rows(data)


# Columns ----------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a waybill number Excel stored as a number
    return str(value).strip()


def _find(header: Sequence[str], names: tuple[str, ...]) -> int | None:
    wanted = [normalise_header(n) for n in names]
    for name in wanted:  # spellings in order of preference: 计费重量 before 重量
        if name in header:
            return header.index(name)
    return None


def _locate_header(rows: Sequence[Row], fmt: BillFormat) -> int:
    for index, row in enumerate(rows[:_HEADER_SEARCH_ROWS]):
        if _find([normalise_header(_text(c)) for c in row], fmt.waybill) is not None:
            return index
    raise BillError([Problem(line=0, column=fmt.waybill[0], message=(
        f"no header row with {'/'.join(fmt.waybill)} in the first {_HEADER_SEARCH_ROWS} "
        f"rows: is this a {fmt.name} bill?"))])


_REQUIRED = ("waybill", "shipped_on", "weight", "fee")


Columns = tuple[dict[str, int], list[tuple[int, str]]]  # field -> index; (index, surcharge)


def _columns(header_row: Row, fmt: BillFormat, line: int) -> Columns:
    header = [normalise_header(_text(c)) for c in header_row]
    found: dict[str, int] = {}
    problems: list[Problem] = []
    fields = [*_REQUIRED, "province", "city"] + (["carrier_column"] if fmt.carrier is None else [])
    for field in fields:
        names: tuple[str, ...] = getattr(fmt, field)
        index = _find(header, names)
        if index is not None:
            found[field] = index
        elif field in _REQUIRED or field == "carrier_column":
            problems.append(Problem(line=line, column=names[0], message="column missing"))
    if "province" not in found and "city" not in found:
        problems.append(Problem(line=line, column=fmt.province[0],
                                message=f"column missing (and no {fmt.city[0]})"))
    surcharges = [(i, names[0]) for names in fmt.surcharges
                  if (i := _find(header, names)) is not None]
    if problems:
        raise BillError(problems)
    return found, surcharges


# Values -----------------------------------------------------------------------------------------

_UNITS = re.compile(r"(kg|公斤|千克|元|¥|￥|rmb|cny|,|\s)", re.IGNORECASE)
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日")


def _amount(value: Any, column: str, line: int, problems: list[Problem],
            blank_is_zero: bool = False) -> Decimal:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        number = Decimal(str(value))
    else:
        text = _UNITS.sub("", _text(value))
        if not text and blank_is_zero:
            return Decimal(0)
        try:
            number = Decimal(text)
        except InvalidOperation:
            problems.append(Problem(line=line, column=column,
                                    message=f"not a number: {_text(value)!r}"))
            return Decimal(0)
    if not number.is_finite() or not 0 <= number <= _MAX_AMOUNT:
        problems.append(Problem(line=line, column=column, message=(
            f"must be a number from 0 to {_MAX_AMOUNT}, got {_text(value)!r}")))
        return Decimal(0)
    return number


def _date(value: Any, column: str, line: int, problems: list[Problem]) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value).split(" ")[0].split("T")[0]
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    problems.append(Problem(line=line, column=column, message=f"not a date: {_text(value)!r}"))
    return date.min


def _cell(row: Row, index: int) -> Any:
    return row[index] if index < len(row) else None


def _is_total_row(row: Row, waybill_at: int) -> bool:
    if _text(_cell(row, waybill_at)):
        return any(w in _text(_cell(row, waybill_at)).casefold() for w in _TOTAL_WORDS)
    return any(w in _text(c).casefold() for c in row for w in _TOTAL_WORDS)


def _line(row: Row, line: int, fmt: BillFormat, columns: Columns,
          problems: list[Problem]) -> BillLine | None:
    at, surcharge_at = columns

    def cell(field: str) -> Any:
        return _cell(row, at[field]) if field in at else None

    def name(field: str) -> str:
        names: tuple[str, ...] = getattr(fmt, field)
        return names[0]

    before = len(problems)
    waybill = _text(cell("waybill"))
    if not waybill:
        problems.append(Problem(line=line, column=name("waybill"), message="empty"))
    carrier = fmt.carrier.value if fmt.carrier is not None else ""
    if fmt.carrier is None:
        named = carrier_named(_text(cell("carrier_column")))
        if named is None:
            problems.append(Problem(line=line, column=name("carrier_column"),
                                    message=f"unknown courier {_text(cell('carrier_column'))!r}"))
        else:
            carrier = named.value
    # Money to the fen, however the cell held it (XLSX stores 4.00 as the number 4).
    surcharges = sum((_amount(_cell(row, i), header, line, problems, blank_is_zero=True)
                      for i, header in surcharge_at), Decimal(0)).quantize(_FEN)
    parsed = BillLine(
        line=line, waybill=waybill, carrier_code=carrier,
        shipped_on=_date(cell("shipped_on"), name("shipped_on"), line, problems),
        province=_text(cell("province")), city=_text(cell("city")),
        weight_kg=_amount(cell("weight"), name("weight"), line, problems),
        fee=_amount(cell("fee"), name("fee"), line, problems).quantize(_FEN),
        surcharges=surcharges)
    return parsed if len(problems) == before else None


def _data_rows(rows: Sequence[Row], start: int) -> Iterator[tuple[int, Row]]:
    for index in range(start, len(rows)):
        row = rows[index]
        if any(_text(c) for c in row):
            yield index + 1, row  # the line number a spreadsheet shows


def parse_bill(fmt: BillFormat, filename: str, data: bytes) -> ParsedBill:
    """Every line of the bill, or BillError with every problem (nothing half-read)."""
    rows = rows_of(filename, data)
    if not rows:
        raise BillError([Problem(line=0, column="", message="the file is empty")])
    header_at = _locate_header(rows, fmt)
    columns = _columns(rows[header_at], fmt, header_at + 1)
    waybill_at = columns[0]["waybill"]
    problems: list[Problem] = []
    lines: list[BillLine] = []
    for number, row in _data_rows(rows, header_at + 1):
        if _is_total_row(row, waybill_at):
            continue
        parsed = _line(row, number, fmt, columns, problems)
        if parsed is not None:
            lines.append(parsed)
    if not lines and not problems:
        problems.append(Problem(line=0, column="", message="no bill lines under the header"))
    if len(lines) > _MAX_LINES:
        problems.append(Problem(line=0, column="", message=f"more than {_MAX_LINES} lines"))
    if problems:
        raise BillError(problems)
    return ParsedBill(bill_id=bill_id_of(data), format=fmt.name, lines=tuple(lines))
