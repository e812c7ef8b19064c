"""The service's sections of the weekly and monthly reports: read the period's parcels and
cases (Queries on the month indexes, never a Scan) and let chalicelib/reports/service_kpis.py
make the figures. A daily report has none of these sections and reads nothing for them."""

from __future__ import annotations

from datetime import datetime

from chalicelib.cs import case_store
from chalicelib.reports import service_kpis
from chalicelib.reports.model import Period, Sourced
from chalicelib.tracking import parcel_store
from chalicelib.warehouse.tariffs import tariff_rules


def service(period: Period, now: datetime) -> Sourced:
    if period.kind == "daily":
        return Sourced((), 0)
    # A parcel delivered or a case resolved in the period may have started before it.
    since = period.start_at - service_kpis.LOOKBACK
    parcels, parcel_pages = parcel_store.handed_over(since, period.end_at)
    window, case_pages = case_store.opened_between(since, period.end_at)
    older_open, open_pages = case_store.open_types_before(since)
    sections = service_kpis.service_sections(period, parcels, window, older_open,
                                             tariff_rules().tolerance)
    return Sourced(sections, parcel_pages + case_pages + open_pages)
