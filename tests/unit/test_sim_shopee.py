"""The local Shopee shop, checked through OUR adapter (accept, ref, the signed calls and their
parsers) over real HTTP on 127.0.0.1: what it pushes and answers is what the adapter reads, and
it recomputes every signature the adapter sends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.access.accounts import WebhookSource
from chalicelib.core.errors import ApiError
from chalicelib.core.http import send
from chalicelib.marketplaces import shopee
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import Order, OrderStatus
from devstack.marketplaces import simulator_class
from devstack.marketplaces.base import Faults, SimOrder
from devstack.marketplaces.shopee import ShopeeSimulator
from tests.sim_support import Clock, Receiver

SHOP = "1024685172"
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SEEDED = Faults(seed=7)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("/webhooks/shopee") as found:
        yield found


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def started(receiver: Receiver, clock: Clock, faults: Faults = SEEDED) -> ShopeeSimulator:
    sim = ShopeeSimulator(shop=SHOP, webhook_url=receiver.url, faults=faults, clock=clock)
    sim.start()
    return sim


@pytest.fixture
def sim(receiver: Receiver, clock: Clock) -> Iterator[ShopeeSimulator]:
    simulator = started(receiver, clock)
    yield simulator
    simulator.stop()


def fetch(sim: ShopeeSimulator, external_id: str, now: datetime) -> Order:
    ref = OrderRef(shop=SHOP, external_id=external_id)
    answer = send(shopee.fetch_call(ref, sim.credentials(), now))
    return shopee.parse_order(answer.json(), ref, "shopee")


def shipped(order: SimOrder, now: datetime, number: str = "SF1489327765012") -> Shipped:
    return Shipped(external_id=order.external_id, carrier_code="SF", tracking_number=number,
                   shipped_at=now, package_id="p1")


def test_the_registry_names_this_class() -> None:
    assert simulator_class("shopee") is ShopeeSimulator


# (1) Pushes ----------------------------------------------------------------------------------


def test_a_placed_order_is_pushed_signed_over_the_callback_url_and_our_adapter_accepts_it(
        sim: ShopeeSimulator, receiver: Receiver, clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    ((headers, body),) = receiver.received
    source = WebhookSource.model_validate(sim.source())
    accepted = shopee.accept(headers, body, source.secrets, clock.now)
    assert (accepted.topic, accepted.shop, accepted.actionable) == (
        "order_status_push", SHOP, True)
    when = int(START.timestamp())
    assert accepted.delivery_id == f"{order.external_id}:READY_TO_SHIP:{when}"
    ref = shopee.ref(body, headers)
    assert (ref.shop, ref.external_id, ref.status, ref.updated_at) == (
        SHOP, order.external_id, "READY_TO_SHIP", START)
    partner_key = sim.partner_key
    for wrong in (f"{'0' * 64}|{receiver.url}", f"{partner_key}|{receiver.url}x"):
        with pytest.raises(ApiError) as refused:
            shopee.accept(headers, body, [wrong], clock.now)
        assert refused.value.status == 401


def test_every_status_change_is_pushed(sim: ShopeeSimulator, receiver: Receiver,
                                       clock: Clock) -> None:
    order = sim.place_order(paid=False)
    clock.advance(60)
    sim.pay(order.external_id)
    clock.advance(60)
    sim.cancel(order.external_id)
    sim.drain()
    refs = [shopee.ref(b, h) for h, b in receiver.received]
    assert [r.status for r in refs] == ["UNPAID", "READY_TO_SHIP", "CANCELLED"]
    secrets = sim.source()["secrets"]
    assert len({shopee.accept(h, b, secrets, clock.now).delivery_id
                for h, b in receiver.received}) == 3


def test_a_handed_over_push_verifies_too(sim: ShopeeSimulator, receiver: Receiver,
                                        clock: Clock) -> None:
    order, note = sim.hand_over_order()
    headers = {k.lower(): v for k, v in note.headers.items()}
    accepted = shopee.accept(headers, note.body, sim.source()["secrets"], clock.now)
    assert accepted.delivery_id.startswith(f"{order.external_id}:READY_TO_SHIP:")
    sim.drain()
    assert receiver.received == []


# (2) Fetch -----------------------------------------------------------------------------------


def test_the_adapters_fetch_reads_the_order_with_its_lines_address_status_and_time(
        sim: ShopeeSimulator, clock: Clock) -> None:
    order = sim.place_order(drop=True)
    parsed = fetch(sim, order.external_id, clock.now)
    assert (parsed.external_id, parsed.status, parsed.shop) == (
        order.external_id, OrderStatus.PAID, SHOP)
    assert [(li.sku, li.title, li.quantity, li.unit_price) for li in parsed.lines] == [
        (li.sku, li.title, li.quantity, li.price) for li in order.lines]
    address = parsed.shipping_address
    assert address is not None
    assert (address.name, address.phone, address.city, address.province, address.postal_code,
            address.country_code) == (order.buyer_name, order.phone, order.city,
                                      order.province, order.postcode, "CN")
    # full_address already names the district: it is not repeated on line2
    assert order.street in address.line1 and order.district in address.line1
    assert address.line2 == ""
    assert parsed.totals.total == order.total
    assert parsed.totals.adds_up(), parsed.totals.summary()  # the simulator's orders add up too
    assert parsed.updated_at == parsed.paid_at == START
    clock.advance(120)
    sim.cancel(order.external_id, drop=True)
    cancelled = fetch(sim, order.external_id, clock.now)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.updated_at == START + timedelta(seconds=120)


def test_optional_fields_come_only_when_asked_for(sim: ShopeeSimulator, clock: Clock) -> None:
    order = sim.place_order(drop=True)
    call = shopee.shop_call("GET", shopee.ORDER_DETAIL_PATH,
                            {"order_sn_list": order.external_id}, None, sim.credentials(),
                            clock.now)
    (bare,) = send(call).json()["response"]["order_list"]
    assert bare["order_sn"] == order.external_id and bare["order_status"] == "READY_TO_SHIP"
    assert "item_list" not in bare and "recipient_address" not in bare
    # Without the optional fields our adapter asks for, the order has no lines and no address.
    thin = shopee.parse_order(send(call).json(), OrderRef(shop=SHOP, external_id=bare["order_sn"]),
                              "shopee")
    assert (thin.lines, thin.shipping_address) == ((), None)
    assert fetch(sim, order.external_id, clock.now).lines


# (3) Listing ---------------------------------------------------------------------------------


def test_the_adapters_listing_pages_with_the_cursor_through_the_window(
        sim: ShopeeSimulator, clock: Clock) -> None:
    before_window = sim.place_order(drop=True)
    clock.advance(10)
    since = clock.now
    wanted = set()
    for _ in range(shopee.PAGE_SIZE + 20):
        clock.advance(1)
        wanted.add(sim.place_order(drop=True).external_id)
    seen: list[OrderRef] = []
    cursor: str | None = None
    pages = 0
    while True:
        call = shopee.list_call(SHOP, since, clock.now, cursor, sim.credentials(), clock.now)
        refs, cursor = shopee.parse_list(send(call).json(), shop=SHOP)
        pages += 1
        seen.extend(refs)
        if cursor is None:
            break
        assert pages < 5
    assert pages == 2
    assert {r.external_id for r in seen} == wanted
    assert before_window.external_id not in {r.external_id for r in seen}
    assert {r.status for r in seen} == {"READY_TO_SHIP"}


def test_a_window_longer_than_15_days_is_refused(sim: ShopeeSimulator, clock: Clock) -> None:
    call = shopee.list_call(SHOP, START - timedelta(days=1), START, None, sim.credentials(),
                            clock.now)
    params = {**call.params, "time_from": str(int((START - timedelta(days=16)).timestamp()))}
    answer = send(call.model_copy(update={"params": params}))
    with pytest.raises(shopee.ShopeeError) as error:  # time_from is not signed: sign still fits
        shopee.parse_list(answer.json())
    assert error.value.code == "error_param"


# (4) Writeback -------------------------------------------------------------------------------


def test_ship_order_is_recorded_once_and_the_order_shows_shipped(
        sim: ShopeeSimulator, receiver: Receiver, clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    clock.advance(3600)
    package = shipped(order, clock.now)
    credentials = sim.credentials()
    before = send(shopee.existing_call(package, credentials, clock.now)).json()
    assert not shopee.already_shipped(before, package)

    answer = send(shopee.writeback_call(package, credentials, clock.now))
    assert shopee.parse_writeback(answer.status, answer.body).ok
    assert len(sim.writebacks) == 1
    assert sim.writebacks[0]["body"]["non_integrated"] == {"tracking_number": "SF1489327765012"}
    held = sim.orders[order.external_id]
    assert held.status == "shipped"
    assert [s.tracking_number for s in held.shipments] == ["SF1489327765012"]
    after = send(shopee.existing_call(package, credentials, clock.now)).json()
    assert shopee.already_shipped(after, package)
    assert sim.render(held)["order_status"] == "SHIPPED"
    assert fetch(sim, order.external_id, clock.now).updated_at == clock.now

    again = send(shopee.writeback_call(package, credentials, clock.now))
    result = shopee.parse_writeback(again.status, again.body)
    assert (result.ok, result.retryable, result.code) == (False, True, shopee.NOT_READY_TO_SHIP)
    assert len(sim.writebacks) == 1

    sim.drain()
    assert [shopee.ref(b, h).status for h, b in receiver.received] == [
        "READY_TO_SHIP", "SHIPPED"]


def test_a_cancelled_order_cannot_be_shipped(sim: ShopeeSimulator, clock: Clock) -> None:
    order = sim.place_order(drop=True)
    sim.cancel(order.external_id, drop=True)
    answer = send(shopee.writeback_call(shipped(order, clock.now), sim.credentials(), clock.now))
    result = shopee.parse_writeback(answer.status, answer.body)
    assert (result.ok, result.code) == (False, shopee.NOT_READY_TO_SHIP)
    assert sim.writebacks == [] and sim.orders[order.external_id].status == "cancelled"


def test_an_empty_tracking_number_is_refused(sim: ShopeeSimulator, clock: Clock) -> None:
    order = sim.place_order(drop=True)
    call = shopee.writeback_call(shipped(order, clock.now), sim.credentials(), clock.now)
    answer = send(call.model_copy(update={"json_body": {
        "order_sn": order.external_id, "non_integrated": {"tracking_number": " "}}}))
    result = shopee.parse_writeback(answer.status, answer.body)
    assert (result.ok, result.retryable, result.code) == (False, False, "logistics.error_param")
    assert sim.writebacks == []


# (5) Refusals --------------------------------------------------------------------------------


def test_a_wrong_signature_is_refused_as_shopee_does(sim: ShopeeSimulator, clock: Clock) -> None:
    order = sim.place_order(drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    wrong = {**sim.credentials(), "partner_key": "0" * 64}
    answer = send(shopee.fetch_call(ref, wrong, clock.now))
    assert answer.status == 403 and answer.json()["error"] == "error_sign"
    with pytest.raises(shopee.ShopeeError) as error:
        shopee.parse_order(answer.json(), ref, "shopee")
    assert (error.value.code, error.value.retryable) == ("error_sign", False)
    write = send(shopee.writeback_call(shipped(order, clock.now), wrong, clock.now))
    result = shopee.parse_writeback(write.status, write.body)
    assert (result.ok, result.retryable, result.code) == (False, False, "error_sign")
    assert sim.writebacks == []


def test_a_tampered_parameter_breaks_the_signature(sim: ShopeeSimulator, clock: Clock) -> None:
    order = sim.place_order(drop=True)
    call = shopee.fetch_call(OrderRef(shop=SHOP, external_id=order.external_id),
                             sim.credentials(), clock.now)
    tampered = call.model_copy(update={"params": {**call.params, "shop_id": "999"}})
    assert send(tampered).json()["error"] == "error_sign"
    assert send(call).json()["error"] == ""


def test_a_wrong_token_or_an_old_timestamp_is_refused(sim: ShopeeSimulator,
                                                      clock: Clock) -> None:
    order = sim.place_order(drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    token = send(shopee.fetch_call(ref, {**sim.credentials(), "access_token": "expired"},
                                   clock.now)).json()
    assert token["error"] == "error_auth"
    late = send(shopee.fetch_call(ref, sim.credentials(), clock.now - timedelta(minutes=6)))
    with pytest.raises(shopee.ShopeeError) as error:
        shopee.parse_order(late.json(), ref, "shopee")
    assert error.value.code == "error_param" and "timestamp" in error.value.message


# (6) Faults ----------------------------------------------------------------------------------


def test_a_dropped_push_is_never_sent_and_its_fate_recorded(receiver: Receiver,
                                                            clock: Clock) -> None:
    sim = started(receiver, clock, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert receiver.received == []
    assert [(f.external_id, f.fate, f.answers) for f in sim.fates] == [
        (order.external_id, "dropped", [])]


def test_a_duplicated_push_arrives_twice_with_one_dedupe_key(receiver: Receiver,
                                                             clock: Clock) -> None:
    sim = started(receiver, clock, Faults(duplicate=1.0, seed=1))
    try:
        sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert len(receiver.received) == 2
    assert receiver.received[0][1] == receiver.received[1][1]
    secrets = sim.source()["secrets"]
    assert len({shopee.accept(h, b, secrets, clock.now).delivery_id
                for h, b in receiver.received}) == 1
    assert [(f.fate, f.answers) for f in sim.fates] == [("duplicated", [200, 200])]
    assert json.loads(receiver.received[0][1])["code"] == shopee.ORDER_STATUS_PUSH
