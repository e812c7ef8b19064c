"""Schedules: EventBridge ``rate(...)`` expressions and when they fire (pure, no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from chalice.app import ScheduleExpression

from devstack.events.clock import as_utc

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)")
_RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class RateSchedule:
    """``rate(N unit)``: every ``interval``, counted from the rule's creation (the anchor)."""

    interval: timedelta

    def next_fire(self, after: datetime, anchor: datetime) -> datetime:
        """The first ``anchor + k * interval`` (k >= 1) strictly after ``after``."""
        after, anchor = as_utc(after), as_utc(anchor)
        periods = max(1, (after - anchor) // self.interval + 1)
        return anchor + periods * self.interval


def parse_schedule(expression: str | ScheduleExpression) -> RateSchedule:
    """Parse an EventBridge ``rate(...)`` expression; ValueError for anything else.

    app.py schedules with rate(...) only, so the runner has no cron parser. A cron(...) schedule
    is refused here, when the runner reads the app, rather than left never to fire.
    """
    text = (expression if isinstance(expression, str) else expression.to_string()).strip()
    if text.startswith("cron("):
        raise ValueError(
            f"{text!r}: the local event runner runs rate(...) schedules only, not cron(...)"
        )
    if not text.startswith("rate("):
        raise ValueError(f"{text!r} is not a rate(...) expression")
    return _parse_rate(text)


def _parse_rate(text: str) -> RateSchedule:
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r}: expected rate(<positive integer> <minute|hour|day>[s])")
    value, unit = int(match[1]), match[2]
    base = unit.removesuffix("s")
    if base not in _RATE_UNITS or value < 1:
        raise ValueError(f"{text!r}: expected rate(<positive integer> <minute|hour|day>[s])")
    # EventBridge rejects "rate(1 minutes)" and "rate(5 minute)"; fail here rather than deploying.
    if (value == 1) != (unit == base):
        raise ValueError(f"{text!r}: use the singular unit for 1 and the plural otherwise")
    return RateSchedule(interval=value * _RATE_UNITS[base])
