"""The local Shopify simulator, checked through OUR adapter (chalicelib.marketplaces.shopify) and
its I/O edge, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.core import http
from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.marketplaces import shopify, shopify_admin
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import OrderStatus
from devstack.demo import shopify_headers
from devstack.marketplaces import simulator_class
from devstack.marketplaces.base import Faults
from devstack.marketplaces.shopify import ShopifySimulator
from tests.sim_support import Receiver

SHOP = "demo-brand.myshopify.com"
SEEDED = Faults(seed=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("/webhooks/shopify") as found:
        yield found


def start(receiver: Receiver, faults: Faults = SEEDED) -> ShopifySimulator:
    sim = ShopifySimulator(shop=SHOP, webhook_url=receiver.url, faults=faults)
    sim.start()
    return sim


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[ShopifySimulator]:
    found = start(receiver)
    yield found
    found.stop()


def now() -> datetime:
    return datetime.now(UTC)


def shipped_of(external_id: str, number: str = "SF1428819366352", carrier: str = "SF",
               lines: tuple[tuple[str, int], ...] = ()) -> Shipped:
    return Shipped(external_id=external_id, carrier_code=carrier, tracking_number=number,
                   shipped_at=now(), package_id=f"pkg-{number}", lines=lines)


def prepare(sim: ShopifySimulator, shipped: Shipped, **credentials: str) -> http.Answer:
    return http.send(shopify_admin.prepare_call(shipped, {**sim.credentials(), **credentials},
                                                now()))


def test_webhooks_are_signed_and_shaped_as_shopify_sends_them(sim: ShopifySimulator,
                                                              receiver: Receiver) -> None:
    assert simulator_class("shopify") is ShopifySimulator
    order = sim.place_order(paid=False)
    sim.pay(order.external_id)
    sim.cancel(order.external_id)
    sim.drain()
    assert len(receiver.received) == 3
    secrets = sim.source()["secrets"]
    demo_names = {name.lower() for name in shopify_headers(b"{}", "s")}
    topics, statuses = [], []
    for headers, raw in receiver.received:
        assert demo_names <= set(headers)
        # The documented recipe, written out here independently of the adapter.
        digest = hmac.new(sim.client_secret.encode(), raw, hashlib.sha256).digest()
        assert headers["x-shopify-hmac-sha256"] == base64.b64encode(digest).decode()
        accepted = shopify.accept(headers, raw, secrets, now())
        assert accepted.delivery_id == headers["x-shopify-webhook-id"]
        assert accepted.shop == SHOP and accepted.actionable
        topics.append(accepted.topic)
        statuses.append(shopify.normalise(raw, accepted.headers, "shopify").status)
        with pytest.raises(ApiError) as refused:
            shopify.accept(headers, raw, ["not-the-secret"], now())
        assert refused.value.status == 401 and refused.value.reason == "invalid_signature"
    assert topics == ["orders/create", "orders/paid", "orders/cancelled"]
    assert statuses == [OrderStatus.PENDING_PAYMENT, OrderStatus.PAID, OrderStatus.CANCELLED]
    assert len({h["x-shopify-webhook-id"] for h, _ in receiver.received}) == 3


def test_the_webhook_body_and_the_rest_fetch_read_as_the_same_order(
        sim: ShopifySimulator, receiver: Receiver) -> None:
    order = sim.place_order()
    sim.drain()
    headers, raw = receiver.received[0]
    accepted = shopify.accept(headers, raw, sim.source()["secrets"], now())
    pushed = shopify.normalise(raw, accepted.headers, "shopify")
    assert (pushed.external_id, pushed.shop, pushed.name) == (order.external_id, SHOP,
                                                              f"#{order.number}")
    assert pushed.status is OrderStatus.PAID
    assert [(line.line_id, line.sku, line.title, line.quantity, line.unit_price)
            for line in pushed.lines] == [(line.line_id, line.sku, line.title, line.quantity,
                                           line.price) for line in order.lines]
    assert pushed.totals.total == order.total
    assert pushed.totals.adds_up(), pushed.totals.summary()  # the simulator's orders add up too
    assert pushed.updated_at == order.updated_at.replace(microsecond=0)
    address = pushed.shipping_address
    assert address is not None
    assert (address.name, address.line1, address.line2, address.city, address.postal_code,
            address.country_code) == (order.buyer_name, order.street, order.district,
                                      order.city, order.postcode, "CN")
    assert address.province_code and address.phone.replace(" ", "").endswith(order.phone)

    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    fetched = shopify_admin.parse_order(
        http.send(shopify_admin.fetch_call(ref, sim.credentials(), now())).json(), ref, "shopify")
    assert fetched == pushed

    sim.cancel(order.external_id)
    again = http.send(shopify_admin.fetch_call(ref, sim.credentials(), now())).json()
    assert shopify_admin.parse_order(again, ref, "shopify").status is OrderStatus.CANCELLED

    missing = OrderRef(shop=SHOP, external_id="1000000000001")
    answer = http.send(shopify_admin.fetch_call(missing, sim.credentials(), now()))
    assert answer.status == 404
    with pytest.raises(shopify_admin.ShopifyError) as error:
        shopify_admin.parse_order(answer.json(), missing, "shopify")
    assert error.value.code == "not_found"


def test_the_listing_pages_through_the_window(sim: ShopifySimulator,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shopify_admin, "PER_PAGE", 2)
    placed = [sim.place_order(drop=True) for _ in range(5)]
    since, until = now() - timedelta(hours=1), now() + timedelta(minutes=1)
    found: list[OrderRef] = []
    cursor: str | None = None
    cursors = []
    while True:
        call = shopify_admin.list_call(SHOP, since, until, cursor, sim.credentials(), now())
        refs, cursor = shopify_admin.parse_list(http.send(call).json())
        assert len(refs) <= 2
        found += refs
        cursors.append(cursor)
        if cursor is None:
            break
    assert len(cursors) == 3 and len(set(cursors)) == 3
    assert [r.external_id for r in found] == [
        o.external_id for o in sorted(placed, key=lambda o: (
            o.updated_at.replace(microsecond=0), int(o.external_id)))]
    by_id = {o.external_id: o for o in placed}
    assert all(r.status == "PAID" and r.updated_at == by_id[r.external_id].updated_at.replace(
        microsecond=0) for r in found)
    earlier = shopify_admin.list_call(SHOP, since - timedelta(hours=1), since, None,
                                      sim.credentials(), now())
    assert shopify_admin.parse_list(http.send(earlier).json()) == ([], None)


def test_a_writeback_is_recorded_once_and_the_order_shows_it(sim: ShopifySimulator,
                                                             receiver: Receiver) -> None:
    order = sim.place_order()
    credentials = sim.credentials()
    shipped = shipped_of(order.external_id)
    prepared = prepare(sim, shipped).json()
    fulfillment_orders = prepared["data"]["order"]["fulfillmentOrders"]["nodes"]
    assert [fo["status"] for fo in fulfillment_orders] == ["OPEN"]
    assert not shopify_admin.already_shipped(prepared, shipped)
    answer = http.send(shopify_admin.writeback_call(shipped, credentials, now(), prepared))
    result = shopify_admin.parse_writeback(answer.status, answer.body)
    assert result.ok and result.code.startswith("gid://shopify/Fulfillment/")
    assert len(sim.writebacks) == 1
    tracking = sim.writebacks[0]["fulfillment"]["trackingInfo"]
    assert (tracking["company"], tracking["number"]) == ("SF Express", "SF1428819366352")
    assert sim.orders[order.external_id].status == "shipped"
    assert sim.orders[order.external_id].shipments[0].tracking_number == "SF1428819366352"

    after = prepare(sim, shipped).json()
    assert shopify_admin.already_shipped(after, shipped)
    assert after["data"]["order"]["fulfillmentOrders"]["nodes"][0]["status"] == "CLOSED"
    with pytest.raises(ValueError, match=r"nothing .* left to fulfil"):
        shopify_admin.writeback_call(shipped, credentials, now(), after)
    # A retry with the stale read (fulfillmentCreate is not idempotent): Shopify refuses.
    stale = http.send(shopify_admin.writeback_call(shipped, credentials, now(), prepared))
    refused = shopify_admin.parse_writeback(stale.status, stale.body)
    assert not refused.ok and refused.code == "user_error" and "unfulfillable" in refused.detail
    assert len(sim.writebacks) == 1

    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    rest = http.send(shopify_admin.fetch_call(ref, credentials, now())).json()["order"]
    assert rest["fulfillment_status"] == "fulfilled"
    assert [f["tracking_number"] for f in rest["fulfillments"]] == ["SF1428819366352"]
    sim.drain()
    topics = [h["x-shopify-topic"] for h, _ in receiver.received]
    assert topics == ["orders/paid", "orders/updated"]
    updated = json.loads(receiver.received[1][1])
    assert updated["fulfillments"][0]["tracking_company"] == "SF Express"


def test_a_partial_fulfillment_leaves_the_rest_open(sim: ShopifySimulator) -> None:
    order = sim.place_order(drop=True)
    order.lines[0].quantity = 2
    line = order.lines[0].line_id
    first = shipped_of(order.external_id, "78123456789012", "ZTO", lines=((line, 1),))
    prepared = prepare(sim, first).json()
    answer = http.send(shopify_admin.writeback_call(first, sim.credentials(), now(), prepared))
    assert shopify_admin.parse_writeback(answer.status, answer.body).ok
    after = prepare(sim, first).json()
    fulfillment_order = after["data"]["order"]["fulfillmentOrders"]["nodes"][0]
    assert fulfillment_order["status"] == "IN_PROGRESS"
    remaining = {item["lineItem"]["id"]: item["remainingQuantity"]
                 for item in fulfillment_order["lineItems"]["nodes"]}
    assert remaining[f"gid://shopify/LineItem/{line}"] == 1
    assert shopify_admin.already_shipped(after, first)
    rest = shipped_of(order.external_id, "78123456789013", "ZTO")
    assert not shopify_admin.already_shipped(after, rest)
    answer = http.send(shopify_admin.writeback_call(rest, sim.credentials(), now(), after))
    assert shopify_admin.parse_writeback(answer.status, answer.body).ok
    shipments = sim.orders[order.external_id].shipments
    assert [s.tracking_number for s in shipments] == ["78123456789012", "78123456789013"]
    assert shipments[0].line_ids == (line,) and shipments[0].carrier == "ZTO Express"
    final = prepare(sim, rest).json()["data"]["order"]
    assert final["fulfillmentOrders"]["nodes"][0]["status"] == "CLOSED"
    assert [f["trackingInfo"][0]["url"] for f in final["fulfillments"]] == [
        shopify_admin.tracking_info(first)["url"], shopify_admin.tracking_info(rest)["url"]]


def test_a_wrong_access_token_is_refused_as_shopify_refuses(sim: ShopifySimulator) -> None:
    order = sim.place_order(drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    shipped = shipped_of(order.external_id)
    bad = {**sim.credentials(), "access_token": "shpat_wrong"}
    rest = http.send(shopify_admin.fetch_call(ref, bad, now()))
    assert rest.status == 401
    with pytest.raises(shopify_admin.ShopifyError) as error:
        shopify_admin.parse_order(rest.json(), ref, "shopify")
    assert error.value.code == "unauthorized" and not error.value.retryable
    read = prepare(sim, shipped, access_token="shpat_wrong")
    assert read.status == 401
    with pytest.raises(shopify_admin.ShopifyError):
        shopify_admin.already_shipped(read.json(), shipped)
    good = prepare(sim, shipped).json()
    write = http.send(shopify_admin.writeback_call(shipped, bad, now(), good))
    result = shopify_admin.parse_writeback(write.status, write.body)
    assert not result.ok and not result.retryable and result.code == "unauthorized"
    assert sim.writebacks == [] and sim.orders[order.external_id].status == "paid"


def test_graphql_answers_exactly_what_is_asked_and_refuses_unknown_fields(
        sim: ShopifySimulator) -> None:
    order = sim.place_order(drop=True)
    url = f"{sim.url}/admin/api/{shopify_admin.API_VERSION}/graphql.json"
    headers = {"X-Shopify-Access-Token": sim.access_token}
    gid = f"gid://shopify/Order/{order.external_id}"
    asked = {"query": 'query { shop: order(id: "' + gid + '") { name legacyResourceId } }'}
    answer = http.send(Request(url=url, headers=headers, json_body=asked)).json()
    assert answer["data"] == {"shop": {"name": f"#{order.number}",
                                       "legacyResourceId": order.external_id}}
    wrong = {"query": "query($id: ID!) { order(id: $id) { id totallyMadeUp } }",
             "variables": {"id": f"gid://shopify/Order/{order.external_id}"}}
    answer = http.send(Request(url=url, headers=headers, json_body=wrong)).json()
    assert "data" not in answer and "totallyMadeUp" in answer["errors"][0]["message"]
    with pytest.raises(shopify_admin.ShopifyError):
        shopify_admin.already_shipped(answer, shipped_of(order.external_id))


def test_a_dropped_webhook_is_never_sent_and_its_fate_recorded(receiver: Receiver) -> None:
    sim = start(receiver, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert receiver.received == []
    assert [(f.external_id, f.topic, f.fate) for f in sim.fates] == [
        (order.external_id, "paid", "dropped")]


def test_a_duplicated_webhook_arrives_twice_with_one_webhook_id(receiver: Receiver) -> None:
    sim = start(receiver, Faults(duplicate=1.0, seed=1))
    try:
        sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert len(receiver.received) == 2 and receiver.received[0] == receiver.received[1]
    secrets = sim.source()["secrets"]
    ids = {shopify.accept(h, raw, secrets, now()).delivery_id for h, raw in receiver.received}
    assert len(ids) == 1
    assert sim.fates[0].fate == "duplicated" and sim.fates[0].answers == [200, 200]
