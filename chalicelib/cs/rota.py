"""Who hears about a CS alert, and when: the CS rota as rules. Pure: no I/O, the time is passed in.

The handbook: online CS hours 08:50-18:10 on working days; weekends by rota; outside hours the
hotline goes to the on-duty CS manager, and alerts follow the same rota. So:
- in hours on a working day: the CS team's channels (the manager is copied from `manager_copy_from`
  severity up);
- in hours on a weekend or holiday: the person on the rota for that day (by date, else by
  weekday); nobody on the rota means the manager;
- outside hours: the on-duty manager, from `defer_below` severity up; anything less waits for
  the next staffed opening and goes to whoever is on then (nobody is woken at 02:00 for a return).

Both ends of the hours are inclusive: 08:50:00 and 18:10:00 are online, 08:49:59 and 18:10:01
are not. A night belongs to the duty day it started on (Monday 18:10 to Tuesday 08:50 is
Monday's manager). Every number and name is a default an operator overrides from JSON
(`RotaRules.model_validate_json(text)`). The working days are a work calendar
(chalicelib/core/calendar.py: time zone, working weekdays, holidays, make-up working days), the
one the warehouse's dispatch uses too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.core.calendar import WEEKDAYS, Weekday, WorkCalendar
from chalicelib.cs.alerts import Severity

HORIZON_DAYS = 400  # looking for the next opening further than a year means there is none


class Person(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    mobile: str = ""  # @-mentioned on IM (DingTalk) so a muted group still notifies
    email: str = ""
    channels: tuple[str, ...] = ()  # channel ids; none means the team's channels


class Audience(StrEnum):
    TEAM = "team"
    ROTA = "rota"  # the weekend or holiday duty person
    MANAGER = "manager"


class RouteTarget(BaseModel):
    model_config = ConfigDict(frozen=True)

    audience: Audience
    people: tuple[str, ...]  # person ids, in the rota's directory
    channels: tuple[str, ...]  # channel ids, e.g. "wecom:cs-team", "email:cs-team"
    mentions: tuple[str, ...]  # mobiles to @
    emails: tuple[str, ...]
    deliver_at: datetime  # UTC; later than the alert when a low severity waits for the opening
    reason: str


class RotaRules(WorkCalendar):
    """The CS team's calendar (by default Monday to Friday in Asia/Shanghai: the calendar's
    defaults), its online hours, and who is on duty when."""

    online_from: time = time(8, 50)
    online_until: time = time(18, 10)  # inclusive
    team_channels: tuple[str, ...] = ("wecom:cs-team", "email:cs-team")
    people: dict[str, Person] = Field(
        default_factory=lambda: {"cs-manager": Person(name="On-duty CS manager")})
    duty_by_date: dict[date, str] = Field(default_factory=dict)  # weekend and holiday rota
    duty_by_weekday: dict[Weekday, str] = Field(default_factory=dict)  # e.g. {"sat": "amy"}
    manager: str = "cs-manager"
    manager_by_date: dict[date, str] = Field(default_factory=dict)  # when the manager rotates
    defer_below: Severity = Severity.HIGH  # outside hours, lower severities wait
    manager_copy_from: Severity | None = Severity.CRITICAL  # in hours, copy the manager

    @model_validator(mode="after")
    def _consistent(self) -> RotaRules:
        if any(moment.tzinfo is not None for moment in (self.online_from, self.online_until)):
            raise ValueError("online hours are local times without a zone")
        if not self.online_from < self.online_until:
            raise ValueError("online_from must be before online_until")
        named = {self.manager, *self.manager_by_date.values(), *self.duty_by_date.values(),
                 *self.duty_by_weekday.values()}
        unknown = sorted(named - self.people.keys())
        if unknown:
            raise ValueError(f"the rota names people missing from `people`: {unknown}")
        return self

    def on_duty(self, day: date) -> str | None:
        """The rota person for a day off (by date, else by weekday); None on working days."""
        if self.is_working_day(day):
            return None
        return self.duty_by_date.get(day) or self.duty_by_weekday.get(WEEKDAYS[day.weekday()])

    def manager_on(self, local: datetime) -> str:
        # The night before opening belongs to the previous duty day.
        day = local.date() if local.time() >= self.online_from else local.date() - timedelta(1)
        return self.manager_by_date.get(day, self.manager)

    def in_hours(self, local: datetime) -> bool:
        return self.online_from <= local.time() <= self.online_until  # naive wall time


DEFAULT_ROTA = RotaRules()


def _target(audience: Audience, ids: tuple[str, ...], rules: RotaRules, deliver_at: datetime,
            reason: str) -> RouteTarget:
    people = [rules.people[person] for person in ids]
    channels: list[str] = []
    for person in people:
        channels += [c for c in person.channels or rules.team_channels if c not in channels]
    if audience is Audience.TEAM:
        channels = [*rules.team_channels, *(c for c in channels if c not in rules.team_channels)]
    return RouteTarget(
        audience=audience, people=ids, channels=tuple(channels),
        mentions=tuple(person.mobile for person in people if person.mobile),
        emails=tuple(person.email for person in people if person.email),
        deliver_at=deliver_at.astimezone(UTC), reason=reason)


def _in_hours_target(local: datetime, severity: Severity, rules: RotaRules,
                     deliver_at: datetime) -> RouteTarget:
    manager = rules.manager_on(local)
    copy = rules.manager_copy_from is not None and severity.at_least(rules.manager_copy_from)
    if rules.is_working_day(local.date()):
        return _target(Audience.TEAM, (manager,) if copy else (), rules, deliver_at,
                       "online hours" + (", manager copied" if copy else ""))
    duty = rules.on_duty(local.date())
    if duty is None:
        return _target(Audience.MANAGER, (manager,), rules, deliver_at,
                       "day off with nobody on the rota")
    ids = (duty, manager) if copy and manager != duty else (duty,)
    return _target(Audience.ROTA, ids, rules, deliver_at,
                   "day-off rota" + (", manager copied" if copy else ""))


def _days(start: date) -> Iterator[date]:
    return (start + timedelta(days=offset) for offset in range(HORIZON_DAYS))


def next_opening(at: datetime, rules: RotaRules = DEFAULT_ROTA) -> datetime | None:
    """The first moment at or after `at` when someone is online: a working day's hours, or a
    day off with somebody on the rota. None if there is none within a year."""
    local = rules.local(at)
    for day in _days(local.date()):
        if not (rules.is_working_day(day) or rules.on_duty(day)):
            continue
        opens = datetime.combine(day, rules.online_from, tzinfo=rules.zone)
        closes = datetime.combine(day, rules.online_until, tzinfo=rules.zone)
        if local <= closes:
            return max(opens, local)
    return None


def recipients(at: datetime, severity: Severity,
               rules: RotaRules = DEFAULT_ROTA) -> RouteTarget:
    """Who gets an alert of this severity raised at `at`, on which channels, and when."""
    local = rules.local(at)
    if rules.in_hours(local):
        return _in_hours_target(local, severity, rules, at)
    manager = rules.manager_on(local)
    if severity.at_least(rules.defer_below):
        return _target(Audience.MANAGER, (manager,), rules, at, "outside online hours")
    opening = next_opening(at, rules)
    if opening is None:
        return _target(Audience.MANAGER, (manager,), rules, at, "no opening ahead")
    target = _in_hours_target(opening, severity, rules, opening)
    return target.model_copy(update={"reason": f"{target.reason}; held until the opening"})
