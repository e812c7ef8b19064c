"""The console's figures at the issue's scale: 10,000 orders (jobs over 20 days, 500 a day) and
2,000 open cases. `today()` and `open_counts()` must stay a handful of Queries on indexes, with
no Scan and no read per order or per case, however many there are.

The items are written straight into tables of their own (created from infra/resources.yaml, so
with the same indexes), through the stores' own item builders: the other tests of the session
share the stack's tables, and 2,000 more open cases there would change what they page through."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.core.dynamodb import to_attrs
from chalicelib.cs import case_store, cases
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows import case_desk, today
from chalicelib.marketplaces import shopify
from chalicelib.warehouse import job_store, jobs
from chalicelib.warehouse.dispatch import DEFAULT_DISPATCH_RULES as RULES
from chalicelib.warehouse.dispatch import ship_by
from devstack.provision import _create_table_arguments, load_template
from tests.integration.test_today import dynamodb_calls
from tests.support import dumps, shopify_order

DAYS, PER_DAY, OPEN_CASES = 20, 500, 2_000
FIRST = date(2031, 6, 1)
LAST = FIRST + timedelta(days=DAYS - 1)
TYPES = ("courier.lost", "courier.refused", "job.not_accepted", "job.late_dispatch",
         "order.invalid", "after_sales")


@pytest.fixture
def own_tables(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from chalicelib.core import aws
    from chalicelib.core.settings import settings

    dynamodb = boto3.client("dynamodb", endpoint_url=stack["AWS_ENDPOINT_URL"])
    resources = load_template()["Resources"]
    tag = uuid.uuid4().hex[:6]
    names = {}
    for env, logical in (("JOBS_TABLE", "JobsTable"), ("CASES_TABLE", "CasesTable")):
        name = f"order-backbone-test-scale-{tag}-{logical.lower()}"
        dynamodb.create_table(**_create_table_arguments(name, resources[logical]["Properties"]))
        names[env] = name
        monkeypatch.setenv(env, name)
    settings.cache_clear()
    aws.reset()
    yield dynamodb
    for name in names.values():
        dynamodb.update_table(TableName=name, DeletionProtectionEnabled=False)
        dynamodb.delete_table(TableName=name)


def write_all(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": to_attrs(item)}} for item in items[start:start + 25]]
        while requests:
            answer = dynamodb.batch_write_item(RequestItems={table: requests})
            requests = answer.get("UnprocessedItems", {}).get(table, [])


def the_jobs() -> list[dict[str, Any]]:
    order = shopify.normalise(dumps(shopify_order()), {"x-shopify-shop-domain": "s"}, "shopify")
    template = jobs.new_job(order, "factory-scale", datetime(2031, 5, 31, tzinfo=UTC))
    package = jobs.Package(carrier_code="STO", tracking_number="773000000000")
    items = []
    for n in range(DAYS * PER_DAY):
        day = FIRST + timedelta(days=n % DAYS)
        paid = RULES.at(day, time(0)) + timedelta(seconds=(n // DAYS) * 170)
        deadline = ship_by(paid, RULES)
        update: dict[str, Any] = {"job_id": f"job_scale{n:06d}", "order_id": f"ord_scale{n:06d}",
                                  "paid_at": paid, "ship_by": deadline,
                                  "handshake": jobs.Handshake.ACCEPTED}
        if n % 3 == 0:  # a third shipped, half of those a minute late
            update["work"] = jobs.Work.SHIPPED
            update["shipments"] = (jobs.Shipment(
                shipment_id="s", packages=(package,), final=True,
                shipped_at=deadline + timedelta(minutes=1 if n % 2 else -30)),)
        items.append(job_store.item_of(template.model_copy(update=update)))
    return items


def the_cases(now: datetime) -> list[dict[str, Any]]:
    items = []
    for n in range(OPEN_CASES):
        kind = TYPES[n % len(TYPES)]
        subject = f"parcel:STO:77{n:08d}" if kind.startswith("courier") else f"job_scale{n:06d}"
        case = cases.open_case(Alert(
            kind=kind, severity=list(Severity)[n % 4], subject=subject,
            at=now - timedelta(minutes=7 * n), summary="at scale " + "x" * 300,
            facts={"order_id": f"ord_scale{n:06d}", "carrier_code": "STO",
                   "marketplace": "taobao", "history": "y" * 500}))
        items.append(case_store._item(case, 1, [f"alert{n}"]))
    return items


def test_today_and_the_counts_stay_a_few_queries_at_10000_orders_and_2000_open_cases(
        own_tables: Any) -> None:
    from chalicelib.core.settings import settings

    now = RULES.at(LAST, time(16, 0))
    write_all(own_tables, settings().jobs_table, the_jobs())
    write_all(own_tables, settings().cases_table, the_cases(now))
    with dynamodb_calls() as calls:
        view = today.today(now)
    # Seven Queries, no Scan, no read per order or case. The local endpoint cuts a page at 1 MB
    # of whole items, not of the projected attributes as DynamoDB does, so the 2,000 cases'
    # summary (about 1 KB per item here, 150 bytes projected) takes further pages locally.
    assert set(calls) <= {"Query", "Query+page"}, calls
    assert calls["Query"] - calls["Query+page"] == 7, calls
    assert calls["Query+page"] <= 2, calls
    assert view.dispatch.paid == PER_DAY
    assert sum(f.total for f in view.dispatch.cutoffs) == PER_DAY
    assert sum(f.on_time + f.late for f in view.dispatch.cutoffs) == PER_DAY // 3 + 1
    assert view.open_cases.total == OPEN_CASES
    assert view.parcel_problems.total == sum(
        1 for n in range(OPEN_CASES) if TYPES[n % len(TYPES)].startswith("courier"))
    with dynamodb_calls() as calls:
        counts = case_desk.open_counts(now)
    assert calls["Query"] - calls["Query+page"] == 1 and set(calls) <= {"Query", "Query+page"}
    assert counts.total == OPEN_CASES and sum(counts.by_type.values()) == OPEN_CASES
    with dynamodb_calls() as calls:
        page = case_desk.list_cases({"order": "severity", "limit": "50"}, now)
    assert len(page["cases"]) == 50 and page["next_cursor"]
    assert {c["severity"] for c in page["cases"]} == {"critical"}
    assert calls == Counter({"Query": 1}), calls  # one page of one severity partition
