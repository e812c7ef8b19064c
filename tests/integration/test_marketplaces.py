"""More marketplaces through the real webhook route and order worker: WooCommerce (full payload,
its own answer and ping) and Douyin (a thin push: the worker re-fetches the order from the open
API with the shop's credentials from SSM; a platform that is down makes the stream retry)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from chalice.test import Client

from app import app
from chalicelib import shop_credentials, webhook_sources
from chalicelib.marketplaces.douyin import API_BASE
from chalicelib.orders import order_id_for
from chalicelib.storage import orders as orders_store
from tests.integration.flow import process

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WOO_SECRET = "woo-" + uuid.uuid4().hex
APP_KEY, APP_SECRET = "7312345678901234567", "dy-" + uuid.uuid4().hex


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    webhook_sources.register({
        "woo": {"scheme": "woocommerce", "secrets": [WOO_SECRET]},
        "douyin": {"scheme": "douyin", "secrets": [f"{APP_KEY}:{APP_SECRET}"]},
    })
    with Client(app, stage_name="local") as test_client:
        yield test_client


def woo_headers(body: bytes, delivery: str) -> dict[str, str]:
    signature = base64.b64encode(hmac.new(WOO_SECRET.encode(), body, hashlib.sha256).digest())
    return {"Content-Type": "application/json", "X-WC-Webhook-Signature": signature.decode(),
            "X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": "created", "X-WC-Webhook-ID": "7",
            "X-WC-Webhook-Delivery-ID": delivery,
            "X-WC-Webhook-Source": "https://shop.example.cn/"}


def test_woocommerce_order_is_answered_as_woocommerce_expects_and_becomes_an_order(
        client: Client, stack: dict[str, str]) -> None:
    order = json.loads((FIXTURES / "woocommerce" / "order_processing.json").read_text())
    order["id"] = uuid.uuid4().int % 10**7
    body = json.dumps(order, ensure_ascii=False).encode()
    answer = client.http.post("/webhooks/woo", body=body, headers=woo_headers(body, "d1"))
    assert (answer.status_code, answer.body) == (200, b"")
    assert answer.headers["Content-Type"].startswith("text/plain")
    again = client.http.post("/webhooks/woo", body=body, headers=woo_headers(body, "d2"))
    assert again.status_code == 200  # the same order version again: one delivery
    ping = client.http.post("/webhooks/woo", body=b"webhook_id=7", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-WC-Webhook-Source": "https://shop.example.cn/"})
    assert ping.status_code == 200
    forged = client.http.post("/webhooks/woo", body=body + b" ", headers=woo_headers(body, "d3"))
    assert forged.status_code == 401

    delivery_id = f"shop.example.cn:{order['id']}:{order['date_modified_gmt']}"
    assert process(client, stack, "woo", delivery_id) == {"batchItemFailures": []}
    stored = orders_store.get_current(order_id_for("woocommerce", "shop.example.cn",
                                                   str(order["id"])))
    assert stored is not None and stored.job is not None
    assert stored.order.status == "paid"


def douyin_push(shop_id: int, order_id: str) -> bytes:
    message = json.loads((FIXTURES / "douyin" / "push_trade_create.json").read_text())[0]
    data = json.loads(message["data"])
    data.update(p_id=int(order_id), shop_id=shop_id)
    message.update(data=json.dumps(data), msg_id=f"{order_id}:0:100:{uuid.uuid4().int % 10**9}")
    return json.dumps([message], separators=(",", ":")).encode()


def douyin_headers(body: bytes) -> dict[str, str]:
    sign = hashlib.md5(APP_KEY.encode() + body + APP_SECRET.encode()).hexdigest()
    return {"Content-Type": "application/json", "event-sign": sign, "app-id": APP_KEY}


@responses.activate
def test_a_thin_douyin_push_is_refetched_with_the_shops_credentials(
        client: Client, stack: dict[str, str]) -> None:
    responses.add_passthru("http://127.0.0.1")  # the local AWS endpoint
    detail = json.loads((FIXTURES / "douyin" / "order_detail.json").read_text())
    shop_id = detail["data"]["shop_order_detail"]["shop_id"]
    order_id = str(10**18 + uuid.uuid4().int % 10**17)
    detail["data"]["shop_order_detail"]["order_id"] = order_id
    shop_credentials.put("douyin", str(shop_id), {"app_key": APP_KEY, "app_secret": APP_SECRET,
                                                  "access_token": "tok", "shop_id": str(shop_id)})
    body = douyin_push(shop_id, order_id)
    answer = client.http.post("/webhooks/douyin", body=body, headers=douyin_headers(body))
    assert answer.status_code == 200 and json.loads(answer.body) == {"code": 0, "msg": "success"}
    delivery_id = json.loads(body)[0]["msg_id"]

    busy = json.loads((FIXTURES / "douyin" / "order_detail_busy.json").read_text())
    responses.post(f"{API_BASE}/order/orderDetail", json=busy)
    # The platform is busy: the batch fails and the stream will retry it; nothing stored.
    with pytest.raises(BatchProcessingError, match="系统繁忙"):
        process(client, stack, "douyin", delivery_id)
    ours = order_id_for("douyin", str(shop_id), order_id)
    assert orders_store.get_current(ours) is None

    responses.replace(responses.POST, f"{API_BASE}/order/orderDetail", json=detail)
    assert process(client, stack, "douyin", delivery_id) == {"batchItemFailures": []}
    call = responses.calls[-1].request
    assert "access_token=tok" in call.url and "sign=" in call.url
    stored = orders_store.get_current(ours)
    assert stored is not None and stored.order.status == "paid" and stored.job is not None
