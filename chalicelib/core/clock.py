"""Time: every moment in this system carries its zone, and is stored in one format (ISO 8601
UTC with microseconds, so strings sort as times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """The moment as given; ValueError for a naive one, which Python would silently read as the
    machine's local time (UTC in Lambda, anything on a laptop)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: every time in this system carries its zone")
    return moment


def in_utc(moment: datetime) -> datetime:
    return aware(moment).astimezone(UTC)


def epoch_seconds(moment: datetime) -> int:
    return int(aware(moment).timestamp())


def epoch_millis(moment: datetime) -> int:
    """Exact integer milliseconds (float timestamps can be off by one)."""
    return (aware(moment) - _EPOCH) // timedelta(milliseconds=1)


def iso(moment: datetime) -> str:
    return in_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def months_touched(start: datetime, end: datetime, zone: tzinfo) -> list[str]:
    """The months (YYYY-MM, in `zone`) that [start, end) touches, in order: the partitions of a
    month-keyed index to Query for a period."""
    first, last = start.astimezone(zone), (end - timedelta(microseconds=1)).astimezone(zone)
    year, month, found = first.year, first.month, []
    while (year, month) <= (last.year, last.month):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found
