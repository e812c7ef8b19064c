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
from typing import Any

import pytest
import responses
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from chalice.test import Client

from app import app
from chalicelib.access import accounts_store as accounts
from chalicelib.access.keys import Role
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.douyin import API_BASE
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import order_id_for
from tests.integration.flow import process

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WOO_SECRET = "woo-" + uuid.uuid4().hex
APP_KEY, APP_SECRET = "7312345678901234567", "dy-" + uuid.uuid4().hex


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    accounts.register_sources({
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



def woo_order_shipped(client: Client, stack: dict[str, str], partner: str, make_key: Any,
                      ) -> tuple[dict[str, Any], str]:
    """A WooCommerce order in, claimed, printed, packed and shipped by the factory."""
    from tests.integration.test_warehouse_api import Api

    order = json.loads((FIXTURES / "woocommerce" / "order_processing.json").read_text())
    order["id"] = uuid.uuid4().int % 10**7
    body = json.dumps(order, ensure_ascii=False).encode()
    client.http.post("/webhooks/woo", body=body, headers=woo_headers(body, "d"))
    process(client, stack, "woo", f"shop.example.cn:{order['id']}:{order['date_modified_gmt']}")
    api = Api(client, make_key("partner", partner), make_key("staff", "ann", Role.BACK_OFFICE))
    claimed = api.claim(1)
    (job,) = claimed["jobs"]
    api.take(job, claimed["lease_id"])
    number = str(uuid.uuid4().int)[:12]
    api.post(f"/jobs/{job['job_id']}/print", {"waybill_numbers": [number]})
    api.post(f"/jobs/{job['job_id']}/pick", {})
    api.post(f"/jobs/{job['job_id']}/pack", {"weight_grams": 400, "package_count": 1})
    api.post(f"/jobs/{job['job_id']}/ship", {"shipment_id": "s1", "packages": [
        {"carrier_code": "STO", "tracking_number": number}]})
    shop_credentials.put("woocommerce", "shop.example.cn", {
        "store_url": "https://shop.example.cn", "consumer_key": "ck_1", "consumer_secret": "cs_1"})
    return job, number


@responses.activate
def test_a_shipment_is_written_back_once_even_when_the_first_answer_is_lost(
        client: Client, stack: dict[str, str], partner: str, make_key: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from chalicelib.flows import writeback

    responses.add_passthru("http://127.0.0.1")
    job, number = woo_order_shipped(client, stack, partner, make_key)
    external = job["external_id"]
    url = f"https://shop.example.cn/wp-json/wc-shipment-tracking/v3/orders/{external}/" \
          "shipment-trackings"
    # The platform stores the tracking but its answer is lost (a 503 after the write).
    responses.post(url, status=503)
    now = datetime.now(UTC)
    writeback.run_writebacks(now + timedelta(seconds=1))
    existing = json.loads((FIXTURES / "woocommerce" / "trackings_existing.json").read_text())
    existing[0]["tracking_number"] = number
    responses.get(url, json=existing)
    writeback.run_writebacks(now + timedelta(minutes=2))
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 1  # the retry asked first and did not add the tracking twice
    assert json.loads(posts[0].request.body)["tracking_number"] == number
    timeline = [e.type for e in orders_store.read_all(job["order_id"]).events]
    assert timeline.count("marketplace.shipped") == 1
    writeback.run_writebacks(now + timedelta(hours=1))
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@responses.activate
def test_a_writeback_the_platform_refuses_is_a_cs_case(
        client: Client, stack: dict[str, str], partner: str, make_key: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from chalicelib.flows import writeback
    from tests.integration.flow import alerts_received

    responses.add_passthru("http://127.0.0.1")
    job, _number = woo_order_shipped(client, stack, partner, make_key)
    alerts_received(stack)
    url = f"https://shop.example.cn/wp-json/wc-shipment-tracking/v3/orders/" \
          f"{job['external_id']}/shipment-trackings"
    refusal = json.loads((FIXTURES / "woocommerce" / "error_invalid_order.json").read_text())
    responses.post(url, status=404, json=refusal)
    writeback.run_writebacks(datetime.now(UTC) + timedelta(seconds=1))
    kinds = [a["kind"] for a in alerts_received(stack)]
    assert kinds == ["marketplace.writeback_failed"]
    timeline = [e.type for e in orders_store.read_all(job["order_id"]).events]
    assert "marketplace.writeback_failed" in timeline


@responses.activate
def test_reconciliation_finds_what_the_notifications_missed_once(
        client: Client, stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A WooCommerce shop whose webhook was dropped: the listing names an order we do not have;
    it is queued through the inbox, fetched and applied; the next run queues nothing."""
    from datetime import UTC, datetime

    from chalicelib.flows import reconciliation

    responses.add_passthru("http://127.0.0.1")
    shop = f"shop-{uuid.uuid4().hex[:6]}.example.cn"
    shop_credentials.put("woocommerce", shop, {
        "store_url": f"https://{shop}", "consumer_key": "ck", "consumer_secret": "cs"})
    listed = json.loads((FIXTURES / "woocommerce" / "orders_list.json").read_text())
    order = json.loads((FIXTURES / "woocommerce" / "order_processing.json").read_text())
    order.update(id=listed[0]["id"], date_modified_gmt=listed[0]["date_modified_gmt"])
    responses.get(f"https://{shop}/wp-json/wc/v3/orders", json=listed[:1])
    responses.get(f"https://{shop}/wp-json/wc/v3/orders/{order['id']}", json=order)
    now = datetime.now(UTC)

    assert reconciliation.reconcile("woocommerce", shop, now, now, now) == (1, 1)
    shops = reconciliation.shop_credentials.shops()
    assert ("woocommerce", shop) in shops
    from chalicelib.marketplaces import woocommerce

    (ref,), _cursor = woocommerce.parse_list(listed[:1])
    assert ref.updated_at is not None
    delivery = f"{shop}:{order['id']}:{ref.updated_at.isoformat()}"
    assert process(client, stack, "reconcile-woocommerce", delivery) == {"batchItemFailures": []}
    stored = orders_store.get_current(order_id_for("woocommerce", shop, str(order["id"])))
    assert stored is not None and stored.job is not None
    # The same listing again: we have that version, nothing is queued or fetched.
    fetches = len(responses.calls)
    assert reconciliation.reconcile("woocommerce", shop, now, now, now) == (1, 0)
    assert len(responses.calls) == fetches + 1  # only the listing


@responses.activate
def test_a_douyin_push_naming_two_orders_becomes_two_orders(
        client: Client, stack: dict[str, str]) -> None:
    from tests.integration.flow import inbox_item

    responses.add_passthru("http://127.0.0.1")
    detail = json.loads((FIXTURES / "douyin" / "order_detail.json").read_text())
    shop_id = detail["data"]["shop_order_detail"]["shop_id"]
    shop_credentials.put("douyin", str(shop_id), {"app_key": APP_KEY, "app_secret": APP_SECRET,
                                                  "access_token": "tok", "shop_id": str(shop_id)})
    first, second = (str(10**18 + uuid.uuid4().int % 10**17) for _ in range(2))
    messages = [json.loads(douyin_push(shop_id, number))[0] for number in (first, second)]
    body = json.dumps(messages, separators=(",", ":")).encode()
    assert client.http.post("/webhooks/douyin", body=body,
                            headers=douyin_headers(body)).status_code == 200

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        wanted = json.loads(request.body)["shop_order_id"]
        copy = json.loads(json.dumps(detail))
        copy["data"]["shop_order_detail"]["order_id"] = wanted
        return 200, {}, json.dumps(copy, ensure_ascii=False)

    responses.add_callback(responses.POST, f"{API_BASE}/order/orderDetail", callback=answer)
    pushed = ",".join(sorted(m["msg_id"] for m in messages))  # the push's delivery id
    assert inbox_item(stack, "douyin", pushed) is not None
    assert process(client, stack, "douyin", pushed) == {"batchItemFailures": []}
    assert inbox_item(stack, "douyin", pushed)["outcome"] == "split"  # type: ignore[index]
    parts = [f"{pushed}#{number}" for number in (first, second)]
    assert all(inbox_item(stack, "douyin", p) for p in parts)
    assert process(client, stack, "douyin", *parts) == {"batchItemFailures": []}
    for number in (first, second):
        stored = orders_store.get_current(order_id_for("douyin", str(shop_id), number))
        assert stored is not None and stored.job is not None


def test_reconciling_a_shopee_shop_against_its_simulator_finds_a_dropped_order_once(
        client: Client, stack: dict[str, str]) -> None:
    """Shopee's listing carries no update times: an order listed again unchanged must not be
    queued (and re-fetched) on every run. Against the simulated shop, over real HTTP."""
    from datetime import UTC, datetime, timedelta

    from chalicelib.flows import reconciliation
    from devstack.marketplaces.shopee import ShopeeSimulator
    from tests.integration.flow import inbox_item

    shop = str(200000000 + uuid.uuid4().int % 10**8)
    with ShopeeSimulator(shop=shop, webhook_url="http://127.0.0.1:9/unused") as simulator:
        shop_credentials.put("shopee", shop, simulator.credentials())
        order = simulator.place_order(drop=True)  # its push never reaches us
        now = datetime.now(UTC) + timedelta(seconds=1)
        assert reconciliation.reconcile("shopee", shop, now - timedelta(hours=2), now,
                                        now) == (1, 1)
        delivery = f"{shop}:{order.external_id}:status:READY_TO_SHIP"
        assert inbox_item(stack, "reconcile-shopee", delivery) is not None
        assert process(client, stack, "reconcile-shopee", delivery) == {"batchItemFailures": []}
        stored = orders_store.get_current(order_id_for("shopee", shop, order.external_id))
        assert stored is not None and stored.job is not None
        assert reconciliation.reconcile("shopee", shop, now - timedelta(hours=2), now,
                                        now) == (1, 0)
