"""Concurrent pollers and workers: nothing handed out twice, nothing lost, one job per order."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from chalicelib import jobs, marketplaces, order_worker, warehouse
from chalicelib.marketplaces import shopify
from chalicelib.storage import inbox, transact
from chalicelib.storage import jobs as jobs_store
from chalicelib.storage import orders as orders_store
from chalicelib.timeutil import utcnow
from tests.support import SHOP, SHOPIFY_SECRET, dumps, shopify_headers, shopify_order


def offer_jobs(partner: str, count: int) -> set[str]:
    now = utcnow() - timedelta(seconds=5)
    ids = set()
    for _ in range(count):
        body = dumps(shopify_order(id=uuid.uuid4().int % 10**13))
        order = shopify.normalise(body, {"x-shopify-shop-domain": "s"}, "shopify")
        job = jobs.new_job(order, partner, now)
        transact([jobs_store.put_new(job)])
        ids.add(job.job_id)
    return ids


def test_parallel_claims_hand_each_job_out_once(stack: dict[str, str]) -> None:
    partner = f"factory-{uuid.uuid4().hex[:6]}"
    offered = offer_jobs(partner, 60)

    def poller(_: int) -> list[str]:
        got: list[str] = []
        while True:
            claimed = warehouse.claim(partner, warehouse.ClaimRequest(max_jobs=7), utcnow())
            if not claimed.jobs:
                # The index may lag; one more look before giving up.
                claimed = warehouse.claim(partner, warehouse.ClaimRequest(max_jobs=7), utcnow())
                if not claimed.jobs:
                    return got
            got.extend(job.job_id for job in claimed.jobs)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(poller, range(4)))
    handed_out = [job_id for result in results for job_id in result]
    assert len(handed_out) == len(set(handed_out)), "a job was handed out twice under one lease"
    assert set(handed_out) == offered


def test_concurrent_versions_of_one_order_end_at_the_newest(stack: dict[str, str]) -> None:
    from tests.integration.flow import inbox_item

    base = shopify_order(id=uuid.uuid4().int % 10**13, financial_status="pending")
    versions = []
    for minute, status in ((16, "pending"), (20, "paid"), (25, "paid"), (30, "paid")):
        versions.append({**base, "financial_status": status, "note": f"v{minute}",
                         "updated_at": f"2026-11-23T10:{minute}:00+08:00"})
    random.shuffle(versions)
    adapter = marketplaces.adapter_for("shopify")
    items = []
    for payload in versions:
        body = dumps(payload)
        headers = shopify_headers(body)
        accepted = adapter.accept({k.lower(): v for k, v in headers.items()}, body,
                                  (SHOPIFY_SECRET,), utcnow())
        inbox.put_delivery("shopify", "shopify", accepted, body, utcnow())
        items.append(inbox_item(stack, "shopify", accepted.delivery_id))

    with ThreadPoolExecutor(max_workers=4) as pool:
        # Every delivery twice, as an at-least-once stream may deliver them, all at once.
        outcomes = list(pool.map(lambda item: order_worker.apply_delivery(item, utcnow()),
                                 items + items))
    assert outcomes.count("created") == 1
    order_id = shopify.normalise(dumps(base), {"x-shopify-shop-domain": SHOP}, "shopify").order_id
    record = orders_store.read_all(order_id)
    assert record.current is not None
    assert record.current.order.buyer_note == "v30"
    assert record.current.job is not None
    assert [e.type for e in record.events].count("job.created") == 1
    assert jobs_store.get(record.current.job.partner_id, record.current.job.job_id) is not None
    for item in items:
        assert "pending" not in (inbox_item(stack, "shopify", item["delivery_id"]) or {})
