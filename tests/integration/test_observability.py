"""Logs and metrics as Lambda writes them (stdout): a JSON line of the webhook, the order worker
and the ship call can be found by order id, none holds a buyer's name, phone or street or a
secret, and each invocation's EMF blobs count what it did (issue 13, item 4)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.core.observability import NAMESPACE, SERVICE
from chalicelib.orders.order import order_id_for
from tests.integration.flow import process
from tests.support import SHOP, SHOPIFY_SECRET, dumps, shopify_headers, shopify_order

# What must never reach a log line: the buyer's name, phones, street, email, and secrets.
BUYER_FAMILY, BUYER_GIVEN = "欧阳", "觅踪"
PHONE = "+86 139 7531 8642"
MOBILE = "+8613975318642"
STREET = "观澜湖畔路 4321 号"
SECOND_LINE = "潜踪大厦 77 楼"
EMAIL = "ouyang.mizong@example.com"
PERSONAL = (BUYER_FAMILY + BUYER_GIVEN, BUYER_FAMILY, BUYER_GIVEN, "13975318642", "7531 8642",
            "4321", "观澜湖畔路", "潜踪大厦", EMAIL)



def the_buyers_order() -> dict[str, Any]:
    address = {"first_name": BUYER_GIVEN, "last_name": BUYER_FAMILY,
               "name": BUYER_FAMILY + BUYER_GIVEN, "address1": STREET, "address2": SECOND_LINE,
               "city": "上海", "province": "Shanghai", "province_code": "SH", "zip": "200040",
               "country": "China", "country_code": "CN", "phone": PHONE}
    order = shopify_order(id=uuid.uuid4().int % 10**13, email=EMAIL, contact_email=EMAIL,
                          shipping_address=address, billing_address=address)
    order["customer"] = {**order["customer"], "first_name": BUYER_GIVEN,
                         "last_name": BUYER_FAMILY, "email": EMAIL, "phone": MOBILE}
    return order


def lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines (not the EMF blobs) of captured stdout."""
    found = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' not in line:
            found.append(json.loads(line))
    return found


def blobs(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def counted(found: list[dict[str, Any]]) -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
    """(metric, its dimensions but the service) -> total, over EMF blobs."""
    totals: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for blob in found:
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        dimensions = tuple(sorted((name, blob[name]) for name in directive["Dimensions"][0]
                                  if name != "service"))
        for metric in directive["Metrics"]:
            totals[(metric["Name"], dimensions)] += int(sum(blob[metric["Name"]]))
    return totals


def test_the_webhook_the_worker_and_the_ship_call_log_the_order_id_and_nothing_personal(
        client: Client, stack: dict[str, str], partner: str, make_key: Any,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    key = make_key("partner", partner)
    order = the_buyers_order()
    order_id = order_id_for("shopify", SHOP, str(order["id"]))
    body = dumps(order)
    headers = shopify_headers(body)
    response = client.http.post("/webhooks/shopify", headers=headers, body=body)
    assert response.status_code == 200
    webhook = capsys.readouterr()

    assert process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"]) == {
        "batchItemFailures": []}
    worker = capsys.readouterr()

    def call(path: str, payload: dict[str, Any]) -> Any:
        answer = client.http.post(f"/warehouse/v1{path}", body=json.dumps(payload).encode(),
                                  headers={"Authorization": f"Bearer {key}",
                                           "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.body
        return json.loads(answer.body)

    claimed = call("/jobs/claim", {})
    (job,) = claimed["jobs"]
    job_id = job["job_id"]
    call(f"/jobs/{job_id}/accept", {"lease_id": claimed["lease_id"]})
    call(f"/jobs/{job_id}/print", {})
    call(f"/jobs/{job_id}/pick", {})
    call(f"/jobs/{job_id}/pack", {"weight_grams": 500, "package_count": 1})
    capsys.readouterr()
    call(f"/jobs/{job_id}/ship", {"shipment_id": "ship-1", "packages": [
        {"carrier_code": "SF", "tracking_number": f"SF{uuid.uuid4().int % 10**12}"}]})
    ship = capsys.readouterr()

    # Found by order id: a line of each hop carries it as a field.
    (accepted,) = [line for line in lines(webhook.out) if line["name"] == "chalicelib.flows.intake"]
    assert accepted["order_id"] == order_id and accepted["level"] == "INFO"
    assert accepted["delivery_id"] == headers["X-Shopify-Webhook-Id"]
    assert accepted["message"].endswith(f"{headers['X-Shopify-Webhook-Id']} accepted")
    assert accepted["service"] == SERVICE and accepted["request_id"]
    applied = [line for line in lines(worker.out)
               if line["name"] == "chalicelib.flows.order_worker"]
    assert applied and all(line["order_id"] == order_id for line in applied)
    assert applied[-1]["job_id"] == "job_" + order_id.removeprefix("ord_")
    assert applied[-1]["message"].endswith(": created")
    assert applied[-1]["delivery_id"] == headers["X-Shopify-Webhook-Id"]
    shipped = [line for line in lines(ship.out) if "job.shipped" in line["message"]]
    assert [(line["order_id"], line["job_id"], line["partner_id"]) for line in shipped] == [
        (order_id, job_id, partner)]

    # Nothing personal and no secret in anything any of them wrote, nor in the log records.
    written = "\n".join([webhook.out, webhook.err, worker.out, worker.err, ship.out, ship.err,
                         caplog.text])
    assert order_id in written
    for fact in (*PERSONAL, SHOPIFY_SECRET, key, headers["X-Shopify-Hmac-Sha256"]):
        assert fact not in written, fact


def test_each_invocation_writes_its_counts_once_as_emf(
        client: Client, stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    order = shopify_order(id=uuid.uuid4().int % 10**13)
    body = dumps(order)
    headers = shopify_headers(body)
    capsys.readouterr()
    for _ in range(2):  # accepted, then a duplicate
        assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code \
            == 200
    forged = shopify_headers(body, secret="not-the-secret")
    assert client.http.post("/webhooks/shopify", headers=forged, body=body).status_code == 401
    assert client.http.post("/webhooks/nobody-registered-me", headers=headers,
                            body=body).status_code == 404
    webhooks = blobs(capsys.readouterr().out)
    assert process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"]) == {
        "batchItemFailures": []}
    worker = blobs(capsys.readouterr().out)

    assert len(webhooks) == 4  # one per request: each is an invocation
    assert counted(webhooks) == {
        ("WebhooksAccepted", (("source", "shopify"),)): 1,
        ("WebhooksDuplicate", (("source", "shopify"),)): 1,
        ("WebhooksRefused", (("source", "shopify"),)): 1,
        ("WebhooksRefused", (("source", "unknown"),)): 1,  # a URL anyone can make up
    }
    # The worker's one invocation: one blob per set of dimension values, written at its end.
    assert counted(worker) == {
        ("OrdersApplied", (("outcome", "created"),)): 1,
        ("JobTransitions", (("transition", "job.created"),)): 1,
    }
    assert len(worker) == 2
    for blob in webhooks + worker:
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE and blob["service"] == SERVICE
        # Per value and per service alone (a total across sources, outcomes, ... to alarm on).
        assert directive["Dimensions"][1:] == [["service"]]
        assert [m["Unit"] for m in directive["Metrics"]] == ["Count"] * len(directive["Metrics"])


def test_records_of_one_batch_do_not_share_keys(
        client: Client, stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A stream batch is many deliveries in one invocation: each record's lines carry its own
    delivery and order only, and the invocation's request id."""
    orders = [shopify_order(id=uuid.uuid4().int % 10**13) for _ in range(2)]
    deliveries = []
    for order in orders:
        body = dumps(order)
        headers = shopify_headers(body)
        assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code \
            == 200
        deliveries.append(headers["X-Shopify-Webhook-Id"])
    capsys.readouterr()
    process(client, stack, "shopify", *deliveries)
    found = [line for line in lines(capsys.readouterr().out)
             if line["name"] == "chalicelib.flows.order_worker"]
    expected = {d: order_id_for("shopify", SHOP, str(o["id"])) for d, o in zip(deliveries, orders,
                                                                                 strict=True)}
    assert {line["delivery_id"] for line in found} == set(deliveries)
    for line in found:
        assert line["order_id"] == expected[line["delivery_id"]]
    assert len({line["request_id"] for line in found}) == 1
    assert len({line["record_id"] for line in found}) == 2
