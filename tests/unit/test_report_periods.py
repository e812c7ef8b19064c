"""Which days each report covers, and when it is due (chalicelib/reports/periods.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from chalicelib.reports import periods
from chalicelib.reports.model import Period
from chalicelib.reports.periods import ReportRules, due, due_at, latest_due, period_of
from chalicelib.warehouse.dispatch import DispatchRules

RULES = ReportRules()
DISPATCH = DispatchRules()  # every day worked, last cut-off 19:30
OFF_SUNDAYS = DispatchRules.model_validate({"non_working_weekdays": ["sun"]})


def shanghai(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock moment in Asia/Shanghai (UTC+8, no daylight saving), as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def test_a_day_is_the_shanghai_day_whatever_the_utc_date() -> None:
    day = date(2026, 12, 7)
    period = period_of("daily", day)
    assert (period.start_at, period.end_at) == (shanghai(day, 0), shanghai(day + timedelta(1), 0))
    assert period.contains(shanghai(day, 0)) and period.contains(shanghai(day, 23, 59))
    assert not period.contains(shanghai(day, 0) - timedelta(seconds=1))
    # 23:30 UTC on the 6th is 07:30 on the 7th in Shanghai: the 7th's report.
    assert period.contains(datetime(2026, 12, 6, 23, 30, tzinfo=UTC))


@pytest.mark.parametrize("day", [date(2026, 12, 4) + timedelta(days=n) for n in range(7)])
def test_a_week_runs_friday_to_thursday_and_holds_each_day_once(day: date) -> None:
    week = period_of("weekly", day)
    assert week.start.weekday() == 4 and week.end - week.start == timedelta(days=7)
    assert week.start <= day < week.end
    assert week == period_of("weekly", date(2026, 12, 4))  # Fri 4th .. Thu 10th


def test_a_month_is_the_calendar_month() -> None:
    assert period_of("monthly", date(2026, 12, 31)) == Period(
        kind="monthly", start=date(2026, 12, 1), end=date(2027, 1, 1))
    february = period_of("monthly", date(2028, 2, 29))
    assert (february.start, february.end) == (date(2028, 2, 1), date(2028, 3, 1))


def test_each_report_is_due_after_its_period_at_its_time() -> None:
    day = date(2026, 12, 7)
    # The daily: the last cut-off (19:30) plus 30 minutes, on the day itself.
    assert due_at(period_of("daily", day), RULES, DISPATCH) == shanghai(day, 20, 0)
    later = DispatchRules(cutoffs=[time(11), time(21)])
    assert due_at(period_of("daily", day), RULES, later) == shanghai(day, 21, 30)
    # The weekly on the Friday after its Thursday, the monthly on the 1st, at 09:00.
    assert due_at(period_of("weekly", day), RULES, DISPATCH) == shanghai(date(2026, 12, 11), 9)
    assert due_at(period_of("monthly", day), RULES, DISPATCH) == shanghai(date(2027, 1, 1), 9)
    custom = ReportRules(weekly_at=time(17, 0), monthly_at=time(8, 15))
    assert due_at(period_of("weekly", day), custom, DISPATCH) == shanghai(date(2026, 12, 11), 17)
    assert due_at(period_of("monthly", day), custom, DISPATCH) == \
        shanghai(date(2027, 1, 1), 8, 15)


def test_latest_due_moves_on_at_each_due_time() -> None:
    friday, first = date(2026, 12, 11), date(2027, 1, 1)
    assert latest_due("daily", shanghai(friday, 19, 59), RULES, DISPATCH).start == \
        date(2026, 12, 10)
    assert latest_due("daily", shanghai(friday, 20, 0), RULES, DISPATCH).start == friday
    # Friday before 09:00: still last week's; at 09:00, the week that ended on Thursday.
    assert latest_due("weekly", shanghai(friday, 8, 59), RULES, DISPATCH) == \
        period_of("weekly", date(2026, 12, 3))
    assert latest_due("weekly", shanghai(friday, 9), RULES, DISPATCH) == \
        Period(kind="weekly", start=date(2026, 12, 4), end=friday)
    assert latest_due("monthly", shanghai(first, 8, 59), RULES, DISPATCH).start == \
        date(2026, 11, 1)
    assert latest_due("monthly", shanghai(first, 9), RULES, DISPATCH) == \
        Period(kind="monthly", start=date(2026, 12, 1), end=first)


def test_no_daily_report_for_a_day_the_warehouse_does_not_work() -> None:
    sunday, monday = date(2026, 12, 13), date(2026, 12, 14)
    assert latest_due("daily", shanghai(monday, 12), RULES, OFF_SUNDAYS).start == \
        date(2026, 12, 12)
    assert [p.start for p in due("daily", shanghai(monday, 21), RULES, OFF_SUNDAYS)] == \
        [date(2026, 12, 12), monday]  # Friday 11th was due more than 3 days before
    assert sunday in [p.start for p in due("daily", shanghai(monday, 21), RULES, DISPATCH)]
    # A holiday is a day off too; the weekly still goes on its Friday.
    holiday = DispatchRules(holidays=[date(2026, 12, 11)])
    assert latest_due("daily", shanghai(date(2026, 12, 11), 23), RULES, holiday).start == \
        date(2026, 12, 10)
    assert latest_due("weekly", shanghai(date(2026, 12, 11), 9), RULES, holiday).end == \
        date(2026, 12, 11)


def test_due_goes_back_as_far_as_the_catch_up_and_always_holds_the_latest() -> None:
    now = shanghai(date(2026, 12, 7), 21)
    three = due("daily", now, RULES, DISPATCH)
    assert [p.start for p in three] == [date(2026, 12, 5), date(2026, 12, 6), date(2026, 12, 7)]
    none_back = ReportRules(catch_up=timedelta(0))
    assert [p.start for p in due("daily", now, none_back, DISPATCH)] == [date(2026, 12, 7)]
    # A month's report missed for longer than the catch-up still goes: it is the latest.
    assert due("monthly", shanghai(date(2026, 12, 20), 9), RULES, DISPATCH) == \
        [period_of("monthly", date(2026, 11, 1))]
    assert due("weekly", shanghai(date(2026, 12, 12), 9), RULES, DISPATCH) == \
        [period_of("weekly", date(2026, 12, 10))]


def test_rules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(periods.RULES_VARIABLE, '{"channel": "email:boss", "kinds": ["daily"], '
                                               '"weekly_at": "16:00:00"}')
    periods.report_rules.cache_clear()
    try:
        rules = periods.report_rules()
        assert (rules.channel, rules.kinds, rules.weekly_at) == ("email:boss", ("daily",),
                                                                 time(16))
    finally:
        periods.report_rules.cache_clear()
    assert ReportRules().channel == "email:manager"
    with pytest.raises(ValidationError):
        ReportRules(channel="wecom:cs-team")
    with pytest.raises(ValidationError):
        ReportRules(daily_after=timedelta(hours=-1))
