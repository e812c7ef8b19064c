"""EventBridge rate parsing and next-fire times, as the local event runner computes them;
cron(...) is refused (app.py has rate schedules only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from chalice import Cron, Rate

from devstack.events.schedules import RateSchedule, parse_schedule


def at(text: str) -> datetime:
    """'2025-01-03 08:00' (or with seconds) as an aware UTC datetime."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


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


def test_rate_reads_naive_datetimes_as_utc_and_answers_in_utc() -> None:
    schedule = parse_schedule("rate(1 hour)")
    fire = schedule.next_fire(datetime(2025, 1, 3, 8, 30), datetime(2025, 1, 3, 8, 0))
    assert fire == at("2025-01-03 09:00")
    assert fire.tzinfo is UTC


def test_rate_converts_other_time_zones_to_utc() -> None:
    # 16:30 in UTC+8 is 08:30 in UTC.
    plus_eight = datetime(2025, 1, 3, 16, 30, tzinfo=timezone(timedelta(hours=8)))
    schedule = parse_schedule("rate(1 hour)")
    assert schedule.next_fire(plus_eight, at("2025-01-03 08:00")) == at("2025-01-03 09:00")


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
    ],
)
def test_invalid_expressions_raise_value_error(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expression)


@pytest.mark.parametrize(
    "expression",
    ["cron(0 9 ? * MON-FRI *)", "cron(*/15 * * * ? *)", Cron(0, 9, "?", "*", "MON-FRI", "*")],
)
def test_cron_expressions_are_refused_with_a_clear_error(expression: str | Cron) -> None:
    with pytest.raises(ValueError, match=r"rate\(\.\.\.\) schedules only, not cron"):
        parse_schedule(expression)
