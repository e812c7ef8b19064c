"""Dispatch: when a paid order must leave the warehouse (ship-by, after the cut-offs), and the
factory's deadlines to answer a purchase order. Pure: no I/O.

The factory's working days are a work calendar (chalicelib/core/calendar.py), the one the CS
rota uses too. Every number is a default an operator overrides from JSON (PROTOCOL_RULES_JSON's
`dispatch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from chalicelib.core.calendar import WEEKDAYS, Weekday, WorkCalendar
from chalicelib.core.clock import in_utc


class Shift(BaseModel):
    """A named warehouse shift and when it starts (local time); it runs until the next one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    starts: time


# The handbook's two shifts: A 09:00-18:15 (picking, allocation), B 14:30-22:00 (late picking).
DEFAULT_SHIFTS = (Shift(name="A", starts=time(9, 0)), Shift(name="B", starts=time(14, 30)))


class DispatchRules(WorkCalendar):
    """When the warehouse hands parcels to couriers, and the factory's confirmation deadlines.

    Default cut-offs (local time): 11:00 takes the night's orders after shift A (from 09:00) has
    picked for two hours; 15:00 falls in the A/B overlap (14:30-18:15); 19:30 is shift B's late
    pick, leaving B time for returns and tidying before 22:00.

    Operators write the factory's days off, `non_working_weekdays` (it works every day unless
    told otherwise); the calendar keeps the days worked, `working_weekdays`, so the days off are
    read into it and written back out as they were given. Holidays and make-up working days
    (`extra_working_days`) are the calendar's.
    """

    working_weekdays: frozenset[Weekday] = frozenset(WEEKDAYS)  # the factory works every day
    cutoffs: tuple[time, ...] = (time(11, 0), time(15, 0), time(19, 30))
    # Who works each cut-off (the reports' dispatch per shift): the shift on duty at it.
    shifts: tuple[Shift, ...] = DEFAULT_SHIFTS
    min_handling: timedelta = timedelta(hours=2)  # pick and pack before a cut-off counts
    # Factory contract: confirm within one day; unanswered for three days counts as accepted.
    confirm_within: timedelta = timedelta(hours=24)
    deemed_accepted_after: timedelta = timedelta(hours=72)

    @model_validator(mode="before")
    @classmethod
    def _days_off_read_as_days_worked(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "non_working_weekdays" not in data:
            return data
        if "working_weekdays" in data:
            raise ValueError("give non_working_weekdays or working_weekdays, not both")
        rest = {key: value for key, value in data.items() if key != "non_working_weekdays"}
        days_off = _weekdays(data["non_working_weekdays"])
        return {**rest, "working_weekdays": [day for day in WEEKDAYS if day not in days_off]}

    @model_serializer(mode="wrap")
    def _days_worked_written_as_days_off(
            self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if "working_weekdays" not in data:  # left out by the caller (include/exclude)
            return data
        days_off = [day for day in WEEKDAYS if day not in self.working_weekdays]
        return {("non_working_weekdays" if key == "working_weekdays" else key):
                (days_off if key == "working_weekdays" else value) for key, value in data.items()}

    @field_validator("cutoffs")
    @classmethod
    def _sorted_local_times(cls, value: tuple[time, ...]) -> tuple[time, ...]:
        if not value or any(cut.tzinfo is not None for cut in value):
            raise ValueError("need at least one cut-off, as a local time without a zone")
        return tuple(sorted(set(value)))

    @field_validator("shifts")
    @classmethod
    def _named_shifts_in_order(cls, value: tuple[Shift, ...]) -> tuple[Shift, ...]:
        if not value or any(shift.starts.tzinfo is not None for shift in value):
            raise ValueError("need at least one shift, starting at a local time without a zone")
        if len({shift.name for shift in value}) < len(value):
            raise ValueError("shift names must differ")
        return tuple(sorted(value, key=lambda shift: shift.starts))

    @model_validator(mode="after")
    def _sane(self) -> DispatchRules:
        if self.min_handling < timedelta(0):
            raise ValueError("min_handling cannot be negative")
        if not timedelta(0) < self.confirm_within <= self.deemed_accepted_after:
            raise ValueError("need 0 < confirm_within <= deemed_accepted_after")
        return self


def _weekdays(value: Any) -> frozenset[Weekday]:
    """Weekday names as configured, checked here as the field would have checked them."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError("non_working_weekdays must be a list of weekdays")
    unknown = sorted(str(day) for day in value if day not in WEEKDAYS)
    if unknown:
        raise ValueError(f"non_working_weekdays: unknown {unknown}, use {', '.join(WEEKDAYS)}")
    return frozenset(day for day in WEEKDAYS if day in value)


DEFAULT_DISPATCH_RULES = DispatchRules()


def ship_by(paid_at: datetime, rules: DispatchRules,
            presale_ship_date: date | None = None) -> datetime:
    """When a paid order must have left the warehouse (aware, UTC).

    The first cut-off on a working day at least `min_handling` after payment. A pre-sale ships by
    the last cut-off of its date, moved back to the last working day before it if the date is a
    day off (the promise to the buyer holds); a pre-sale date already too close or past falls back
    to the ordinary rule.
    """
    earliest = in_utc(paid_at) + rules.min_handling
    deadline = rules.next_working_moment(earliest, rules.cutoffs)
    if presale_ship_date is None:
        return deadline
    presale_day = next(rules.working_days(presale_ship_date, backwards=True))
    return max(deadline, rules.at(presale_day, rules.cutoffs[-1]))


def stock_up_ship_by(marked_at: datetime, rules: DispatchRules) -> datetime:
    """When a job with a line stocked up for next-day dispatch (备货, `JobLine.stock_up`) must
    have left: the last cut-off of the first working day after the day it was marked (local),
    so the day's cut-offs raise no late alert for goods that cannot leave before tomorrow."""
    tomorrow = rules.local(marked_at).date() + timedelta(days=1)
    return rules.at(next(rules.working_days(tomorrow)), rules.cutoffs[-1])


def shift_at(clock: time, rules: DispatchRules) -> str:
    """The shift on duty at a local time: the last to start at or before it (before the first
    shift starts, the day's last one is still on, from the evening before)."""
    on_duty = [shift.name for shift in rules.shifts if shift.starts <= clock]
    return on_duty[-1] if on_duty else rules.shifts[-1].name


class AcceptanceDeadlines(NamedTuple):
    alert_at: datetime  # the factory has not confirmed in time: tell CS
    deemed_accepted_at: datetime  # still no answer: the contract counts it as accepted


def acceptance_deadlines(offered_at: datetime, rules: DispatchRules) -> AcceptanceDeadlines:
    """Deadlines for the factory's answer to a purchase order, in elapsed hours (UTC)."""
    start = in_utc(offered_at)
    return AcceptanceDeadlines(start + rules.confirm_within, start + rules.deemed_accepted_after)
