"""The CS rota at the edges: the first and last second of the hours, weekends, holidays, make-up
days, nights, and zones with and without daylight saving time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.cs.alerts import Severity
from chalicelib.cs.rota import DEFAULT_ROTA, Audience, Person, RotaRules, next_opening, recipients

SHANGHAI = ZoneInfo("Asia/Shanghai")
TEAM = ("wecom:cs-team", "email:cs-team")

PEOPLE = {
    "cs-manager": Person(name="Wang", mobile="13900000000", email="wang@example.com",
                         channels=("dingtalk:manager",)),
    "bob": Person(name="Bob", mobile="13700000000"),
    "amy": Person(name="Amy", mobile="13800000000", email="amy@example.com"),
    "li": Person(name="Li", channels=("dingtalk:weekend",)),
}
RULES = RotaRules(people=PEOPLE, duty_by_weekday={"sat": "amy"},
                  duty_by_date={date(2024, 3, 10): "li", date(2024, 10, 1): "li"},
                  holidays=frozenset({date(2024, 10, 1), date(2024, 10, 2)}),
                  extra_working_days=frozenset({date(2024, 9, 29)}),
                  manager_by_date={date(2024, 3, 4): "bob"})


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
          micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=SHANGHAI)


# Tuesday 2024-03-05 --------------------------------------------------------------------------

@pytest.mark.parametrize(("moment", "online"), [
    (local(2024, 3, 5, 8, 49, 59), False),
    (local(2024, 3, 5, 8, 50, 0), True),
    (local(2024, 3, 5, 18, 10, 0), True),
    (local(2024, 3, 5, 18, 10, 1), False),
    (local(2024, 3, 5, 18, 10, 0, 1), False),  # a microsecond after closing
])
def test_edges_of_online_hours(moment: datetime, online: bool) -> None:
    target = recipients(moment, Severity.HIGH, RULES)
    assert (target.audience is Audience.TEAM) == online
    if not online:
        assert target.audience is Audience.MANAGER and target.deliver_at == moment


def test_in_hours_the_team_channels_and_critical_copies_the_manager() -> None:
    at = local(2024, 3, 5, 10, 0)
    high = recipients(at, Severity.HIGH, RULES)
    assert (high.people, high.channels, high.mentions) == ((), TEAM, ())
    critical = recipients(at, Severity.CRITICAL, RULES)
    assert critical.audience is Audience.TEAM
    assert critical.people == ("cs-manager",)
    assert critical.channels == (*TEAM, "dingtalk:manager")
    assert critical.mentions == ("13900000000",) and critical.emails == ("wang@example.com",)
    assert critical.deliver_at == at.astimezone(UTC) and critical.deliver_at.tzinfo is UTC


def test_outside_hours_high_goes_to_the_manager_now() -> None:
    at = local(2024, 3, 5, 23, 30)
    target = recipients(at, Severity.HIGH, RULES)
    assert (target.audience, target.people, target.channels) == \
        (Audience.MANAGER, ("cs-manager",), ("dingtalk:manager",))
    assert target.deliver_at == at


def test_outside_hours_low_waits_for_the_opening() -> None:
    target = recipients(local(2024, 3, 5, 18, 10, 1), Severity.MEDIUM, RULES)
    assert target.audience is Audience.TEAM
    assert target.deliver_at == local(2024, 3, 6, 8, 50)
    early = recipients(local(2024, 3, 6, 8, 49, 59), Severity.LOW, RULES)
    assert early.deliver_at == local(2024, 3, 6, 8, 50)


def test_the_night_belongs_to_the_duty_day_it_started_on() -> None:
    # Bob is Monday 2024-03-04's manager: Monday evening and the small hours of Tuesday.
    assert recipients(local(2024, 3, 4, 18, 11), Severity.HIGH, RULES).people == ("bob",)
    assert recipients(local(2024, 3, 5, 2, 0), Severity.HIGH, RULES).people == ("bob",)
    assert recipients(local(2024, 3, 5, 8, 49, 59), Severity.HIGH, RULES).people == ("bob",)
    assert recipients(local(2024, 3, 5, 18, 11), Severity.HIGH, RULES).people == ("cs-manager",)
    assert recipients(local(2024, 3, 4, 10, 0), Severity.CRITICAL, RULES).people == ("bob",)


# Weekends, holidays, make-up days -------------------------------------------------------------

def test_saturday_goes_to_the_person_on_the_rota() -> None:
    target = recipients(local(2024, 3, 9, 8, 50), Severity.MEDIUM, RULES)  # Saturday
    assert (target.audience, target.people, target.channels, target.mentions) == \
        (Audience.ROTA, ("amy",), TEAM, ("13800000000",))
    assert recipients(local(2024, 3, 9, 8, 49, 59), Severity.HIGH, RULES).audience is \
        Audience.MANAGER


def test_rota_by_date_overrides_the_weekday_and_copies_the_manager_when_critical() -> None:
    sunday = local(2024, 3, 10, 12, 0)  # Li has this Sunday
    assert recipients(sunday, Severity.HIGH, RULES).people == ("li",)
    assert recipients(sunday, Severity.HIGH, RULES).channels == ("dingtalk:weekend",)
    critical = recipients(sunday, Severity.CRITICAL, RULES)
    assert critical.people == ("li", "cs-manager")
    assert critical.channels == ("dingtalk:weekend", "dingtalk:manager")


def test_a_day_off_with_nobody_on_the_rota_goes_to_the_manager() -> None:
    target = recipients(local(2024, 3, 17, 10, 0), Severity.LOW, RULES)  # Sunday, no rota
    assert (target.audience, target.people) == (Audience.MANAGER, ("cs-manager",))
    assert target.deliver_at == local(2024, 3, 17, 10, 0)


def test_low_severity_on_friday_night_waits_for_the_weekend_rota_or_monday() -> None:
    friday_night = local(2024, 3, 15, 20, 0)
    saturday = recipients(friday_night, Severity.LOW, RULES)
    assert (saturday.audience, saturday.people, saturday.deliver_at) == \
        (Audience.ROTA, ("amy",), local(2024, 3, 16, 8, 50))
    nobody = RULES.model_copy(update={"duty_by_weekday": {}, "duty_by_date": {}})
    monday = recipients(friday_night, Severity.LOW, nobody)
    assert (monday.audience, monday.deliver_at) == (Audience.TEAM, local(2024, 3, 18, 8, 50))
    assert "held until the opening" in monday.reason


def test_a_holiday_on_a_weekday_is_not_a_working_day() -> None:
    national_day = local(2024, 10, 1, 10, 0)  # Tuesday
    assert recipients(national_day, Severity.HIGH, RULES).people == ("li",)
    second_day = recipients(local(2024, 10, 2, 10, 0), Severity.HIGH, RULES)  # no rota
    assert second_day.audience is Audience.MANAGER
    assert recipients(local(2024, 10, 2, 22, 0), Severity.LOW, RULES).deliver_at == \
        local(2024, 10, 3, 8, 50)


def test_a_make_up_working_day_on_sunday_is_worked_by_the_team() -> None:
    assert recipients(local(2024, 9, 29, 9, 0), Severity.HIGH, RULES).audience is Audience.TEAM


# Zones -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("month", [1, 7])
def test_shanghai_has_no_daylight_saving(month: int) -> None:
    at = datetime(2024, month, 9, 0, 50, tzinfo=UTC)  # 08:50 in Shanghai, winter and summer
    assert recipients(at, Severity.HIGH).audience is Audience.TEAM
    assert recipients(at - timedelta(seconds=1), Severity.HIGH).audience is Audience.MANAGER


def test_a_non_default_zone_follows_its_daylight_saving() -> None:
    berlin = DEFAULT_ROTA.model_copy(update={"timezone": "Europe/Berlin"})
    summer = datetime(2024, 7, 9, 6, 50, tzinfo=UTC)  # 08:50 CEST
    winter = datetime(2024, 1, 9, 6, 50, tzinfo=UTC)  # 07:50 CET
    assert recipients(summer, Severity.HIGH, berlin).audience is Audience.TEAM
    assert recipients(winter, Severity.HIGH, berlin).audience is Audience.MANAGER
    assert recipients(winter + timedelta(hours=1), Severity.HIGH, berlin).audience is \
        Audience.TEAM
    # The opening after a winter night is 08:50 local = 07:50 UTC.
    assert recipients(winter, Severity.LOW, berlin).deliver_at == winter + timedelta(hours=1)


def test_an_opening_across_the_spring_change() -> None:
    new_york = DEFAULT_ROTA.model_copy(update={"timezone": "America/New_York"})
    friday = datetime(2024, 3, 8, 23, 15, tzinfo=UTC)  # 18:15 EST, the Friday before DST
    opening = next_opening(friday, new_york)
    assert opening == datetime(2024, 3, 11, 8, 50, tzinfo=ZoneInfo("America/New_York"))
    assert opening.astimezone(UTC) == datetime(2024, 3, 11, 12, 50, tzinfo=UTC)  # now EDT


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        recipients(datetime(2024, 3, 5, 10, 0), Severity.HIGH)


def test_no_opening_within_the_horizon_goes_to_the_manager_now() -> None:
    start = date(2024, 3, 5)
    closed = RotaRules(holidays=frozenset(start + timedelta(days=n) for n in range(420)))
    at = local(2024, 3, 5, 22, 0)
    assert next_opening(at, closed) is None
    target = recipients(at, Severity.LOW, closed)
    assert (target.audience, target.deliver_at, target.reason) == \
        (Audience.MANAGER, at, "no opening ahead")


# Configuration ---------------------------------------------------------------------------------

def test_rules_round_trip_through_json() -> None:
    text = RULES.model_dump_json()
    assert RotaRules.model_validate_json(text) == RULES
    assert '"working_weekdays":["mon","tue","wed","thu","fri"]' in text


def test_defaults_are_the_handbooks() -> None:
    assert (DEFAULT_ROTA.timezone, DEFAULT_ROTA.online_from, DEFAULT_ROTA.online_until) == \
        ("Asia/Shanghai", time(8, 50), time(18, 10))


@pytest.mark.parametrize(("update", "message"), [
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"online_from": "18:10", "online_until": "08:50"}, "before"),
    ({"manager": "nobody"}, "missing from `people`"),
    ({"duty_by_weekday": {"sun": "ghost"}}, "missing from `people`"),
    ({"working_weekdays": []}, "at least one weekday"),
    ({"holidays": ["2024-09-29"], "extra_working_days": ["2024-09-29"]}, "both"),
])
def test_invalid_rules_are_refused(update: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RotaRules.model_validate({**RULES.model_dump(), **update})


# Property: every alert reaches someone, never before it happened ------------------------------

@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31),
                    timezones=st.just(UTC)),
       st.sampled_from(list(Severity)))
def test_every_alert_is_routed(at: datetime, severity: Severity) -> None:
    target = recipients(at, severity, RULES)
    assert target.channels and target.deliver_at >= at
    if target.deliver_at > at:  # held: only below the threshold, and only until an opening
        assert severity in (Severity.LOW, Severity.MEDIUM)
        assert RULES.in_hours(target.deliver_at.astimezone(SHANGHAI))
