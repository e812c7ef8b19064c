"""The day's dispatch against the cut-offs (chalicelib/warehouse/day_dispatch.py) with fixed
clocks, and the index attributes a job's item carries for it (job_store.item_of)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from chalicelib.warehouse import day_dispatch, job_store, jobs
from chalicelib.warehouse.day_dispatch import PaidJob, cutoff_of, dispatch_figures, state
from chalicelib.warehouse.dispatch import DEFAULT_DISPATCH_RULES as RULES
from chalicelib.warehouse.dispatch import ship_by
from tests.unit.test_jobs import ADDRESS, GIFT, PKG, accepted, offered, packed, printed

DAY = date(2026, 12, 7)  # a Monday; Shanghai is UTC+8


def local(clock: str, day: date = DAY) -> datetime:
    """A wall-clock time in Shanghai, as an aware UTC moment."""
    return RULES.at(day, time.fromisoformat(clock))


def paid(clock: str, work: str = "queued", shipped: str | None = None,
         day: date = DAY) -> PaidJob:
    at = local(clock, day)
    return PaidJob(paid_at=at, ship_by=ship_by(at, RULES), work=work,
                   shipped_at=local(shipped) if shipped else None)


@pytest.mark.parametrize(("clock", "cutoff"), [
    ("00:30", "11:00"), ("09:00", "11:00"), ("09:01", "15:00"), ("13:00", "15:00"),
    ("13:01", "19:30"), ("17:30", "19:30"), ("17:31", "later"), ("23:59", "later")])
def test_an_order_counts_under_the_cut_off_its_job_must_ship_by(clock: str,
                                                               cutoff: str) -> None:
    assert cutoff_of(paid(clock).ship_by, DAY, RULES) == cutoff


def test_a_pre_sale_ships_on_a_later_day() -> None:
    at = local("08:00")
    assert cutoff_of(ship_by(at, RULES, DAY + timedelta(days=5)), DAY, RULES) == "later"


@pytest.mark.parametrize(("job", "now", "where"), [
    (paid("08:00", "shipped", "10:59"), "16:00", "on_time"),
    (paid("08:00", "shipped", "11:00"), "16:00", "on_time"),  # at the cut-off is in time
    (paid("08:00", "shipped", "11:01"), "16:00", "late"),
    (paid("08:00", "packed"), "10:59", "to_go"),
    (paid("08:00", "packed"), "11:00", "overdue"),
    (paid("08:00", "queued"), "16:00", "overdue"),
    (paid("08:00", "cancelled"), "16:00", "closed"),
    (paid("08:00", "closed_incomplete"), "16:00", "closed")])
def test_where_a_job_stands_against_its_deadline(job: PaidJob, now: str, where: str) -> None:
    assert state(job, local(now)) == where


def test_the_day_is_counted_per_cut_off_at_four_in_the_afternoon() -> None:
    rows = [paid("07:00", "shipped", "10:40"), paid("08:10", "shipped", "11:20"),
            paid("08:30", "packed"), paid("10:00", "queued"), paid("12:00", "cancelled"),
            paid("12:30", "shipped", "14:00"), paid("14:00", "printed"),
            paid("18:00", "queued")]
    found = dispatch_figures(DAY, rows, local("16:00"), RULES)
    assert found.paid == 8 and found.timezone == "Asia/Shanghai"
    figures = {f.cutoff: (f.on_time, f.late, f.overdue, f.to_go, f.closed) for f in found.cutoffs}
    assert figures == {"11:00": (1, 1, 1, 0, 0), "15:00": (1, 0, 1, 0, 1),
                       "19:30": (0, 0, 0, 1, 0), "later": (0, 0, 0, 1, 0)}
    assert [f.deadline for f in found.cutoffs] == [
        local("11:00"), local("15:00"), local("19:30"), None]
    assert found.model_dump()["cutoffs"][0]["total"] == 3


def test_an_empty_day_still_lists_every_cut_off() -> None:
    found = dispatch_figures(DAY, [], local("09:00"), RULES)
    assert found.paid == 0
    assert [(f.cutoff, f.total) for f in found.cutoffs] == [
        ("11:00", 0), ("15:00", 0), ("19:30", 0), ("later", 0)]


def test_the_working_day_turns_at_midnight_in_shanghai_not_utc() -> None:
    assert day_dispatch.working_day(datetime(2026, 12, 6, 15, 59, 59, tzinfo=UTC), RULES) == \
        date(2026, 12, 6)
    assert day_dispatch.working_day(datetime(2026, 12, 6, 16, 0, tzinfo=UTC), RULES) == DAY
    assert day_dispatch.day_start(DAY, RULES) == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)


def test_a_jobs_item_carries_its_paid_day_and_when_it_shipped() -> None:
    job = offered()  # paid 2026-11-23T02:15:40Z: 10:15 in Shanghai
    item = job_store.item_of(job)
    assert (item["paid_day"], item["paid_at"]) == ("2026-11-23", "2026-11-23T02:15:40.000000Z")
    assert "shipped_at" not in item
    late_evening = job.model_copy(update={"paid_at": datetime(2026, 11, 23, 16, 5, tzinfo=UTC)})
    assert job_store.item_of(late_evening)["paid_day"] == "2026-11-24"
    shipped = jobs.ship(packed(), "s1", (PKG,), True, datetime(2026, 11, 23, 5, tzinfo=UTC)).job
    assert job_store.item_of(shipped)["shipped_at"] == "2026-11-23T05:00:00.000000Z"
    partly = jobs.ship(packed(), "s1", (PKG,), False, datetime(2026, 11, 23, 5, tzinfo=UTC)).job
    assert "shipped_at" not in job_store.item_of(partly)
    assert job_store.job_of(job_store.item_of(shipped)) == shipped


def test_a_job_waits_on_the_factory_to_accept_or_to_resolve_an_intercept() -> None:
    job = offered()
    item = job_store.item_of(job)
    assert (item["waiting_on"], item["waiting_since"]) == ("offer", "2026-11-23T03:00:00.000000Z")
    assert "waiting_on" not in job_store.item_of(accepted())
    asked = datetime(2026, 11, 23, 6, tzinfo=UTC)
    held = jobs.request_change(printed(), ADDRESS, "cs", asked).job
    held = jobs.request_change(held, GIFT, "cs", asked + timedelta(hours=1)).job
    item = job_store.item_of(held)
    assert (item["waiting_on"], item["waiting_since"]) == (
        "intercept", "2026-11-23T06:00:00.000000Z")
    for open_change in held.open_changes:
        held = jobs.resolve_change(held, open_change.change_id, True, False, "", "w",
                                   asked + timedelta(hours=2)).job
    assert not held.open_changes and "waiting_on" not in job_store.item_of(held)
