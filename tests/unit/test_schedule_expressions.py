"""EventBridge rate/cron parsing and next-fire times, as the local event runner computes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from chalice import Cron, Rate

from devstack.events import CronSchedule, RateSchedule, parse_schedule


def at(text: str) -> datetime:
    """'2025-01-03 08:00' (or with seconds) as an aware UTC datetime."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


# 2025-01-01 is a Wednesday, so 2025-01-03 is a Friday and 2025-01-06 a Monday.


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
        (Rate(5, unit=Rate.MINUTES), timedelta(minutes=5)),
        (Rate(1, unit=Rate.HOURS), timedelta(hours=1)),
    ],
)
def test_rate_expressions_parse_to_their_interval(
    expression: str | Rate, interval: timedelta
) -> None:
    assert parse_schedule(expression) == RateSchedule(interval=interval)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2025-01-03 07:00", "2025-01-03 08:05"),  # before the anchor: the first period
        ("2025-01-03 08:00", "2025-01-03 08:05"),
        ("2025-01-03 08:04:59", "2025-01-03 08:05"),
        ("2025-01-03 08:05", "2025-01-03 08:10"),  # strictly after
        ("2025-01-03 08:07", "2025-01-03 08:10"),  # counted from the anchor, not from `after`
        ("2025-01-03 23:58", "2025-01-04 00:00"),
    ],
)
def test_rate_fires_every_interval_from_the_anchor(after: str, expected: str) -> None:
    schedule = parse_schedule("rate(5 minutes)")
    assert schedule.next_fire(at(after), at("2025-01-03 08:00")) == at(expected)


CRON_CASES = [
    # weekday names, '?' in day-of-month
    ("cron(0 9 ? * MON-FRI *)", "2025-01-03 08:00", "2025-01-03 09:00"),
    ("cron(0 9 ? * MON-FRI *)", "2025-01-03 09:00", "2025-01-06 09:00"),
    ("cron(0 9 ? * MON-FRI *)", "2025-01-04 12:00", "2025-01-06 09:00"),
    ("cron(0 9 ? * mon-fri *)", "2025-01-04 12:00", "2025-01-06 09:00"),
    ("cron(0 18 ? * SAT,SUN *)", "2025-01-03 19:00", "2025-01-04 18:00"),
    ("cron(0 18 ? * SAT,SUN *)", "2025-01-04 18:00", "2025-01-05 18:00"),
    # day-of-week numbers count from Sunday = 1
    ("cron(0 8 ? * 1 *)", "2025-01-03 00:00", "2025-01-05 08:00"),
    ("cron(0 8 ? * 7 *)", "2025-01-03 00:00", "2025-01-04 08:00"),
    ("cron(0 8 ? * 2-3 *)", "2025-01-06 08:00", "2025-01-07 08:00"),
    # steps: */n, a/n and a-b/n
    ("cron(*/15 * * * ? *)", "2025-01-03 10:07:30", "2025-01-03 10:15"),
    ("cron(*/15 * * * ? *)", "2025-01-03 10:14:59", "2025-01-03 10:15"),
    ("cron(*/15 * * * ? *)", "2025-01-03 10:15:00", "2025-01-03 10:30"),
    ("cron(*/15 * * * ? *)", "2025-01-03 10:45", "2025-01-03 11:00"),
    ("cron(5/20 * * * ? *)", "2025-01-03 10:00", "2025-01-03 10:05"),
    ("cron(5/20 * * * ? *)", "2025-01-03 10:05", "2025-01-03 10:25"),
    ("cron(5/20 * * * ? *)", "2025-01-03 10:45", "2025-01-03 11:05"),
    ("cron(0 8-17/3 * * ? *)", "2025-01-03 09:00", "2025-01-03 11:00"),
    ("cron(0 8-17/3 * * ? *)", "2025-01-03 17:00", "2025-01-04 08:00"),
    # lists and ranges
    ("cron(0,30 9-10 * * ? *)", "2025-01-03 09:00", "2025-01-03 09:30"),
    ("cron(0,30 9-10 * * ? *)", "2025-01-03 10:30", "2025-01-04 09:00"),
    # day and month rollover, months with fewer days, leap years
    ("cron(0 12 1 * ? *)", "2025-01-15 00:00", "2025-02-01 12:00"),
    ("cron(0 12 1 * ? *)", "2025-01-01 12:00", "2025-02-01 12:00"),
    ("cron(0 0 31 * ? *)", "2025-01-31 01:00", "2025-03-31 00:00"),
    ("cron(0 0 31 * ? *)", "2025-03-31 00:00", "2025-05-31 00:00"),
    ("cron(0 0 29 2 ? *)", "2025-03-01 00:00", "2028-02-29 00:00"),
    ("cron(59 23 * * ? *)", "2024-12-31 23:59", "2025-01-01 23:59"),
    ("cron(*/15 * * * ? *)", "2024-12-31 23:50", "2025-01-01 00:00"),
    # month names and lists with a weekday
    ("cron(30 6 ? JAN,JUL MON *)", "2025-01-01 00:00", "2025-01-06 06:30"),
    ("cron(30 6 ? JAN,JUL MON *)", "2025-01-27 06:30", "2025-07-07 06:30"),
    ("cron(0 0 1 jan-mar ? *)", "2025-03-01 00:00", "2026-01-01 00:00"),
    # the year field
    ("cron(0 0 1 1 ? 2030)", "2025-06-01 00:00", "2030-01-01 00:00"),
    ("cron(0 10 * * ? 2025-2026)", "2026-12-31 10:00", None),
    ("cron(0 0 1 1 ? 2030)", "2030-01-01 00:00", None),
    ("cron(0 0 30 2 ? *)", "2025-01-01 00:00", None),  # never: February has no 30th
]


@pytest.mark.parametrize(("expression", "after", "expected"), CRON_CASES)
def test_cron_next_fire(expression: str, after: str, expected: str | None) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, CronSchedule)
    assert schedule.next_fire(at(after)) == (at(expected) if expected else None)


def test_cron_reads_naive_datetimes_as_utc_and_answers_in_utc() -> None:
    schedule = parse_schedule("cron(0 9 ? * MON-FRI *)")
    fire = schedule.next_fire(datetime(2025, 1, 3, 8, 0))
    assert fire == at("2025-01-03 09:00")
    assert fire is not None and fire.tzinfo is UTC


def test_cron_converts_other_time_zones_to_utc() -> None:
    # Saturday 00:30 in UTC+8 is still Friday 16:30 in UTC.
    plus_eight = datetime(2025, 1, 4, 0, 30, tzinfo=timezone(timedelta(hours=8)))
    schedule = parse_schedule("cron(0 17 ? * FRI *)")
    assert schedule.next_fire(plus_eight) == at("2025-01-03 17:00")


def test_chalice_cron_objects_are_accepted() -> None:
    schedule = parse_schedule(Cron(0, 9, "?", "*", "MON-FRI", "*"))
    assert schedule == parse_schedule("cron(0 9 ? * MON-FRI *)")


def test_cron_fields_expand_to_their_values() -> None:
    schedule = parse_schedule("cron(5/20 8-10,14 ? JUN-AUG SUN,SAT 2025/2)")
    assert schedule == CronSchedule(
        minutes=(5, 25, 45),
        hours=(8, 9, 10, 14),
        days_of_month=None,
        months=frozenset({6, 7, 8}),
        days_of_week=frozenset({1, 7}),
        years=frozenset(range(2025, 2200, 2)),
    )


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "every 5 minutes",
        "rate 5 minutes",
        "rate(5 minute)",  # EventBridge wants the plural for more than one
        "rate(1 minutes)",  # and the singular for one
        "rate(0 minutes)",
        "rate(-1 minutes)",
        "rate(5 weeks)",
        "rate(five minutes)",
        "rate(1.5 hours)",
        "cron(0 9 * * ?)",  # five fields
        "cron(0 9 * * ? * *)",  # seven fields
        "cron(0 9 * * MON-FRI *)",  # both day fields set
        "cron(0 9 ? * ? *)",  # neither day field set
        "cron(60 9 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 9 0 * ? *)",
        "cron(0 9 32 * ? *)",
        "cron(0 9 ? 13 * *)",
        "cron(0 9 ? * 0 *)",
        "cron(0 9 ? * 8 *)",
        "cron(0 9 * * ? 1969)",
        "cron(0 9 * * ? 2200)",
        "cron(0 ? * * ? *)",
        "cron(*/0 * * * ? *)",
        "cron(*/x * * * ? *)",
        "cron(50-10 * * * ? *)",
        "cron(0 9 ? * FRI-MON *)",
        "cron(0 9 * JANUARY ? *)",
        "cron(0 9 * * ? *",
        "cron(a * * * ? *)",
        "cron(0,,5 * * * ? *)",
        "cron(MON * * * ? *)",  # names only where EventBridge accepts them
    ],
)
def test_invalid_expressions_raise_value_error(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 9 L * ? *)",
        "cron(0 9 15W * ? *)",
        "cron(0 9 LW * ? *)",
        "cron(0 9 ? * 6L *)",
        "cron(0 9 ? * MON#1 *)",
    ],
)
def test_l_w_and_hash_are_rejected_with_a_clear_error(expression: str) -> None:
    with pytest.raises(ValueError, match="not supported by the local event runner"):
        parse_schedule(expression)
