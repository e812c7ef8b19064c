"""Concurrent pollers and workers: nothing handed out twice, nothing lost, one job per order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from chalicelib import marketplaces
from chalicelib.core.clock import utcnow
from chalicelib.core.dynamodb import transact
from chalicelib.flows import order_worker, warehouse
from chalicelib.marketplaces import shopify
from chalicelib.orders import inbox_store as inbox
from chalicelib.orders import order_store as orders_store
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse import jobs
from tests.support import SHOP, SHOPIFY_SECRET, dumps, shopify_headers, shopify_order


def offer_jobs(partner: str, count: int) -> set[str]:
    now = utcnow() - timedelta(seconds=5)
    body = dumps(shopify_order())
    order = shopify.normalise(body, {"x-shopify-shop-domain": "s"}, "shopify")
    offered = []
    for _ in range(count):
        template = jobs.new_job(order, partner, now)
        offered.append(template.model_copy(update={"job_id": f"job_{uuid.uuid4().hex[:20]}"}))
    for start in range(0, count, 100):
        transact([jobs_store.put(job, None) for job in offered[start:start + 100]])
    return {job.job_id for job in offered}


@pytest.fixture
def many_jobs(stack: dict[str, str]) -> Iterator[tuple[str, set[str]]]:
    """2,000 offered jobs of a partner of their own, removed afterwards: other tests share the
    table, and the deadline sweep would otherwise meet all of them."""
    import boto3

    partner = f"factory-{uuid.uuid4().hex[:6]}"
    offered = offer_jobs(partner, 2000)
    yield partner, offered
    ddb = boto3.client("dynamodb")
    keys = [{"pk": {"S": partner}, "sk": {"S": job_id}} for job_id in offered]
    for start in range(0, len(keys), 25):
        ddb.batch_write_item(RequestItems={stack["JOBS_TABLE"]: [
            {"DeleteRequest": {"Key": key}} for key in keys[start:start + 25]]})


def test_eight_pollers_claim_2000_jobs_each_handed_out_once(
        many_jobs: tuple[str, set[str]]) -> None:
    partner, offered = many_jobs

    def poller(_: int) -> list[str]:
        got: list[str] = []
        empty = 0
        while empty < 2:  # the index may lag: look twice before giving up
            claimed = warehouse.claim(partner, warehouse.ClaimRequest(max_jobs=100), utcnow())
            got.extend(job.job_id for job in claimed.jobs)
            empty = 0 if claimed.jobs else empty + 1
        return got

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(poller, range(8)))
    handed_out = [job_id for result in results for job_id in result]
    assert len(handed_out) == len(set(handed_out)), "a job was handed out twice under one lease"
    assert set(handed_out) == offered  # none lost
    # Every job is leased exactly once, as the table says too.
    found = jobs_store.get_many(partner, sorted(offered)[:100])
    assert {job.claim_count for job in found.values()} == {1}


def test_concurrent_versions_of_one_order_end_at_the_newest(stack: dict[str, str]) -> None:
    from tests.integration.flow import inbox_item

    base = shopify_order(id=uuid.uuid4().int % 10**13, financial_status="pending")
    versions = []
    for minute, status in ((16, "pending"), (20, "paid"), (25, "paid"), (30, "paid")):
        versions.append({**base, "financial_status": status, "note": f"v{minute}",
                         "updated_at": f"2026-11-23T10:{minute}:00+08:00"})
    random.shuffle(versions)
    inbound = marketplaces.inbound_for("shopify")
    items = []
    for payload in versions:
        body = dumps(payload)
        headers = shopify_headers(body)
        accepted = inbound.accept({k.lower(): v for k, v in headers.items()}, body,
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


@pytest.fixture
def some_jobs(stack: dict[str, str]) -> Iterator[tuple[str, set[str]]]:
    """80 offered jobs of a partner of their own, removed afterwards (as `many_jobs`)."""
    import boto3

    partner = f"factory-{uuid.uuid4().hex[:6]}"
    offered = offer_jobs(partner, 80)
    yield partner, offered
    ddb = boto3.client("dynamodb")
    keys = [{"pk": {"S": partner}, "sk": {"S": job_id}} for job_id in offered]
    for start in range(0, len(keys), 25):
        ddb.batch_write_item(RequestItems={stack["JOBS_TABLE"]: [
            {"DeleteRequest": {"Key": key}} for key in keys[start:start + 25]]})


def test_eight_claimers_are_never_sent_away_empty_while_offers_wait(
        some_jobs: tuple[str, set[str]]) -> None:
    """All eight start at once on the same oldest offers: a claim that finds them taken walks on
    to the next, so no answer is empty while an offer waits and every claimer gets work."""
    import threading
    import time

    partner, offered = some_jobs
    start = threading.Barrier(8)
    empty_while_waiting: list[int] = []

    def claimer(_: int) -> list[str]:
        got: list[str] = []
        start.wait()
        while True:
            claimed = warehouse.claim(partner, warehouse.ClaimRequest(max_jobs=5), utcnow())
            if claimed.jobs:
                got.extend(job.job_id for job in claimed.jobs)
                time.sleep(0.01 * len(claimed.jobs))  # the factory handles what it got
            elif jobs_store.claimable(partner, utcnow(), 1):
                empty_while_waiting.append(1)  # sent away while an offer was still there
            else:
                return got

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(claimer, range(8)))
    handed_out = [job_id for result in results for job_id in result]
    assert len(handed_out) == len(set(handed_out)), "a job was handed out twice"
    assert set(handed_out) == offered
    assert not empty_while_waiting, f"{len(empty_while_waiting)} empty answers while jobs waited"
    assert all(results), f"claimers without work: {[len(r) for r in results]}"


def test_a_step_on_a_remembered_copy_that_went_stale_is_judged_again_on_a_fresh_read(
        stack: dict[str, str]) -> None:
    """The claim leaves its jobs in this instance's memory, so the accept after it needs no
    read; a change made elsewhere meanwhile (here the lease given back by another instance)
    fails the version guard and the accept is judged on the job as it is."""
    from chalicelib.core.errors import Conflict

    partner = f"factory-{uuid.uuid4().hex[:6]}"
    (job_id,) = offer_jobs(partner, 1)
    claimed = warehouse.claim(partner, warehouse.ClaimRequest(max_jobs=1), utcnow())
    assert [job.job_id for job in claimed.jobs] == [job_id] and claimed.lease_id
    now = utcnow()
    current = jobs_store.get(partner, job_id)
    assert current is not None
    given_back = jobs.release(current, claimed.lease_id, now)  # behind this instance's back
    transact(warehouse.actions_for(current, given_back, "another instance", now))

    with pytest.raises(Conflict):
        warehouse.accept(partner, job_id, warehouse.LeaseRequest(lease_id=claimed.lease_id),
                         utcnow())
    stored = jobs_store.get(partner, job_id)
    assert stored is not None and stored.lease_id is None
    assert stored.handshake is jobs.Handshake.OFFERED and stored.version == given_back.job.version


def test_a_long_poll_wakes_within_a_quarter_second_of_a_new_offer(
        stack: dict[str, str]) -> None:
    partner = f"factory-{uuid.uuid4().hex[:6]}"
    pauses: list[float] = []
    offered: set[str] = set()

    def pause(seconds: float) -> None:  # the long poll's wait between looks
        pauses.append(seconds)
        if len(pauses) == 3:
            offered.update(offer_jobs(partner, 1))  # a new offer while it waits

    claimed = warehouse.claim(partner, warehouse.ClaimRequest(max_jobs=5, wait_seconds=20),
                              sleep=pause)
    assert {job.job_id for job in claimed.jobs} == offered
    assert len(pauses) == 3 and max(pauses) <= 0.25


def test_the_steps_after_a_claim_start_from_what_this_instance_wrote(
        stack: dict[str, str]) -> None:
    """accept, print, pick after the claim: each one transaction and no read (job_calls)."""
    from chalicelib.core import aws

    partner = f"factory-{uuid.uuid4().hex[:6]}"
    (job_id,) = offer_jobs(partner, 1)
    claimed = warehouse.claim(partner, warehouse.ClaimRequest(max_jobs=1), utcnow())
    assert claimed.lease_id
    calls: list[str] = []
    ddb = aws.client("dynamodb")
    ddb.meta.events.register("before-call.dynamodb",
                             lambda model, **_: calls.append(model.name))
    lease = warehouse.LeaseRequest(lease_id=claimed.lease_id)
    warehouse.accept(partner, job_id, lease, utcnow())
    warehouse.print_job(partner, job_id, warehouse.PrintRequest(), utcnow())
    job = warehouse.pick(partner, job_id, utcnow())
    assert calls == ["TransactWriteItems"] * 3
    assert job.work is jobs.Work.PICKED and jobs_store.get(partner, job_id) == job
