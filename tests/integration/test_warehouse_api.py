"""The first warehouse API: claim with a lease, ship, partner isolation, expiry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import warehouse
from chalicelib.auth import Role
from chalicelib.jobs import Package, ShipReport
from chalicelib.timeutil import utcnow
from tests.integration.flow import process
from tests.support import dumps, shopify_headers, shopify_order


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def partner(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A partner of its own per test, so claims see only this test's jobs."""
    from chalicelib.config import settings

    name = f"factory-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("WAREHOUSE_PARTNER", name)
    settings.cache_clear()
    return name


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def queue_orders(client: Client, stack: dict[str, str], count: int) -> list[str]:
    deliveries = []
    for _ in range(count):
        body = dumps(shopify_order(id=uuid.uuid4().int % 10**13))
        headers = shopify_headers(body)
        assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code == 200
        deliveries.append(headers["X-Shopify-Webhook-Id"])
    process(client, stack, "shopify", *deliveries)
    return deliveries


def claim(client: Client, key: str, **body: Any) -> Any:
    return client.http.post("/warehouse/v1/jobs/claim", headers=auth(key),
                            body=json.dumps(body).encode())


def test_claim_then_ship_and_the_timeline_shows_it(client: Client, stack: dict[str, str],
                                                   partner: str, make_key: Any) -> None:
    queue_orders(client, stack, 3)
    key = make_key("partner", partner)
    response = claim(client, key, max_jobs=2)
    assert response.status_code == 200
    claimed = json.loads(response.body)
    assert len(claimed["jobs"]) == 2 and claimed["lease_id"].startswith("lease_")
    assert all(job["claim_count"] == 1 for job in claimed["jobs"])
    # The third job is still there; the two leased ones are not handed out again.
    again = json.loads(claim(client, key, max_jobs=10).body)
    assert len(again["jobs"]) == 1
    assert again["jobs"][0]["job_id"] not in {j["job_id"] for j in claimed["jobs"]}

    job = claimed["jobs"][0]
    report = {"lease_id": claimed["lease_id"],
              "packages": [{"carrier_code": "STO", "tracking_number": "773012345678901"}]}
    shipped = client.http.post(f"/warehouse/v1/jobs/{job['job_id']}/ship", headers=auth(key),
                               body=json.dumps(report).encode())
    assert shipped.status_code == 200, shipped.body
    assert json.loads(shipped.body)["work"] == "shipped"
    # Shipping the same thing again is the same shipment, not an error.
    repeat = client.http.post(f"/warehouse/v1/jobs/{job['job_id']}/ship", headers=auth(key),
                              body=json.dumps(report).encode())
    assert repeat.status_code == 200
    different = {**report, "packages": [{"carrier_code": "SF", "tracking_number": "SF10001"}]}
    conflict = client.http.post(f"/warehouse/v1/jobs/{job['job_id']}/ship", headers=auth(key),
                                body=json.dumps(different).encode())
    assert (conflict.status_code, json.loads(conflict.body)["error"]) == (409, "already_shipped")

    cs = make_key("staff", "bob", Role.READ_ONLY)
    timeline = json.loads(client.http.get(f"/cs/v1/orders/{job['order_id']}",
                                          headers=auth(cs)).body)["timeline"]
    shipped_events = [e for e in timeline if e["type"] == "job.shipped"]
    assert len(shipped_events) == 1
    assert shipped_events[0]["data"]["packages"][0]["tracking_number"] == "773012345678901"
    assert shipped_events[0]["actor"] == f"partner {partner}"


def test_another_partner_sees_none_of_these_jobs(client: Client, stack: dict[str, str],
                                                  partner: str, make_key: Any) -> None:
    queue_orders(client, stack, 1)
    mine = make_key("partner", partner)
    other = make_key("partner", f"other-{uuid.uuid4().hex[:6]}")
    assert json.loads(claim(client, other).body)["jobs"] == []
    job = json.loads(claim(client, mine).body)["jobs"][0]
    response = client.http.get(f"/warehouse/v1/jobs/{job['job_id']}", headers=auth(other))
    assert (response.status_code, json.loads(response.body)["error"]) == (404, "job_not_found")
    report = {"lease_id": "x", "packages": [{"carrier_code": "STO", "tracking_number": "7730"}]}
    response = client.http.post(f"/warehouse/v1/jobs/{job['job_id']}/ship", headers=auth(other),
                                body=json.dumps(report).encode())
    assert response.status_code == 404
    assert client.http.get(f"/warehouse/v1/jobs/{job['job_id']}",
                           headers=auth(mine)).status_code == 200


def test_expired_lease_makes_the_job_claimable_again(stack: dict[str, str], partner: str,
                                                     client: Client) -> None:
    queue_orders(client, stack, 1)
    now = utcnow()
    first = warehouse.claim(partner, warehouse.ClaimRequest(lease_seconds=60), now)
    assert len(first.jobs) == 1
    early = warehouse.claim(partner, warehouse.ClaimRequest(), now + timedelta(seconds=59))
    assert early.jobs == []
    second = warehouse.claim(partner, warehouse.ClaimRequest(), now + timedelta(seconds=61))
    assert [j.job_id for j in second.jobs] == [first.jobs[0].job_id]
    assert second.jobs[0].claim_count == 2
    # The first holder's lease is gone: its ship report is refused, the new holder's is not.
    job_id = first.jobs[0].job_id
    package = (Package(carrier_code="YTO", tracking_number="YT7512345678901"),)
    with pytest.raises(Exception, match="lease"):
        warehouse.ship(partner, job_id, ShipReport(lease_id=first.lease_id, packages=package),
                       utcnow())
    shipped = warehouse.ship(partner, job_id,
                             ShipReport(lease_id=second.lease_id, packages=package), utcnow())
    assert shipped.work == "shipped"


def test_cancellation_after_claim_is_a_request_not_a_silent_cancel(
        client: Client, stack: dict[str, str], partner: str) -> None:
    payload = shopify_order(id=uuid.uuid4().int % 10**13)
    body = dumps(payload)
    headers = shopify_headers(body)
    client.http.post("/webhooks/shopify", headers=headers, body=body)
    process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"])
    claimed = warehouse.claim(partner, warehouse.ClaimRequest(), utcnow())
    cancelled = {**payload, "cancelled_at": "2026-11-23T11:00:00+08:00",
                 "updated_at": "2026-11-23T11:00:00+08:00"}
    body = dumps(cancelled)
    headers = shopify_headers(body, topic="orders/cancelled")
    client.http.post("/webhooks/shopify", headers=headers, body=body)
    process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"])
    job = warehouse.get_job(partner, claimed.jobs[0].job_id)
    assert job.work == "queued" and job.cancellation_requested


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({}, 401, "missing_credentials"),
    ({"Authorization": "Bearer obk_not_a_real_key"}, 401, "invalid_credentials"),
])
def test_unauthenticated_calls_are_refused(client: Client, stack: dict[str, str],
                                           headers: dict[str, str], status: int,
                                           reason: str) -> None:
    for method, path in (("post", "/warehouse/v1/jobs/claim"), ("get", "/cs/v1/orders/ord_1")):
        response = getattr(client.http, method)(path, headers=headers)
        assert (response.status_code, json.loads(response.body)["error"]) == (status, reason)


def test_roles_keep_partners_and_staff_apart(client: Client, stack: dict[str, str],
                                             make_key: Any) -> None:
    staff = make_key("staff", "carol", Role.ADMIN)
    partner_key = make_key("partner", "factory-x")
    assert claim(client, staff).status_code == 403
    response = client.http.get("/cs/v1/orders/ord_1", headers=auth(partner_key))
    assert (response.status_code, json.loads(response.body)["error"]) == (403, "forbidden")


def test_revoked_key_stops_working(client: Client, stack: dict[str, str], make_key: Any) -> None:
    from chalicelib import auth as auth_module
    from chalicelib.auth import hash_key
    from chalicelib.storage import directory

    old = make_key("partner", "factory-r")
    new = make_key("partner", "factory-r")  # rotation: both valid at once
    assert claim(client, old).status_code == 200
    assert directory.revoke("partner", "factory-r", hash_key(old)[:12], utcnow())
    auth_module.forget()  # the per-process cache would otherwise honour it for a minute
    assert claim(client, old).status_code == 401
    assert claim(client, new).status_code == 200


def test_bad_claim_and_ship_bodies_get_reasons(client: Client, stack: dict[str, str],
                                               make_key: Any) -> None:
    key = make_key("partner", "factory-b")
    response = claim(client, key, max_jobs=500)
    assert (response.status_code, json.loads(response.body)["error"]) == (422, "invalid_payload")
    response = client.http.post("/warehouse/v1/jobs/claim", headers=auth(key), body=b"{")
    assert (response.status_code, json.loads(response.body)["error"]) == (400, "malformed_json")
    response = client.http.post("/warehouse/v1/jobs/job_x/ship", headers=auth(key),
                                body=json.dumps({"packages": []}).encode())
    assert response.status_code == 422
