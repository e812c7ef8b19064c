"""The local WooCommerce store, checked through OUR adapter (accept, normalise, the calls and their
parsers) over real HTTP on 127.0.0.1: what it sends and answers is what the adapter reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib.access.accounts import WebhookSource
from chalicelib.core.errors import ApiError
from chalicelib.core.http import send
from chalicelib.marketplaces import woocommerce as wc
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import Order, OrderStatus
from devstack.marketplaces import simulator_class
from devstack.marketplaces.base import Faults, SimOrder
from devstack.marketplaces.woocommerce import WooCommerceSimulator
from tests.sim_support import Clock, Receiver

SHOP = "woo.example.cn"
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SEEDED = Faults(seed=7)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("/webhooks/woo") as found:
        yield found


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def started(receiver: Receiver, clock: Clock, faults: Faults = SEEDED
            ) -> WooCommerceSimulator:
    sim = WooCommerceSimulator(shop=SHOP, webhook_url=receiver.url, faults=faults, clock=clock)
    sim.start()
    return sim


@pytest.fixture
def sim(receiver: Receiver, clock: Clock) -> Iterator[WooCommerceSimulator]:
    simulator = started(receiver, clock)
    yield simulator
    simulator.stop()


def fetch(sim: WooCommerceSimulator, external_id: str, now: datetime) -> Order:
    ref = OrderRef(shop=SHOP, external_id=external_id)
    answer = send(wc.fetch_call(ref, sim.credentials(), now))
    return wc.parse_order(answer.json(), ref, "woo")


def assert_same_order(parsed: Order, order: SimOrder) -> None:
    assert parsed.external_id == order.external_id
    assert parsed.name == f"#{order.number}"
    assert [(li.line_id, li.sku, li.title, li.quantity, li.unit_price) for li in parsed.lines] \
        == [(li.line_id, li.sku, li.title, li.quantity, li.price) for li in order.lines]
    address = parsed.shipping_address
    assert address is not None
    assert (address.name, address.phone, address.city, address.postal_code,
            address.country_code) == (order.buyer_name, order.phone, order.city, order.postcode,
                                      "CN")
    assert order.province.startswith(address.province) and address.province_code
    assert address.line1 == f"{order.district}{order.street}"
    assert parsed.totals.total == order.total
    assert parsed.totals.adds_up(), parsed.totals.summary()  # the simulator's orders add up too
    assert parsed.updated_at == order.updated_at.replace(microsecond=0)


def test_the_registry_names_this_class() -> None:
    assert simulator_class("woocommerce") is WooCommerceSimulator


# (1) Webhooks --------------------------------------------------------------------------------


def test_a_placed_order_arrives_as_a_signed_order_created_our_adapter_accepts(
        sim: WooCommerceSimulator, receiver: Receiver, clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    ((headers, body),) = receiver.received
    source = WebhookSource.model_validate(sim.source())
    accepted = wc.accept(headers, body, source.secrets, clock.now)
    assert (accepted.topic, accepted.shop, accepted.actionable) == ("order.created", SHOP, True)
    assert accepted.delivery_id == f"{SHOP}:{order.external_id}:2026-11-23T02:00:00"
    assert headers["x-wc-webhook-resource"] == "order"
    assert headers["x-wc-webhook-event"] == "created"
    # wp_json_encode: escaped slashes and non-ASCII, so only the raw bytes verify.
    assert b"\\/" in body and "张王李刘陈杨".encode() not in body
    assert_same_order(wc.normalise(body, headers, "woo"), order)
    with pytest.raises(ApiError) as refused:
        wc.accept(headers, body, ["not-the-secret"], clock.now)
    assert refused.value.status == 401


def test_later_changes_are_order_updated_with_the_new_status(
        sim: WooCommerceSimulator, receiver: Receiver, clock: Clock) -> None:
    order = sim.place_order(paid=False)
    sim.drain()  # each payload is built when sent: deliver before the next change
    clock.advance(60)
    sim.pay(order.external_id)
    sim.drain()
    clock.advance(60)
    sim.cancel(order.external_id)
    sim.drain()
    secrets = sim.source()["secrets"]
    topics = [wc.accept(h, b, secrets, clock.now).topic for h, b in receiver.received]
    assert topics == ["order.created", "order.updated", "order.updated"]
    statuses = [wc.normalise(b, h, "woo").status for h, b in receiver.received]
    assert statuses == [OrderStatus.PENDING_PAYMENT, OrderStatus.PAID, OrderStatus.CANCELLED]


def test_a_handed_over_notification_is_the_orders_order_created(
        sim: WooCommerceSimulator, receiver: Receiver, clock: Clock) -> None:
    order, note = sim.hand_over_order()
    headers = {k.lower(): v for k, v in note.headers.items()}
    accepted = wc.accept(headers, note.body, sim.source()["secrets"], clock.now)
    assert (accepted.topic, accepted.shop) == ("order.created", SHOP)
    clock.advance(60)
    sim.cancel(order.external_id)
    sim.drain()
    ((later, _),) = receiver.received
    assert later["x-wc-webhook-topic"] == "order.updated"


# (2) Fetch -----------------------------------------------------------------------------------


def test_the_adapters_fetch_reads_the_order_with_its_lines_address_status_and_time(
        sim: WooCommerceSimulator, clock: Clock) -> None:
    order = sim.place_order(paid=False, drop=True)
    parsed = fetch(sim, order.external_id, clock.now)
    assert_same_order(parsed, order)
    assert parsed.status is OrderStatus.PENDING_PAYMENT and parsed.paid_at is None
    clock.advance(90)
    sim.pay(order.external_id, drop=True)
    parsed = fetch(sim, order.external_id, clock.now)
    assert parsed.status is OrderStatus.PAID
    assert parsed.updated_at == START + timedelta(seconds=90) == parsed.paid_at
    assert parsed.shop == SHOP


def test_an_unknown_order_is_woocommerces_invalid_id(sim: WooCommerceSimulator,
                                                     clock: Clock) -> None:
    ref = OrderRef(shop=SHOP, external_id="99999")
    answer = send(wc.fetch_call(ref, sim.credentials(), clock.now))
    assert answer.status == 404
    with pytest.raises(wc.WooCommerceError) as error:
        wc.parse_order(answer.json(), ref, "woo")
    assert error.value.code == "woocommerce_rest_shop_order_invalid_id"


# (3) Listing ---------------------------------------------------------------------------------


def test_the_adapters_listing_pages_through_every_order_changed_in_the_window(
        sim: WooCommerceSimulator, clock: Clock) -> None:
    before_window = sim.place_order(drop=True)
    clock.advance(10)
    since = clock.now
    wanted = set()
    for _ in range(wc.PER_PAGE + 30):
        clock.advance(1)
        wanted.add(sim.place_order(drop=True).external_id)
    until = clock.now + timedelta(seconds=1)
    seen: list[OrderRef] = []
    cursor: str | None = None
    pages = 0
    while True:
        answer = send(wc.list_call(SHOP, since, until, cursor, sim.credentials(), clock.now))
        refs, cursor = wc.parse_list(answer.json())
        pages += 1
        seen.extend(refs)
        assert [r.updated_at for r in refs] == sorted(r.updated_at for r in refs)  # type: ignore[type-var]
        if cursor is None:
            break
        assert pages < 5
    assert pages == 2
    assert {r.external_id for r in seen} == wanted
    assert before_window.external_id not in {r.external_id for r in seen}
    assert {r.shop for r in seen} == {SHOP}


def test_a_page_larger_than_woocommerce_allows_is_refused(sim: WooCommerceSimulator,
                                                          clock: Clock) -> None:
    call = wc.list_call(SHOP, START, START + timedelta(hours=1), None, sim.credentials(),
                        clock.now)
    answer = send(call.model_copy(update={"params": {**call.params, "per_page": "101"}}))
    assert answer.status == 400
    with pytest.raises(wc.WooCommerceError) as error:
        wc.parse_list(answer.json())
    assert error.value.code == "rest_invalid_param"


# (4) Writeback -------------------------------------------------------------------------------


def test_a_tracking_writeback_is_recorded_once_and_completes_the_order(
        sim: WooCommerceSimulator, receiver: Receiver, clock: Clock) -> None:
    order = sim.place_order()
    clock.advance(3600)
    shipped = Shipped(external_id=order.external_id, carrier_code="SF",
                      tracking_number="SF1428819366352", shipped_at=clock.now, package_id="p1")
    credentials = sim.credentials()
    existing = send(wc.existing_call(shipped, credentials, clock.now))
    assert existing.json() == [] and not wc.already_shipped(existing.json(), shipped)

    answer = send(wc.writeback_call(shipped, credentials, clock.now))
    result = wc.parse_writeback(answer.status, answer.body)
    assert answer.status == 201 and result.ok and result.code

    assert len(sim.writebacks) == 1
    assert sim.writebacks[0]["body"]["tracking_number"] == "SF1428819366352"
    held = sim.orders[order.external_id]
    assert held.status == "shipped"
    assert [s.tracking_number for s in held.shipments] == ["SF1428819366352"]
    assert held.shipments[0].carrier == wc.CARRIERS["SF"]
    assert wc.already_shipped(send(wc.existing_call(shipped, credentials, clock.now)).json(),
                              shipped)
    assert sim.render(held)["status"] == "completed"
    assert fetch(sim, order.external_id, clock.now).status is OrderStatus.PAID

    sim.drain()
    (_, (headers, updated)) = receiver.received
    assert headers["x-wc-webhook-topic"] == "order.updated"
    assert json.loads(updated)["status"] == "completed"
    secrets = sim.source()["secrets"]
    assert wc.accept(headers, updated, secrets, clock.now).delivery_id.endswith("T03:00:00")


# (5) Refusals --------------------------------------------------------------------------------


def test_a_wrong_consumer_secret_is_refused_as_woocommerce_does(sim: WooCommerceSimulator,
                                                                clock: Clock) -> None:
    order = sim.place_order(drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    wrong = {**sim.credentials(), "consumer_secret": "cs_wrong"}
    answer = send(wc.fetch_call(ref, wrong, clock.now))
    assert answer.status == 401
    with pytest.raises(wc.WooCommerceError) as error:
        wc.parse_order(answer.json(), ref, "woo")
    assert (error.value.code, error.value.retryable) == (
        "woocommerce_rest_authentication_error", False)


def test_an_unknown_key_is_anonymous_and_may_neither_read_nor_write(
        sim: WooCommerceSimulator, clock: Clock) -> None:
    order = sim.place_order(drop=True)
    stranger = {**sim.credentials(), "consumer_key": "ck_stranger"}
    listed = send(wc.list_call(SHOP, START, START + timedelta(hours=1), None, stranger,
                               clock.now))
    assert listed.status == 401
    with pytest.raises(wc.WooCommerceError) as error:
        wc.parse_list(listed.json())
    assert error.value.code == "woocommerce_rest_cannot_view"
    shipped = Shipped(external_id=order.external_id, carrier_code="YTO",
                      tracking_number="YT1234567890", shipped_at=clock.now, package_id="p1")
    answer = send(wc.writeback_call(shipped, stranger, clock.now))
    result = wc.parse_writeback(answer.status, answer.body)
    assert (result.ok, result.retryable, result.code) == (False, False,
                                                          "woocommerce_rest_cannot_create")
    assert sim.writebacks == [] and sim.orders[order.external_id].status == "paid"


@pytest.mark.parametrize("store", ["http://shop.example.cn", "http://localhost.example.cn",
                                   "http://127.0.0.1.nip.io:8080", "http://127.0.0.1@evil.example",
                                   "ftp://127.0.0.1", "shop.example.cn"])
def test_https_is_still_required_off_this_machine(store: str) -> None:
    credentials = {"store_url": store, "consumer_key": "ck", "consumer_secret": "cs"}
    with pytest.raises(ValueError, match="https"):
        wc.fetch_call(OrderRef(shop=SHOP, external_id="1"), credentials, START)


@pytest.mark.parametrize("store", ["http://127.0.0.1:8123", "http://localhost:8080/",
                                   "http://[::1]:9000", "https://shop.example.cn"])
def test_loopback_may_be_plain_http(store: str) -> None:
    credentials = {"store_url": store, "consumer_key": "ck", "consumer_secret": "cs"}
    call = wc.fetch_call(OrderRef(shop=SHOP, external_id="1"), credentials, START)
    assert call.url == store.rstrip("/") + "/wp-json/wc/v3/orders/1"


# (6) Faults ----------------------------------------------------------------------------------


def test_a_dropped_notification_is_never_sent_and_its_fate_recorded(
        receiver: Receiver, clock: Clock) -> None:
    sim = started(receiver, clock, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert receiver.received == []
    assert [(f.external_id, f.fate, f.answers) for f in sim.fates] == [
        (order.external_id, "dropped", [])]
    assert sim.summary()[0]["notifications"] == ["dropped"]


def test_a_duplicated_notification_arrives_twice_and_dedupes_to_one_key(
        receiver: Receiver, clock: Clock) -> None:
    sim = started(receiver, clock, Faults(duplicate=1.0, seed=1))
    try:
        sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert len(receiver.received) == 2
    keys = {wc.accept(h, b, sim.source()["secrets"], clock.now).delivery_id
            for h, b in receiver.received}
    assert len(keys) == 1
    assert len({h["x-wc-webhook-delivery-id"] for h, _ in receiver.received}) == 2
    assert [(f.fate, f.answers) for f in sim.fates] == [("duplicated", [200, 200])]


def test_a_late_delivery_carries_the_order_as_it_is_when_sent(
        receiver: Receiver, clock: Clock) -> None:
    sim = started(receiver, clock, Faults(reorder=1.0, seed=1))
    try:
        order = sim.place_order()
        clock.advance(30)
        sim.cancel(order.external_id)
        sim.drain()
        assert receiver.received == []
        sim.flush_held()
        sim.drain()
    finally:
        sim.stop()
    topics = [h["x-wc-webhook-topic"] for h, _ in receiver.received]
    assert topics == ["order.created", "order.updated"]
    assert [json.loads(b)["status"] for _, b in receiver.received] == ["cancelled"] * 2
    assert Decimal(json.loads(receiver.received[0][1])["total"]) == order.total
