"""The warehouse's sections of a report (chalicelib/reports/warehouse_kpis.py) from the stored
jobs and returns of the period. Read-only.

DynamoDB reads, all Queries on an index, counted in pages:
  jobs  by-paid-month   the jobs paid in the period: one paged Query per month it touches
                        (whole jobs, some 2 KB each: a page per 1 MB, ~500 jobs)
  jobs  returns-by-day  weekly and monthly: the returns of each window day of the period
  cases by-opened-month weekly and monthly: the cases opened in the period, for the buyer
                        complaints among them (one paged Query per month it touches)

A month of 15,000 orders: some 30 pages of jobs and 28-31 of returns (one per day, more only
past 1 MB of returns a day), a few of cases; a day: one page.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from chalicelib.cs import case_store
from chalicelib.flows.complaints import CASE_TYPES
from chalicelib.reports import warehouse_kpis
from chalicelib.reports.model import Period, Sourced
from chalicelib.warehouse import job_store
from chalicelib.warehouse.jobs import protocol_rules
from chalicelib.warehouse.returns import ReturnRecord


def warehouse(period: Period, now: datetime) -> Sourced:
    """The sections and the DynamoDB pages read."""
    jobs, reads = job_store.paid_between(period.start_at, period.end_at)
    records: list[ReturnRecord] = []
    complaints: dict[str, int] | None = None
    if period.kind != "daily":  # the daily report is dispatch only
        stored, pages = job_store.returns_of_days(period.days())
        records = [ReturnRecord.model_validate(record) for record in stored]
        complaints, case_pages = complaints_opened(period)
        reads += pages + case_pages
    found = warehouse_kpis.sections(period, jobs, records, now, protocol_rules().dispatch,
                                    complaints=complaints)
    return Sourced(found, reads)


def complaints_opened(period: Period) -> tuple[dict[str, int], int]:
    """Cases a buyer's complaint opened in the period, per case type, and the pages read. A
    complaint about a mismatch the packer had reported joins the pack check's case (one case
    a subject), which the jobs' pack mismatches count already: only cases the complaint
    opened (their facts say `complaint`) are complaints here."""
    opened, pages = case_store.opened_between(period.start_at, period.end_at)
    kinds = set(CASE_TYPES.values())
    counted = Counter(case.type for case in opened
                      if case.type in kinds and "complaint" in case.facts)
    return dict(counted), pages
