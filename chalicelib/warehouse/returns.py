"""Returns the warehouse receives: registered every day between 09:00 and 14:30 with the
buyer's name, the return tracking number, the items and the reason, and passed to sales for
after-sales handling (domain notes). Pure: no I/O.

- The window: a return reported outside it (or on a day the warehouse does not work) is not
  refused; it is queued to the next window and recorded with the window day it belongs to, so
  it is on that day's register (`window_for`).
- The liability, from the processing contract: any complaint (on the buyer's complaint form)
  about goods whose packaging was intact is the factory's; with damaged packaging, whoever had
  the goods where they were damaged (`liability`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from itertools import takewhile
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.core.calendar import WorkCalendar
from chalicelib.core.clock import in_utc
from chalicelib.core.settings import rules_from_env


class ReturnsRules(BaseModel):
    """The returns window and its register; RETURNS_RULES_JSON overrides the defaults. The days
    are the warehouse's (the dispatch calendar: PROTOCOL_RULES_JSON's `dispatch`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    opens: time = time(9, 0)
    closes: time = time(14, 30)
    # The register goes to sales this long after the window closes (returns reported at the
    # last minute are in), on the first run of its schedule after that.
    register_after: timedelta = timedelta(minutes=15)
    # Days whose register is still sent if a run missed them (an outage, a deployment).
    catch_up_days: int = Field(default=3, ge=0, le=31)
    register_channel: str = "email:sales"  # the email channel's settings (admin `channel`)

    @model_validator(mode="after")
    def _a_window(self) -> ReturnsRules:
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise ValueError("opens and closes are local times without a zone")
        if not self.opens < self.closes:
            raise ValueError("the window must open before it closes")
        if self.register_after < timedelta(0):
            raise ValueError("register_after cannot be negative")
        return self


DEFAULT_RETURNS_RULES = ReturnsRules()


class Window(BaseModel):
    """The registration window a return belongs to. `queued`: reported outside it, so it waits
    for this window (registered when it opens, on this day's register)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: date
    opens_at: datetime
    closes_at: datetime
    queued: bool


def window_of(day: date, calendar: WorkCalendar, rules: ReturnsRules) -> tuple[datetime, datetime]:
    """When `day`'s window opens and closes (UTC)."""
    return calendar.at(day, rules.opens), calendar.at(day, rules.closes)


def window_for(received_at: datetime, calendar: WorkCalendar, rules: ReturnsRules) -> Window:
    """The window a return reported at `received_at` belongs to: today's while it is open;
    before it opens, today's (queued); after it closes or on a day off, the next working
    day's (queued)."""
    moment = in_utc(received_at)
    local_day = calendar.local(moment).date()
    for day in calendar.working_days(local_day):
        opens_at, closes_at = window_of(day, calendar, rules)
        if moment < closes_at:
            return Window(day=day, opens_at=opens_at, closes_at=closes_at,
                          queued=moment < opens_at)
    raise AssertionError("unreachable: working days never end")


def register_due_at(day: date, calendar: WorkCalendar, rules: ReturnsRules) -> datetime:
    """When `day`'s register may go to sales (UTC)."""
    return window_of(day, calendar, rules)[1] + rules.register_after


def days_due(now: datetime, calendar: WorkCalendar, rules: ReturnsRules) -> list[date]:
    """The window days whose register is due at `now`, oldest first: those whose register time
    has passed, back to `catch_up_days` before today (local)."""
    moment = in_utc(now)
    today = calendar.local(moment).date()
    recent = takewhile(lambda day: day >= today - timedelta(days=rules.catch_up_days),
                       calendar.working_days(today, backwards=True))
    return sorted(day for day in recent if register_due_at(day, calendar, rules) <= moment)


@lru_cache(maxsize=1)
def returns_rules() -> ReturnsRules:
    """This stage's rules: the defaults, or RETURNS_RULES_JSON."""
    return rules_from_env(ReturnsRules, "RETURNS_RULES_JSON")


# Liability ------------------------------------------------------------------------------------


class DamageLocation(StrEnum):
    """Where the goods were damaged, as the returns clerk finds it."""

    IN_TRANSIT = "in_transit"  # with the courier (outbound or on the way back)
    AT_WAREHOUSE = "at_warehouse"  # before the courier took it: the factory's warehouse
    AT_BUYER = "at_buyer"  # after delivery
    UNKNOWN = "unknown"


class Liability(StrEnum):
    FACTORY = "factory"
    COURIER = "courier"
    BUYER = "buyer"
    UNDETERMINED = "undetermined"  # damaged packaging, place unknown: after-sales finds out
    NONE = "none"  # no complaint about the goods (e.g. a return without a reason)


_BY_LOCATION = {DamageLocation.IN_TRANSIT: Liability.COURIER,
                DamageLocation.AT_WAREHOUSE: Liability.FACTORY,
                DamageLocation.AT_BUYER: Liability.BUYER,
                DamageLocation.UNKNOWN: Liability.UNDETERMINED}

_WHY = {
    (True, Liability.FACTORY): "factory: a complaint about goods whose packaging was intact "
                               "(free repair or compensation)",
    (False, Liability.COURIER): "courier: packaging damaged, goods damaged in transit",
    (False, Liability.FACTORY): "factory: packaging damaged, goods damaged at the warehouse",
    (False, Liability.BUYER): "buyer: packaging damaged, goods damaged after delivery",
    (False, Liability.UNDETERMINED): "undetermined: packaging damaged, where the goods were "
                                     "damaged is not known yet",
}


def liability(packaging: Literal["intact", "damaged"], damage_location: DamageLocation,
              complained: bool) -> Liability:
    """The processing contract's rule: with intact packaging any complaint is the factory's,
    whatever it says; with damaged packaging, the party that had the goods where they were
    damaged answers for them. A return with no complaint puts no one at fault."""
    if not complained:
        return Liability.NONE
    if packaging == "intact":
        return Liability.FACTORY
    return _BY_LOCATION[damage_location]


def liability_hint(liable: Liability, packaging: Literal["intact", "damaged"]) -> str:
    """The liability in words, for CS and the register (starts with the party)."""
    if liable is Liability.NONE:
        return "none: no complaint about the goods"
    return _WHY[(packaging == "intact", liable)]


# The report and the record ----------------------------------------------------------------------


class ReturnedItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=10_000)


class ReturnReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    return_tracking_number: str = Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9\-]+$")
    buyer_name: str = Field(min_length=1, max_length=200)
    items: tuple[ReturnedItem, ...] = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=1000)
    packaging: Literal["intact", "damaged"]
    # The buyer's complaint form, as written; empty when the buyer made none.
    complaint: str = Field(default="", max_length=2000)
    damage_location: DamageLocation = DamageLocation.UNKNOWN
    # The goods themselves are damaged (older partners' only damage field): a complaint too.
    goods_damaged: bool = False
    order_name: str = Field(default="", max_length=64)
    job_id: str = Field(default="", max_length=64)

    @property
    def complained(self) -> bool:
        return bool(self.complaint.strip()) or self.goods_damaged


class ReturnRecord(ReturnReport):
    partner_id: str
    received_at: datetime
    window: Window
    liability: Liability
    liability_hint: str


def record(report: ReturnReport, partner_id: str, now: datetime, calendar: WorkCalendar,
           rules: ReturnsRules) -> dict[str, Any]:
    liable = liability(report.packaging, report.damage_location, report.complained)
    return ReturnRecord(**report.model_dump(), partner_id=partner_id, received_at=now,
                        window=window_for(now, calendar, rules), liability=liable,
                        liability_hint=liability_hint(liable, report.packaging),
                        ).model_dump(mode="json")
