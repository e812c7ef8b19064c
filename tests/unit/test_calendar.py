"""One work calendar for the warehouse's dispatch and the CS rota: the same days off, make-up
days and zone mean the same thing to both, in the configuration forms operators already write."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.core.calendar import WEEKDAYS, WorkCalendar
from chalicelib.cs.alerts import Severity
from chalicelib.cs.rota import Audience, RotaRules, next_opening, recipients
from chalicelib.warehouse.dispatch import DispatchRules, ship_by
from chalicelib.warehouse.jobs import ProtocolRules

SHANGHAI = ZoneInfo("Asia/Shanghai")
# China's 2025 National Day: 1-8 October off, Sunday 28 September and Saturday 11 October worked.
GOLDEN_WEEK = [date(2025, 10, 1) + timedelta(days=n) for n in range(8)]
MAKE_UP_SUNDAY, MAKE_UP_SATURDAY = date(2025, 9, 28), date(2025, 10, 11)
# One calendar, as an operator would paste it into both PROTOCOL_RULES_JSON's `dispatch` and
# CS_ROUTING_JSON's `rota`: a Monday-to-Friday factory and CS team.
CALENDAR: dict[str, Any] = {
    "timezone": "Asia/Shanghai", "working_weekdays": ["mon", "tue", "wed", "thu", "fri"],
    "holidays": [day.isoformat() for day in GOLDEN_WEEK],
    "extra_working_days": [MAKE_UP_SUNDAY.isoformat(), MAKE_UP_SATURDAY.isoformat()],
}
DISPATCH = DispatchRules.model_validate(CALENDAR)
ROTA = RotaRules.model_validate(CALENDAR)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


# The two rule sets, side by side -----------------------------------------------------------------

def test_a_make_up_saturday_is_a_working_day_for_dispatch_and_rota() -> None:
    friday_night = local(date(2025, 10, 10), 20)
    assert ship_by(friday_night, DISPATCH) == local(MAKE_UP_SATURDAY, 11)
    assert next_opening(friday_night, ROTA) == local(MAKE_UP_SATURDAY, 8, 50)
    assert recipients(local(MAKE_UP_SATURDAY, 10), Severity.HIGH, ROTA).audience is Audience.TEAM
    # The Saturday after is an ordinary weekend again, for both.
    next_friday_night = local(date(2025, 10, 17), 20)
    assert ship_by(next_friday_night, DISPATCH) == local(date(2025, 10, 20), 11)
    assert next_opening(next_friday_night, ROTA) == local(date(2025, 10, 20), 8, 50)


def test_a_holiday_moves_a_ship_by_and_a_rota_opening_alike() -> None:
    eve = local(date(2025, 9, 30), 20)  # Tuesday evening before the holidays
    assert ship_by(eve, DISPATCH) == local(date(2025, 10, 9), 11)
    assert next_opening(eve, ROTA) == local(date(2025, 10, 9), 8, 50)
    held = recipients(eve, Severity.LOW, ROTA)
    assert held.deliver_at == local(date(2025, 10, 9), 8, 50)


def test_a_pre_sale_date_on_a_holiday_ships_on_the_working_day_before() -> None:
    assert ship_by(local(date(2025, 9, 1), 9), DISPATCH, presale_ship_date=date(2025, 10, 5)) == \
        local(date(2025, 9, 30), 19, 30)


@st.composite
def calendars(draw: st.DrawFn) -> dict[str, Any]:
    start = date(2025, 9, 22)
    worked = draw(st.sets(st.sampled_from(WEEKDAYS), min_size=1))
    offsets = draw(st.sets(st.integers(0, 27), max_size=10))
    holidays = {start + timedelta(days=n) for n in offsets}
    make_up = {start + timedelta(days=n) for n in draw(st.sets(st.integers(0, 27), max_size=4))}
    return {"timezone": draw(st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "UTC"])),
            "working_weekdays": sorted(worked), "holidays": sorted(holidays),
            "extra_working_days": sorted(make_up - holidays)}


@given(calendars())
def test_every_rule_set_reads_a_calendar_the_same_way(fields: dict[str, Any]) -> None:
    days_off = [day for day in WEEKDAYS if day not in fields["working_weekdays"]]
    as_operators_write_dispatch = {**fields, "non_working_weekdays": days_off}
    del as_operators_write_dispatch["working_weekdays"]
    readings = [WorkCalendar.model_validate(fields), RotaRules.model_validate(fields),
                DispatchRules.model_validate(fields),
                DispatchRules.model_validate(as_operators_write_dispatch)]
    for offset in range(35):
        day = date(2025, 9, 20) + timedelta(days=offset)
        assert len({rules.is_working_day(day) for rules in readings}) == 1, day


# Configuration forms -----------------------------------------------------------------------------

def test_dispatch_days_off_are_read_into_the_calendar_and_written_back_as_given() -> None:
    days_off = DispatchRules.model_validate({"non_working_weekdays": ["sun", "sat"]})
    assert days_off == DispatchRules.model_validate(
        {"working_weekdays": ["mon", "tue", "wed", "thu", "fri"]})
    assert days_off.working_weekdays == frozenset(WEEKDAYS[:5])
    text = days_off.model_dump_json()
    assert json.loads(text)["non_working_weekdays"] == ["sat", "sun"]
    assert "working_weekdays" not in json.loads(text)
    assert DispatchRules.model_validate_json(text) == days_off
    assert DispatchRules().working_weekdays == frozenset(WEEKDAYS)  # the factory works every day


def test_the_protocol_rules_keep_reading_the_dispatch_section_as_operators_write_it() -> None:
    rules = ProtocolRules.model_validate_json("""{"dispatch": {
        "timezone": "Asia/Shanghai", "non_working_weekdays": ["sun"],
        "holidays": ["2025-10-01"], "extra_working_days": ["2025-09-28"]}}""")
    calendar = rules.dispatch
    assert not calendar.is_working_day(date(2025, 10, 5))  # a Sunday
    assert calendar.is_working_day(date(2025, 10, 4))  # a Saturday: the factory works it
    assert not calendar.is_working_day(date(2025, 10, 1))
    assert calendar.is_working_day(MAKE_UP_SUNDAY)
    assert ProtocolRules.model_validate_json(rules.model_dump_json()) == rules


@pytest.mark.parametrize(("fields", "message"), [
    ({"non_working_weekdays": ["sun"], "working_weekdays": ["mon"]}, "not both"),
    ({"non_working_weekdays": "sun"}, "list of weekdays"),
    ({"non_working_weekdays": ["Sunday"]}, "unknown"),
    ({"holidays": ["2025-09-28"], "extra_working_days": ["2025-09-28"]}, "both a holiday"),
    ({"working_weekdays": []}, "at least one weekday"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
])
def test_dispatch_calendars_that_cannot_work_are_refused(fields: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DispatchRules.model_validate(fields)


# The calendar itself -----------------------------------------------------------------------------

def test_working_days_run_either_way_from_a_day() -> None:
    calendar = WorkCalendar.model_validate(CALENDAR)
    after = calendar.working_days(date(2025, 9, 27))  # a Saturday
    assert [next(after) for _ in range(3)] == [MAKE_UP_SUNDAY, date(2025, 9, 29),
                                               date(2025, 9, 30)]
    before = calendar.working_days(date(2025, 10, 8), backwards=True)
    assert next(before) == date(2025, 9, 30)


def test_the_next_working_moment_is_an_instant_across_daylight_saving() -> None:
    berlin = WorkCalendar(timezone="Europe/Berlin")  # Monday to Friday
    friday_evening = datetime(2026, 3, 27, 17, 0, tzinfo=UTC)
    # Monday 10:00 in Berlin is 08:00 UTC once the clocks have gone forward (Sunday 29 March).
    assert berlin.next_working_moment(friday_evening, [time(16), time(10)]) == \
        datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    friday_ten = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, still winter time
    assert berlin.next_working_moment(friday_ten, [time(10)]) == friday_ten  # at or after
    assert berlin.next_working_moment(friday_ten + timedelta(seconds=1), [time(10)]) == \
        datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        berlin.next_working_moment(datetime(2026, 3, 27, 17), [time(10)])
    with pytest.raises(ValueError, match="no time of day"):
        berlin.next_working_moment(friday_evening, [])
