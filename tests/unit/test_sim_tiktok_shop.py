"""The local TikTok Shop simulator, checked through OUR adapter
(chalicelib.marketplaces.tiktok_shop) and its I/O edge, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from chalicelib.core import http
from chalicelib.core.errors import ApiError
from chalicelib.marketplaces import tiktok_shop as tts
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import Order, OrderStatus
from devstack.marketplaces import simulator_class
from devstack.marketplaces.base import Faults
from devstack.marketplaces.tiktok_shop import TikTokShopSimulator
from tests.sim_support import Receiver

SHOP = "7494105515082810525"
SEEDED = Faults(seed=11)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("/webhooks/tiktok") as found:
        yield found


def start(receiver: Receiver, faults: Faults = SEEDED, **options: Any) -> TikTokShopSimulator:
    sim = TikTokShopSimulator(shop=SHOP, webhook_url=receiver.url, faults=faults, **options)
    sim.start()
    return sim


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[TikTokShopSimulator]:
    found = start(receiver)
    yield found
    found.stop()


def now() -> datetime:
    return datetime.now(UTC)


def fetch(sim: TikTokShopSimulator, external_id: str, **credentials: str) -> http.Answer:
    ref = OrderRef(shop=SHOP, external_id=external_id)
    return http.send(tts.fetch_call(ref, {**sim.credentials(), **credentials}, now()))


def read(sim: TikTokShopSimulator, external_id: str) -> Order:
    ref = OrderRef(shop=SHOP, external_id=external_id)
    return tts.parse_order(fetch(sim, external_id).json(), ref, "tiktok_shop")


def test_a_placed_order_is_notified_signed_and_thin(sim: TikTokShopSimulator,
                                                    receiver: Receiver) -> None:
    assert simulator_class("tiktok_shop") is TikTokShopSimulator
    order = sim.place_order(paid=False)
    sim.pay(order.external_id)
    sim.cancel(order.external_id)
    sim.drain()
    assert len(receiver.received) == 3
    secrets = sim.source()["secrets"]
    statuses = []
    for headers, raw in receiver.received:
        # The documented recipe, written out here independently of the adapter.
        expected = hmac.new(sim.app_secret.encode(), sim.app_key.encode() + raw,
                            hashlib.sha256).hexdigest()
        assert headers["authorization"] == expected
        accepted = tts.accept(headers, raw, secrets, now())
        body = json.loads(raw)
        assert set(body) == {"type", "tts_notification_id", "shop_id", "timestamp", "data"}
        assert accepted.delivery_id == body["tts_notification_id"]
        assert (accepted.topic, accepted.shop, accepted.actionable) == (
            "ORDER_STATUS_CHANGE", SHOP, True)
        ref = tts.ref(raw, headers)
        assert ref.external_id == order.external_id
        statuses.append(ref.status)
        with pytest.raises(ApiError) as refused:
            tts.accept(headers, raw, [f"{sim.app_key}:not-the-secret"], now())
        assert refused.value.status == 401 and refused.value.reason == "invalid_signature"
    assert statuses == ["UNPAID", "AWAITING_SHIPMENT", "CANCELLED"]
    assert len({json.loads(raw)["tts_notification_id"] for _, raw in receiver.received}) == 3


def test_the_adapter_refetches_the_order_with_one_line_item_per_unit(
        sim: TikTokShopSimulator, receiver: Receiver) -> None:
    order = sim.place_order()
    order.lines[0].quantity = 2  # at least one line of two units (before anyone reads it)
    sim.drain()
    headers, raw = receiver.received[0]
    ref = tts.ref(raw, headers)
    parsed = tts.parse_order(http.send(tts.fetch_call(ref, sim.credentials(), now())).json(),
                             ref, "tiktok_shop")
    assert parsed.external_id == order.external_id and parsed.status is OrderStatus.PAID
    expected = [(line.sku, line.title, line.price) for line in order.lines
                for _ in range(line.quantity)]
    assert [(line.sku, line.title, line.unit_price) for line in parsed.lines] == expected
    assert all(line.quantity == 1 for line in parsed.lines)
    ids = [line.line_id for line in parsed.lines]
    assert len(set(ids)) == len(ids) == sum(line.quantity for line in order.lines)
    assert ids == [unit for unit, _ in sim.units(order)]
    assert parsed.totals.total == order.total and parsed.currency == order.currency
    assert parsed.totals.adds_up(), parsed.totals.summary()  # the simulator's orders add up too
    assert parsed.updated_at == order.updated_at.replace(microsecond=0)
    assert parsed.paid_at is not None
    address = parsed.shipping_address
    assert address is not None
    assert (address.name, address.line1, address.city, address.province, address.postal_code,
            address.country_code) == (order.buyer_name, order.street, order.city,
                                      order.province, order.postcode, "CN")
    assert address.phone.endswith(order.phone[-4:]) and "****" in address.phone  # masked

    sim.cancel(order.external_id)
    cancelled = read(sim, order.external_id)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.cancelled_at is not None
    assert cancelled.lines == ()  # every line item shows CANCELLED

    unknown = OrderRef(shop=SHOP, external_id="576000000000000001")
    answer = http.send(tts.fetch_call(unknown, sim.credentials(), now())).json()
    with pytest.raises(Exception, match="order_not_found"):
        tts.parse_order(answer, unknown, "tiktok_shop")


def test_an_order_on_hold_is_not_yet_ours_to_ship(receiver: Receiver) -> None:
    sim = start(receiver, hold_paid=True)
    try:
        order = sim.place_order()
        assert read(sim, order.external_id).status is OrderStatus.PENDING_PAYMENT
        shipped = Shipped(external_id=order.external_id, carrier_code="SF",
                          tracking_number="SF1489327765012", shipped_at=now(), package_id="p")
        answer = http.send(tts.writeback_call(shipped, sim.credentials(), now()))
        assert not tts.parse_writeback(answer.status, answer.body).ok
        sim.release(order.external_id)
        assert read(sim, order.external_id).status is OrderStatus.PAID
        sim.drain()
    finally:
        sim.stop()
    data = [json.loads(raw)["data"] for _, raw in receiver.received]
    assert [(d["order_status"], d["is_on_hold_order"]) for d in data] == [
        ("ON_HOLD", True), ("AWAITING_SHIPMENT", False)]
    assert sim.writebacks == []


def test_the_listing_pages_through_the_window(sim: TikTokShopSimulator,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts, "PAGE_SIZE", 2)
    placed = [sim.place_order(drop=True) for _ in range(5)]
    since, until = now() - timedelta(hours=1), now() + timedelta(minutes=1)
    found: list[OrderRef] = []
    cursor: str | None = None
    tokens = []
    while True:
        call = tts.list_call(SHOP, since, until, cursor, sim.credentials(), now())
        assert call.params["page_size"] == "2"
        refs, cursor = tts.parse_list(http.send(call).json(), shop=SHOP)
        found += refs
        tokens.append(cursor)
        if cursor is None:
            break
    assert len(tokens) == 3 and len(set(tokens)) == 3
    assert sorted(r.external_id for r in found) == sorted(o.external_id for o in placed)
    assert all(r.shop == SHOP and r.status == "AWAITING_SHIPMENT" for r in found)
    times = [r.updated_at for r in found if r.updated_at is not None]
    assert len(times) == 5 and times == sorted(times)  # oldest change first
    earlier = tts.list_call(SHOP, since - timedelta(hours=1), since, None, sim.credentials(),
                            now())
    assert tts.parse_list(http.send(earlier).json(), shop=SHOP) == ([], None)


def test_a_writeback_is_recorded_once_and_the_order_shows_it(sim: TikTokShopSimulator,
                                                             receiver: Receiver) -> None:
    order = sim.place_order()
    credentials = sim.credentials()
    shipped = Shipped(external_id=order.external_id, carrier_code="SF",
                      tracking_number="SF1489327765012", shipped_at=now(), package_id="pkg-1")
    before = http.send(tts.existing_call(shipped, credentials, now())).json()
    assert not tts.already_shipped(before, shipped)
    answer = http.send(tts.writeback_call(shipped, credentials, now()))
    assert tts.parse_writeback(answer.status, answer.body).ok
    package = answer.json()["data"]["package_id"]
    assert len(sim.writebacks) == 1
    assert sim.writebacks[0]["body"] == {"tracking_number": "SF1489327765012",
                                         "shipping_provider_id": credentials[
                                             "shipping_provider_id.SF"]}
    assert sim.orders[order.external_id].status == "shipped"
    assert sim.orders[order.external_id].shipments[0].tracking_number == "SF1489327765012"

    after = http.send(tts.existing_call(shipped, credentials, now())).json()
    shown = after["data"]["orders"][0]
    assert shown["status"] == "AWAITING_COLLECTION"
    assert shown["packages"] == [{"id": package}]
    assert {(i["tracking_number"], i["package_id"], i["shipping_provider_name"])
            for i in shown["line_items"]} == {("SF1489327765012", package, "SF Express")}
    assert tts.already_shipped(after, shipped)
    assert read(sim, order.external_id).status is OrderStatus.PAID

    # A retry: refused as already shipped, which the adapter leaves to already_shipped.
    again = http.send(tts.writeback_call(shipped, credentials, now()))
    repeated = tts.parse_writeback(again.status, again.body)
    assert not repeated.ok and repeated.retryable and repeated.code == "21011001"
    assert len(sim.writebacks) == 1

    sim.advance(order.external_id, "IN_TRANSIT")
    sim.advance(order.external_id, "DELIVERED")
    sim.drain()
    statuses = [json.loads(raw)["data"]["order_status"] for _, raw in receiver.received]
    assert statuses == ["AWAITING_SHIPMENT", "AWAITING_COLLECTION", "IN_TRANSIT", "DELIVERED"]
    assert read(sim, order.external_id).status is OrderStatus.PAID


def test_line_items_ship_in_separate_packages(sim: TikTokShopSimulator) -> None:
    order = sim.place_order(drop=True)
    order.lines[0].quantity = 2
    units = [unit for unit, _ in sim.units(order)]
    credentials = sim.credentials()
    first = Shipped(external_id=order.external_id, carrier_code="ZTO",
                    tracking_number="78123456789012", shipped_at=now(), package_id="a",
                    lines=((units[0], 1),))
    answer = http.send(tts.writeback_call(first, credentials, now()))
    assert tts.parse_writeback(answer.status, answer.body).ok
    detail = http.send(tts.existing_call(first, credentials, now())).json()
    assert detail["data"]["orders"][0]["status"] == "PARTIALLY_SHIPPING"
    assert "tracking_number" not in detail["data"]["orders"][0]  # not one parcel for all
    assert tts.already_shipped(detail, first)
    rest = Shipped(external_id=order.external_id, carrier_code="ZTO",
                   tracking_number="78123456789013", shipped_at=now(), package_id="b",
                   lines=tuple((unit, 1) for unit in units[1:]))
    assert not tts.already_shipped(detail, rest)
    answer = http.send(tts.writeback_call(rest, credentials, now()))
    assert tts.parse_writeback(answer.status, answer.body).ok
    detail = http.send(tts.existing_call(rest, credentials, now())).json()
    shown = detail["data"]["orders"][0]
    assert shown["status"] == "AWAITING_COLLECTION" and len(shown["packages"]) == 2
    assert tts.already_shipped(detail, rest) and tts.already_shipped(detail, first)
    assert [s.line_ids for s in sim.orders[order.external_id].shipments] == [
        (units[0],), tuple(units[1:])]


def test_wrongly_signed_calls_are_refused_as_the_platform_refuses(
        sim: TikTokShopSimulator) -> None:
    order = sim.place_order(drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    for credentials, code in (({"app_secret": "not-the-secret"}, 106001),
                              ({"access_token": "ROW_stale"}, 105001),
                              ({"shop_cipher": "ROW_other"}, 106011)):
        answer = fetch(sim, order.external_id, **credentials)
        assert answer.status == 401 and answer.json()["code"] == code
        with pytest.raises(tts.TikTokShopError) as error:
            tts.parse_order(answer.json(), ref, "tiktok_shop")
        assert error.value.code == str(code) and not error.value.retryable
    # A body other than the one signed, and a call signed too long ago.
    call = tts.list_call(SHOP, now() - timedelta(hours=1), now(), None, sim.credentials(), now())
    other = call.model_copy(update={"raw_body": b'{"update_time_ge":0}'})
    assert http.send(other).json()["code"] == 106001
    old = tts.fetch_call(ref, sim.credentials(), now() - timedelta(minutes=10))
    assert http.send(old).json()["code"] == 106002
    # A writeback refused at the gate: not recorded, read as a permanent refusal.
    shipped = Shipped(external_id=order.external_id, carrier_code="SF",
                      tracking_number="SF1489327765012", shipped_at=now(), package_id="p")
    bad = {**sim.credentials(), "app_secret": "wrong"}
    answer = http.send(tts.writeback_call(shipped, bad, now()))
    result = tts.parse_writeback(answer.status, answer.body)
    assert not result.ok and not result.retryable and result.code == "106001"
    assert sim.writebacks == []


def test_the_platform_checks_the_documented_recipe_not_our_helper(
        sim: TikTokShopSimulator) -> None:
    """Signed here from the documented recipe, independently of tiktok_shop.sign."""
    order = sim.place_order(drop=True)
    path = "/order/202309/orders"
    params = {"app_key": sim.app_key, "timestamp": str(int(now().timestamp())),
              "shop_cipher": sim.shop_cipher, "ids": order.external_id}
    text = sim.app_secret + path + "".join(k + params[k] for k in sorted(params)) \
        + sim.app_secret
    params["sign"] = hmac.new(sim.app_secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    answer = requests.get(sim.url + path, params=params, timeout=5,
                          headers={"x-tts-access-token": sim.access_token}).json()
    assert answer["code"] == 0, answer
    assert [o["id"] for o in answer["data"]["orders"]] == [order.external_id]


def test_a_dropped_notification_is_never_sent_and_its_fate_recorded(receiver: Receiver) -> None:
    sim = start(receiver, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert receiver.received == []
    assert [(f.external_id, f.fate, f.answers) for f in sim.fates] == [
        (order.external_id, "dropped", [])]


def test_a_duplicated_notification_arrives_twice(receiver: Receiver) -> None:
    sim = start(receiver, Faults(duplicate=1.0, seed=1))
    try:
        sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert len(receiver.received) == 2 and receiver.received[0] == receiver.received[1]
    secrets = sim.source()["secrets"]
    ids = {tts.accept(h, raw, secrets, now()).delivery_id for h, raw in receiver.received}
    assert len(ids) == 1
    assert sim.fates[0].fate == "duplicated" and sim.fates[0].answers == [200, 200]
