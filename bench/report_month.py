"""The monthly report and the month's courier bill over a month at today's volume (issue 16:
"computing a monthly report over 15,000 orders and reconciling a 15,000-line bill, as a ratio
of one bare paged Query over the same items: <= 5x; state the DynamoDB reads per report").

Seeded untimed, through BatchWriteItem on one client: 15,000 jobs paid in November (one per
parcel, as the job store writes them), 15,000 parcels handed over in November
2026 (Asia/Shanghai) as the tracker's store writes them (delivered after a day or so, one in 25
with a courier exception), and 1,500 cases of the month as the case store writes them (most
acknowledged and resolved by one of four CS people). The bill is bench/bill_import.py's: a
15,000-line STO bill over the same waybills, with its planted lines.

Timed, in process:
(b) reconciling the bill (`chalicelib.flows.bills.import_bill`: parse, reads, 15,000 fees kept
    on the parcels, the bill stored) against bill_import's floor, one bare paged Query of the
    `by-carrier-month` index over the same parcels;
(a) then the monthly report (`chalicelib.flows.reports.build_report`, every source) against
    its floor: the same index partitions the report reads (jobs by paid month, returns by
    window day, parcels by hand-over month and cases by opening month, the lookback month
    included) read by bare paged Queries through a plain boto3 client, nothing decoded.
The figure is the larger ratio, budget 5x. Printed too: the report's DynamoDB pages (`reads`)
and calls per kind, and each section's headline figures.

moto answers an index Query by reading the whole table, so absolute times are an upper bound;
the ratios compare like with like in the same run.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench import bill_import
from bench.stack import ROOT, app_output_discarded, local_stack, verdict

NAME = "report_month"
PARCELS = bill_import.PARCELS  # the bill's waybills are the parcels'
CASES = int(os.environ.get("BENCH_REPORT_CASES", "1500"))
BUDGET = 5.0
MONTH_START = bill_import.MONTH_START  # 1 November 2026 in Shanghai
PEOPLE = ("cs ana", "cs bo", "cs cy", "cs dee")
ORDER_FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_paid.json"
CASE_TYPES = ("courier.stalled", "courier.damaged", "after_sales.return", "refund.due")


def _write(table: str, items: list[dict[str, Any]]) -> None:
    from chalicelib.core import aws

    client = aws.client("dynamodb")
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}}
                                           for item in items[start:start + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def _parcel_items() -> list[dict[str, Any]]:
    from chalicelib.tracking import parcel_store
    from chalicelib.tracking.model import ExceptionKind, Journey, ShipmentStatus, TrackingEvent
    from chalicelib.tracking.parcels import Parcel
    from chalicelib.tracking.watch import Watch

    items = []
    for i in range(PARCELS):
        number = bill_import._number(i)
        at = MONTH_START + timedelta(seconds=i * 150)  # ~26 days for 15,000
        _, city, region, _ = bill_import.CITIES[i % 3]
        delivered = at + timedelta(hours=18 + i % 70) if i % 10 else None
        events = () if i % 25 else (TrackingEvent(
            provider="kuaidi100", carrier_code="STO", tracking_number=number,
            occurred_at=at + timedelta(hours=6), status=ShipmentStatus.IN_TRANSIT,
            exceptions=(list(ExceptionKind)[i % 7],), raw_code="X"),)
        journey = Journey(carrier_code="STO", tracking_number=number, handed_over_at=at,
                          events=events, delivered_at=delivered,
                          status=ShipmentStatus.DELIVERED if delivered else
                          ShipmentStatus.IN_TRANSIT)
        parcel = Parcel(carrier_code="STO", tracking_number=number, provider="kuaidi100",
                        order_id=f"ord_bench{i:08d}", order_name=f"#{i}", marketplace="shopify",
                        partner_id="factory-1", job_id=f"job_bench{i:08d}", shipment_id="s1",
                        destination=city, region=region, started_at=at,
                        watch=Watch(provider="kuaidi100"), shipment=journey)
        items.append(parcel_store.put(parcel, None).item["Put"]["Item"])
    return items


def _case_items() -> list[dict[str, Any]]:
    from chalicelib.core.dynamodb import to_attrs
    from chalicelib.cs import case_store, cases
    from chalicelib.cs.alerts import Alert, Severity

    items = []
    for n in range(CASES):
        at = MONTH_START + timedelta(minutes=n * 27)  # ~28 days for 1,500
        case = cases.open_case(Alert(
            kind=CASE_TYPES[n % len(CASE_TYPES)], severity=list(Severity)[n % 4],
            subject=f"parcel:STO:{bill_import._number(n * 10)}", at=at, summary=f"case {n}",
            facts={"order_id": f"ord_bench{n * 10:08d}", "carrier_code": "STO"}))
        who = PEOPLE[n % len(PEOPLE)]
        if n % 5:
            case = cases.acknowledge(case, who, "on it", at + timedelta(minutes=10 + n % 50))
        if n % 5 > 1:
            case = cases.resolve(case, PEOPLE[(n + 1) % len(PEOPLE)], "done",
                                 at + timedelta(hours=2 + n % 40),
                                 "refunded" if case.type == cases.REFUND_DUE else None)
        items.append(to_attrs(case_store._item(case, 1, [f"alert-{n}"])))
    return items


def _job_items() -> list[dict[str, Any]]:
    """One job per parcel, paid over November (Shanghai), as the job store writes them: all
    accepted within the hour, nine in ten shipped (one in eight of those after the deadline),
    the rest still in the warehouse."""
    from chalicelib.core.dynamodb import to_attrs
    from chalicelib.marketplaces import shopify
    from chalicelib.warehouse import job_store, jobs
    from chalicelib.warehouse.dispatch import DEFAULT_DISPATCH_RULES, ship_by

    base = shopify.normalise(ORDER_FIXTURE.read_bytes(), {"x-shopify-shop-domain": "bench"},
                             "shopify")
    items = []
    for n in range(PARCELS):
        paid = MONTH_START + timedelta(seconds=n * 172)  # 15,000 over ~29.9 days
        order = base.model_copy(update={"external_id": str(7_000_000_000_000 + n),
                                        "paid_at": paid, "updated_at": paid})
        job = jobs.new_job(order, "factory-bench", paid + timedelta(minutes=n % 12))
        deadline = ship_by(paid, DEFAULT_DISPATCH_RULES)
        update: dict[str, Any] = {
            "job_id": f"job_month{n:06d}", "order_id": f"ord_bench{n:08d}", "paid_at": paid,
            "ship_by": deadline, "handshake": jobs.Handshake.ACCEPTED,
            "accepted_at": paid + timedelta(minutes=20 + n % 40)}
        if n % 10:
            shipped = deadline + timedelta(minutes=30 if n % 8 == 0 else -60)
            package = jobs.Package(carrier_code="STO", tracking_number=bill_import._number(n))
            update["work"] = jobs.Work.SHIPPED
            update["shipments"] = (jobs.Shipment(shipment_id=f"s{n}", packages=(package,),
                                                 final=True, shipped_at=shipped),)
        items.append(to_attrs(job_store.item_of(job.model_copy(update=update))))
    return items


def _seed() -> None:
    from chalicelib.core.settings import settings

    _write(settings().shipments_table, _parcel_items())
    _write(settings().cases_table, _case_items())
    _write(settings().jobs_table, _job_items())


def _bare_report_queries(period: Any) -> tuple[float, int, int]:
    """The partitions the report reads, by bare paged Queries on a plain client."""
    import boto3

    from chalicelib.core.clock import iso, months_touched
    from chalicelib.core.settings import settings
    from chalicelib.cs.case_store import BY_OPENED_MONTH
    from chalicelib.reports.model import REPORT_ZONE
    from chalicelib.reports.service_kpis import LOOKBACK
    from chalicelib.tracking.parcel_store import HANDOVER_INDEX
    from chalicelib.warehouse import job_store

    since = period.start_at - LOOKBACK
    plain = boto3.client("dynamodb").get_paginator("query")
    began = time.perf_counter()
    items = pages = 0
    # The warehouse's: the month's jobs by paid month, the returns of each window day.
    for request in [
            {"IndexName": job_store.BY_PAID_MONTH, "KeyConditionExpression": "paid_month = :m",
             "ExpressionAttributeValues": {":m": {"S": period.start.strftime("%Y-%m")}}},
            *({"IndexName": job_store.RETURNS_INDEX, "KeyConditionExpression": "returns_day = :d",
               "ExpressionAttributeValues": {":d": {"S": day.isoformat()}}}
              for day in period.days())]:
        for page in plain.paginate(TableName=settings().jobs_table, **request):
            pages += 1
            items += len(page.get("Items", []))
    for table, index, key, sort in (
            (settings().shipments_table, HANDOVER_INDEX, "handover_month", "handover_at"),
            (settings().cases_table, BY_OPENED_MONTH, "opened_month", "opened_at")):
        for month in months_touched(since, period.end_at, REPORT_ZONE):
            for page in plain.paginate(
                    TableName=table, IndexName=index,
                    KeyConditionExpression=f"{key} = :m AND {sort} BETWEEN :lo AND :hi",
                    ExpressionAttributeValues={":m": {"S": month}, ":lo": {"S": iso(since)},
                                               ":hi": {"S": iso(period.end_at)}}):
                pages += 1
                items += len(page.get("Items", []))
    return time.perf_counter() - began, items, pages


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    with app_output_discarded():
        result = work()
    return time.perf_counter() - began, result


def main() -> int:
    with local_stack():
        from chalicelib.flows import bills
        from chalicelib.flows.reports import build_report
        from chalicelib.reports.model import Period

        began = time.perf_counter()
        _seed()
        data = bill_import._bill()
        print(f"seeded {PARCELS} parcels, {PARCELS} jobs and {CASES} cases in "
              f"{time.perf_counter() - began:.0f} s; bill {len(data) // 1024} KiB")
        calls: Counter[str] = bill_import._calls()
        now = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)

        bill_time, done = _timed(lambda: bills.import_bill("STO", "sto_2026-11.csv", data,
                                                           "bench", now))
        print(f"(b) bill reconciled: {bill_time:.2f} s, fees kept {done.fees_kept}, findings "
              f"{done.bill.head.counts}; DynamoDB calls {dict(sorted(calls.items()))}")
        bill_floor, bill_items, bill_pages = bill_import._bare_query()
        print(f"    bare paged Query of the by-carrier-month index: {bill_floor:.2f} s, "
              f"{bill_items} items, {bill_pages} pages")

        period = Period(kind="monthly", start=date(2026, 11, 1), end=date(2026, 12, 1))
        calls.clear()
        report_time, report = _timed(lambda: build_report(period, now))
        print(f"(a) monthly report: {report_time:.2f} s, {len(report.sections)} sections, "
              f"DynamoDB reads (pages) per report: {report.reads}; calls "
              f"{dict(sorted(calls.items()))}")
        for section in report.sections:
            shown = ", ".join(f"{f.key}={f.value}" for f in section.figures)
            print(f"    {section.key}: {shown or f'{len(section.tables[0].rows)} rows'}")
        report_floor, report_items, report_pages = _bare_report_queries(period)
        print(f"    bare paged Queries of the same partitions: {report_floor:.2f} s, "
              f"{report_items} items, {report_pages} pages")

        ratios = {"report": report_time / report_floor, "bill": bill_time / bill_floor}
        print(f"ratios to the bare Query: report {ratios['report']:.1f}x, "
              f"bill {ratios['bill']:.1f}x; reads per report {report.reads}")
        worst = max(ratios.values())
        print(f"BENCH {NAME}: {worst:.1f}x (budget {BUDGET:.0f}x) {verdict(worst <= BUDGET)}")
        return 0 if worst <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
