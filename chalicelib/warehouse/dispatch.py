"""Dispatch: when a paid order must leave the warehouse (ship-by, after the cut-offs), and the
factory's deadlines to answer a purchase order. Pure: no I/O.

Every number is a default an operator overrides from JSON (PROTOCOL_RULES_JSON's `dispatch`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator, model_validator

from chalicelib.core.clock import in_utc

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DispatchRules(BaseModel):
    """When the warehouse hands parcels to couriers, and the factory's confirmation deadlines.

    Default cut-offs (local time): 11:00 takes the night's orders after shift A (from 09:00) has
    picked for two hours; 15:00 falls in the A/B overlap (14:30-18:15); 19:30 is shift B's late
    pick, leaving B time for returns and tidying before 22:00.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "Asia/Shanghai"
    cutoffs: tuple[time, ...] = (time(11, 0), time(15, 0), time(19, 30))
    min_handling: timedelta = timedelta(hours=2)  # pick and pack before a cut-off counts
    non_working_weekdays: frozenset[Weekday] = frozenset()  # the factory works every day
    holidays: frozenset[date] = frozenset()
    # Factory contract: confirm within one day; unanswered for three days counts as accepted.
    confirm_within: timedelta = timedelta(hours=24)
    deemed_accepted_after: timedelta = timedelta(hours=72)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator("cutoffs")
    @classmethod
    def _sorted_local_times(cls, value: tuple[time, ...]) -> tuple[time, ...]:
        if not value or any(cut.tzinfo is not None for cut in value):
            raise ValueError("need at least one cut-off, as a local time without a zone")
        return tuple(sorted(set(value)))

    @field_serializer("non_working_weekdays")
    def _in_week_order(self, value: frozenset[Weekday]) -> list[Weekday]:
        return sorted(value, key=_WEEKDAYS.index)

    @field_serializer("holidays")
    def _in_date_order(self, value: frozenset[date]) -> list[date]:
        return sorted(value)

    @model_validator(mode="after")
    def _sane(self) -> DispatchRules:
        if len(self.non_working_weekdays) == len(_WEEKDAYS):
            raise ValueError("at least one weekday must be a working day")
        if self.min_handling < timedelta(0):
            raise ValueError("min_handling cannot be negative")
        if not timedelta(0) < self.confirm_within <= self.deemed_accepted_after:
            raise ValueError("need 0 < confirm_within <= deemed_accepted_after")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: date) -> bool:
        return _WEEKDAYS[day.weekday()] not in self.non_working_weekdays \
            and day not in self.holidays


DEFAULT_DISPATCH_RULES = DispatchRules()


def _cutoff(day: date, cut: time, rules: DispatchRules) -> datetime:
    # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time, not by instant.
    return datetime.combine(day, cut, tzinfo=rules.zone).astimezone(UTC)


def _working_days(start: date, rules: DispatchRules, step: int) -> Iterator[date]:
    # Ends: holidays are finite and the validator keeps at least one working weekday.
    day = start
    while True:
        if rules.is_working_day(day):
            yield day
        day += timedelta(days=step)


def _first_cutoff_from(earliest: datetime, rules: DispatchRules) -> datetime:
    days = _working_days(earliest.astimezone(rules.zone).date(), rules, step=1)
    cutoffs = (_cutoff(day, cut, rules) for day in days for cut in rules.cutoffs)
    return next(moment for moment in cutoffs if moment >= earliest)


def ship_by(paid_at: datetime, rules: DispatchRules,
            presale_ship_date: date | None = None) -> datetime:
    """When a paid order must have left the warehouse (aware, UTC).

    The first cut-off on a working day at least `min_handling` after payment. A pre-sale ships by
    the last cut-off of its date, moved back to the last working day before it if the date is a
    day off (the promise to the buyer holds); a pre-sale date already too close or past falls back
    to the ordinary rule.
    """
    earliest = in_utc(paid_at) + rules.min_handling
    deadline = _first_cutoff_from(earliest, rules)
    if presale_ship_date is None:
        return deadline
    presale_day = next(_working_days(presale_ship_date, rules, step=-1))
    return max(deadline, _cutoff(presale_day, rules.cutoffs[-1], rules))


class AcceptanceDeadlines(NamedTuple):
    alert_at: datetime  # the factory has not confirmed in time: tell CS
    deemed_accepted_at: datetime  # still no answer: the contract counts it as accepted


def acceptance_deadlines(offered_at: datetime, rules: DispatchRules) -> AcceptanceDeadlines:
    """Deadlines for the factory's answer to a purchase order, in elapsed hours (UTC)."""
    start = in_utc(offered_at)
    return AcceptanceDeadlines(start + rules.confirm_within, start + rules.deemed_accepted_after)
