"""The console's report and courier-bill pages over the app in process: a report of sections
planted through flows.reports' sources shown whole (figures, tables, charts) and as CSV, for
the period holding the chosen day; a bill imported through the upload form, its totals and
flagged lines shown, its paging, the admin-only import, a refused file's problems, the size
cap. (tests/browser/test_reports_bills.py drives the same pages in Chromium.)"""

from __future__ import annotations

import html
import re
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from chalice.test import Client
from markupsafe import escape

from chalicelib.access.keys import Role
from chalicelib.console import bill_pages, uploads
from chalicelib.core.clock import utcnow
from chalicelib.flows import bills as bill_flow
from chalicelib.flows import reports as report_flow
from chalicelib.reports.model import Chart, Figure, Period, Section, Sourced, Table, local_day
from chalicelib.warehouse.bills import bill_id_of
from tests.integration.test_bills import PLANTED, PLANTED_FINDINGS, shipped  # noqa: F401
from tests.integration.test_console import Person, hidden, text
from tests.report_files import csv_figures, csv_tables

D = Decimal
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def person(client: Client) -> Person:
    return Person(client)


@pytest.fixture
def key(make_key: Any) -> Any:
    def issue(role: Role) -> str:
        return str(make_key("staff", f"{role.value}-{uuid.uuid4().hex[:6]}", role))

    return issue


def planted_section(period: Period) -> Section:
    """A section whose figures follow from the period, so a page of the wrong period shows
    other numbers."""
    days = len(period.days())
    return Section(
        key="dispatch", title="Dispatch " + HOSTILE,
        figures=(Figure(key="orders", label="Orders", value=days * 7),
                 Figure(key="on_time", label="On time", value=D("93.5"), unit="percent"),
                 Figure(key="cost", label="Courier cost", value=D(days) * D("4.40"), unit="CNY"),
                 Figure(key="intercepts", label="Intercept success", value=None,
                        unit="percent")),
        tables=(Table(key="by_day", title="Per day", columns=("day", "paid", "note"),
                      rows=tuple((d.isoformat(), n + 1, "=HYPERLINK(1)" if n == 0 else HOSTILE)
                                 for n, d in enumerate(period.days()))),),
        charts=(Chart(key="carriers", title="Exceptions", rows=(("STO", (3,)), ("YTO", (1,)))),
                Chart(key="shifts", title="Shifts", kind="stacked", parts=("on time", "late"),
                      rows=(("10:00", (5, 2)), ("16:00", (4, 0))))),
        notes=("Figures in Asia/Shanghai days.",))


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> list[Period]:
    """flows.reports with one source of planted sections; the periods it was asked for."""
    asked: list[Period] = []

    def source(period: Period, now: datetime) -> Sourced:
        asked.append(period)
        return Sourced(sections=(planted_section(period),), reads=1)

    monkeypatch.setattr(report_flow, "_sources", lambda: (source,))
    return asked


def figures(page: str) -> dict[str, str]:
    return {key: html.unescape(value) for key, value in re.findall(
        r'data-figure="([^"]+)"><span>[^<]*</span> <b>([^<]*)</b>', page)}


def test_a_week_holding_the_day_is_reported_whole(person: Person, key: Any,
                                                  planted: list[Period]) -> None:
    person.sign_in(key(Role.READ_ONLY))
    answer = person.get("/console/reports/weekly/2026-11-18")  # a Wednesday
    page = text(answer)
    assert answer.status_code == 200, page
    # Friday to Thursday: the week the Friday report covers
    week = Period(kind="weekly", start=date(2026, 11, 13), end=date(2026, 11, 20))
    assert planted == [week]
    section = planted_section(week)
    assert figures(page) == {"orders": str(7 * 7), "on_time": "93.5 %",
                             "cost": f"¥{D(7) * D('4.40')}", "intercepts": "—"}
    cells = re.findall(r"<td>([^<]*)</td>", page.split('data-table="by_day"')[1].split(
        "</table>")[0])
    assert [html.unescape(c) for c in cells] == [
        str(c) for row in section.table("by_day").rows for c in row]
    assert HOSTILE not in page and str(escape(HOSTILE)) in page  # text, never markup
    assert page.count('data-testid="chart"') == 2 and page.count("<svg") == 2
    assert 'href="/console/reports/weekly/2026-11-13/csv"' in page
    assert "XLSX comes by email" in text(person.get("/console/reports/weekly/2026-11-18"
                                                    "?lang=en"))
    assert 'href="/console/reports/weekly/2026-11-06"' in page  # the week before


def test_the_csv_carries_the_figures_and_the_tables(person: Person, key: Any,
                                                   planted: list[Period]) -> None:
    person.sign_in(key(Role.READ_ONLY))
    answer = person.get("/console/reports/monthly/2024-02-10/csv")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert 'filename="report-monthly-2024-02-01.csv"' in answer.headers["Content-Disposition"]
    body = answer.body.decode("utf-8")
    assert body.startswith("\ufeff")  # Excel reads the Chinese as UTF-8
    month = Period(kind="monthly", start=date(2024, 2, 1), end=date(2024, 3, 1))  # leap year
    assert planted == [month]
    section = planted_section(month)
    figures = csv_figures(body)
    assert figures[("dispatch", "orders")] == str(29 * 7)
    assert figures[("dispatch", "intercepts")] == ""
    columns, *table = csv_tables(body)[("dispatch", "by_day")]
    assert columns == ["day", "paid", "note"]
    expected = [[str(c) for c in row] for row in section.table("by_day").rows]
    # A formula is written as text a spreadsheet does not run.
    assert table[0][2] != expected[0][2] and table[0][2].endswith(expected[0][2])
    assert [row[:2] for row in table] == [row[:2] for row in expected]


def test_choosing_a_kind_and_a_day(person: Person, key: Any, planted: list[Period]) -> None:
    person.sign_in(key(Role.READ_ONLY))
    form = text(person.get("/console/reports"))
    assert 'data-testid="recent-daily"' in form and 'action="/console/reports"' in form
    chosen = person.get("/console/reports?kind=monthly&day=2025-03-31")
    assert (chosen.status_code, chosen.headers["Location"]) == (
        303, "/console/reports/monthly/2025-03-01")
    for path, reason in [("/console/reports/yearly/2025-03-01", "invalid_kind"),
                         ("/console/reports/daily/2025-02-30", "invalid_day"),
                         (f"/console/reports/daily/{local_day(utcnow()) + timedelta(days=3)}",
                          "invalid_day")]:
        refused = person.get(path)
        assert refused.status_code == 400 and f'data-reason="{reason}"' in text(refused)
    assert planted == []  # nothing computed for a refused period


def test_reports_need_a_session(person: Person) -> None:
    answer = person.get("/console/reports/daily/2025-03-01")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/console/sign-in?next=")


# Bills ------------------------------------------------------------------------------------------

def upload(person: Person, path: str, fields: dict[str, str], filename: str,
           data: bytes) -> Any:
    """The form a browser posts: multipart/form-data, the file as its own part."""
    prepared = requests.Request("POST", "http://console" + path, data=fields,
                                files={"file": (filename, data)}).prepare()
    assert isinstance(prepared.body, bytes)
    headers = person._headers({"Content-Type": prepared.headers["Content-Type"]})
    return person._keep(person.client.http.post(path, headers=headers, body=prepared.body))


def import_planted(person: Person) -> Any:
    token = person.csrf("/console/bills")
    return upload(person, "/console/bills", {"csrf_token": token, "format": "STO"},
                  "sto_2025-03.csv", PLANTED)


def shown_findings(page: str) -> list[tuple[str, str, int]]:
    return [(kind, waybill, int(line)) for kind, waybill, line in re.findall(
        r'data-testid="finding" data-kind="([^"]+)" data-waybill="([^"]+)" '
        r'data-line="(\d+)"', page)]


def test_an_admin_imports_a_bill_and_sees_each_planted_line(person: Person, key: Any,
                                                           shipped: None) -> None:  # noqa: F811
    person.sign_in(key(Role.ADMIN))
    answer = import_planted(person)
    assert answer.status_code == 303, text(answer)
    location = answer.headers["Location"]
    bill_id = location.split("/console/bills/")[1].split("?")[0]
    assert location.endswith(("?imported=new", "?imported=again"))  # (another test's import)
    stored = bill_flow.show_bill(bill_id)
    assert stored is not None and bill_id == bill_id_of(PLANTED)
    page = text(person.get(location))
    assert shown_findings(page) == PLANTED_FINDINGS
    shown = re.findall(r'data-testid="bill-total" data-carrier="([^"]+)" data-month="([^"]+)" '
                       r'data-region="([^"]+)">.*?</tr>', page)
    assert shown == [(t.carrier_code, t.month, t.region.value) for t in sorted(
        stored.totals, key=lambda t: (t.carrier_code, t.month, t.region.value))]
    total_row = page.split('data-testid="bill-sum"')[1].split("</tr>")[0]
    assert "97.40" in total_row  # the bill's own 合计 row
    # Again: the same bill, nothing changed, and said so.
    again = import_planted(person)
    assert again.headers["Location"] == f"/console/bills/{bill_id}?imported=again"
    listing = text(person.get("/console/bills?carrier=STO"))
    assert f'data-bill-id="{bill_id}"' in listing and "STO 2025-03" in listing
    overcharges = text(person.get(f"/console/bills/{bill_id}?kind=overcharge"))
    assert shown_findings(overcharges) == [f for f in PLANTED_FINDINGS if f[0] == "overcharge"]


def test_flagged_lines_are_paged(person: Person, key: Any, shipped: None,  # noqa: F811
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    person.sign_in(key(Role.ADMIN))
    bill_id = import_planted(person).headers["Location"].split("/console/bills/")[1] \
        .split("?")[0]
    monkeypatch.setattr(bill_pages, "FINDINGS_PAGE", 3)
    pages = []
    for number in (1, 2, 3):
        page = text(person.get(f"/console/bills/{bill_id}?page={number}"))
        pages.append(shown_findings(page))
        assert ('data-testid="next-page"' in page) == (number < 3)
    assert pages == [PLANTED_FINDINGS[0:3], PLANTED_FINDINGS[3:6], PLANTED_FINDINGS[6:]]


def test_only_an_admin_imports_and_only_with_the_forms_token(person: Person, key: Any,
                                                            shipped: None) -> None:  # noqa: F811
    person.sign_in(key(Role.BACK_OFFICE))
    page = text(person.get("/console/bills"))
    assert 'data-testid="bill-import"' not in page
    token = hidden(page, "csrf_token")
    refused = upload(person, "/console/bills", {"csrf_token": token, "format": "STO"},
                     "b.csv", PLANTED)
    assert refused.status_code == 403
    admin = Person(person.client)
    admin.sign_in(key(Role.ADMIN))
    assert 'data-testid="bill-import"' in text(admin.get("/console/bills"))
    stale = upload(admin, "/console/bills", {"csrf_token": "not-the-token", "format": "STO"},
                   "b.csv", PLANTED)
    assert stale.status_code == 403 and 'data-reason="csrf_failed"' in text(stale)


def test_a_bad_file_is_refused_with_its_lines_and_columns(person: Person, key: Any,
                                                         stack: dict[str, str]) -> None:
    person.sign_in(key(Role.ADMIN))
    token = person.csrf("/console/bills")
    bad = ("运单号,寄件日期,目的省份,目的城市,计费重量,运费\n"
           "773500000001,2025-03-03,上海,上海市,1.0,4.00\n"
           "773500000002,yesterday,北京,北京市,heavy,8.00\n").encode()
    answer = upload(person, "/console/bills", {"csrf_token": token, "format": "STO"},
                    "bad.csv", bad)
    page = text(answer)
    assert answer.status_code == 400
    problems = re.findall(r'data-testid="bill-problem" data-line="(\d+)" data-column="([^"]*)"',
                          page)
    assert problems == [("3", "寄件日期"), ("3", "计费重量")]
    assert "not a date: &#39;yesterday&#39;" in page
    assert bill_flow.show_bill(bill_id_of(bad)) is None  # nothing written


def test_a_file_over_the_cap_gets_a_clear_page(person: Person, key: Any,
                                               stack: dict[str, str]) -> None:
    person.sign_in(key(Role.ADMIN))
    token = person.csrf("/console/bills")
    answer = upload(person, "/console/bills", {"csrf_token": token, "format": "STO"},
                    "huge.csv", b"x" * (uploads.MAX_UPLOAD_BYTES + 1))
    page = text(answer)
    assert answer.status_code == 413 and 'data-reason="payload_too_large"' in page
    assert "4 MB" in page


def test_an_unknown_bill_is_not_found(person: Person, key: Any) -> None:
    person.sign_in(key(Role.READ_ONLY))
    assert person.get("/console/bills/bill_000000000000000000000000").status_code == 404
