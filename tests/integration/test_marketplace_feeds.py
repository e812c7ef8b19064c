"""The marketplaces we fetch notifications from: Amazon's SQS queue (through the real
`amazon_notifications` handler) and Taobao's TMC (the real poller), into the same inbox and
order worker as every webhook. Platform HTTP is answered with the recorded fixtures."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import responses
from chalice.test import Client

from chalicelib.flows import feeds as marketplace_feeds
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces import taobao
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import order_id_for
from chalicelib.warehouse import job_store as jobs_store
from tests.integration.flow import alerts_received, inbox_item, process

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SP_API = "https://sellingpartnerapi-na.amazon.com"


def fixture(platform: str, name: str) -> Any:
    return json.loads((FIXTURES / platform / name).read_text())


def amazon_message(order_id: str, notification_id: str) -> str:
    message = fixture("amazon", "order_change_unshipped.json")
    message["NotificationMetadata"]["NotificationId"] = notification_id
    message["Payload"]["OrderChangeNotification"]["AmazonOrderId"] = order_id
    return json.dumps(message)


def consume(client: Client, *bodies: str) -> Any:
    event = client.events.generate_sqs_event(
        queue_name="order-backbone-local-amazon-notifications", message_bodies=list(bodies))
    return client.lambda_.invoke("amazon_notifications", event).payload


@responses.activate
def test_an_amazon_order_change_on_the_queue_becomes_an_order_with_its_address(
        client: Client, stack: dict[str, str]) -> None:
    responses.add_passthru("http://127.0.0.1")
    seller = "A" + uuid.uuid4().hex[:12].upper()
    shop = f"{seller}/ATVPDKIKX0DER"
    shop_credentials.put("amazon", shop, {
        "refresh_token": "Atzr|refresh", "client_id": "amzn1.application-oa2-client.x",
        "client_secret": "secret", "region": "na", "marketplace_id": "ATVPDKIKX0DER"})
    order_id = f"113-{uuid.uuid4().int % 10**7:07d}-{uuid.uuid4().int % 10**7:07d}"
    notification = str(uuid.uuid4())
    body = json.loads(amazon_message(order_id, notification))
    body["Payload"]["OrderChangeNotification"]["SellerId"] = seller
    raw = json.dumps(body)

    assert consume(client, raw) == {"batchItemFailures": []}
    assert consume(client, raw) == {"batchItemFailures": []}  # SQS redelivery: stored once
    stored = inbox_item(stack, "amazon", notification)
    assert stored is not None and stored["shop"] == shop

    token = responses.post("https://api.amazon.com/auth/o2/token", json={
        "access_token": "Atza|live", "token_type": "bearer", "expires_in": 3600})
    rdt = responses.post(f"{SP_API}/tokens/2021-03-01/restrictedDataToken",
                         json=fixture("amazon", "restricted_data_token.json"))
    order = fixture("amazon", "get_order.json")
    order["payload"]["AmazonOrderId"] = order_id
    get_order = responses.get(f"{SP_API}/orders/v0/orders/{order_id}", json=order)
    order_items = fixture("amazon", "get_order_items.json")
    order_items["payload"]["AmazonOrderId"] = order_id
    items = responses.get(f"{SP_API}/orders/v0/orders/{order_id}/orderItems", json=order_items)
    assert process(client, stack, "amazon", notification) == {"batchItemFailures": []}

    # LWA first; the order itself with the Restricted Data Token, so it carries the address.
    assert dict(parse_qsl(token.calls[0].request.body))["grant_type"] == "refresh_token"
    assert rdt.calls[0].request.headers["x-amz-access-token"] == "Atza|live"
    assert get_order.calls[0].request.headers["x-amz-access-token"].startswith("Atz.sprdt|")
    assert items.calls[0].request.headers["x-amz-access-token"] == "Atza|live"
    current = orders_store.get_current(order_id_for("amazon", shop, order_id))
    assert current is not None, str(inbox_item(stack, "amazon", notification))[-600:]
    assert current.job is not None
    assert current.order.shipping_address is not None
    assert current.order.shipping_address.line1
    job = jobs_store.get(current.job.partner_id, current.job.job_id)
    assert job is not None  # the item ids travel to confirmShipment's orderItems
    assert [line.line_id for line in job.lines] == [line.line_id for line in current.order.lines]
    assert all(line.line_id for line in job.lines)


def test_a_buyer_asking_amazon_to_cancel_is_a_cs_case_once(
        client: Client, stack: dict[str, str]) -> None:
    message = fixture("amazon", "order_change_buyer_cancel.json")
    message["NotificationMetadata"]["NotificationId"] = str(uuid.uuid4())
    change = message["Payload"]["OrderChangeNotification"]
    alerts_received(stack)
    raw = json.dumps(message)
    assert consume(client, raw) == {"batchItemFailures": []}
    assert consume(client, raw) == {"batchItemFailures": []}  # redelivered: no second alert
    (alert,) = alerts_received(stack)
    shop = f"{change['SellerId']}/{change['Summary']['MarketplaceId']}"
    assert alert["kind"] == "order.buyer_cancel_requested"
    assert alert["facts"]["order_id"] == order_id_for("amazon", shop, change["AmazonOrderId"])


def test_an_unreadable_amazon_message_is_a_case_and_leaves_the_queue(
        client: Client, stack: dict[str, str]) -> None:
    alerts_received(stack)
    assert consume(client, '{"NotificationType": "ORDER_CHANGE"}') == {"batchItemFailures": []}
    kinds = [a["kind"] for a in alerts_received(stack)]
    assert kinds == ["marketplace.unreadable_notification"]


@responses.activate
def test_taobao_tmc_messages_are_stored_confirmed_and_become_orders(
        client: Client, stack: dict[str, str]) -> None:
    responses.add_passthru("http://127.0.0.1")
    app_key = str(uuid.uuid4().int % 10**8)
    consumed = fixture("taobao", "tmc_consume.json")
    messages = consumed["tmc_messages_consume_response"]["messages"]["tmc_message"]
    shop = messages[0]["user_nick"]
    base = uuid.uuid4().int % 10**15
    for n, message in enumerate(messages):  # fresh message ids: the inbox outlives this test
        message["id"] = base + n
    shop_credentials.put("taobao", shop, {"app_key": app_key, "app_secret": "s" * 32,
                                          "session": "6100e2..."})
    confirmed: list[str] = []
    queue = [consumed, consumed, fixture("taobao", "tmc_consume_empty.json")]
    trade = fixture("taobao", "trade_fullinfo.json")

    def gateway(request: Any) -> tuple[int, dict[str, str], str]:
        form = dict(parse_qsl(request.body))
        method = form["method"]
        if method == "taobao.tmc.messages.consume":
            answer = queue.pop(0) if queue else fixture("taobao", "tmc_consume_empty.json")
        elif method == "taobao.tmc.messages.confirm":
            confirmed.extend(form["s_message_ids"].split(","))
            answer = fixture("taobao", "tmc_confirm.json")
        else:
            answer = trade
        return 200, {}, json.dumps(answer, ensure_ascii=False)

    responses.add_callback(responses.POST, taobao.GATEWAY, callback=gateway)
    now = datetime.now(UTC)
    alerts_received(stack)
    first = marketplace_feeds.poll_taobao(now)
    assert first["stored"] == len(messages) and first["errors"] == 0
    assert first["messages"] == 2 * len(messages)  # the redelivery was deduplicated...
    assert sorted(confirmed) == sorted(2 * [str(m["id"]) for m in messages])  # ...and confirmed
    # The buyer's refund request (once, though delivered twice) is CS's to decide.
    refunds = [m for m in messages if m["topic"] == "taobao_refund_RefundCreated"]
    assert [a["kind"] for a in alerts_received(stack)] == ["order.buyer_cancel_requested"] * len(
        refunds) == ["order.buyer_cancel_requested"]

    paid = str(messages[0]["id"])
    assert process(client, stack, "taobao", paid) == {"batchItemFailures": []}
    tid = str(trade["trade_fullinfo_get_response"]["trade"]["tid"])
    current = orders_store.get_current(order_id_for("taobao", shop, tid))
    assert current is not None and current.order.status == "paid"
