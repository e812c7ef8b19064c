"""Property: whatever WooCommerce's notifications do (duplicated, reordered, dropped, late), one
reconciliation pass leaves exactly the marketplace's final order state, one order and at most
one job.

Each example is one WooCommerce order's history (1..6 versions with strictly increasing
`date_modified_gmt`, statuses along WooCommerce's own transitions, address and line edits
along the way) and a plan: per version 0 (dropped), 1, 2 or 3 deliveries (a new
X-WC-Webhook-Delivery-ID each, same body), all deliveries in a shuffled order, posted through
the real webhook route in groups; after each group the order worker's stream gets a batch of
the stored, not yet applied deliveries (a chosen subset, in a chosen order, the batch sometimes
redelivered as Lambda retries do); one reconciliation pass runs at a chosen point (possibly
before late notifications arrive) with the platform answering the final version; whatever is
left is applied at the end. The first test draws any history; the second only histories
that get paid and then are edited, completed, cancelled or refunded (where jobs are made,
amended and voided), which the first reaches less often.

Expected (an oracle over the plan, stated independently of the worker): the stored current
view equals the adapter's normalisation of the final payload; the record as first received is
the first version that got applied; one CURRENT item in the orders table for this shop's order;
a job iff some applied version was paid, never more than one in the jobs table, cancelled iff
the order ended (cancelled/refunded) after the job was made (the job is never printed here, so
the domain says "void the job directly"), otherwise carrying the final address and lines; every
stored delivery applied; reconciliation queues exactly when we lacked the final version, and a
second pass queues nothing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import responses
from chalice.test import Client
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib.access import accounts_store as accounts
from chalicelib.core.dynamodb import from_attrs, to_attrs
from chalicelib.core.settings import settings as app_settings
from chalicelib.flows import reconciliation
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces import woocommerce
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import Order, OrderStatus, order_id_for
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse import jobs
from tests.integration.flow import inbox_item, inbox_key, stream_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce"
SOURCE = "woo-interleaving"
SECRET = "woo-" + uuid.uuid4().hex
CREATED = datetime(2026, 11, 23, 2, 5, 12, tzinfo=UTC)

# WooCommerce's status changes as a store sees them (a repeated status: an edit, or a save
# that changed nothing we read). cancelled and refunded are final here.
TRANSITIONS: dict[str, tuple[str, ...]] = {  # the likeliest first (hypothesis starts there)
    "pending": ("processing", "pending", "on-hold", "failed", "cancelled"),
    "failed": ("processing", "pending", "cancelled"),
    "on-hold": ("processing", "on-hold", "cancelled"),
    "processing": ("cancelled", "processing", "on-hold", "completed", "refunded"),
    "completed": ("refunded", "completed"),
    "cancelled": (),
    "refunded": (),
}
PAID_STATUSES = frozenset({"processing", "completed"})
EDITABLE = frozenset({"pending", "on-hold", "failed"})  # WooCommerce lets line items change
ADDRESSES: tuple[dict[str, str], ...] = (
    {"first_name": "芳", "last_name": "王", "company": "杭州茶研所",
     "address_1": "西湖区文三路 90 号", "address_2": "3 号楼 502 室", "city": "杭州",
     "state": "CN12", "postcode": "310012", "country": "CN", "phone": ""},
    {"first_name": "伟", "last_name": "林", "company": "", "address_1": "淮海中路 999 号 12 楼",
     "address_2": "", "city": "上海", "state": "CN10", "postcode": "200031", "country": "CN",
     "phone": "13800138000"},
    {"first_name": "静", "last_name": "张", "company": "", "address_1": "朝阳区建国路 88 号",
     "address_2": "SOHO 现代城 2 号楼", "city": "北京", "state": "CN2", "postcode": "100022",
     "country": "CN", "phone": "13900139000"},
)


@dataclass(frozen=True)
class Version:
    status: str
    seconds_after: int  # since the previous version (the first: since the order was created)
    address: int  # index into ADDRESSES
    quantity: int  # of the first line item


@dataclass(frozen=True)
class Step:
    arrivals: tuple[int, ...]  # version indices posted, in this order (repeats: duplicates)
    batch: tuple[int, ...]  # then the stream applies these versions' deliveries, in this order
    redelivered: bool  # and hands the same batch to the worker again


@dataclass(frozen=True)
class Plan:
    history: tuple[Version, ...]
    steps: tuple[Step, ...]
    reconcile_after: int  # reconciliation runs after this many steps


@st.composite
def histories(draw: st.DrawFn) -> tuple[Version, ...]:
    """1..6 versions along WooCommerce's transitions, from an order placed unpaid or paid."""
    path = [draw(st.sampled_from(("pending", "processing", "on-hold")))]
    for _ in range(draw(st.integers(0, 5))):
        if not TRANSITIONS[path[-1]]:
            break
        path.append(draw(st.sampled_from(TRANSITIONS[path[-1]])))
    return _versions(draw, path)


@st.composite
def paid_histories(draw: st.DrawFn) -> tuple[Version, ...]:
    """Paid (maybe after waiting for payment), edited or put on hold, then maybe completed,
    cancelled or refunded: the histories where a job is made, then amended or voided."""
    path = [*draw(st.lists(st.sampled_from(("pending", "on-hold")), max_size=1)), "processing",
            *draw(st.lists(st.sampled_from(("processing", "on-hold")), min_size=1, max_size=3))]
    ending = draw(st.sampled_from(("cancelled", "refunded", "", "completed")))
    if ending == "completed":
        path += ["processing", "completed", *draw(st.lists(st.just("refunded"), max_size=1))]
    elif ending == "refunded":
        path += ["processing", "refunded"] if path[-1] == "on-hold" else ["refunded"]
    elif ending:
        path.append(ending)
    return _versions(draw, path)


def _versions(draw: st.DrawFn, path: list[str]) -> tuple[Version, ...]:
    quantity = 2
    versions = []
    for n, status in enumerate(path):
        assert n == 0 or status in TRANSITIONS[path[n - 1]], path
        if status in EDITABLE:
            quantity = draw(st.integers(1, 3))
        versions.append(Version(status=status, seconds_after=draw(st.integers(1, 7200)),
                                address=draw(st.integers(0, len(ADDRESSES) - 1)),
                                quantity=quantity))
    return tuple(versions)


@st.composite
def plans(draw: st.DrawFn, history_strategy: st.SearchStrategy[tuple[Version, ...]] | None = None
          ) -> Plan:
    history = draw(histories() if history_strategy is None else history_strategy)
    # Deliveries per version; 0: lost (WooCommerce never retries). One is where shrinking goes.
    copies = [draw(st.sampled_from((1, 0, 2, 3))) for _ in history]
    arrivals = draw(st.permutations([v for v, n in enumerate(copies) for _ in range(n)]))
    groups: list[list[int]] = []
    for arrival in arrivals:
        if not groups or draw(st.booleans()):
            groups.append([])
        groups[-1].append(arrival)
    stored: set[int] = set()
    waiting: list[int] = []  # stored by the webhook, not yet applied by the worker
    steps = []
    for n, group in enumerate(groups):
        for version in group:
            if version not in stored:  # the inbox dedupes on order id + date_modified_gmt
                stored.add(version)
                waiting.append(version)
        order = draw(st.permutations(waiting))
        take = len(order) if n == len(groups) - 1 else draw(st.integers(0, len(order)))
        batch = tuple(order[:take])
        waiting = [v for v in waiting if v not in batch]
        steps.append(Step(arrivals=tuple(group), batch=batch,
                          redelivered=bool(batch) and draw(st.booleans())))
    # Reconciliation after the last step shrinks best; any earlier point makes notifications late.
    return Plan(history=history, steps=tuple(steps),
                reconcile_after=len(steps) - draw(st.integers(0, len(steps))))


@dataclass(frozen=True)
class Expected:
    applied: tuple[int, ...]  # the versions the worker applies, in order
    reconcile_queues: bool
    job: bool
    job_cancelled: bool
    job_amended: bool  # the job was made from an older version than the final one and differs


def expected_of(plan: Plan) -> Expected:
    """What must happen, from the plan alone: a version is applied only when it is newer than
    the one we hold; reconciliation brings the final version if we lack it; a paid version
    makes the job, an ended one after it voids it (never printed here)."""
    final = len(plan.history) - 1
    applied: list[int] = []
    queued = False
    for n in range(len(plan.steps) + 1):
        if n == plan.reconcile_after:
            queued = not applied or applied[-1] < final
            if queued:
                applied.append(final)
        if n < len(plan.steps):
            for v in plan.steps[n].batch:
                if not applied or v > applied[-1]:
                    applied.append(v)
    made_from: int | None = None
    cancelled = False
    for v in applied:
        status = woo_status(plan.history, v)
        if status is OrderStatus.PAID and made_from is None:
            made_from = v
        elif status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED) and made_from is not None:
            cancelled = True
    first, last = plan.history[made_from or 0], plan.history[final]
    return Expected(applied=tuple(applied), reconcile_queues=queued, job=made_from is not None,
                    job_cancelled=cancelled,
                    job_amended=made_from is not None and not cancelled
                    and (first.address, first.quantity) != (last.address, last.quantity))


def woo_status(history: tuple[Version, ...], index: int) -> OrderStatus:
    """Our status for a version: paid once paid (WooCommerce keeps date_paid), unless ended."""
    status = history[index].status
    paid = any(v.status in PAID_STATUSES for v in history[:index + 1])
    mapped = woocommerce.status_of(status, CREATED if paid else None)
    assert mapped is not None
    return mapped


def payload(history: tuple[Version, ...], index: int, shop: str, external: int,
            base: dict[str, Any]) -> dict[str, Any]:
    """The full order WooCommerce sends (and answers) for this version."""
    order = copy.deepcopy(base)
    version = history[index]
    modified = CREATED + timedelta(seconds=sum(v.seconds_after for v in history[:index + 1]))
    paid_at = next((CREATED + timedelta(seconds=sum(v.seconds_after for v in history[:n + 1]))
                    for n, v in enumerate(history[:index + 1]) if v.status in PAID_STATUSES),
                   None)
    completed_at = modified if version.status == "completed" else None
    line = order["line_items"][0]
    unit = 149
    line.update(quantity=version.quantity, subtotal=f"{unit * version.quantity}.00",
                total=f"{unit * version.quantity - 20}.00")
    subtotal = unit * version.quantity + 100
    order.update(
        id=external, number=str(external), status=version.status,
        shipping=dict(ADDRESSES[version.address]),
        date_created_gmt=gmt(CREATED), date_created=local(CREATED),
        date_modified_gmt=gmt(modified), date_modified=local(modified),
        date_paid_gmt=gmt(paid_at) if paid_at else None,
        date_paid=local(paid_at) if paid_at else None,
        date_completed_gmt=gmt(completed_at) if completed_at else None,
        date_completed=local(completed_at) if completed_at else None,
        total=f"{subtotal - 20 + 12}.00",
        needs_payment=paid_at is None, needs_processing=version.status == "processing",
        _links={"self": [{"href": f"https://{shop}/wp-json/wc/v3/orders/{external}"}],
                "collection": [{"href": f"https://{shop}/wp-json/wc/v3/orders"}]},
    )
    return order


def gmt(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def local(at: datetime) -> str:
    return (at + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S")


def headers_for(body: bytes, shop: str, topic: str) -> dict[str, str]:
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest())
    return {"Content-Type": "application/json", "X-WC-Webhook-Signature": signature.decode(),
            "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": topic.split(".")[1], "X-WC-Webhook-ID": "7",
            "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,  # new for every delivery
            "X-WC-Webhook-Source": f"https://{shop}/"}


def scan(table: str, filter_expression: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb")
    found: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(
            TableName=table, FilterExpression=filter_expression,
            ExpressionAttributeValues=to_attrs(values), ConsistentRead=True):
        found.extend(from_attrs(item) for item in page.get("Items", []))
    return found


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    accounts.register_sources({SOURCE: {"scheme": "woocommerce", "secrets": [SECRET]}})
    with Client(app, stage_name="local") as test_client:
        yield test_client


class Run:
    """One example: its own shop, its platform answers, its deliveries."""

    def __init__(self, client: Client, stack: dict[str, str], plan: Plan,
                 platform: responses.RequestsMock) -> None:
        self.client, self.stack, self.plan, self.platform = client, stack, plan, platform
        self.shop = f"shop-{uuid.uuid4().hex[:10]}.example.cn"
        self.external = 10**6 + uuid.uuid4().int % 10**7
        base = json.loads((FIXTURES / "order_processing.json").read_text())
        self.versions = [payload(plan.history, n, self.shop, self.external, base)
                         for n in range(len(plan.history))]
        self.bodies = [json.dumps(v, ensure_ascii=False).encode() for v in self.versions]
        self.order_id = order_id_for("woocommerce", self.shop, str(self.external))
        self.deliveries: list[tuple[str, str]] = []  # (source, delivery id) stored
        shop_credentials.put("woocommerce", self.shop, {
            "store_url": f"https://{self.shop}", "consumer_key": "ck_1",
            "consumer_secret": "cs_1"})
        final = self.versions[-1]
        store = f"https://{self.shop}/wp-json/wc/v3/orders"
        platform.get(store, json=[final])  # the listing: the order as it is now
        platform.get(f"{store}/{self.external}", json=final)  # the re-fetch

    def delivery_id(self, version: int) -> str:
        return f"{self.shop}:{self.external}:{self.versions[version]['date_modified_gmt']}"

    def post(self, version: int) -> None:
        topic = "order.created" if version == 0 else "order.updated"
        body = self.bodies[version]
        answer = self.client.http.post(f"/webhooks/{SOURCE}", body=body,
                                       headers=headers_for(body, self.shop, topic))
        assert (answer.status_code, answer.body) == (200, b"")
        delivery = (SOURCE, self.delivery_id(version))
        assert inbox_item(self.stack, *delivery) is not None
        if delivery not in self.deliveries:
            self.deliveries.append(delivery)

    def apply(self, source: str, delivery_ids: list[str], redelivered: bool = False) -> None:
        """One stream batch through the real order worker (twice: a retried batch, with the
        images as first read, so the worker sees them still pending)."""
        event = stream_event([inbox_key(source, d) for d in delivery_ids],
                             self.stack["INBOX_TABLE"], self.stack["INBOX_STREAM_ARN"])
        for _ in range(2 if redelivered else 1):
            answer = self.client.lambda_.invoke("order_worker", event).payload
            assert answer == {"batchItemFailures": []}

    def reconcile(self, expect_queued: bool) -> None:
        now = datetime.now(UTC)
        calls = len(self.platform.calls)
        listed, queued = reconciliation.reconcile("woocommerce", self.shop, now, now, now)
        assert (listed, queued) == (1, int(expect_queued))
        assert len(self.platform.calls) == calls + 1  # only the listing; the fetch is later
        if queued:
            updated = datetime.fromisoformat(self.versions[-1]["date_modified_gmt"])
            delivery = ("reconcile-woocommerce",
                        f"{self.shop}:{self.external}:{updated.replace(tzinfo=UTC).isoformat()}")
            assert inbox_item(self.stack, *delivery) is not None
            self.deliveries.append(delivery)
            self.apply(delivery[0], [delivery[1]])

    def run(self, expected: Expected) -> None:
        for n, step in enumerate(self.plan.steps):
            if n == self.plan.reconcile_after:
                self.reconcile(expected.reconcile_queues)
            for version in step.arrivals:
                self.post(version)
            if step.batch:
                self.apply(SOURCE, [self.delivery_id(v) for v in step.batch], step.redelivered)
        if self.plan.reconcile_after == len(self.plan.steps):
            self.reconcile(expected.reconcile_queues)

    def normalised(self, version: int) -> Order:
        return woocommerce.normalise(self.bodies[version],
                                     {"x-wc-webhook-source": f"https://{self.shop}/"}, SOURCE)


PLAN_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])

PAID_THEN_CANCELLED = (Version("pending", 60, 0, 2), Version("processing", 90, 0, 2),
                       Version("processing", 600, 1, 2), Version("cancelled", 900, 1, 2))


@PLAN_SETTINGS
@given(plan=plans())
# Every notification lost: reconciliation alone makes the order.
@example(plan=Plan(history=PAID_THEN_CANCELLED[:3], steps=(), reconcile_after=0))
# Reconciliation first; then every notification arrives late, newest first, and is stale.
@example(plan=Plan(history=PAID_THEN_CANCELLED, steps=(
    Step(arrivals=(3, 2, 1, 0, 1), batch=(3, 2, 1, 0), redelivered=True),),
    reconcile_after=0))
# The paid version and the cancellation are applied (a job, then cancelled); reconciliation
# runs while the older versions wait; they arrive and are applied after it: stale.
@example(plan=Plan(history=PAID_THEN_CANCELLED, steps=(
    Step(arrivals=(1, 3, 3), batch=(1, 3), redelivered=False),
    Step(arrivals=(0, 2), batch=(2, 0), redelivered=True)), reconcile_after=1))
# Paid, then put on hold and edited (new lines), then back to processing at a new address; the
# edits arrive only with the last version: the job made from the paid one follows them.
@example(plan=Plan(history=(Version("pending", 60, 0, 2), Version("processing", 90, 0, 2),
                            Version("on-hold", 600, 1, 3), Version("processing", 900, 2, 3)),
                   steps=(Step(arrivals=(1,), batch=(1,), redelivered=False),
                          Step(arrivals=(0, 3, 0), batch=(3, 0), redelivered=True)),
                   reconcile_after=2))
# The cancellation is seen before the payment ever is: no job is made at all.
@example(plan=Plan(history=PAID_THEN_CANCELLED, steps=(
    Step(arrivals=(0, 3, 1, 2), batch=(3, 1, 2, 0), redelivered=False),), reconcile_after=1))
def test_any_interleaving_plus_one_reconciliation_yields_the_final_order(
        client: Client, stack: dict[str, str], plan: Plan) -> None:
    check(client, stack, plan)


@PLAN_SETTINGS
@given(plan=plans(paid_histories()))
def test_a_paid_order_keeps_one_job_amended_or_voided_whatever_the_interleaving(
        client: Client, stack: dict[str, str], plan: Plan) -> None:
    check(client, stack, plan)


def check(client: Client, stack: dict[str, str], plan: Plan) -> None:
    expected = expected_of(plan)
    late = any(step.arrivals for step in plan.steps[plan.reconcile_after:])
    event(f"final {plan.history[-1].status}; job {expected.job}, cancelled "
          f"{expected.job_cancelled}, amended {expected.job_amended}")
    event(f"reconciliation queued {expected.reconcile_queues}; late notifications {late}")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as platform:
        platform.add_passthru("http://127.0.0.1")  # the local AWS endpoint
        run = Run(client, stack, plan, platform)
        run.run(expected)
        final = run.normalised(len(plan.history) - 1)

        # Exactly the marketplace's final state.
        stored = orders_store.get_current(run.order_id)
        assert stored is not None
        assert stored.order == final
        assert (stored.order.status, stored.order.updated_at) == (final.status, final.updated_at)
        assert stored.order.shipping_address == final.shipping_address
        assert stored.order.lines == final.lines

        # One order: one current view for this shop's order in the whole table, and the record
        # as first received is the first version that was applied, kept unchanged.
        current_items = scan(app_settings().orders_table,
                             "sk = :sk AND shop = :shop AND external_id = :ext",
                             {":sk": "CURRENT", ":shop": run.shop, ":ext": str(run.external)})
        assert [item["pk"] for item in current_items] == [f"ORDER#{run.order_id}"]
        record = orders_store.read_all(run.order_id)
        assert record.received is not None
        assert Order.model_validate(record.received["order"]) == \
            run.normalised(expected.applied[0])
        timeline = [e.type for e in record.events]
        assert timeline.count("order.received") == 1
        assert timeline.count("job.created") == int(expected.job)

        # At most one job, in the jobs table itself (any partner), and the right one.
        found = [jobs_store.job_of(item) for item in scan(
            app_settings().jobs_table, "order_id = :o AND begins_with(sk, :j)",
            {":o": run.order_id, ":j": "job_"})]
        assert len(found) == int(expected.job)
        assert (stored.job is not None) == expected.job
        if found:
            (job,) = found
            assert stored.job is not None and stored.job.job_id == job.job_id
            if expected.job_cancelled:
                assert job.work is jobs.Work.CANCELLED
            else:
                assert final.status is OrderStatus.PAID
                assert job.work is jobs.Work.QUEUED
                assert job.ship_to == final.shipping_address
                assert job.lines == jobs.lines_of(final)
        else:
            assert final.status is not OrderStatus.PAID

        # Every stored delivery was applied; exactly one of them made the order.
        items = [inbox_item(stack, source, d) for source, d in run.deliveries]
        assert all(item is not None and "pending" not in item for item in items)
        outcomes = [item["outcome"] for item in items if item is not None]
        assert outcomes.count("created") == 1

        # Reconciliation again: we hold the listed version; nothing queued, nothing fetched.
        run.reconcile(expect_queued=False)
