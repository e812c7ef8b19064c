"""The warehouse's report sections from jobs and returns written through the real stores
(chalicelib/flows/report_warehouse.py over the by-paid-month and returns-by-day indexes).

Each test takes a past month of its own (the indexes are shared by the whole session, and
other tests' orders are paid today) and partners of its own. The month's figures are checked
against those recomputed from the planted stories (tests/unit/test_warehouse_kpis.py), so
what the store reads back must be exactly the period's jobs: none paid a moment before or
after it."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta

import pytest

from chalicelib.core.dynamodb import transact
from chalicelib.cs import case_store, cases
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows import report_warehouse
from chalicelib.flows.reports import build_report
from chalicelib.reports.model import Period
from chalicelib.warehouse import job_store
from chalicelib.warehouse.dispatch import DEFAULT_DISPATCH_RULES as RULES
from chalicelib.warehouse.jobs import Job
from chalicelib.warehouse.returns import ReturnRecord
from tests.unit.test_warehouse_kpis import (
    assert_month,
    month_plan,
    month_returns,
    paid_job,
    return_record,
    ship,
    take,
)


@pytest.fixture
def partners(stack: dict[str, str]) -> tuple[str, str]:
    uid = uuid.uuid4().hex[:6]
    return f"factory-{uid}-a", f"factory-{uid}-b"


@pytest.fixture
def first() -> date:
    """The first day of a past month no other test pays orders in (drawn from a uuid: the
    test run may seed `random` the same for every test)."""
    months = uuid.uuid4().int % (28 * 12)  # 1992-2019: after Shanghai's summer times
    return date(1992 + months // 12, months % 12 + 1, 1)


def store(jobs: list[Job], records: list[ReturnRecord]) -> None:
    """Through the stores' own writes (fewer than a transaction's 100 items each)."""
    transact([job_store.put(job, None) for job in jobs])
    if records:
        transact([job_store.put_return(record.partner_id, record.model_dump(mode="json"))
                  for record in records])


def complaint(case_type: str, at: datetime, complained: bool) -> None:
    """A case of `case_type` opened at `at`, by a buyer's complaint or by the pack check."""
    facts = {"complaint": case_type.split(".")[1], "reported_by": "cs ann"} if complained else {}
    recorded = case_store.record(Alert(kind=case_type, severity=Severity.HIGH,
                                       subject=uuid.uuid4().hex, summary="planted", at=at,
                                       facts=facts))
    assert recorded.case is not None
    # Resolved, so that no other test's "open at the period's end" counts it.
    case_store.change(recorded.case.case_id,
                      lambda case: cases.resolve(case, "cs ann", "planted", at), at)


def month_of(first: date) -> Period:
    following = (first + timedelta(days=32)).replace(day=1)
    return Period(kind="monthly", start=first, end=following)


def test_a_past_months_report_equals_the_figures_recomputed_from_the_planted_stories(
        first: date, partners: tuple[str, str]) -> None:
    month = month_of(first)
    stories = month_plan(first, partners)
    planted = month_returns(first, f"RT{uuid.uuid4().hex[:8]}", partners)
    # Paid a microsecond before the month and at its end (Shanghai midnights), returned the
    # day before its first window: none of them is the month's.
    outside = [paid_job(month.start_at - timedelta(microseconds=1), partner=partners[0]),
               paid_job(month.end_at, partner=partners[0])]
    early = return_record(f"RX{uuid.uuid4().hex[:8]}", partners[0],
                          RULES.at(first - timedelta(days=1), time(10)))
    store([s.job for s in stories] + outside, [r for r, _ in planted] + [early])
    # Buyer complaints: two opened in the month; the packer's own case and a complaint opened
    # a microsecond after the month are not the month's complaints.
    complaint("shipment.short", month.start_at, complained=True)
    complaint("shipment.missing_items", month.end_at - timedelta(microseconds=1),
              complained=True)
    complaint("shipment.wrong_items", month.start_at + timedelta(days=3), complained=False)
    complaint("shipment.short", month.end_at, complained=True)
    now = month.end_at + timedelta(hours=10)

    sections, reads = report_warehouse.warehouse(month, now)
    found = {section.key: section for section in sections}
    assert_month(found, stories, planted, month, partners,
                 complaints={"shipment.missing_items": 1, "shipment.short": 1})
    # One page for the month's jobs (a month touches one paid month), one per window day, one
    # for the month's cases.
    assert reads == 1 + len(month.days()) + 1

    report = build_report(month, now)
    assert report.section("factory") == found["factory"] and report.reads >= reads


def test_a_week_across_two_months_reads_both_and_only_its_own_days(
        first: date, partners: tuple[str, str]) -> None:
    last_day = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    week = Period(kind="weekly", start=last_day - timedelta(days=2),
                  end=last_day + timedelta(days=5))

    def at(day: date, clock: str) -> datetime:
        return RULES.at(day, time.fromisoformat(clock))

    inside = {week.start: "00:00", last_day: "23:59", week.end - timedelta(days=1): "23:59",
              last_day + timedelta(days=1): "08:00"}
    jobs = [ship(take(paid_job(at(day, clock), partner=partners[0]), at(day, clock)),
                 at(day, clock) + timedelta(hours=1)) for day, clock in inside.items()]
    before = paid_job(at(week.start, "00:00") - timedelta(microseconds=1), partner=partners[0])
    after = paid_job(at(week.end, "00:00"), partner=partners[0])
    store([*jobs, before, after], [])

    sections, reads = report_warehouse.warehouse(week, at(week.end, "12:00"))
    dispatch = next(section for section in sections if section.key == "dispatch")
    per_day = {str(row[0]): row[1] for row in dispatch.table("by_day").rows}
    assert per_day == {day.isoformat(): sum(d == day for d in inside) for day in week.days()}
    assert dispatch.figure("paid").value == len(inside)
    # A page of each paid month, one per window day, a page of cases for each month.
    assert reads == 2 + len(week.days()) + 2


def test_jobs_written_before_the_index_are_found_once_backfilled(
        first: date, partners: tuple[str, str]) -> None:
    from chalicelib.core import aws
    from chalicelib.core.dynamodb import to_attrs
    from chalicelib.core.settings import settings

    paid = RULES.at(first.replace(day=15), time(9))
    old = paid_job(paid, partner=partners[0])
    item = {k: v for k, v in job_store.item_of(old).items() if k != "paid_month"}
    aws.client("dynamodb").put_item(TableName=settings().jobs_table, Item=to_attrs(item))
    month = month_of(first)

    def found() -> list[Job]:
        jobs = job_store.paid_between(month.start_at, month.end_at)[0]
        return [job for job in jobs if job.partner_id == partners[0]]

    assert found() == []
    assert job_store.backfill_paid_month() >= 1
    assert found() == [old]
    job_store.backfill_paid_month()  # again: nothing left to give, the job found once
    assert found() == [old]
