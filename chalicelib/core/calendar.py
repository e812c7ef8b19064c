"""The work calendar: which days are worked, in which time zone, and when a working moment comes.
Pure: no I/O.

One model for every set of rules that follows working days: the warehouse's dispatch
(chalicelib/warehouse/dispatch.py: ship-by after the cut-offs) and the CS rota
(chalicelib/cs/rota.py: online hours, the day-off rota). Each extends `WorkCalendar`, so its JSON
keeps the calendar's fields at its top level, where operators have always written them.

A day is worked when it is a make-up working day (调休: a weekend day worked to bridge a long
holiday), or when its weekday is a working weekday and it is not a holiday. Days are local to
`timezone`, any IANA zone, daylight saving time included.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator, model_validator

from chalicelib.core.clock import aware, in_utc

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WorkCalendar(BaseModel):
    """Working weekdays, holidays and make-up working days in one time zone.

    The defaults are China's working week (Monday to Friday, Asia/Shanghai) with no holidays:
    holidays and make-up days change every year, so operators list them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "Asia/Shanghai"
    working_weekdays: frozenset[Weekday] = frozenset(WEEKDAYS[:5])
    holidays: frozenset[date] = frozenset()
    extra_working_days: frozenset[date] = frozenset()  # make-up working days (调休)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_serializer("working_weekdays")
    def _in_week_order(self, value: frozenset[Weekday]) -> list[Weekday]:
        return sorted(value, key=WEEKDAYS.index)  # stable JSON an operator can diff

    @field_serializer("holidays", "extra_working_days")
    def _in_date_order(self, value: frozenset[date]) -> list[date]:
        return sorted(value)

    @model_validator(mode="after")
    def _a_week_with_work(self) -> WorkCalendar:
        # Without a working weekday the search for the next working day would never end.
        if not self.working_weekdays:
            raise ValueError("at least one weekday must be a working day")
        if self.holidays & self.extra_working_days:
            raise ValueError("a day cannot be both a holiday and a make-up working day")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        return WEEKDAYS[day.weekday()] in self.working_weekdays and day not in self.holidays

    def working_days(self, start: date, *, backwards: bool = False) -> Iterator[date]:
        """The working days from `start` (itself included if worked), later or earlier ones.

        Endless: a working weekday comes round every week and the holidays are finite."""
        step = timedelta(days=-1 if backwards else 1)
        day = start
        while True:
            if self.is_working_day(day):
                yield day
            day += step

    def local(self, moment: datetime) -> datetime:
        """The moment on this calendar's wall clock (ValueError for a naive one)."""
        return aware(moment).astimezone(self.zone)

    def at(self, day: date, clock: time) -> datetime:
        """The moment (UTC) when the wall clock reads `clock` on `day`."""
        # In UTC: aware datetimes sharing a tzinfo compare by wall time, not by instant.
        return datetime.combine(day, clock, tzinfo=self.zone).astimezone(UTC)

    def next_working_moment(self, earliest: datetime, clocks: Sequence[time]) -> datetime:
        """The first moment (UTC) at or after `earliest` when the wall clock reads one of
        `clocks` (local times without a zone) on a working day."""
        if not clocks:
            raise ValueError("no time of day to look for")  # the search would never end
        earliest = in_utc(earliest)
        ordered = sorted(clocks)
        days = self.working_days(self.local(earliest).date())
        moments = (self.at(day, clock) for day in days for clock in ordered)
        return next(moment for moment in moments if moment >= earliest)
