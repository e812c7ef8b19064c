"""Webhook -> inbox -> order worker -> order, events and job, against the local endpoint."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.orders.order import order_id_for
from tests.integration.flow import alerts_received, inbox_item, process
from tests.support import (
    SHOP,
    canonical_order,
    dumps,
    shopify_headers,
    shopify_order,
    standard_headers,
)


def unique_order(**changes: Any) -> dict[str, Any]:
    """A fresh external id per test: tests share one local endpoint."""
    return shopify_order(id=uuid.uuid4().int % 10**13, **changes)


def post_shopify(client: Client, payload: dict[str, Any], **header_args: Any) -> tuple[Any, str]:
    body = dumps(payload)
    headers = shopify_headers(body, **header_args)
    response = client.http.post("/webhooks/shopify", headers=headers, body=body)
    return response, headers["X-Shopify-Webhook-Id"]


def view(client: Client, key: str, payload: dict[str, Any]) -> dict[str, Any]:
    order_id = order_id_for("shopify", SHOP, str(payload["id"]))
    response = client.http.get(f"/cs/v1/orders/{order_id}",
                               headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.body
    return json.loads(response.body)


@pytest.fixture
def cs_key(make_key: Any) -> str:
    from chalicelib.access.keys import Role

    return str(make_key("staff", "alice", Role.READ_ONLY))


def test_paid_order_becomes_an_order_with_timeline_and_one_job(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    payload = unique_order()
    response, delivery = post_shopify(client, payload)
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "accepted", "delivery_id": delivery}
    assert inbox_item(stack, "shopify", delivery)["pending"] == "pending"

    assert process(client, stack, "shopify", delivery) == {"batchItemFailures": []}

    assert "pending" not in inbox_item(stack, "shopify", delivery)
    order = view(client, cs_key, payload)
    assert order["order"]["status"] == "paid"
    assert order["order"]["name"] == "#1042"
    assert order["as_received"]["raw"] == dumps(payload).decode()
    assert [e["type"] for e in order["timeline"]] == ["order.received", "job.created"]
    assert order["timeline"][0]["actor"] == f"shopify webhook {delivery}"
    assert order["job"]["partner_id"] == "factory-1"
    assert order["job"]["work"] == "queued"
    assert [line["sku"] for line in order["job"]["lines"]] == ["LS-WHT-M", "TOTE-NAT"]


def test_the_same_delivery_five_times_is_one_order_one_job(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    payload = unique_order()
    body = dumps(payload)
    headers = shopify_headers(body)
    answers = [json.loads(client.http.post("/webhooks/shopify", headers=headers, body=body).body)
               for _ in range(5)]
    assert [a["status"] for a in answers] == ["accepted"] + ["duplicate"] * 4
    delivery = headers["X-Shopify-Webhook-Id"]
    # The stream may deliver the record more than once too.
    for _ in range(3):
        process(client, stack, "shopify", delivery)
    order = view(client, cs_key, payload)
    assert [e["type"] for e in order["timeline"]] == ["order.received", "job.created"]


def test_other_deliveries_of_the_same_version_are_stale(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    payload = unique_order()
    _, created = post_shopify(client, payload, topic="orders/create")
    _, paid = post_shopify(client, payload, topic="orders/paid")
    process(client, stack, "shopify", created, paid)
    assert inbox_item(stack, "shopify", paid)["outcome"] == "stale"
    assert len(view(client, cs_key, payload)["timeline"]) == 2


def test_an_update_that_arrives_before_the_create_wins(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    created = unique_order(financial_status="pending")
    updated = {**created, "financial_status": "paid", "note": "address checked by phone",
               "updated_at": "2026-11-23T10:20:00+08:00"}
    _, update_delivery = post_shopify(client, updated, topic="orders/updated")
    _, create_delivery = post_shopify(client, created, topic="orders/create")
    process(client, stack, "shopify", update_delivery)
    process(client, stack, "shopify", create_delivery)
    order = view(client, cs_key, created)
    assert order["order"]["status"] == "paid"
    assert order["order"]["buyer_note"] == "address checked by phone"
    assert inbox_item(stack, "shopify", create_delivery)["outcome"] == "stale"
    assert [e["type"] for e in order["timeline"]] == ["order.received", "job.created"]


def test_a_later_change_is_appended_never_overwriting_what_was_received(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    payload = unique_order(financial_status="pending")
    _, first = post_shopify(client, payload, topic="orders/create")
    process(client, stack, "shopify", first)
    paid = {**payload, "financial_status": "paid", "updated_at": "2026-11-23T10:30:00+08:00"}
    _, second = post_shopify(client, paid, topic="orders/paid")
    process(client, stack, "shopify", second)
    order = view(client, cs_key, payload)
    assert order["as_received"]["order"]["status"] == "pending_payment"
    assert order["order"]["status"] == "paid"
    updated = [e for e in order["timeline"] if e["type"] == "order.updated"]
    assert updated[0]["data"]["changes"]["status"] == {"from": "pending_payment", "to": "paid"}
    assert order["job"] is not None


def test_cancelled_before_claim_cancels_the_job(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    payload = unique_order()
    _, paid = post_shopify(client, payload)
    process(client, stack, "shopify", paid)
    cancelled = {**payload, "cancelled_at": "2026-11-23T11:00:00+08:00",
                 "updated_at": "2026-11-23T11:00:00+08:00"}
    _, cancel = post_shopify(client, cancelled, topic="orders/cancelled")
    process(client, stack, "shopify", cancel)
    order = view(client, cs_key, payload)
    assert order["order"]["status"] == "cancelled"
    assert order["job"]["work"] == "cancelled"
    assert order["timeline"][-1]["type"] == "change.applied"
    assert order["job"]["changes"][0]["kind"] == "cancel"


@pytest.mark.parametrize(("mutate", "status", "reason"), [
    (lambda b, h: (b + b"x", h), 401, "invalid_signature"),
    (lambda b, h: (b, {**h, "X-Shopify-Hmac-Sha256": "AAAA"}), 401, "invalid_signature"),
    (lambda b, h: (b, {k: v for k, v in h.items() if k != "X-Shopify-Hmac-Sha256"}), 401,
     "missing_signature"),
])
def test_bad_signatures_are_refused_and_nothing_is_stored(
        client: Client, stack: dict[str, str], mutate: Any, status: int, reason: str) -> None:
    body = dumps(unique_order())
    sent_body, headers = mutate(body, shopify_headers(body))
    response = client.http.post("/webhooks/shopify", headers=headers, body=sent_body)
    assert response.status_code == status
    assert json.loads(response.body)["error"] == reason
    assert inbox_item(stack, "shopify", headers["X-Shopify-Webhook-Id"]) is None


def test_malformed_oversized_unknown_and_invalid(client: Client, stack: dict[str, str]) -> None:
    body = b'{"id": 1, '
    response = client.http.post("/webhooks/shopify", headers=shopify_headers(body), body=body)
    assert (response.status_code, json.loads(response.body)["error"]) == (400, "malformed_json")

    big = dumps(unique_order(note="x" * 300_000))
    response = client.http.post("/webhooks/shopify", headers=shopify_headers(big), body=big)
    assert (response.status_code, json.loads(response.body)["error"]) == (413, "payload_too_large")

    body = dumps(unique_order())
    response = client.http.post("/webhooks/nosuch", headers=shopify_headers(body), body=body)
    assert (response.status_code, json.loads(response.body)["error"]) == (404, "unknown_source")

    alerts_received(stack)  # start from an empty alert queue
    body = dumps(unique_order(line_items=[]))
    response = client.http.post("/webhooks/shopify", headers=shopify_headers(body), body=body)
    assert (response.status_code, json.loads(response.body)["error"]) == (422, "invalid_payload")
    assert any(a["kind"] == "webhook.invalid_payload" for a in alerts_received(stack))


def test_storage_failure_answers_503_so_the_sender_retries(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.core.settings import settings

    monkeypatch.setenv("INBOX_TABLE", "no-such-table")
    settings.cache_clear()
    body = dumps(unique_order())
    response = client.http.post("/webhooks/shopify", headers=shopify_headers(body), body=body)
    assert response.status_code == 503
    assert json.loads(response.body)["error"] == "storage_unavailable"


def test_paid_order_without_address_is_held_and_alerted(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    alerts_received(stack)
    payload = unique_order(shipping_address=None)
    _, delivery = post_shopify(client, payload)
    process(client, stack, "shopify", delivery)
    order = view(client, cs_key, payload)
    assert order["job"] is None
    assert order["timeline"][-1]["type"] == "order.invalid"
    kinds = [(a["kind"], a["facts"].get("problems")) for a in alerts_received(stack)]
    assert ("order.invalid", ["no_shipping_address"]) in kinds


def test_standard_webhooks_source_end_to_end(client: Client, stack: dict[str, str],
                                             cs_key: str) -> None:
    data = canonical_order(external_id=f"SO-{uuid.uuid4().hex[:8]}")
    body = dumps({"type": "order.paid", "timestamp": "2026-11-23T02:01:00Z", "data": data})
    headers = standard_headers(body)
    response = client.http.post("/webhooks/erp", headers=headers, body=body)
    assert response.status_code == 200, response.body
    process(client, stack, "erp", headers["webhook-id"])
    order_id = order_id_for("erp", "erp-main", data["external_id"])
    response = client.http.get(f"/cs/v1/orders/{order_id}",
                               headers={"Authorization": f"Bearer {cs_key}"})
    assert json.loads(response.body)["job"]["ship_to"]["city"] == "杭州"


def test_a_failing_worker_reports_the_record_and_the_sweep_alerts_cs(
        client: Client, stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from chalicelib.core.clock import utcnow
    from chalicelib.core.settings import settings
    from chalicelib.flows import order_worker

    payload = unique_order()
    _, delivery = post_shopify(client, payload)
    monkeypatch.setenv("ORDERS_TABLE", "no-such-table")
    settings.cache_clear()
    with pytest.raises(Exception, match="All records failed"):
        process(client, stack, "shopify", delivery)
    monkeypatch.setenv("ORDERS_TABLE", stack["ORDERS_TABLE"])
    settings.cache_clear()
    assert inbox_item(stack, "shopify", delivery)["pending"] == "pending"

    alerts_received(stack)
    assert order_worker.sweep_unprocessed(utcnow() + timedelta(minutes=11)) >= 1
    assert order_worker.sweep_unprocessed(utcnow() + timedelta(minutes=12)) == 0  # once each
    subjects = [a["subject"] for a in alerts_received(stack) if a["kind"] ==
                "delivery.unprocessed"]
    assert f"shopify#{delivery}" in subjects
    # The delivery is still there to be applied: the retry succeeds.
    assert process(client, stack, "shopify", delivery) == {"batchItemFailures": []}
    assert "pending" not in inbox_item(stack, "shopify", delivery)


def test_dead_lettered_batch_becomes_a_critical_alert(client: Client,
                                                      stack: dict[str, str]) -> None:
    alerts_received(stack)
    failure = {"requestContext": {"condition": "RetryAttemptsExhausted",
                                  "approximateInvokeCount": 6},
               "DDBStreamBatchInfo": {"shardId": "shardId-0001", "startSequenceNumber": "42",
                                      "endSequenceNumber": "42", "batchSize": 1}}
    event = client.events.generate_sqs_event(message_bodies=[json.dumps(failure)],
                                             queue_name=stack["INBOX_DLQ_NAME"])
    client.lambda_.invoke("inbox_dead_letters", event)
    (alert,) = [a for a in alerts_received(stack) if a["kind"] == "worker.dead_letter"]
    assert alert["severity"] == "critical"
    assert alert["subject"] == "shardId-0001:42"


def test_a_dead_amazon_notification_becomes_a_case_with_its_text(
        client: Client, stack: dict[str, str]) -> None:
    """The Amazon notifications DLQ has a consumer like its siblings: nothing expires unseen."""
    alerts_received(stack)
    body = json.dumps({"NotificationType": "ORDER_CHANGE", "NotificationMetadata": {
        "NotificationId": "n-dead-1"}, "Payload": {"OrderChangeNotification": {
            "AmazonOrderId": "113-0000000-0000001"}}})
    event = client.events.generate_sqs_event(message_bodies=[body],
                                             queue_name=stack["AMAZON_DLQ_NAME"])
    answer = client.lambda_.invoke("amazon_dead_letters", event)
    assert answer.payload == {"batchItemFailures": []}
    (alert,) = [a for a in alerts_received(stack)
                if a["kind"] == "marketplace.notification_dead_letter"]
    assert alert["severity"] == "high"
    assert alert["facts"]["excerpt"] == body
    assert alert["subject"].startswith("amazon-notifications:")
