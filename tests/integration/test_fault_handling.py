"""Issue 14, item 1: AWS's faults (tests/faults.py) on every route family and event handler.

Under each fault: every route answers the error contract (409 with the current state where the
job's state refuses; 503 `busy` / `storage_throttled` / `storage_unavailable` with Retry-After
to retry later), never 500 and never a `system.fault` case; every event handler retries (its
record reported back, per record) or leaves the work for the next run; nothing accepted is
lost or done twice. Conflicts on the hot paths are retried in process: a route meets a few and
still answers 200.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.access.keys import Role
from chalicelib.core.dynamodb import ATTEMPTS
from tests.faults import KINDS, OUTLASTS_BOTOCORE, Faults
from tests.integration.flow import inbox_item, inbox_key, stream_event
from tests.integration.test_warehouse_api import Api
from tests.support import NEW_ADDRESS, dumps, shopify_headers, shopify_order

# What a route answers when the fault outlasts every retry.
ANSWER = {
    "conflict": "busy",
    "throttled_transaction": "storage_throttled",
    "throughput": "storage_throttled",
    "throttling": "storage_throttled",
    "request_limit": "storage_throttled",
    "internal": "storage_unavailable",
    "timeout": "storage_unavailable",
    "timeout_after_commit": "storage_unavailable",
    "connection": "storage_unavailable",
}
WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem")


@pytest.fixture
def client(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    from chalicelib.core import aws

    # A webhook retries within its deadline: the default 3.5 s, not the 60 s the rest of the
    # suite gives the busy local endpoint, so a fault that persists is answered in seconds.
    monkeypatch.setenv("WEBHOOK_DEADLINE_SECONDS", "3.5")
    aws.reset()
    with Client(app, stage_name="local") as test_client:
        yield test_client
    aws.reset()



@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    return Api(client, make_key("partner", partner), make_key("staff", "ann", Role.BACK_OFFICE))


@pytest.fixture
def system_faults(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The routes that raised a `system.fault` case (the edge's 500 path)."""
    import chalicelib.api as edge

    raised: list[str] = []
    real = edge._our_fault
    monkeypatch.setattr(edge, "_our_fault", lambda route, exc: (raised.append(route),
                                                                 real(route, exc)))
    return raised


# Answers ---------------------------------------------------------------------------------------


def contract(response: Any) -> tuple[int, str | None, Any]:
    """(status, reason, body) of an answer that must keep the error contract: never a 500; an
    error is JSON with a reason and a message; a 503 says when to retry."""
    status = int(response.status_code)
    assert status != 500, response.body
    body = json.loads(response.body) if response.body else None
    if status < 400:
        return status, None, body
    assert response.headers["Content-Type"].startswith("application/json")
    assert set(body) <= {"error", "message", "details"} and body["message"], body
    if status == 503:
        assert int(response.headers["Retry-After"]) >= 1, response.headers
    return status, str(body["error"]), body


class Run:
    """One order's life through the real routes and handlers, each step tried first under a
    fault that outlasts every retry, then again as a client would retry it."""

    def __init__(self, api: Api, client: Client, stack: dict[str, str], faults: Faults,
                 kind: str, target: tuple[str, ...]) -> None:
        self.api, self.client, self.stack, self.faults = api, client, stack, faults
        self.kind, self.target = kind, target
        self.refused: list[str] = []  # the steps the fault made answer 503

    def faulted(self, name: str, call: Callable[[], Any], done: Callable[[Any], bool],
                reason: str | None = None) -> Any:
        """`call()` under the fault (503 with the kind's reason, or an answer untouched by it:
        the step made no call the fault chooses), then again without it until `done`."""
        self.faults.add(self.kind, operations=self.target)
        try:
            status, got, body = contract(call())
        finally:
            self.faults.clear()
        if status == 503:
            assert got == (reason or ANSWER[self.kind]), (name, got)
            self.refused.append(name)
        else:
            assert done(body), (name, status, body)
            return body
        status, got, body = contract(call())
        if self.kind == "timeout_after_commit" and status == 409:
            # Written before its answer was lost: the state says the step is done.
            assert done(body["details"]["current_state"]), (name, body)
            return body
        assert status < 300 and done(body), (name, status, body)
        return body

    def webhook(self) -> str:
        payload = shopify_order(id=uuid.uuid4().int % 10**13)
        body = dumps(payload)
        headers = shopify_headers(body)
        self.faulted("webhook", lambda: self.client.http.post(
            "/webhooks/shopify", headers=headers, body=body),
            lambda answer: answer["status"] in ("accepted", "duplicate"),
            reason="storage_unavailable")  # a webhook's 503, whatever the store's trouble
        return headers["X-Shopify-Webhook-Id"]

    def worker(self, delivery_id: str) -> None:
        key = inbox_key("shopify", delivery_id)
        event = stream_event([key], self.stack["INBOX_TABLE"], self.stack["INBOX_STREAM_ARN"])
        self.faults.add(self.kind, operations=self.target)
        try:
            failed = retried(self.client, "order_worker", event)
        finally:
            self.faults.clear()
        item = inbox_item(self.stack, "shopify", delivery_id)
        assert item is not None
        if failed:  # reported back, so the stream retries it
            self.refused.append("worker")
            assert failed == [event["Records"][0]["eventID"]]
            assert "pending" in item and item.get("outcome") is None, item  # not judged
            answer = self.client.lambda_.invoke("order_worker", event).payload
            assert answer["batchItemFailures"] == []
        item = inbox_item(self.stack, "shopify", delivery_id)
        assert item is not None and "pending" not in item and item["outcome"] == "created", item

    def job_of(self, delivery_id: str) -> dict[str, Any]:
        item = inbox_item(self.stack, "shopify", delivery_id)
        assert item is not None
        view = self.api.call("get", f"/cs/v1/orders/{item['outcome_detail']}",
                             key=self.api.cs_key)
        return dict(view["job"])

    def step(self, name: str, path: str, body: dict[str, Any],
             done: Callable[[Any], bool]) -> Any:
        headers = {"Authorization": f"Bearer {self.api.key}",
                   "Content-Type": "application/json"}
        return self.faulted(name, lambda: self.client.http.post(
            f"/warehouse/v1{path}", headers=headers, body=json.dumps(body).encode()), done)


def retried(client: Client, handler: str, event: dict[str, Any]) -> list[str]:
    """Invoke an event handler as Lambda would; the ids of the records the event source must
    deliver again: those its partial batch response names, or all of them when it raised
    (Powertools raises when every record failed: the whole batch is retried)."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    key = "eventID" if "dynamodb" in event["Records"][0] else "messageId"
    try:
        answer = client.lambda_.invoke(handler, event).payload
    except BatchProcessingError:
        return [record[key] for record in event["Records"]]
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


@pytest.mark.parametrize("target", [(), WRITES], ids=["every_call", "writes"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_route_and_the_worker_answer_the_contract_and_nothing_is_lost_or_doubled(
        api: Api, client: Client, stack: dict[str, str], faults: Faults,
        system_faults: list[str], kind: str, target: tuple[str, ...]) -> None:
    run = Run(api, client, stack, faults, kind, target)
    delivery_id = run.webhook()
    run.worker(delivery_id)
    job = run.job_of(delivery_id)
    job_id, order_id = job["job_id"], job["order_id"]

    claimed = run.step("claim", "/jobs/claim", {"max_jobs": 1},
                       lambda answer: bool(answer.get("jobs")))
    assert [j["job_id"] for j in claimed["jobs"]] == [job_id]
    lease = {"lease_id": claimed["lease_id"]}
    run.step("accept", f"/jobs/{job_id}/accept", lease,
             lambda state: state["handshake"] == "accepted")
    run.step("print", f"/jobs/{job_id}/print", {}, lambda state: state["work"] == "printed")
    run.step("pick", f"/jobs/{job_id}/pick", {}, lambda state: state["work"] == "picked")
    run.step("pack", f"/jobs/{job_id}/pack", {"weight_grams": 640, "package_count": 1},
             lambda state: state["work"] == "packed")
    number = str(uuid.uuid4().int)[:14]
    run.step("ship", f"/jobs/{job_id}/ship", {"shipment_id": "s1", "packages": [
        {"carrier_code": "STO", "tracking_number": number}]},
        lambda state: state["work"] == "shipped")
    cs = {"Authorization": f"Bearer {api.cs_key}", "Content-Type": "application/json"}
    amendment = {"kind": "note", "reason": "buyer asked for gift wrap"}
    run.faulted("amend", lambda: client.http.post(
        f"/cs/v1/orders/{order_id}/amendments", headers=cs, body=dumps(amendment)),
        lambda answer: answer["event"]["type"] == "order.amended")
    run.faulted("order view", lambda: client.http.get(f"/cs/v1/orders/{order_id}", headers=cs),
                lambda answer: answer["order_id"] == order_id)
    run.faulted("changes", lambda: client.http.get(
        "/warehouse/v1/changes", headers={"Authorization": f"Bearer {api.key}"}),
        lambda answer: "entries" in answer)

    timeline = api.timeline(order_id)
    assert timeline == ["order.received", "job.created", "job.accepted", "job.printed",
                        "job.picked", "job.packed", "job.shipped",
                        "shipment.tracking_started", "order.amended"], timeline
    assert system_faults == []
    writing = {"webhook", "worker", "claim", "accept", "print", "pick", "pack", "ship", "amend"}
    if kind == "throttled_transaction":
        expected = writing - {"webhook"}  # a webhook's one write is no transaction
    elif kind == "conflict" or target:
        expected = writing  # reads are never in conflict
    else:
        expected = writing | {"order view", "changes"}
    if kind == "timeout_after_commit" and target:
        # Each write landed and the next attempt's read found it: answered as done. Only the
        # webhook, whose every retry within its deadline timed out, was told to retry.
        expected = {"webhook"}
    assert set(run.refused) == expected, run.refused


# Conflicts on the hot paths are retried in process ------------------------------------------

# Each hot path, as a request through its real route, from a job in the state it needs.
HOT_PATHS = ("claim", "accept", "print", "pick", "pack", "ship", "amend", "worker")


def _job_at(api: Api, client: Client, stack: dict[str, str], faults: Faults,
            stage: str) -> tuple[str, dict[str, Any], str]:
    """An order brought (without faults) to just before `stage`: (delivery id, job, lease)."""
    with faults.paused():
        payload = shopify_order(id=uuid.uuid4().int % 10**13)
        body = dumps(payload)
        headers = shopify_headers(body)
        assert client.http.post("/webhooks/shopify", headers=headers,
                                body=body).status_code == 200
        delivery_id = headers["X-Shopify-Webhook-Id"]
        if stage == "worker":
            return delivery_id, {}, ""
        event = stream_event([inbox_key("shopify", delivery_id)], stack["INBOX_TABLE"],
                             stack["INBOX_STREAM_ARN"])
        assert client.lambda_.invoke("order_worker", event).payload["batchItemFailures"] == []
        if stage == "claim":
            return delivery_id, {}, ""
        claimed = api.claim(1)
        (job,), lease = claimed["jobs"], claimed["lease_id"]
        for step, path, request in (
                ("accept", "accept", {"lease_id": lease}), ("print", "print", {}),
                ("pick", "pick", {}), ("pack", "pack", {"weight_grams": 640,
                                                        "package_count": 1})):
            if stage == step:
                break
            api.post(f"/jobs/{job['job_id']}/{path}", request)
        return delivery_id, job, lease


def _hot_path(api: Api, client: Client, stack: dict[str, str], stage: str, delivery_id: str,
              job: dict[str, Any], lease: str) -> tuple[int, Any]:
    """The stage's request: (status, body); the worker's as 200 when no record failed."""
    if stage == "worker":
        event = stream_event([inbox_key("shopify", delivery_id)], stack["INBOX_TABLE"],
                             stack["INBOX_STREAM_ARN"])
        failed = retried(client, "order_worker", event)
        return (503 if failed else 200), failed
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"}
    if stage == "claim":
        path, body = "/warehouse/v1/jobs/claim", {"max_jobs": 1}
    elif stage == "amend":
        path, body = f"/cs/v1/orders/{job['order_id']}/amendments", {
            "kind": "address", "reason": "buyer moved", "address": NEW_ADDRESS}
        headers["Authorization"] = f"Bearer {api.cs_key}"
    else:
        body = {"accept": {"lease_id": lease}, "print": {}, "pick": {},
                "pack": {"weight_grams": 640, "package_count": 1},
                "ship": {"shipment_id": "s1", "packages": [
                    {"carrier_code": "STO", "tracking_number": str(uuid.uuid4().int)[:14]}]},
                }[stage]
        path = f"/warehouse/v1/jobs/{job['job_id']}/{stage}"
    status, _, answer = contract(client.http.post(path, headers=headers,
                                                  body=json.dumps(body).encode()))
    return status, answer


EXPECTED_TIMELINE = {
    "worker": ["order.received", "job.created"],
    "claim": ["order.received", "job.created"],
    "accept": ["order.received", "job.created", "job.accepted"],
    "print": ["order.received", "job.created", "job.accepted", "job.printed"],
    "pick": ["order.received", "job.created", "job.accepted", "job.printed", "job.picked"],
    "pack": ["order.received", "job.created", "job.accepted", "job.printed", "job.picked",
             "job.packed"],
    "ship": ["order.received", "job.created", "job.accepted", "job.printed", "job.picked",
             "job.packed", "job.shipped", "shipment.tracking_started"],
    # An address change before printing (the job claimed, not yet accepted) is applied at once.
    "amend": ["order.received", "job.created", "order.amended", "change.applied"],
}


@pytest.mark.parametrize(("kind", "count"), [
    ("conflict", ATTEMPTS - 1),  # every attempt but the last collides
    ("throttled_transaction", ATTEMPTS - 1),
    ("timeout_after_commit", 1),  # written; botocore sends it again and meets its own write
    ("timeout_after_commit", OUTLASTS_BOTOCORE),  # written; every answer lost
])
@pytest.mark.parametrize("stage", HOT_PATHS)
def test_the_hot_paths_retry_in_process_and_answer_as_if_nothing_happened(
        api: Api, client: Client, stack: dict[str, str], faults: Faults,
        system_faults: list[str], stage: str, kind: str, count: int) -> None:
    """Fails if a hot path's conflict handling is removed: a route without the retry helper
    answers 503 `busy` at the first conflict, one that does not recognise its own write
    answers 409 or writes twice."""
    delivery_id, job, lease = _job_at(api, client, stack, faults,
                                      "accept" if stage == "amend" else stage)
    faults.add(kind, operations={"TransactWriteItems"}, count=count)
    status, answer = _hot_path(api, client, stack, stage, delivery_id, job, lease)
    faults.clear()
    assert faults.total() == count
    assert status in (200, 201), (status, answer)
    order_id = job.get("order_id") or str(
        (inbox_item(stack, "shopify", delivery_id) or {})["outcome_detail"])
    assert api.timeline(order_id) == EXPECTED_TIMELINE[stage]
    if stage == "claim":
        assert len(answer["jobs"]) == 1
    assert system_faults == []


@pytest.mark.parametrize("stage", ["accept", "ship", "amend", "worker"])
def test_one_conflict_more_than_the_attempts_is_503_busy_and_nothing_is_written(
        api: Api, client: Client, stack: dict[str, str], faults: Faults, stage: str) -> None:
    delivery_id, job, lease = _job_at(api, client, stack, faults,
                                      "accept" if stage == "amend" else stage)
    faults.add("conflict", operations={"TransactWriteItems"}, count=ATTEMPTS)
    status, answer = _hot_path(api, client, stack, stage, delivery_id, job, lease)
    faults.clear()
    assert status == 503
    if stage != "worker":
        assert answer["error"] == "busy"
    order_id = job.get("order_id")
    if order_id:  # as it was before the request: nothing written
        before = {"accept": "claim", "ship": "pack", "amend": "claim"}[stage]
        assert api.timeline(order_id) == EXPECTED_TIMELINE[before]
    status, _ = _hot_path(api, client, stack, stage, delivery_id, job, lease)
    assert status in (200, 201)  # the client's retry


# Event handlers ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [(), WRITES], ids=["every_call", "writes"])
@pytest.mark.parametrize("kind", KINDS)
def test_queue_handlers_report_the_record_back_and_do_it_once_later(
        client: Client, stack: dict[str, str], faults: Faults, kind: str,
        target: tuple[str, ...]) -> None:
    """The alert dispatcher (a case per problem) and Amazon's notifications (into the inbox):
    under a fault that outlasts every retry, each record is reported back (the queue delivers
    it again); delivered again without it, it is done once."""
    from chalicelib.cs import case_store
    from chalicelib.cs.alerts import Alert, Severity
    from chalicelib.flows import feeds
    from tests.integration.test_marketplace_feeds import amazon_message

    subject = f"order:ord_{uuid.uuid4().hex[:12]}"
    alert = Alert(kind="order.invalid", severity=Severity.HIGH, subject=subject,
                  at=feeds.utcnow(), summary="checked", facts={})
    alerts = client.events.generate_sqs_event(queue_name="order-backbone-local-alerts",
                                              message_bodies=[alert.model_dump_json()])
    notification = str(uuid.uuid4())
    amazon = client.events.generate_sqs_event(
        queue_name="order-backbone-local-amazon-notifications",
        message_bodies=[amazon_message(f"113-{uuid.uuid4().int % 10**7:07d}-0000001",
                                       notification)])
    faults.add(kind, operations=target)
    try:
        failed = {"alert_dispatch": retried(client, "alert_dispatch", alerts),
                  "amazon_notifications": retried(client, "amazon_notifications", amazon)}
    finally:
        faults.clear()
    for handler, event in (("alert_dispatch", alerts), ("amazon_notifications", amazon)):
        if failed[handler]:
            assert failed[handler] == [event["Records"][0]["messageId"]]
            assert retried(client, handler, event) == []
    if kind != "timeout_after_commit" or not target:  # else it may have landed at once
        assert failed["alert_dispatch"], "a fault that outlasts every retry went unnoticed"
    opened = [c for c in case_store.open_cases("order.invalid") if c.subject == subject]
    assert len(opened) == 1 and opened[0].occurrences == 1
    assert retried(client, "alert_dispatch", alerts) == []  # delivered once more: a duplicate
    assert [c.occurrences for c in case_store.open_cases("order.invalid")
            if c.subject == subject] == [1]
    stored = inbox_item(stack, "amazon", notification)
    assert stored is not None and "pending" in stored


@pytest.mark.parametrize("kind", KINDS)
def test_the_deadline_sweep_leaves_the_work_for_the_next_run(
        api: Api, client: Client, stack: dict[str, str], faults: Faults,
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    from chalicelib.flows import warehouse
    from chalicelib.warehouse import job_store

    _, job, _ = _job_at(api, client, stack, faults, "print")
    monkeypatch.setattr(job_store, "due", lambda now, limit=100: [(job["partner_id"],
                                                                   job["job_id"])])
    later = warehouse.utcnow() + timedelta(days=10)  # past its ship-by
    faults.add(kind)
    try:
        warehouse.sweep_deadlines(later)
    except Exception as exc:  # the schedule's invocation fails; the next one sweeps again
        from chalicelib.core.dynamodb import classify

        answer = classify(exc)
        assert answer is not None and answer.status == 503, exc
    finally:
        faults.clear()
    warehouse.sweep_deadlines(later)
    warehouse.sweep_deadlines(later)  # the next run: already alerted
    timeline = api.timeline(job["order_id"])
    assert timeline.count("alert.late_dispatch") == 1, timeline


# The other routes ------------------------------------------------------------------------------


def _open_case(client: Client, subject: str) -> str:
    from chalicelib.cs import case_store
    from chalicelib.cs.alerts import Alert, Severity
    from chalicelib.flows import feeds

    alert = Alert(kind="order.invalid", severity=Severity.HIGH, subject=subject,
                  at=feeds.utcnow(), summary="checked", facts={})
    event = client.events.generate_sqs_event(queue_name="order-backbone-local-alerts",
                                             message_bodies=[alert.model_dump_json()])
    assert retried(client, "alert_dispatch", event) == []
    (case,) = [c for c in case_store.open_cases("order.invalid") if c.subject == subject]
    return case.case_id


@pytest.mark.parametrize("target", [(), WRITES], ids=["every_call", "writes"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_other_routes_answer_the_contract_and_do_their_work_once(
        api: Api, client: Client, stack: dict[str, str], faults: Faults,
        system_faults: list[str], kind: str, target: tuple[str, ...]) -> None:
    """Heartbeat, release, reject, waves, a change's resolution, returns, SKU locations, the
    job and case lists, a case's acknowledgement and resolution: each under the fault (the
    contract), then as the client retries it (done, once)."""
    with faults.paused():
        payloads = [shopify_order(id=uuid.uuid4().int % 10**13) for _ in range(4)]
        deliveries = []
        for payload in payloads:
            body = dumps(payload)
            headers = shopify_headers(body)
            assert client.http.post("/webhooks/shopify", headers=headers,
                                    body=body).status_code == 200
            deliveries.append(headers["X-Shopify-Webhook-Id"])
        event = stream_event([inbox_key("shopify", d) for d in deliveries],
                             stack["INBOX_TABLE"], stack["INBOX_STREAM_ARN"])
        assert client.lambda_.invoke("order_worker", event).payload["batchItemFailures"] == []
        claimed = api.claim(4)
        lease = claimed["lease_id"]
        waved, intercepted, rejected, released = (job["job_id"] for job in claimed["jobs"])
        for job_id in (waved, intercepted):
            api.post(f"/jobs/{job_id}/accept", {"lease_id": lease})
        api.post(f"/jobs/{intercepted}/print")
        order_of = {job["job_id"]: job["order_id"] for job in claimed["jobs"]}
        change_id = api.amend(order_of[intercepted], {
            "kind": "address", "reason": "buyer moved", "address": NEW_ADDRESS,
        })["change"]["change_id"]
        case_id = _open_case(client, f"order:ord_{uuid.uuid4().hex[:12]}")
    run = Run(api, client, stack, faults, kind, target)
    partner = {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"}
    cs = {"Authorization": f"Bearer {api.cs_key}", "Content-Type": "application/json"}

    def post(path: str, body: dict[str, Any], headers: dict[str, str] = partner) -> Any:
        return lambda: client.http.post(path, headers=headers, body=dumps(body))

    def get(path: str, headers: dict[str, str] = partner) -> Any:
        return lambda: client.http.get(path, headers=headers)

    jobs_path = "/warehouse/v1/jobs"
    run.faulted("heartbeat", post(f"{jobs_path}/{released}/heartbeat", {"lease_id": lease}),
                lambda state: state["lease_id"] == lease)
    run.faulted("release", post(f"{jobs_path}/{released}/release", {"lease_id": lease}),
                # a 409's current state (released before its answer was lost) names no lease
                lambda state: state.get("lease_id") is None and state["handshake"] == "offered")
    run.faulted("reject", post(f"{jobs_path}/{rejected}/reject", {
        "lease_id": lease, "reason": "out_of_stock"}),
        lambda state: state["handshake"] == "rejected")
    run.faulted("sku-locations", lambda: client.http.put(
        "/warehouse/v1/sku-locations", headers=partner,
        body=dumps({"locations": {"TOTE-NAT": "A-01-02"}})), lambda answer: answer["count"] == 1)
    wave = run.faulted("wave", post("/warehouse/v1/waves", {"job_ids": [waved]}),
                       lambda answer: answer.get("job_ids", [waved]) == [waved])
    run.faulted("resolve change", post(f"{jobs_path}/{intercepted}/changes/{change_id}/resolve",
                                       {"outcome": "intercepted", "note": "label swapped"}),
                lambda state: state["reprint_required"])
    report = {"return_tracking_number": f"YT{uuid.uuid4().int % 10**13:013d}",
              "buyer_name": "林伟", "items": [{"sku": "LS-WHT-M", "quantity": 1}],
              "reason": "collar torn", "packaging": "intact", "goods_damaged": False,
              "job_id": waved}
    run.faulted("return", post("/warehouse/v1/returns", report),
                lambda answer: "liability_hint" in answer)
    run.faulted("job", get(f"{jobs_path}/{waved}"), lambda state: state["job_id"] == waved)
    run.faulted("jobs", get(f"{jobs_path}?updated_since=2000-01-01T00:00:00Z"),
                lambda page: "jobs" in page)
    run.faulted("acknowledge", post(f"/cs/v1/cases/{case_id}/acknowledge",
                                    {"note": "calling the buyer"}, cs),
                lambda case: case["status"] == "acknowledged")
    run.faulted("resolve case", post(f"/cs/v1/cases/{case_id}/resolve",
                                     {"note": "address added"}, cs),
                lambda case: case["status"] == "resolved")
    run.faulted("cases", get("/cs/v1/cases", cs), lambda page: "cases" in page)
    run.faulted("case", get(f"/cs/v1/cases/{case_id}", cs),
                lambda case: case["case_id"] == case_id)

    assert system_faults == []
    # Each done once, whatever the fault made the first try do.
    assert api.timeline(order_of[waved]) == [
        "order.received", "job.created", "job.accepted", "job.printed", "return.received"]
    assert api.timeline(order_of[intercepted]) == [
        "order.received", "job.created", "job.accepted", "job.printed", "order.amended",
        "change.intercept_requested", "change.intercepted"]
    assert api.timeline(order_of[rejected]) == ["order.received", "job.created",
                                                "job.rejected"]
    assert api.timeline(order_of[released]) == ["order.received", "job.created"]
    if wave is not None and "wave_id" in wave:
        assert api.get(f"/jobs/{waved}")["printed"]["wave_id"] == wave["wave_id"]
    case = json.loads(client.http.get(f"/cs/v1/cases/{case_id}", headers=cs).body)
    assert [step["action"] for step in case["history"]][-2:] == ["acknowledged", "resolved"]
    assert [step["action"] for step in case["history"]].count("acknowledged") == 1
    assert run.refused, "no route met the fault"
