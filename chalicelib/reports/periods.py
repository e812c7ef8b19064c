"""Which days each report covers and when it is due. Pure: no I/O.

The handbook: staff submit statistics every Friday and on the 1st of each month, and the
manager hears of the day's dispatch after the last cut-off. Decisions (design):

- daily: one Asia/Shanghai day, due `daily_after` past the day's last dispatch cut-off
  (warehouse/dispatch.py `cutoffs`, 19:30 by default, so 20:00), and only for the warehouse's
  working days (the dispatch calendar, core/calendar.py): a day off has no cut-offs, so
  nothing was due to ship and there is no dispatch to report.
- weekly: the seven whole days before the Friday it is sent, Friday to Thursday, due on that
  Friday at `weekly_at`. Not Monday to Sunday: a week that ends on Sunday is not over on the
  Friday the statistics are due, and a report of a week still running would change after it
  was sent. Every day is in exactly one weekly report.
- monthly: the calendar month before the 1st it is sent, due on the 1st at `monthly_at`.
The weekly and monthly reports go out on their day whatever the calendar says: the handbook
names the days, not working days.

`due_at` is when a period's report may go; `latest_due` the newest period due at a moment;
`due` the periods due within the catch-up (a run that missed some, an outage, sends them).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from itertools import takewhile

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.core.clock import in_utc
from chalicelib.core.settings import rules_from_env
from chalicelib.reports.model import REPORT_ZONE, Kind, Period, local_day
from chalicelib.warehouse.dispatch import DispatchRules

KINDS: tuple[Kind, ...] = ("daily", "weekly", "monthly")
FRIDAY = 4  # date.weekday()
RULES_VARIABLE = "REPORT_RULES_JSON"


class ReportRules(BaseModel):
    """Where the reports go and when; REPORT_RULES_JSON overrides the defaults. Times are
    Asia/Shanghai wall-clock times (the report days' zone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str = "email:manager"  # an email channel's settings (admin `channel`)
    kinds: tuple[Kind, ...] = KINDS  # the reports sent on schedule
    # After the day's last cut-off: the last parcels handed over are scanned in.
    daily_after: timedelta = timedelta(minutes=30)
    weekly_at: time = time(9, 0)  # on Friday
    monthly_at: time = time(9, 0)  # on the 1st
    # A report due this long ago and not sent yet is still sent (a missed run, an outage);
    # older ones only by hand (admin `report send`).
    catch_up: timedelta = Field(default=timedelta(days=3))

    @model_validator(mode="after")
    def _sane(self) -> ReportRules:
        if self.weekly_at.tzinfo is not None or self.monthly_at.tzinfo is not None:
            raise ValueError("weekly_at and monthly_at are local times without a zone")
        if self.daily_after < timedelta(0) or self.daily_after >= timedelta(hours=4):
            raise ValueError("daily_after must be between 0 and 4 hours")
        if not timedelta(0) <= self.catch_up <= timedelta(days=62):
            raise ValueError("catch_up must be between 0 and 62 days")
        if not self.channel.startswith("email:"):
            raise ValueError("reports go to an email channel (email:<name>)")
        return self


@lru_cache(maxsize=1)
def report_rules() -> ReportRules:
    """This stage's rules: the defaults, or REPORT_RULES_JSON."""
    return rules_from_env(ReportRules, RULES_VARIABLE)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_of(kind: Kind, day: date) -> Period:
    """The period of `kind` that contains `day` (a Shanghai day)."""
    if kind == "daily":
        return Period(kind=kind, start=day, end=day + timedelta(days=1))
    if kind == "weekly":
        start = day - timedelta(days=(day.weekday() - FRIDAY) % 7)  # the Friday on or before
        return Period(kind=kind, start=start, end=start + timedelta(days=7))
    start = _month_start(day)
    return Period(kind=kind, start=start, end=_next_month(start))


def _at(day: date, clock: time) -> datetime:
    return in_utc(datetime.combine(day, clock, tzinfo=REPORT_ZONE))


def due_at(period: Period, rules: ReportRules, dispatch: DispatchRules) -> datetime:
    """When `period`'s report may be sent (UTC). Daily: the last cut-off of the day on the
    dispatch calendar's clock, plus `daily_after`; weekly and monthly: the day after the
    period (a Friday, a 1st) at its time."""
    if period.kind == "daily":
        return dispatch.at(period.start, dispatch.cutoffs[-1]) + rules.daily_after
    clock = rules.weekly_at if period.kind == "weekly" else rules.monthly_at
    return _at(period.end, clock)


def reported(period: Period, dispatch: DispatchRules) -> bool:
    """Whether a period gets a scheduled report: a daily one only for a working day."""
    return period.kind != "daily" or dispatch.is_working_day(period.start)


def _newest_first(kind: Kind, now: datetime, rules: ReportRules,
                  dispatch: DispatchRules) -> list[Period]:
    """The periods of `kind` due at `now`, newest first, back to one before the catch-up
    horizon (enough for `latest_due` even when the catch-up is 0)."""
    moment = in_utc(now)
    horizon = moment - rules.catch_up
    found: list[Period] = []
    period = period_of(kind, local_day(moment) + timedelta(days=1))
    while True:
        period = period_of(kind, period.start - timedelta(days=1))
        if not reported(period, dispatch):
            continue
        when = due_at(period, rules, dispatch)
        if when > moment:
            continue
        found.append(period)
        if when <= horizon:
            return found


def latest_due(kind: Kind, now: datetime, rules: ReportRules,
               dispatch: DispatchRules) -> Period:
    """The newest period of `kind` whose report is due at `now`."""
    return _newest_first(kind, now, rules, dispatch)[0]


def due(kind: Kind, now: datetime, rules: ReportRules, dispatch: DispatchRules) -> list[Period]:
    """The periods of `kind` due at `now` within the catch-up (due no longer than `catch_up`
    ago), oldest first; and always the latest, however long ago it was due (a monthly report
    missed by a week-long outage still goes)."""
    moment = in_utc(now)
    newest = _newest_first(kind, now, rules, dispatch)
    recent = list(takewhile(lambda p: due_at(p, rules, dispatch) > moment - rules.catch_up,
                            newest))
    return list(reversed(recent or newest[:1]))
