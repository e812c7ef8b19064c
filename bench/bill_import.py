"""Courier bill reconciliation: a month's 15,000-line STO bill (`chalicelib.flows.bills.
import_bill`) against 15,000 parcels of that month, as issue 16 sizes it ("reconciling a
15,000-line bill, as a ratio of one bare paged Query over the same items: <= 5x").

Seeded untimed: the parcels' PARCEL items as the tracker writes them (`parcel_store.put`'s
item, so with their `bill_pk`), through BatchWriteItem. The bill is a CSV in STO's columns:
every parcel once, plus a few planted lines (overcharges, foreign numbers, a duplicate) and a
few parcels left off (missing). Timed, in process: the first import (parse, the reads, the
fees kept on 15,000 parcels, the bill stored), a re-import of the same file (the bill read
back, nothing written), and the floor: one bare paged Query of the `by-carrier-month` index
over the same 15,000 items through a plain boto3 client. Printed: each time, the DynamoDB
calls per kind, and the ratios. The figure is the first import's ratio to the bare Query,
budget 5x (the writes of 15,000 fees are in it; a re-import only reads the stored bill).

The local endpoint (moto) answers an index Query by reading the whole table and applies a
transaction item by item in Python, so absolute times here are an upper bound; the call
counts are what DynamoDB would see.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.stack import app_output_discarded, local_stack, verdict

NAME = "bill_import"
PARCELS = int(os.environ.get("BENCH_BILL_PARCELS", "15000"))
BUDGET = 5.0  # times one bare paged Query over the same items
MONTH_START = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # 1 November in Shanghai
CITIES = (("浙江省", "杭州市", "jzh", "4.00"), ("广东省", "深圳市", "tier12", "8.00"),
          ("新疆维吾尔自治区", "乌鲁木齐市", "remote", "10.00"))


def _number(i: int) -> str:
    return f"7739{i:08d}"


def _seed() -> None:
    from chalicelib.core import aws
    from chalicelib.core.settings import settings
    from chalicelib.tracking import parcel_store
    from chalicelib.tracking.model import Journey
    from chalicelib.tracking.parcels import Parcel
    from chalicelib.tracking.watch import Watch

    requests: list[dict[str, Any]] = []
    for i in range(PARCELS):
        at = MONTH_START + timedelta(seconds=i * 150)  # ~26 days for 15,000
        region = CITIES[i % 3][2]
        parcel = Parcel(
            carrier_code="STO", tracking_number=_number(i), provider="kuaidi100",
            order_id=f"ord_bench{i:08d}", order_name=f"#{i}", marketplace="shopify",
            partner_id="factory-1", job_id=f"job_bench{i:08d}", shipment_id="s1",
            region=region, started_at=at, watch=Watch(provider="kuaidi100"),
            shipment=Journey(carrier_code="STO", tracking_number=_number(i),
                             handed_over_at=at))
        item = parcel_store.put(parcel, None).item["Put"]["Item"]
        requests.append({"PutRequest": {"Item": item}})
    client = aws.client("dynamodb")
    for start in range(0, len(requests), 25):
        pending: dict[str, Any] = {settings().shipments_table: requests[start:start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def _bill() -> bytes:
    rows = ["申通快递 客户月结对账单",
            "序号,运单号,寄件日期,目的省份,目的城市,计费重量(kg),运费(元),附加费(元),合计(元)"]
    left_off = {7, 70, 700}  # planted: missing from the bill
    for i in range(PARCELS):
        if i in left_off:
            continue
        province, city, _, fee = CITIES[i % 3]
        if i in (11, 111):
            fee = "19.00"  # planted: overcharges
        day = (MONTH_START + timedelta(seconds=i * 150 + 8 * 3600)).strftime("%Y-%m-%d %H:%M")
        rows.append(f"{i + 1},{_number(i)},{day},{province},{city},1.00,{fee},0.00,{fee}")
    rows.append(f"{PARCELS + 1},{_number(5)},2026-11-01 10:00,广东省,深圳市,1.00,8.00,0,8.00")
    rows.append(f"{PARCELS + 2},773800000001,2026-11-02 10:00,浙江省,杭州市,1.00,4.00,0,4.00")
    rows.append("合计,,,,,,,,")
    return ("\n".join(rows) + "\n").encode()


def _calls() -> Counter[str]:
    from chalicelib.core import aws

    counted: Counter[str] = Counter()
    aws.client("dynamodb").meta.events.register(
        "provide-client-params.dynamodb", lambda model, **_: counted.update([model.name]))
    return counted


def _bare_query() -> tuple[float, int, int]:
    import boto3

    from chalicelib.core.settings import settings
    from chalicelib.tracking.parcel_store import MONTH_INDEX, bill_pk

    began = time.perf_counter()
    pages = boto3.client("dynamodb").get_paginator("query").paginate(
        TableName=settings().shipments_table, IndexName=MONTH_INDEX,
        KeyConditionExpression="bill_pk = :m",
        ExpressionAttributeValues={":m": {"S": bill_pk("STO", "2026-11")}})
    items = count = 0
    for page in pages:
        count += 1
        items += len(page.get("Items", []))
    return time.perf_counter() - began, items, count


def main() -> int:
    with local_stack():
        from chalicelib.flows import bills

        began = time.perf_counter()
        _seed()
        data = _bill()
        print(f"seeded {PARCELS} parcels in {time.perf_counter() - began:.0f} s; "
              f"bill {len(data) // 1024} KiB")
        calls = _calls()
        now = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
        timings: dict[str, float] = {}
        counts: dict[str, dict[str, int]] = {}
        for run in ("first import", "re-import"):
            calls.clear()
            began = time.perf_counter()
            with app_output_discarded():
                done = bills.import_bill("STO", "sto_2026-11.csv", data, "bench", now)
            timings[run] = time.perf_counter() - began
            counts[run] = dict(sorted(calls.items()))
            print(f"{run}: {timings[run]:.2f} s, new={done.new}, fees kept {done.fees_kept}, "
                  f"findings {done.bill.head.counts}; DynamoDB calls {counts[run]}")
        assert done.bill.head.counts == {"overcharge": 2, "not_ours": 1, "duplicate": 1,
                                         "missing": 3}, done.bill.head.counts
        bare, items, pages = _bare_query()
        print(f"bare paged Query of the month's index: {bare:.2f} s, {items} items, "
              f"{pages} pages")
        ratio = timings["first import"] / bare
        print(f"re-import: {timings['re-import'] / bare:.1f}x the bare Query")
        print(f"BENCH {NAME}: first import of a {PARCELS}-line bill {timings['first import']:.1f}"
              f" s = {ratio:.1f}x a bare paged Query over the same items (budget "
              f"{BUDGET:.0f}x) {verdict(ratio <= BUDGET)}")
        return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
