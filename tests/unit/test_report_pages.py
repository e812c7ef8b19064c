"""The pure parts of the console's report and bill pages: which period holds a day, the
recent periods, a report as CSV, a figure as text, a multipart upload read back intact."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.console import uploads
from chalicelib.console.report_pages import (
    chosen_period,
    figure_text,
    period_containing,
    recent_periods,
)
from chalicelib.core.errors import ApiError
from chalicelib.reports.model import Figure, Period, Report, Section, Table
from chalicelib.reports.render import to_csv


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_the_period_holding_a_day(day: date) -> None:
    daily = period_containing("daily", day)
    assert daily.days() == [day]
    weekly = period_containing("weekly", day)
    assert weekly.start.isoweekday() == 1 and len(weekly.days()) == 7 and day in weekly.days()
    monthly = period_containing("monthly", day)
    days = monthly.days()
    assert days[0] == day.replace(day=1) and day in days
    assert all(d.month == day.month for d in days) and (days[-1] + timedelta(days=1)).day == 1


def test_recent_periods_are_back_to_back_newest_first() -> None:
    weeks = recent_periods("weekly", date(2026, 12, 2))
    assert [w.start for w in weeks] == [date(2026, 11, 30), date(2026, 11, 23),
                                        date(2026, 11, 16), date(2026, 11, 9)]
    months = recent_periods("monthly", date(2026, 1, 15))
    assert [(m.start, m.end) for m in months] == [
        (date(2026, 1, 1), date(2026, 2, 1)), (date(2025, 12, 1), date(2026, 1, 1)),
        (date(2025, 11, 1), date(2025, 12, 1))]


def test_a_day_is_a_shanghai_day_and_never_a_future_one() -> None:
    # 16:30 UTC on the 30th is already the 1st in Shanghai: the 1st may be asked for.
    now = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    assert chosen_period("monthly", "2026-12-01", now).start == date(2026, 12, 1)
    with pytest.raises(ApiError) as refused:
        chosen_period("daily", "2026-12-02", now)
    assert refused.value.reason == "invalid_day"


def test_figures_with_their_units() -> None:
    assert figure_text(Figure(key="a", label="A", value=Decimal("12.5"), unit="percent")) \
        == "12.5 %"
    assert figure_text(Figure(key="a", label="A", value=Decimal("97.40"), unit="CNY")) \
        == "¥97.40"
    assert figure_text(Figure(key="a", label="A", value=None, unit="hours")) == "—"
    assert figure_text(Figure(key="a", label="A", value=3)) == "3"


def test_a_report_as_csv() -> None:
    period = Period(kind="daily", start=date(2026, 12, 1), end=date(2026, 12, 2))
    rows = (("STO", 3, Decimal("4.40")), ("-1+1", None, Decimal("-2")))
    report = Report(kind="daily", period=period,
                    generated_at=datetime(2026, 12, 2, 1, 0, tzinfo=UTC), sections=(
                        Section(key="s", title="Cost, per courier",
                                figures=(Figure(key="f", label="Paid", value=5),),
                                tables=(Table(key="t", title="By courier",
                                              columns=("courier", "n", "fee"), rows=rows),)),))
    text = to_csv(report)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["report", "daily", "2026-12-01", "2026-12-02",
                         "2026-12-02T01:00:00+00:00"]
    assert ["Cost, per courier", "Paid", "5", "count"] in parsed
    at = parsed.index(["courier", "n", "fee"])
    assert parsed[at - 1] == ["Cost, per courier", "By courier"]
    # A text that a spreadsheet would run is quoted; a negative amount stays a number.
    assert parsed[at + 1:] == [["STO", "3", "4.40"], ["'-1+1", "", "-2"]]
    assert "\r\n" in text


@given(st.binary(max_size=3000), st.text(min_size=1, max_size=40).filter(
    lambda s: "\x00" not in s and "\r" not in s and "\n" not in s))
def test_an_upload_comes_back_byte_for_byte(data: bytes, token: str) -> None:
    prepared = requests.Request("POST", "http://console/", data={"csrf_token": token},
                                files={"file": ("bill.xlsx", data)}).prepare()
    assert isinstance(prepared.body, bytes)
    posted = uploads.parse(prepared.body, prepared.headers["Content-Type"])
    assert posted.fields == {"csrf_token": token}
    assert posted.files["file"] == uploads.Upload(filename="bill.xlsx", data=data)


def test_an_upload_over_the_cap_or_without_a_boundary_is_refused() -> None:
    with pytest.raises(ApiError) as big:
        uploads.parse(b"x" * (uploads.MAX_UPLOAD_BYTES + 1), "multipart/form-data; boundary=a")
    assert big.value.status == 413
    with pytest.raises(ApiError) as bare:
        uploads.parse(b"--a--", "multipart/form-data")
    assert bare.value.status == 400
