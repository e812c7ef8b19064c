"""Courier bills read from CSV and XLSX in each issuer's columns; bad files named line by line."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook

from chalicelib.warehouse.bill_formats import KUAIDI100, STO, bill_format
from chalicelib.warehouse.bills import BillError, Problem, bill_id_of, parse_bill

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bills"
D = Decimal
STO_CSV = (FIXTURES / "sto_2026-11.csv").read_bytes()


def test_an_sto_csv_bill_is_read_under_its_title_rows_without_its_total_row() -> None:
    bill = parse_bill(STO, "sto_2026-11.csv", STO_CSV)
    assert [line.waybill for line in bill.lines] == [f"77330128456021{i}" for i in range(1, 8)]
    first, remote = bill.lines[0], bill.lines[4]
    assert (first.line, first.carrier_code, first.shipped_on) == (4, "STO", date(2026, 11, 2))
    assert (first.province, first.city, first.weight_kg, first.fee) == (
        "浙江省", "杭州市", D("0.50"), D("4.00"))
    assert (remote.surcharges, remote.total) == (D("3.00"), D("13.00"))
    assert bill.bill_id == bill_id_of(STO_CSV) and bill.format == "STO"


def test_a_gb18030_export_reads_the_same() -> None:
    # Excel on a Chinese Windows saves CSV as GB18030, without a BOM.
    gbk = STO_CSV.decode("utf-8").encode("gb18030")
    assert parse_bill(STO, "bill.csv", gbk).lines == parse_bill(STO, "bill.csv", STO_CSV).lines


def test_a_kuaidi100_xlsx_bill_names_each_lines_courier_and_adds_its_surcharges() -> None:
    data = (FIXTURES / "kuaidi100_2026-11.xlsx").read_bytes()
    bill = parse_bill(KUAIDI100, "kuaidi100_2026-11.xlsx", data)
    assert [(line.waybill, line.carrier_code) for line in bill.lines] == [
        ("YT7512304411876", "YTO"), ("773301284560301", "STO"),
        ("SF1402938475610", "SF"), ("75130022894512", "ZTO")]
    sto = bill.lines[1]
    assert (sto.line, sto.shipped_on, sto.city, sto.weight_kg) == (
        4, date(2026, 11, 4), "武汉市", D("1.5"))
    assert (sto.fee, sto.surcharges) == (D("10.0"), D("0.5"))
    assert bill.lines[3].surcharges == D("1.0")  # 其他费用


def test_formats_are_found_by_name() -> None:
    assert bill_format("sto") is STO and bill_format("Kuaidi100") is KUAIDI100
    assert bill_format("nosuch") is None


def _xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)  # type: ignore[union-attr]
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _problems(data: bytes, name: str = "bill.csv") -> list[Problem]:
    with pytest.raises(BillError) as caught:
        parse_bill(STO, name, data)
    return list(caught.value.problems)


HEADER = "运单号,寄件日期,目的省份,目的城市,计费重量,运费,附加费\n"


def test_a_bad_csv_names_every_bad_line_and_column() -> None:
    data = (HEADER + "7733001,2026-11-02,浙江,杭州,0.5,4,0\n"
            "7733002,2026-13-40,浙江,杭州,abc,4,0\n"
            ",2026-11-03,浙江,杭州,1,-2,x\n").encode()
    problems = _problems(data)
    assert [(p.line, p.column) for p in problems] == [
        (3, "寄件日期"), (3, "计费重量"), (4, "运单号"), (4, "附加费"), (4, "运费")]
    assert "not a number: 'abc'" in problems[1].message
    assert "line 3, column 寄件日期" in str(BillError(problems))


def test_absurd_amounts_are_refused_not_crashed_on() -> None:
    problems = _problems((HEADER + "7733001,2026-11-02,浙江,杭州,1e30,4,0\n"
                          "7733002,2026-11-02,浙江,杭州,1,NaN,Infinity\n").encode())
    assert [(p.line, p.column) for p in problems] == [(2, "计费重量"), (3, "附加费"), (3, "运费")]


def test_a_bill_without_a_required_column_is_refused_at_its_header() -> None:
    problems = _problems("运单号,寄件日期,目的省份,运费\n7733001,2026-11-02,浙江,4\n".encode())
    assert [(p.line, p.column, p.message) for p in problems] == [
        (1, "计费重量", "column missing")]


def test_a_file_of_another_issuer_says_so() -> None:
    problems = _problems(b"foo,bar\n1,2\n")
    assert problems[0].line == 0 and "is this a STO bill" in problems[0].message


def test_a_bad_xlsx_names_the_line_and_column_too() -> None:
    data = _xlsx([["申通快递对账单"], ["运单号", "寄件日期", "目的城市", "计费重量", "运费"],
                  ["7733001", "2026-11-02", "杭州", 0.5, 4],
                  ["7733002", "2026-11-02", "杭州", "1kg", "四元"]])
    problems = _problems(data, "bill.xlsx")
    assert [(p.line, p.column) for p in problems] == [(4, "运费")]


def test_a_corrupt_xlsx_or_an_empty_file_is_one_clear_problem() -> None:
    assert "not a readable XLSX" in _problems(b"PK\x03\x04garbage", "bill.xlsx")[0].message
    assert _problems(b"")[0].message == "the file is empty"
    assert "no bill lines" in _problems(HEADER.encode())[0].message
