"""The warehouse's sections of a report (chalicelib/reports/warehouse_kpis.py) from the stored
jobs and returns of the period. Read-only.

DynamoDB reads, all Queries on an index, counted in pages:
  jobs  by-paid-month   the jobs paid in the period: one paged Query per month it touches
                        (whole jobs, some 2 KB each: a page per 1 MB, ~500 jobs)
  jobs  returns-by-day  weekly and monthly: the returns of each window day of the period

A month of 15,000 orders: some 30 pages of jobs and 28-31 of returns (one per day, more only
past 1 MB of returns a day); a day: one page. Buyer complaint cases are not read yet (no index
gives the cases opened in a period); the wrong/short section says so.
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.reports import warehouse_kpis
from chalicelib.reports.model import Period, Sourced
from chalicelib.warehouse import job_store
from chalicelib.warehouse.jobs import protocol_rules
from chalicelib.warehouse.returns import ReturnRecord


def warehouse(period: Period, now: datetime) -> Sourced:
    """The sections and the DynamoDB pages read."""
    jobs, reads = job_store.paid_between(period.start_at, period.end_at)
    records: list[ReturnRecord] = []
    if period.kind != "daily":  # the daily report is dispatch only
        stored, pages = job_store.returns_of_days(period.days())
        records = [ReturnRecord.model_validate(record) for record in stored]
        reads += pages
    # Buyer complaint cases (wrong/short/missing) need the cases by the day they were opened,
    # which no index gives yet: the section says they are not counted.
    found = warehouse_kpis.sections(period, jobs, records, now, protocol_rules().dispatch,
                                    complaints=None)
    return Sourced(found, reads)
