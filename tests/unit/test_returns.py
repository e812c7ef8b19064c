"""Returns: the registration window (queued, never refused) and the contract's liability rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import pytest
from pydantic import ValidationError

from chalicelib.core.calendar import WorkCalendar
from chalicelib.warehouse import returns
from chalicelib.warehouse.dispatch import DispatchRules
from chalicelib.warehouse.returns import DamageLocation, Liability, ReturnReport, ReturnsRules

RULES = ReturnsRules()
# The warehouse works every day (the dispatch calendar's default), but not on this holiday.
HOLIDAY = date(2026, 12, 9)
CALENDAR = DispatchRules(holidays=frozenset({HOLIDAY}))


def shanghai(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock moment in Asia/Shanghai (UTC+8, no daylight saving), as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


MON = date(2026, 12, 7)


@pytest.mark.parametrize(("received", "day", "queued"), [
    (shanghai(MON, 8, 59), MON, True),                  # before it opens: today's window
    (shanghai(MON, 9, 0), MON, False),                  # opening minute: in
    (shanghai(MON, 14, 29), MON, False),
    (shanghai(MON, 14, 30), MON + timedelta(days=1), True),  # closed: tomorrow's
    (shanghai(MON, 15, 0), MON + timedelta(days=1), True),
    (shanghai(MON, 23, 59), MON + timedelta(days=1), True),
    (shanghai(HOLIDAY, 10, 0), HOLIDAY + timedelta(days=1), True),  # a day off: next worked
    (shanghai(HOLIDAY - timedelta(days=1), 16, 0), HOLIDAY + timedelta(days=1), True),
])
def test_a_return_belongs_to_the_window_it_reached(received: datetime, day: date,
                                                    queued: bool) -> None:
    window = returns.window_for(received, CALENDAR, RULES)
    assert (window.day, window.queued) == (day, queued)
    assert window.opens_at == shanghai(day, 9) and window.closes_at == shanghai(day, 14, 30)


def test_the_window_follows_a_weekday_calendar_and_its_own_hours() -> None:
    office = WorkCalendar()  # Monday to Friday
    saturday_noon = shanghai(date(2026, 12, 12), 12)
    assert returns.window_for(saturday_noon, office, RULES).day == date(2026, 12, 14)
    late = ReturnsRules(opens=time(13, 0), closes=time(18, 0))
    assert returns.window_for(shanghai(MON, 15, 0), office, late).queued is False


def test_rules_refuse_a_window_that_closes_before_it_opens() -> None:
    with pytest.raises(ValidationError):
        ReturnsRules(opens=time(15, 0), closes=time(9, 0))


def days_before(day: date, *counts: int) -> list[date]:
    return [day - timedelta(days=count) for count in counts]


@pytest.mark.parametrize(("now", "due"), [
    # Before 14:45 today's is not due yet; the three days before are (catch-up).
    (shanghai(MON, 14, 44), days_before(MON, 3, 2, 1)),
    (shanghai(MON, 14, 45), days_before(MON, 3, 2, 1, 0)),
    # The Thursday after the Wednesday holiday: the holiday had no window, so no register.
    (shanghai(HOLIDAY + timedelta(days=1), 15, 0), days_before(HOLIDAY, 2, 1, -1)),
])
def test_a_days_register_is_due_15_minutes_after_its_window_closes(
        now: datetime, due: list[date]) -> None:
    assert returns.days_due(now, CALENDAR, RULES) == due


def test_no_catch_up_sends_only_the_latest_day() -> None:
    rules = ReturnsRules(catch_up_days=0)
    assert returns.days_due(shanghai(MON, 14, 45), CALENDAR, rules) == [MON]
    assert returns.days_due(shanghai(MON, 14, 44), CALENDAR, rules) == []


# Liability: the processing contract, row by row ---------------------------------------------

Packaging = Literal["intact", "damaged"]
IN_TRANSIT, AT_WAREHOUSE = DamageLocation.IN_TRANSIT, DamageLocation.AT_WAREHOUSE
AT_BUYER, UNKNOWN = DamageLocation.AT_BUYER, DamageLocation.UNKNOWN


@pytest.mark.parametrize(("packaging", "location", "complained", "liable"), [
    # Intact packaging: the factory's, whatever the complaint and wherever it says the damage is.
    ("intact", UNKNOWN, True, Liability.FACTORY),
    ("intact", IN_TRANSIT, True, Liability.FACTORY),
    ("intact", AT_WAREHOUSE, True, Liability.FACTORY),
    ("intact", AT_BUYER, True, Liability.FACTORY),
    # Damaged packaging: whoever had the goods where they were damaged.
    ("damaged", IN_TRANSIT, True, Liability.COURIER),
    ("damaged", AT_WAREHOUSE, True, Liability.FACTORY),
    ("damaged", AT_BUYER, True, Liability.BUYER),
    ("damaged", UNKNOWN, True, Liability.UNDETERMINED),
    # No complaint: no one answers for anything.
    ("intact", UNKNOWN, False, Liability.NONE),
    ("damaged", IN_TRANSIT, False, Liability.NONE),
])
def test_liability_follows_the_processing_contract(packaging: Packaging,
                                                    location: DamageLocation, complained: bool,
                                                    liable: Liability) -> None:
    assert returns.liability(packaging, location, complained) is liable
    assert returns.liability_hint(liable, packaging).startswith(liable.value)


def report(**changes: object) -> ReturnReport:
    fields: dict[str, object] = {
        "return_tracking_number": "YT7512345678901", "buyer_name": "林伟",
        "items": [{"sku": "LS-WHT-M", "quantity": 1}], "reason": "尺码不合适",
        "packaging": "intact"}
    return ReturnReport.model_validate({**fields, **changes})


@pytest.mark.parametrize(("changes", "liable"), [
    ({}, "none"),  # a return with no complaint (the size did not fit)
    ({"complaint": "领口开线"}, "factory"),  # any complaint about intact goods
    ({"complaint": "   "}, "none"),
    ({"goods_damaged": True}, "factory"),  # an older partner's damage flag is a complaint
    ({"complaint": "碎了", "packaging": "damaged", "damage_location": "in_transit"}, "courier"),
    ({"complaint": "碎了", "packaging": "damaged"}, "undetermined"),
])
def test_a_record_carries_the_complaint_the_window_and_the_liability(
        changes: dict[str, object], liable: str) -> None:
    received = shanghai(MON, 15, 0)
    stored = returns.record(report(**changes), "factory-1", received, CALENDAR, RULES)
    assert stored["liability"] == liable
    assert stored["window"] == {"day": "2026-12-08", "opens_at": "2026-12-08T01:00:00Z",
                                "closes_at": "2026-12-08T06:30:00Z", "queued": True}
    assert stored["complaint"] == changes.get("complaint", "")


def test_an_unknown_damage_location_is_refused() -> None:
    with pytest.raises(ValidationError):
        report(damage_location="on the moon")
