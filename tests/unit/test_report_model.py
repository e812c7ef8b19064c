from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from chalicelib.reports.model import Chart, Period, Table, local_day, rate


def test_a_period_is_asia_shanghai_days() -> None:
    period = Period(kind="daily", start=date(2026, 12, 7), end=date(2026, 12, 8))
    assert period.start_at == datetime(2026, 12, 6, 16, tzinfo=UTC)
    assert period.end_at == datetime(2026, 12, 7, 16, tzinfo=UTC)
    assert period.contains(datetime(2026, 12, 7, 15, 59, tzinfo=UTC))
    assert not period.contains(datetime(2026, 12, 7, 16, tzinfo=UTC))
    assert local_day(datetime(2026, 12, 6, 16, 30, tzinfo=UTC)) == date(2026, 12, 7)
    assert period.label == "2026-12-07"


def test_an_empty_period_and_ragged_tables_are_refused() -> None:
    with pytest.raises(ValidationError):
        Period(kind="weekly", start=date(2026, 12, 7), end=date(2026, 12, 7))
    with pytest.raises(ValidationError):
        Table(key="t", title="T", columns=("a", "b"), rows=(("x",),))
    with pytest.raises(ValidationError):
        Chart(key="c", title="C", kind="stacked", parts=("on time", "late"), rows=(("A", (1,)),))


def test_a_rate_over_nothing_is_none() -> None:
    assert rate(1, 3) == Decimal("33.3")
    assert rate(0, 0) is None
