"""The case queue's pure figures: age bands and their windows, the counts, parcel problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.cs.alerts import Severity
from chalicelib.cs.queue import (
    AGE_NAMES,
    SummaryRow,
    age_band,
    band_window,
    count_open,
    parcel_problems,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("age", "band"), [
    (timedelta(0), "1h"), (timedelta(minutes=59, seconds=59), "1h"), (timedelta(hours=1), "24h"),
    (timedelta(hours=23, minutes=59), "24h"), (timedelta(days=1), "3d"),
    (timedelta(days=2, hours=23), "3d"), (timedelta(days=3), "older"),
    (timedelta(days=400), "older"), (timedelta(minutes=-5), "1h")])
def test_a_case_falls_in_one_band_by_how_long_it_has_been_open(age: timedelta,
                                                               band: str) -> None:
    assert age_band(NOW - age, NOW) == band


@pytest.mark.parametrize("minutes", [-10, 0, 1, 59, 60, 61, 600, 1439, 1440, 1441, 4319, 4320,
                                     4321, 10_000])
def test_each_band_window_holds_exactly_the_cases_of_its_band(minutes: int) -> None:
    opened = NOW - timedelta(minutes=minutes)
    inside = []
    for name in AGE_NAMES:
        window = band_window(name, NOW)
        if ((window.after is None or opened > window.after)
                and (window.until is None or opened <= window.until)):
            inside.append(name)
    assert inside == [age_band(opened, NOW)]


def test_an_unknown_band_is_refused() -> None:
    with pytest.raises(ValueError, match="age is one of"):
        band_window("2h", NOW)


def row(kind: str, severity: Severity, age: timedelta, subject: str = "order:1",
        carrier: str | None = None) -> SummaryRow:
    return SummaryRow(type=kind, severity=severity, opened_at=NOW - age, subject=subject,
                      carrier_code=carrier)


def test_counts_by_type_severity_and_age_add_up_to_the_total() -> None:
    rows = [row("job.not_accepted", Severity.HIGH, timedelta(minutes=5)),
            row("job.not_accepted", Severity.HIGH, timedelta(hours=5)),
            row("courier.lost", Severity.CRITICAL, timedelta(days=2)),
            row("order.invalid", Severity.LOW, timedelta(days=9))]
    counts = count_open(rows, NOW)
    assert counts.total == 4
    assert counts.by_type == {"job.not_accepted": 2, "courier.lost": 1, "order.invalid": 1}
    assert list(counts.by_type) == ["job.not_accepted", "courier.lost", "order.invalid"]
    assert counts.by_severity == {"critical": 1, "high": 2, "medium": 0, "low": 1}
    assert list(counts.by_severity) == ["critical", "high", "medium", "low"]
    assert counts.by_age == {"1h": 1, "24h": 1, "3d": 1, "older": 1}
    empty = count_open([], NOW)
    assert (empty.total, empty.by_type, sum(empty.by_age.values())) == (0, {}, 0)


def test_parcel_problems_count_only_parcel_cases_by_carrier_and_kind() -> None:
    rows = [row("courier.lost", Severity.HIGH, timedelta(hours=1), "parcel:STO:77001", "STO"),
            row("courier.lost", Severity.HIGH, timedelta(hours=2), "parcel:STO:77002", "STO"),
            row("courier.refused", Severity.MEDIUM, timedelta(hours=2), "parcel:SF:91", "SF"),
            # a case written before carrier_code was copied: the subject still names it
            row("after_sales", Severity.HIGH, timedelta(hours=3), "parcel:YTO:55"),
            row("job.not_accepted", Severity.HIGH, timedelta(hours=1), "job_1", "STO")]
    problems = parcel_problems(rows)
    assert problems.total == 4
    assert problems.by_carrier == {"SF": {"courier.refused": 1},
                                   "STO": {"courier.lost": 2},
                                   "YTO": {"after_sales": 1}}
