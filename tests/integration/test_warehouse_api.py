"""The warehouse job protocol over HTTP (chalice.test.Client) against the local endpoint."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.access.keys import Role
from chalicelib.core.clock import utcnow
from chalicelib.flows import warehouse
from tests.integration.flow import alerts_received, process
from tests.support import NEW_ADDRESS, dumps, shopify_headers, shopify_order


class Api:
    """The partner's and CS's calls, with status checks, so tests read as the protocol."""

    def __init__(self, client: Client, key: str, cs_key: str) -> None:
        self.client, self.key, self.cs_key = client, key, cs_key

    def call(self, method: str, path: str, body: Any = None, key: str | None = None,
             expect: int | None = 200) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}",
                   "Content-Type": "application/json"}
        response = getattr(self.client.http, method)(
            path, headers=headers, body=json.dumps(body).encode() if body is not None else b"")
        if expect is not None:
            assert response.status_code == expect, (path, response.status_code, response.body)
        return json.loads(response.body) if response.body else None

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("post", f"/warehouse/v1{path}", body if body is not None else {}, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("get", f"/warehouse/v1{path}", **kw)

    def claim(self, n: int = 10) -> Any:
        return self.post("/jobs/claim", {"max_jobs": n})

    def take(self, job: dict[str, Any], lease: str) -> dict[str, Any]:
        return self.post(f"/jobs/{job['job_id']}/accept", {"lease_id": lease})

    def amend(self, order_id: str, body: dict[str, Any], expect: int = 201) -> Any:
        return self.call("post", f"/cs/v1/orders/{order_id}/amendments", body, key=self.cs_key,
                         expect=expect)

    def current(self, order_id: str) -> dict[str, Any]:
        """The order's current view, as CS sees it."""
        order: dict[str, Any] = self.call("get", f"/cs/v1/orders/{order_id}",
                                          key=self.cs_key)["order"]
        return order

    def timeline(self, order_id: str) -> list[str]:
        view = self.call("get", f"/cs/v1/orders/{order_id}", key=self.cs_key)
        return [e["type"] for e in view["timeline"]]


@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    return Api(client, make_key("partner", partner), make_key("staff", "ann", Role.BACK_OFFICE))


def queue_orders(client: Client, stack: dict[str, str], count: int,
                 **changes: Any) -> list[dict[str, Any]]:
    payloads, deliveries = [], []
    for _ in range(count):
        payload = shopify_order(id=uuid.uuid4().int % 10**13, **changes)
        body = dumps(payload)
        headers = shopify_headers(body)
        assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code == 200
        deliveries.append(headers["X-Shopify-Webhook-Id"])
        payloads.append(payload)
    process(client, stack, "shopify", *deliveries)
    return payloads


def accepted_jobs(api: Api, client: Client, stack: dict[str, str], n: int) -> list[Any]:
    queue_orders(client, stack, n)
    claimed = api.claim(n)
    return [api.take(job, claimed["lease_id"]) for job in claimed["jobs"]]


def test_the_whole_protocol_from_offer_to_shipped(api: Api, client: Client,
                                                  stack: dict[str, str]) -> None:
    queue_orders(client, stack, 1)
    claimed = api.claim()
    (job,) = claimed["jobs"]
    assert job["handshake"] == "offered" and job["lease_id"] == claimed["lease_id"]
    assert job["carrier"]["carrier_code"] == "STO" and job["carrier"]["region"] == "jzh"
    job_id = job["job_id"]
    api.post(f"/jobs/{job_id}/heartbeat", {"lease_id": claimed["lease_id"], "lease_seconds": 900})
    assert api.take(job, claimed["lease_id"])["handshake"] == "accepted"
    printed = api.post(f"/jobs/{job_id}/print", {"waybill_numbers": ["773012345678"]})
    assert printed["work"] == "printed" and printed["printed"]["carrier_code"] == "STO"
    assert api.post(f"/jobs/{job_id}/pick")["work"] == "picked"
    packed = api.post(f"/jobs/{job_id}/pack", {"weight_grams": 640, "package_count": 1})
    assert packed["weight_grams"] == 640
    report = {"shipment_id": "ship-1", "packages": [{"carrier_code": "STO",
                                                     "tracking_number": "773012345678"}]}
    assert api.post(f"/jobs/{job_id}/ship", report)["work"] == "shipped"
    assert api.post(f"/jobs/{job_id}/ship", report)["work"] == "shipped"  # the same again
    reused = api.post(f"/jobs/{job_id}/ship", {**report, "packages": [
        {"carrier_code": "SF", "tracking_number": "SF1234567890"}]}, expect=409)
    assert reused["error"] == "shipment_id_reused"
    assert reused["details"]["current_state"]["work"] == "shipped"
    assert api.timeline(job["order_id"]) == [
        "order.received", "job.created", "job.accepted", "job.printed", "job.picked",
        "job.packed", "job.shipped", "shipment.tracking_started"]


def test_illegal_transitions_answer_409_with_the_state(api: Api, client: Client,
                                                       stack: dict[str, str]) -> None:
    queue_orders(client, stack, 1)
    job = api.claim()["jobs"][0]
    error = api.post(f"/jobs/{job['job_id']}/print", expect=409)
    assert error["error"] == "not_accepted"
    assert error["details"]["current_state"] == {"handshake": "offered", "work": "queued",
                                                 "open_changes": []}
    assert api.post(f"/jobs/{job['job_id']}/accept", {"lease_id": "lease_wrong"},
                    expect=409)["error"] == "lease_mismatch"


def test_another_partner_sees_none_of_these_jobs(api: Api, client: Client,
                                                  stack: dict[str, str], make_key: Any) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    other = make_key("partner", f"other-{uuid.uuid4().hex[:6]}")
    assert api.post("/jobs/claim", {}, key=other)["jobs"] == []
    job_id = job["job_id"]
    for method, path, body in [
        ("get", f"/jobs/{job_id}", None), ("post", f"/jobs/{job_id}/print", {}),
        ("post", f"/jobs/{job_id}/accept", {"lease_id": "x"}),
        ("post", f"/jobs/{job_id}/ship", {"shipment_id": "s", "packages": [
            {"carrier_code": "STO", "tracking_number": "7730"}]}),
    ]:
        answer = api.call(method, f"/warehouse/v1{path}", body, key=other, expect=404)
        assert answer["error"] == "job_not_found"
    assert api.get("/jobs?updated_since=2000-01-01T00:00:00Z", key=other)["jobs"] == []
    assert api.get("/changes", key=other)["entries"] == []


def test_expired_lease_reoffers_and_unanswered_offers_are_dead_lettered(
        api: Api, client: Client, stack: dict[str, str], partner: str) -> None:
    queue_orders(client, stack, 1)
    now = utcnow()
    first = warehouse.claim(partner, warehouse.ClaimRequest(lease_seconds=60), now)
    assert len(first.jobs) == 1
    assert warehouse.claim(partner, warehouse.ClaimRequest(), now + timedelta(seconds=59)).jobs \
        == []
    alerts_received(stack)
    at = now
    for offer in range(2, 7):
        at += timedelta(seconds=61)
        again = warehouse.claim(partner, warehouse.ClaimRequest(lease_seconds=60), at)
        assert [j.claim_count for j in again.jobs] == ([offer] if offer <= 5 else [])
    job = warehouse.get_job(partner, first.jobs[0].job_id)
    assert job.dead_lettered and job.claim_count == 5
    assert [a["kind"] for a in alerts_received(stack)] == ["job.offer_unanswered"]


def test_changes_before_print_apply_and_after_print_are_intercepts(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    import time

    before, after = accepted_jobs(api, client, stack, 2)
    api.post(f"/jobs/{after['job_id']}/print")
    time.sleep(1.1)  # the feed holds back its last second (writes may still be in flight)
    cursor = api.get("/changes")["next_cursor"]
    assert {e["type"] for e in api.get("/changes")["entries"]} == {"job.created"}
    address = {"kind": "address", "reason": "buyer asked by phone", "address": NEW_ADDRESS}
    early = api.amend(before["order_id"], address)
    assert early["change"]["status"] == "applied"
    assert api.get(f"/jobs/{before['job_id']}")["ship_to"]["line1"] == NEW_ADDRESS["line1"]
    assert api.current(before["order_id"])["shipping_address"]["line1"] == NEW_ADDRESS["line1"]

    old_line1 = api.current(after["order_id"])["shipping_address"]["line1"]
    late = api.amend(after["order_id"], address)
    assert late["change"]["status"] == "intercept_requested"
    # Not yet: the parcel in hand still carries the old label.
    assert api.current(after["order_id"])["shipping_address"]["line1"] == old_line1
    change_id = late["change"]["change_id"]
    blocked = api.post(f"/jobs/{after['job_id']}/pack", {"weight_grams": 1, "package_count": 1},
                       expect=409)
    assert blocked["error"] == "change_pending"

    time.sleep(1.1)
    feed = api.get(f"/changes?cursor={cursor}")
    assert [(e["job_id"], e["type"]) for e in feed["entries"]] == [
        (before["job_id"], "change.applied"), (after["job_id"], "change.intercept_requested")]
    assert api.get(f"/changes?cursor={feed['next_cursor']}")["entries"] == []

    resolved = api.post(f"/jobs/{after['job_id']}/changes/{change_id}/resolve",
                        {"outcome": "intercepted", "note": "label swapped"})
    assert resolved["work"] == "printed" and resolved["reprint_required"]
    assert resolved["ship_to"]["line1"] == NEW_ADDRESS["line1"]
    assert api.current(after["order_id"])["shipping_address"]["line1"] == NEW_ADDRESS["line1"]
    assert api.post(f"/jobs/{after['job_id']}/print")["printed"]["count"] == 2
    assert api.timeline(after["order_id"])[-4:] == [
        "order.amended", "change.intercept_requested", "change.intercepted", "job.printed"]


def test_a_change_after_shipping_is_an_after_sales_case(api: Api, client: Client,
                                                        stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    api.post(f"/jobs/{job['job_id']}/print")
    api.post(f"/jobs/{job['job_id']}/ship", {"shipment_id": "s1", "packages": [
        {"carrier_code": "STO", "tracking_number": "773012345678"}]})
    alerts_received(stack)
    status = api.current(job["order_id"])["status"]
    answer = api.amend(job["order_id"], {"kind": "cancel", "reason": "buyer changed mind"})
    assert answer["change"]["status"] == "after_sales"
    assert [a["kind"] for a in alerts_received(stack)] == ["change.after_sales"]
    # The parcel travels: the order is not shown cancelled; the request is on the timeline.
    assert api.current(job["order_id"])["status"] == status != "cancelled"
    assert api.timeline(job["order_id"])[-2:] == ["order.amended", "change.after_sales"]


def test_a_change_the_factory_could_not_intercept_leaves_the_order_as_it_ships(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    moved, cancelled = accepted_jobs(api, client, stack, 2)
    for job in (moved, cancelled):
        api.post(f"/jobs/{job['job_id']}/print")
    shown = {job["order_id"]: api.current(job["order_id"]) for job in (moved, cancelled)}
    asks = [api.amend(moved["order_id"], {"kind": "address", "reason": "moved",
                                          "address": NEW_ADDRESS}),
            api.amend(cancelled["order_id"], {"kind": "cancel", "reason": "changed mind"})]
    alerts_received(stack)
    for job, ask in zip((moved, cancelled), asks, strict=True):
        assert api.current(job["order_id"]) == shown[job["order_id"]]  # asked, not done
        api.post(f"/jobs/{job['job_id']}/changes/{ask['change']['change_id']}/resolve",
                 {"outcome": "failed", "note": "already with the courier"})
        assert api.current(job["order_id"]) == shown[job["order_id"]]  # and never done
    assert [a["kind"] for a in alerts_received(stack)] == ["change.intercept_failed"] * 2
    assert api.current(cancelled["order_id"])["status"] != "cancelled"


def test_an_intercepted_cancellation_cancels_the_order(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    api.post(f"/jobs/{job['job_id']}/print")
    ask = api.amend(job["order_id"], {"kind": "cancel", "reason": "changed mind"})
    assert api.current(job["order_id"])["status"] != "cancelled"
    api.post(f"/jobs/{job['job_id']}/changes/{ask['change']['change_id']}/resolve",
             {"outcome": "intercepted"})
    current = api.current(job["order_id"])
    assert current["status"] == "cancelled" and current["cancelled_at"]


def test_marketplace_cancellation_follows_the_stage(api: Api, client: Client,
                                                    stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    unclaimed = queue_orders(client, stack, 1)[0]
    api.post(f"/jobs/{job['job_id']}/print")
    held = json.loads(client.http.get(f"/cs/v1/orders/{job['order_id']}", headers={
        "Authorization": f"Bearer {api.cs_key}"}).body)["order"]
    for payload in (unclaimed, {"id": int(held["external_id"])}):
        full = {**shopify_order(**{"id": payload["id"]}),
                "cancelled_at": "2026-11-23T11:00:00+08:00",
                "updated_at": "2026-11-23T11:00:00+08:00"}
        body = dumps(full)
        headers = shopify_headers(body, topic="orders/cancelled")
        client.http.post("/webhooks/shopify", headers=headers, body=body)
        process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"])
    # Not yet printed: cancelled at once. Printed: an intercept request for the warehouse.
    unclaimed_jobs = api.get("/jobs?updated_since=2000-01-01T00:00:00Z")["jobs"]
    by_order = {j["external_id"]: j for j in unclaimed_jobs}
    assert by_order[str(unclaimed["id"])]["work"] == "cancelled"
    printed = by_order[held["external_id"]]
    assert printed["work"] == "printed"
    assert [c["status"] for c in printed["changes"]] == ["intercept_requested"]


def test_waves_print_all_or_nothing_and_sum_skus_in_shelf_order(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    jobs_ = accepted_jobs(api, client, stack, 3)
    api.call("put", "/warehouse/v1/sku-locations",
             {"locations": {"TOTE-NAT": "A-01-02", "LS-WHT-M": "B-03-01"}})
    queue_orders(client, stack, 1)
    unaccepted = api.claim()["jobs"][0]
    refused = api.post("/waves", {"job_ids": [jobs_[0]["job_id"], unaccepted["job_id"]]},
                       expect=409)
    assert refused["error"] == "wave_refused"
    assert refused["details"]["jobs"][unaccepted["job_id"]]["error"] == "not_accepted"
    assert api.get(f"/jobs/{jobs_[0]['job_id']}")["work"] == "queued"  # nothing printed

    wave = api.post("/waves", {"job_ids": [j["job_id"] for j in jobs_]}, expect=201)
    assert [(p["sku"], p["quantity"], p["location"]) for p in wave["pick_list"]] == [
        ("TOTE-NAT", 3, "A-01-02"), ("LS-WHT-M", 6, "B-03-01")]
    assert [slot["slot"] for slot in wave["sort_list"]] == [1, 2, 3]
    assert all(api.get(f"/jobs/{j['job_id']}")["printed"]["wave_id"] == wave["wave_id"]
               for j in jobs_)
    assert api.get(f"/waves/{wave['wave_id']}") == wave
    again = api.post("/waves", {"job_ids": [jobs_[0]["job_id"]], "method": "by_order"},
                     expect=409)
    assert again["details"]["jobs"][jobs_[0]["job_id"]]["error"] == "already_printed"


def test_resync_pages_through_jobs_updated_since(api: Api, client: Client,
                                                 stack: dict[str, str]) -> None:
    queue_orders(client, stack, 5)
    seen: list[str] = []
    cursor = None
    while True:
        page = api.get("/jobs?updated_since=2000-01-01T00:00:00Z&limit=2"
                       + (f"&cursor={cursor}" if cursor else ""))
        seen += [job["job_id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    assert api.get("/jobs?updated_since=2999-01-01T00:00:00Z")["jobs"] == []
    assert api.get("/jobs?updated_since=yesterday", expect=400)["error"] == \
        "invalid_query_parameter"
    assert api.get("/jobs?cursor=garbage", expect=400)["error"] == "invalid_cursor"


def test_returns_are_registered_once_with_a_liability_hint(api: Api, client: Client,
                                                           stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    alerts_received(stack)
    report = {"return_tracking_number": "YT7512345678901", "buyer_name": "林伟",
              "items": [{"sku": "LS-WHT-M", "quantity": 1}], "reason": "collar torn",
              "packaging": "intact", "goods_damaged": True, "job_id": job["job_id"]}
    first = api.post("/returns", report, expect=201)
    assert first["liability"] == "factory" and first["liability_hint"].startswith("factory")
    assert api.post("/returns", report, expect=201) == first
    (alert,) = alerts_received(stack)
    assert alert["kind"] == "return.damaged" and "factory" in alert["summary"]
    assert api.timeline(job["order_id"])[-1] == "return.received"


def test_rate_limit_answers_429_with_retry_after(api: Api, client: Client,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.core import ratelimit
    from chalicelib.core.settings import settings

    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "1")
    monkeypatch.setenv("RATE_LIMIT_BURST", "2")
    settings.cache_clear()
    ratelimit.reset()
    try:
        for _ in range(2):
            api.get("/changes")
        response = client.http.get("/warehouse/v1/changes",
                                   headers={"Authorization": f"Bearer {api.key}"})
        assert response.status_code == 429
        assert json.loads(response.body)["error"] == "rate_limited"
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        settings.cache_clear()
        ratelimit.reset()


def test_deadline_sweep_alerts_late_jobs_once(api: Api, client: Client,
                                              stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    ship_by = warehouse.get_job(job["partner_id"], job["job_id"]).ship_by
    alerts_received(stack)
    late = ship_by + timedelta(minutes=5)
    assert warehouse.sweep_deadlines(late, limit=1000) >= 1
    assert warehouse.sweep_deadlines(late + timedelta(minutes=5), limit=1000) == 0
    kinds = [(a["kind"], a["subject"]) for a in alerts_received(stack)]
    assert ("job.late_dispatch", job["job_id"]) in kinds
    assert kinds.count(("job.late_dispatch", job["job_id"])) == 1


def test_at_72_hours_the_unanswered_offer_is_accepted_and_leaves_the_offers(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    from chalicelib.warehouse import job_store

    queue_orders(client, stack, 1)
    (offer,) = api.claim(1)["jobs"]  # seen, never answered
    job_id = offer["job_id"]
    created = warehouse.get_job(offer["partner_id"], job_id).created_at
    alerts_received(stack)
    warehouse.sweep_deadlines(created + timedelta(hours=24), limit=1000)
    warehouse.sweep_deadlines(created + timedelta(hours=72), limit=1000)
    kinds = [a["kind"] for a in alerts_received(stack) if a["subject"] == job_id]
    assert kinds.count("job.not_accepted") == 1  # the 72 h re-alert does not go out
    deemed = warehouse.get_job(offer["partner_id"], job_id)
    assert deemed.handshake == "accepted" and deemed.deemed_accepted
    waiting = job_store.waiting_on_factory(job_store.OFFER)
    assert job_id not in [w["job_id"] for w in waiting]  # no longer waiting on the factory
    assert job_id not in [j.job_id for j in job_store.claimable(
        offer["partner_id"], created + timedelta(hours=73), 1000)]  # off the offers
    entries, _ = job_store.feed(offer["partner_id"], None, created + timedelta(hours=73), 100)
    assert "job.deemed_accepted" in [e["type"] for e in entries]  # the factory is told
    refused = api.post(f"/jobs/{job_id}/reject", {"lease_id": offer["lease_id"],
                                                  "reason": "out_of_stock"}, expect=409)
    assert refused["error"] == "accepted"
    assert api.post(f"/jobs/{job_id}/print")["work"] == "printed"
    assert "job.deemed_accepted" in api.timeline(offer["order_id"])


def test_an_accepted_job_is_given_back_only_as_a_recorded_breach(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    path = f"/jobs/{job['job_id']}/reject"
    assert api.post(path, {"reason": "capacity"}, expect=422)["error"] == "invalid_payload"
    assert api.post(path, {"lease_id": job["lease_id"], "reason": "capacity"},
                    expect=409)["error"] == "accepted"
    given_back = api.post(path, {"reason": "capacity", "breach": True})
    assert given_back["breach"] and given_back["work"] == "closed_incomplete"


def test_a_line_marked_stock_up_by_cs_raises_no_late_alert_that_day(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    before = warehouse.get_job(job["partner_id"], job["job_id"])
    lines = [{"sku": line["sku"], "quantity": line["quantity"], "stock_up": True}
             for line in job["lines"]]
    answer = api.amend(job["order_id"], {"kind": "attributes", "reason": "restock tomorrow",
                                         "lines": lines})
    assert answer["change"]["status"] == "applied"
    after = warehouse.get_job(job["partner_id"], job["job_id"])
    assert after.ship_by > before.ship_by and all(line.stock_up for line in after.lines)
    alerts_received(stack)
    warehouse.sweep_deadlines(before.ship_by + timedelta(minutes=5), limit=1000)
    warehouse.sweep_deadlines(after.ship_by + timedelta(minutes=5), limit=1000)
    late = [a["at"] for a in alerts_received(stack)
            if (a["kind"], a["subject"]) == ("job.late_dispatch", job["job_id"])]
    assert len(late) == 1 and late[0] >= after.ship_by.isoformat()[:16]


def test_long_poll_waits_then_answers_empty(api: Api, partner: str) -> None:
    import time

    started = time.monotonic()
    answer = api.post("/jobs/claim", {"wait_seconds": 1})
    assert answer["jobs"] == [] and time.monotonic() - started >= 1


def test_openapi_is_served_and_names_every_route(client: Client) -> None:
    from openapi_spec_validator import validate

    spec = json.loads(client.http.get("/warehouse/v1/openapi.json").body)
    validate(spec)
    served = {(method.lower(), path) for path, methods in app.routes.items()
              for method in methods if path.startswith("/warehouse/v1")}
    described = {(method, path) for path, methods in spec["paths"].items() for method in methods}
    assert served == described
    claim = spec["paths"]["/warehouse/v1/jobs/claim"]["post"]
    schema_name = claim["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_name.endswith("ClaimRequest")
    props = spec["components"]["schemas"][schema_name.rsplit("/", 1)[1]]["properties"]
    assert set(props) == {"max_jobs", "lease_seconds", "wait_seconds"}


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
    reader = make_key("staff", "rita", Role.READ_ONLY)
    auth = {"Content-Type": "application/json"}
    response = client.http.post("/warehouse/v1/jobs/claim", body=b"{}",
                                headers={**auth, "Authorization": f"Bearer {staff}"})
    assert response.status_code == 403
    response = client.http.get("/cs/v1/orders/ord_1",
                               headers={"Authorization": f"Bearer {partner_key}"})
    assert (response.status_code, json.loads(response.body)["error"]) == (403, "forbidden")
    response = client.http.post("/cs/v1/orders/ord_1/amendments", body=b"{}",
                                headers={**auth, "Authorization": f"Bearer {reader}"})
    assert response.status_code == 403  # read-only staff may not amend


def test_revoked_key_stops_working(client: Client, stack: dict[str, str], make_key: Any) -> None:
    from chalicelib.access import directory_store as directory
    from chalicelib.access.keys import hash_key

    old = make_key("partner", "factory-r")
    new = make_key("partner", "factory-r")  # rotation: both valid at once

    def claim_with(key: str) -> int:
        return int(client.http.post("/warehouse/v1/jobs/claim", body=b"{}", headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"}).status_code)

    assert claim_with(old) == 200
    assert directory.revoke("partner", "factory-r", hash_key(old)[:12], utcnow())
    directory.forget()  # the per-process cache would otherwise honour it for a minute
    assert claim_with(old) == 401
    assert claim_with(new) == 200


def test_bad_bodies_get_reasons(api: Api) -> None:
    assert api.post("/jobs/claim", {"max_jobs": 500}, expect=422)["error"] == "invalid_payload"
    response = api.client.http.post("/warehouse/v1/jobs/claim", body=b"{", headers={
        "Authorization": f"Bearer {api.key}", "Content-Type": "application/json"})
    assert (response.status_code, json.loads(response.body)["error"]) == (400, "malformed_json")
    assert api.post("/jobs/job_x/ship", {"shipment_id": "s", "packages": []},
                    expect=422)["error"] == "invalid_payload"
    assert api.post("/jobs/job_x/reject", {"lease_id": "l", "reason": "bored"},
                    expect=422)["error"] == "invalid_payload"
    assert api.amend("ord_missing", {"kind": "address", "reason": "x"}, expect=422)["error"] \
        == "invalid_payload"


def test_protocol_rules_come_from_configuration(api: Api, client: Client, stack: dict[str, str],
                                                partner: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.warehouse.jobs import protocol_rules

    rules = {"max_offers": 1, "carriers": {"default_carrier": "YTO"}}
    monkeypatch.setenv("PROTOCOL_RULES_JSON", json.dumps(rules))
    protocol_rules.cache_clear()
    try:
        queue_orders(client, stack, 1)
        job = api.claim()["jobs"][0]
        assert job["carrier"]["carrier_code"] == "YTO"
        later = utcnow() + timedelta(minutes=11)
        assert warehouse.claim(partner, warehouse.ClaimRequest(), later).jobs == []
        assert warehouse.get_job(partner, job["job_id"]).dead_lettered  # after one offer
    finally:
        protocol_rules.cache_clear()


# Refund tasks: a cancellation that took effect hands the refund to after-sales ---------------


def _refunds(stack: dict[str, str]) -> list[dict[str, Any]]:
    return [a for a in alerts_received(stack) if a["kind"] == "refund.due"]


def test_a_cancellation_applied_before_print_opens_a_refund_task(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    total = api.current(job["order_id"])["totals"]["total"]
    alerts_received(stack)
    api.amend(job["order_id"], {"kind": "cancel", "reason": "buyer changed mind"})
    (task,) = _refunds(stack)
    assert task["subject"] == job["order_id"] and task["severity"] == "medium"
    facts = task["facts"]
    assert (facts["order_id"], facts["marketplace"], facts["amount"], facts["cancelled"]) == (
        job["order_id"], "shopify", total, "applied")
    assert facts["currency"] and facts["job_id"] == job["job_id"]


def test_an_intercepted_cancellation_opens_a_refund_task_and_a_failed_one_does_not(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    kept, stopped = accepted_jobs(api, client, stack, 2)
    for job in (kept, stopped):
        api.post(f"/jobs/{job['job_id']}/print")
    asks = {job["job_id"]: api.amend(job["order_id"], {"kind": "cancel", "reason": "mind"})
            for job in (kept, stopped)}
    assert _refunds(stack) == []  # asked, not done: the parcel may still go
    api.post(f"/jobs/{kept['job_id']}/changes/{asks[kept['job_id']]['change']['change_id']}"
             "/resolve", {"outcome": "failed"})
    assert _refunds(stack) == []
    api.post(f"/jobs/{stopped['job_id']}/changes/"
             f"{asks[stopped['job_id']]['change']['change_id']}/resolve",
             {"outcome": "intercepted"})
    (task,) = _refunds(stack)
    assert task["subject"] == stopped["order_id"]
    assert task["facts"]["cancelled"] == "intercepted"
    assert task["facts"]["cancelled_by"] == "cs ann"


def _cancel_on_shopify(client: Client, stack: dict[str, str], external_id: int) -> None:
    full = {**shopify_order(id=external_id), "cancelled_at": "2026-11-23T11:00:00+08:00",
            "updated_at": "2026-11-23T11:00:00+08:00"}
    body = dumps(full)
    headers = shopify_headers(body, topic="orders/cancelled")
    client.http.post("/webhooks/shopify", headers=headers, body=body)
    process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"])


def test_a_marketplace_cancellation_opens_a_refund_task_when_it_takes_effect(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    early, late = accepted_jobs(api, client, stack, 2)
    api.post(f"/jobs/{late['job_id']}/print")
    alerts_received(stack)
    for job in (early, late):
        _cancel_on_shopify(client, stack, int(job["external_id"]))
    (task,) = _refunds(stack)  # before print: cancelled at once
    assert task["subject"] == early["order_id"]
    (change,) = api.get(f"/jobs/{late['job_id']}")["changes"]
    api.post(f"/jobs/{late['job_id']}/changes/{change['change_id']}/resolve",
             {"outcome": "intercepted"})
    (task,) = _refunds(stack)
    assert task["subject"] == late["order_id"]
    assert task["facts"]["cancelled"] == "intercepted"


# Packing against the job: SKU and quantity per package ------------------------------------


def _printed(api: Api, client: Client, stack: dict[str, str]) -> dict[str, Any]:
    (job,) = accepted_jobs(api, client, stack, 1)
    api.post(f"/jobs/{job['job_id']}/print")
    alerts_received(stack)
    return job


def _contents(*packages: dict[str, int]) -> list[dict[str, Any]]:
    return [{"items": [{"sku": sku, "quantity": n} for sku, n in package.items()]}
            for package in packages]


def test_packed_items_that_match_the_job_are_recorded(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    job = _printed(api, client, stack)
    body = {"weight_grams": 900, "package_count": 2,
            "packages": _contents({"TOTE-NAT": 1, "LS-WHT-M": 1}, {"LS-WHT-M": 1})}
    packed = api.post(f"/jobs/{job['job_id']}/pack", body)
    assert packed["work"] == "packed" and packed["pack_mismatch"] == []
    assert [len(p["items"]) for p in packed["packed_items"]] == [2, 1]
    assert alerts_received(stack) == []


def test_a_pack_mismatch_is_refused_naming_the_differences(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    job = _printed(api, client, stack)
    body = {"weight_grams": 900, "package_count": 1,
            "packages": _contents({"LS-WHT-M": 1, "MUG-RED": 1})}
    refused = api.post(f"/jobs/{job['job_id']}/pack", body, expect=409)
    assert refused["error"] == "pack_mismatch"
    assert refused["details"]["differences"] == [
        {"sku": "LS-WHT-M", "ordered": 2, "packed": 1, "kind": "short"},
        {"sku": "TOTE-NAT", "ordered": 1, "packed": 0, "kind": "short"},
        {"sku": "MUG-RED", "ordered": 0, "packed": 1, "kind": "wrong"}]
    assert api.get(f"/jobs/{job['job_id']}")["work"] == "printed"  # nothing recorded
    assert alerts_received(stack) == []
    unreasoned = api.post(f"/jobs/{job['job_id']}/pack", {**body, "ship_anyway": True},
                          expect=422)
    assert unreasoned["error"] == "invalid_payload"
    miscounted = api.post(f"/jobs/{job['job_id']}/pack", {**body, "package_count": 2},
                          expect=422)
    assert miscounted["error"] == "invalid_payload"


def test_a_mismatch_shipped_anyway_is_recorded_and_opens_wrong_and_short_cases(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    job = _printed(api, client, stack)
    body = {"weight_grams": 900, "package_count": 1, "ship_anyway": True,
            "reason": "LS-WHT-M out of stock, buyer agreed to a mug instead",
            "packages": _contents({"TOTE-NAT": 1, "LS-WHT-M": 1, "MUG-RED": 1})}
    packed = api.post(f"/jobs/{job['job_id']}/pack", body)
    assert packed["work"] == "packed"
    assert packed["pack_mismatch_reason"] == body["reason"]
    assert [(d["sku"], d["kind"]) for d in packed["pack_mismatch"]] == [
        ("LS-WHT-M", "short"), ("MUG-RED", "wrong")]
    raised = {a["kind"]: a for a in alerts_received(stack)}
    assert sorted(raised) == ["shipment.short", "shipment.wrong_items"]
    assert raised["shipment.short"]["facts"]["differences"] == "LS-WHT-M: 1 of 2"
    assert raised["shipment.wrong_items"]["facts"]["order_id"] == job["order_id"]
    assert api.post(f"/jobs/{job['job_id']}/pack", body)["version"] == packed["version"]
    assert alerts_received(stack) == []  # the same report again changes nothing
    assert api.timeline(job["order_id"])[-3:] == [
        "job.packed", "shipment.wrong_items", "shipment.short"]


# A buyer's complaint: wrong, short or missing items -------------------------------------------


def test_a_buyers_complaint_opens_its_case_and_is_on_the_timeline(
        api: Api, client: Client, stack: dict[str, str], make_key: Any) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    alerts_received(stack)
    path = f"/cs/v1/orders/{job['order_id']}/complaints"
    body = {"kind": "missing_item", "note": "the tote bag was not in the parcel",
            "items": [{"sku": "TOTE-NAT", "quantity": 1}]}
    answer = api.call("post", path, body, key=api.cs_key, expect=201)
    assert (answer["case_type"], answer["subject"]) == ("shipment.missing_items", job["job_id"])
    (alert,) = alerts_received(stack)
    assert (alert["kind"], alert["severity"], alert["subject"]) == (
        "shipment.missing_items", "high", job["job_id"])
    assert alert["facts"]["order_id"] == job["order_id"]
    assert alert["facts"]["items"] == "TOTE-NAT×1" and alert["facts"]["reported_by"] == "cs ann"
    assert api.timeline(job["order_id"])[-1] == "order.complaint"
    for kind, case_type in (("wrong_item", "shipment.wrong_items"), ("short", "shipment.short")):
        assert api.call("post", path, {"kind": kind, "note": "n"}, key=api.cs_key,
                        expect=201)["case_type"] == case_type
    assert api.call("post", path, {"kind": "broken", "note": "n"}, key=api.cs_key,
                    expect=422)["error"] == "invalid_payload"
    assert api.call("post", path, {"kind": "short"}, key=api.cs_key, expect=422)
    reader = make_key("staff", "rita", Role.READ_ONLY)
    assert api.call("post", path, body, key=reader, expect=403)["error"] == "forbidden"
    assert api.call("post", "/cs/v1/orders/ord_nope/complaints", body, key=api.cs_key,
                    expect=404)["error"] == "order_not_found"


def test_a_complaint_about_a_short_pack_joins_the_warehouses_case(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    from chalicelib.flows import alert_dispatch

    job = _printed(api, client, stack)
    api.post(f"/jobs/{job['job_id']}/pack", {
        "weight_grams": 500, "package_count": 1, "ship_anyway": True, "reason": "no stock",
        "packages": _contents({"TOTE-NAT": 1})})
    api.call("post", f"/cs/v1/orders/{job['order_id']}/complaints",
             {"kind": "short", "note": "only the tote arrived"}, key=api.cs_key, expect=201)
    raised = alerts_received(stack)
    assert [a["kind"] for a in raised] == ["shipment.short"] * 2
    cases = {alert_dispatch.handle(json.dumps(a), utcnow()).case.case_id  # type: ignore[union-attr]
             for a in raised}
    assert len(cases) == 1
    (case_id,) = cases
    case = api.call("get", f"/cs/v1/cases/{case_id}", key=api.cs_key)
    assert case["occurrences"] == 2 and case["order_id"] == job["order_id"]


def test_a_paid_order_without_a_job_cancelled_by_cs_is_a_refund_task_too(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    (payload,) = queue_orders(client, stack, 1, shipping_address=None)  # no job: no address
    from chalicelib.orders.order import order_id_for
    from tests.support import SHOP

    order_id = order_id_for("shopify", SHOP, str(payload["id"]))
    assert api.call("get", f"/cs/v1/orders/{order_id}", key=api.cs_key)["job"] is None
    alerts_received(stack)
    api.amend(order_id, {"kind": "cancel", "reason": "no address, buyer cancelled"})
    (task,) = _refunds(stack)
    assert task["subject"] == order_id and "job_id" not in task["facts"]
    api.amend(order_id, {"kind": "cancel", "reason": "asked again"})
    assert _refunds(stack) == []  # already cancelled: nothing new to refund


def test_the_largest_pack_report_is_stored(api: Api, client: Client,
                                           stack: dict[str, str]) -> None:
    job = _printed(api, client, stack)
    entries = [{"sku": f"{n:03d}" + "S" * 252, "quantity": 100_000} for n in range(400)]
    body = {"weight_grams": 1_000_000, "package_count": 100, "ship_anyway": True,
            "reason": "r" * 1000, "packages": [{"items": entries[n * 4:n * 4 + 4]}
                                               for n in range(100)]}
    packed = api.post(f"/jobs/{job['job_id']}/pack", body)
    assert len(packed["pack_mismatch"]) == 402  # 400 not ordered, the job's 2 lines short
    too_many = {**body, "packages": [*body["packages"][:99],  # type: ignore[misc]
                                     {"items": [*entries[:4], entries[4]]}]}
    assert api.post(f"/jobs/{job['job_id']}/pack", too_many, expect=422)["error"] == \
        "invalid_payload"
    assert sorted(a["kind"] for a in alerts_received(stack)) == [
        "shipment.short", "shipment.wrong_items"]
