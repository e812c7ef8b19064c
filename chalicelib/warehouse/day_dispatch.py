"""The day's dispatch against the cut-offs, for the CS console's "Today". Pure: no I/O.

The day is a working day of the dispatch calendar (chalicelib/warehouse/dispatch.py: its time
zone, Asia/Shanghai by default). The orders paid on it are counted under the cut-off their job
must ship by (`Job.ship_by`, always one of the cut-offs: `dispatch.ship_by`); an order paid too
late for the day's last cut-off, or a pre-sale, ships on a later day and is counted under
"later". Under each cut-off a job is:

  on_time   shipped at or before its deadline
  late      shipped after it
  overdue   not shipped and the deadline has passed
  to_go     not shipped and the deadline is still ahead
  closed    cancelled, rejected or closed incomplete: nothing left to ship
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time

from pydantic import BaseModel, ConfigDict, computed_field

from chalicelib.core.clock import in_utc
from chalicelib.warehouse.dispatch import DispatchRules

LATER = "later"  # the bucket of deadlines after the day's last cut-off
SHIPPED = "shipped"
CLOSED = ("cancelled", "closed_incomplete")  # chalicelib.warehouse.jobs.Work's ended, unshipped


@dataclass(frozen=True)
class PaidJob:
    """A job of an order paid on the day, as the by-paid-day index holds it."""

    paid_at: datetime
    ship_by: datetime
    work: str  # chalicelib.warehouse.jobs.Work's value
    shipped_at: datetime | None = None


class CutoffFigures(BaseModel):
    model_config = ConfigDict(frozen=True)

    cutoff: str  # "11:00", ... or "later"
    deadline: datetime | None  # the cut-off's moment on the day (UTC); None for "later"
    on_time: int = 0
    late: int = 0
    overdue: int = 0
    to_go: int = 0
    closed: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return self.on_time + self.late + self.overdue + self.to_go + self.closed


class DayDispatch(BaseModel):
    model_config = ConfigDict(frozen=True)

    day: date
    timezone: str
    paid: int  # orders paid on the day (with a job)
    cutoffs: list[CutoffFigures]  # each of the day's cut-offs in order, then "later"


def working_day(now: datetime, rules: DispatchRules) -> date:
    """The calendar day it is at `now` on the dispatch calendar's wall clock."""
    return rules.local(now).date()


def day_start(day: date, rules: DispatchRules) -> datetime:
    """When `day` begins (UTC)."""
    return rules.at(day, time(0))


def state(job: PaidJob, now: datetime) -> str:
    """Where one job stands against its deadline at `now` (the module's five states)."""
    if job.work == SHIPPED:
        late = job.shipped_at is not None and in_utc(job.shipped_at) > in_utc(job.ship_by)
        return "late" if late else "on_time"
    if job.work in CLOSED:
        return "closed"
    return "overdue" if in_utc(now) >= in_utc(job.ship_by) else "to_go"


def cutoff_of(ship_by: datetime, day: date, rules: DispatchRules) -> str:
    """The day's cut-off a deadline falls on: the first at or after it on the day (a deadline
    is a cut-off unless the operator moved the cut-offs since); "later" after the last."""
    local = rules.local(ship_by)
    if local.date() > day:
        return LATER
    if local.date() < day:
        return _label(rules.cutoffs[0])
    for cut in rules.cutoffs:
        if local.time() <= cut:
            return _label(cut)
    return LATER


def _label(cut: time) -> str:
    return cut.strftime("%H:%M")


def dispatch_figures(day: date, jobs: Iterable[PaidJob], now: datetime,
                     rules: DispatchRules) -> DayDispatch:
    counts: dict[str, dict[str, int]] = {_label(c): {} for c in rules.cutoffs}
    counts[LATER] = {}
    paid = 0
    for job in jobs:
        paid += 1
        figures = counts[cutoff_of(job.ship_by, day, rules)]
        where = state(job, now)
        figures[where] = figures.get(where, 0) + 1
    deadlines = {_label(c): rules.at(day, c) for c in rules.cutoffs}
    return DayDispatch(day=day, timezone=rules.timezone, paid=paid, cutoffs=[
        CutoffFigures(cutoff=label, deadline=deadlines.get(label), **found)
        for label, found in counts.items()])
