"""The local Douyin simulator, checked through OUR adapter (chalicelib.marketplaces.douyin) and
its I/O edge, over real HTTP on 127.0.0.1."""

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
from chalicelib.marketplaces import douyin
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import OrderStatus
from devstack.marketplaces import simulator_class
from devstack.marketplaces.base import Faults
from devstack.marketplaces.douyin import DouyinSimulator
from tests.sim_support import Receiver

SHOP = "4463798"
SEEDED = Faults(seed=7)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("/webhooks/douyin") as found:
        yield found


def start(receiver: Receiver, faults: Faults = SEEDED) -> DouyinSimulator:
    sim = DouyinSimulator(shop=SHOP, webhook_url=receiver.url, faults=faults)
    sim.start()
    return sim


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[DouyinSimulator]:
    found = start(receiver)
    yield found
    found.stop()


def now() -> datetime:
    return datetime.now(UTC)


def fetch(sim: DouyinSimulator, ref: OrderRef, **credentials: str) -> Any:
    call = douyin.fetch_call(ref, {**sim.credentials(), **credentials}, now())
    answer = http.send(call)
    assert answer.status == 200
    return answer.json()


def test_the_registry_names_the_simulator_and_the_adapter_default_base_is_unchanged() -> None:
    assert simulator_class("douyin") is DouyinSimulator
    credentials = {"app_key": "1", "app_secret": "s", "access_token": "t"}
    call = douyin.fetch_call(OrderRef(shop=SHOP, external_id="1"), credentials, now())
    assert call.url == "https://openapi-fxg.jinritemai.com/order/orderDetail"
    assert douyin.API_BASE == "https://openapi-fxg.jinritemai.com"
    moved = douyin.fetch_call(OrderRef(shop=SHOP, external_id="1"),
                              {**credentials, "api_base": "http://127.0.0.1:9/"}, now())
    assert moved.url == "http://127.0.0.1:9/order/orderDetail"


def test_a_placed_order_is_pushed_signed_and_thin(sim: DouyinSimulator,
                                                   receiver: Receiver) -> None:
    order = sim.place_order(paid=False)
    sim.pay(order.external_id)
    sim.cancel(order.external_id)
    sim.drain()
    assert len(order.external_id) == 19 and order.external_id.isdigit()
    assert [len(line.line_id) for line in order.lines] == [19] * len(order.lines)
    assert len(receiver.received) == 3
    secrets = sim.source()["secrets"]
    assert sim.source()["scheme"] == "douyin"
    topics = []
    for headers, raw in receiver.received:
        assert headers["app-id"] == sim.app_key
        accepted = douyin.accept(headers, raw, secrets, now())
        assert accepted.shop == SHOP and accepted.actionable
        messages = json.loads(raw)
        assert isinstance(messages, list) and len(messages) == 1
        assert accepted.delivery_id == messages[0]["msg_id"]
        assert isinstance(messages[0]["data"], str)  # JSON text inside the JSON
        topics.append(accepted.topic)
        ref = douyin.ref(raw, headers)
        assert (ref.shop, ref.external_id) == (SHOP, order.external_id)
        with pytest.raises(ApiError) as refused:
            douyin.accept(headers, raw, [f"{sim.app_key}:wrong-secret"], now())
        assert refused.value.status == 401 and refused.value.reason == "invalid_signature"
        tampered = raw[:-1] + b" ]"  # the same JSON, other bytes
        with pytest.raises(ApiError):
            douyin.accept(headers, tampered, secrets, now())
    assert topics == ["trade_TradeCreate", "trade_TradePaid", "trade_TradeCanceled"]
    assert sim.summary()[0]["notifications"] == ["sent", "sent", "sent"]


def test_the_adapter_refetches_the_order_the_push_names(sim: DouyinSimulator,
                                                         receiver: Receiver) -> None:
    order = sim.place_order()
    sim.drain()
    headers, raw = receiver.received[0]
    ref = douyin.ref(raw, headers)
    parsed = douyin.parse_order(fetch(sim, ref), ref, "douyin")
    assert parsed.external_id == order.external_id and parsed.shop == SHOP
    assert parsed.status is OrderStatus.PAID
    assert [(line.line_id, line.sku, line.title, line.quantity, line.unit_price)
            for line in parsed.lines] == [(line.line_id, line.sku, line.title, line.quantity,
                                           line.price) for line in order.lines]
    assert parsed.totals.total == order.total
    assert parsed.totals.adds_up(), parsed.totals.summary()  # the simulator's orders add up too
    assert parsed.updated_at == order.updated_at.replace(microsecond=0)
    assert parsed.placed_at == order.created_at.replace(microsecond=0)
    address = parsed.shipping_address
    assert address is not None
    assert (address.province, address.city, address.line2, address.country_code) == (
        order.province, order.city, order.district, "CN")
    # Name, phone and street arrive encrypted, as the platform sends them: the address holds
    # the masked text, the ciphertexts are kept beside it.
    assert (address.name, address.phone) == (order.buyer_name[:1] + "*",
                                             order.phone[:1] + "*" * (len(order.phone) - 1))
    cipher = address.encrypted
    assert cipher is not None and cipher.name.startswith("#") and cipher.phone.startswith("$")
    assert sim.decrypt(cipher.name) == order.buyer_name
    assert sim.decrypt(cipher.phone) == order.phone
    assert sim.decrypt(cipher.detail) == order.street
    assert order.street not in address.line1

    cancelled = sim.cancel(order.external_id)
    again = douyin.parse_order(fetch(sim, ref), ref, "douyin")
    assert again.status is OrderStatus.CANCELLED
    assert again.updated_at == cancelled.updated_at.replace(microsecond=0)

    missing = OrderRef(shop=SHOP, external_id="6900000000000000000")
    with pytest.raises(douyin.DouyinError, match="查询订单不存在"):
        douyin.parse_order(fetch(sim, missing), missing, "douyin")


def test_plain_receiver_fields_when_asked(receiver: Receiver) -> None:
    sim = DouyinSimulator(shop=SHOP, webhook_url=receiver.url, encrypt_receiver=False)
    with sim:
        order = sim.place_order(drop=True)
        ref = OrderRef(shop=SHOP, external_id=order.external_id)
        address = douyin.parse_order(fetch(sim, ref), ref, "douyin").shipping_address
    assert address is not None
    assert (address.name, address.phone, address.line1) == (order.buyer_name, order.phone,
                                                            order.street)


def test_the_listing_pages_through_the_window(sim: DouyinSimulator,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(douyin, "PAGE_SIZE", 2)
    placed = [sim.place_order(drop=True) for _ in range(5)]
    credentials = sim.credentials()
    since, until = now() - timedelta(hours=1), now() + timedelta(minutes=1)
    found: list[OrderRef] = []
    cursor: str | None = None
    pages = 0
    while True:
        call = douyin.list_call(SHOP, since, until, cursor, credentials, now())
        assert json.loads(call.raw_body or b"")["size"] == 2
        refs, cursor = douyin.parse_list(http.send(call).json())
        found += refs
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert sorted(r.external_id for r in found) == sorted(o.external_id for o in placed)
    assert all(r.shop == SHOP and r.status == "2" for r in found)
    by_id = {o.external_id: o for o in placed}
    assert all(r.updated_at == by_id[r.external_id].updated_at.replace(microsecond=0)
               for r in found)
    earlier = douyin.list_call(SHOP, since - timedelta(hours=2), since, None, credentials, now())
    assert douyin.parse_list(http.send(earlier).json()) == ([], None)


def test_a_writeback_is_recorded_once_and_the_order_shows_it(sim: DouyinSimulator,
                                                             receiver: Receiver) -> None:
    order = sim.place_order()
    credentials = sim.credentials()
    shipped = Shipped(external_id=order.external_id, carrier_code="SF",
                      tracking_number="SF1428819366352", shipped_at=now(), package_id="pkg-1")
    assert not douyin.already_shipped(
        http.send(douyin.existing_call(shipped, credentials, now())).json(), shipped)
    answer = http.send(douyin.writeback_call(shipped, credentials, now()))
    result = douyin.parse_writeback(answer.status, answer.body)
    assert result.ok, result
    assert len(sim.writebacks) == 1
    assert sim.writebacks[0]["params"] == {"order_id": order.external_id,
                                           "company_code": "shunfeng",
                                           "logistics_code": "SF1428819366352"}
    assert sim.orders[order.external_id].status == "shipped"
    assert sim.orders[order.external_id].shipments[0].tracking_number == "SF1428819366352"

    detail = http.send(douyin.existing_call(shipped, credentials, now())).json()
    shown = detail["data"]["shop_order_detail"]
    assert shown["order_status"] == 3
    assert [p["tracking_no"] for p in shown["logistics_info"]] == ["SF1428819366352"]
    assert douyin.already_shipped(detail, shipped)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    assert douyin.parse_order(detail, ref, "douyin").status is OrderStatus.PAID

    # A retry after a lost answer: the platform refuses, the adapter reads "done already".
    again = http.send(douyin.writeback_call(shipped, credentials, now()))
    repeated = douyin.parse_writeback(again.status, again.body)
    assert repeated.already_done and not repeated.ok
    assert len(sim.writebacks) == 1
    sim.drain()
    tags = [json.loads(raw)[0]["tag"] for _, raw in receiver.received]
    assert tags == ["101", "102"]  # paid, then the seller shipped


def test_a_writeback_the_platform_cannot_take_is_refused(sim: DouyinSimulator) -> None:
    unpaid = sim.place_order(paid=False, drop=True)
    shipped = Shipped(external_id=unpaid.external_id, carrier_code="ZTO",
                      tracking_number="78123456789012", shipped_at=now(), package_id="p")
    answer = http.send(douyin.writeback_call(shipped, sim.credentials(), now()))
    result = douyin.parse_writeback(answer.status, answer.body)
    assert not result.ok and not result.already_done and result.code == "50002"
    assert sim.writebacks == [] and sim.orders[unpaid.external_id].status == "unpaid"


def test_wrongly_signed_calls_are_refused_as_the_gateway_refuses(sim: DouyinSimulator) -> None:
    order = sim.place_order(drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    refusals = {
        "isv.signature-invalid": fetch(sim, ref, app_secret="not-the-secret"),
        "isv.access-token-no-existed": fetch(sim, ref, access_token="stale"),
        "isv.app-id-missing": fetch(sim, ref, app_key="7000000000000000001"),
    }
    for sub_code, answer in refusals.items():
        assert answer["sub_code"] == sub_code
        assert answer["code"] in (40001, 40003) and answer["data"] == {}
    with pytest.raises(douyin.DouyinError) as error:
        douyin.parse_order(refusals["isv.signature-invalid"], ref, "douyin")
    assert error.value.code == "40003" and not error.value.retryable
    # A body other than the one signed, and a call signed too long ago.
    call = douyin.fetch_call(ref, sim.credentials(), now())
    other = call.model_copy(update={"raw_body": b'{"shop_order_id":"6900000000000000000"}'})
    assert http.send(other).json()["sub_code"] == "isv.signature-invalid"
    old = douyin.fetch_call(ref, sim.credentials(), now() - timedelta(minutes=10))
    assert http.send(old).json()["sub_code"] == "isv.timestamp-invalid"
    # A writeback the gateway refuses is not recorded and is not read as success.
    shipped = Shipped(external_id=order.external_id, carrier_code="SF", tracking_number="SF1",
                      shipped_at=now(), package_id="p")
    bad = {**sim.credentials(), "app_secret": "wrong"}
    answer = http.send(douyin.writeback_call(shipped, bad, now()))
    assert not douyin.parse_writeback(answer.status, answer.body).ok
    assert sim.writebacks == []


def test_the_gateway_checks_the_documented_recipe_not_our_helper(sim: DouyinSimulator) -> None:
    """Signed here from the documented recipe, independently of douyin.sign."""
    order = sim.place_order(drop=True)
    body = json.dumps({"shop_order_id": order.external_id}, separators=(",", ":"))
    timestamp = str(int(now().timestamp()))
    text = (f"{sim.app_secret}app_key{sim.app_key}methodorder.orderDetailparam_json{body}"
            f"timestamp{timestamp}v2{sim.app_secret}")
    for method, sign in (
            ("hmac-sha256", hmac.new(sim.app_secret.encode(), text.encode(),
                                     hashlib.sha256).hexdigest()),
            ("md5", hashlib.md5(text.encode()).hexdigest())):
        params = {"app_key": sim.app_key, "method": "order.orderDetail",
                  "access_token": sim.access_token, "timestamp": timestamp, "v": "2",
                  "sign_method": method, "sign": sign}
        answer = requests.post(f"{sim.url}/order/orderDetail", params=params, data=body,
                               timeout=5).json()
        assert answer["code"] == 10000, answer
        assert answer["data"]["shop_order_detail"]["order_id"] == order.external_id
        assert answer["err_no"] == 0  # without x-open-no-old-err-code, the old fields too


def test_a_dropped_push_is_never_sent_and_its_fate_recorded(receiver: Receiver) -> None:
    sim = start(receiver, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert receiver.received == []
    assert [(f.external_id, f.topic, f.fate) for f in sim.fates] == [
        (order.external_id, "paid", "dropped")]
    assert sim.summary()[0]["notifications"] == ["dropped"]


def test_a_duplicated_push_arrives_twice(receiver: Receiver) -> None:
    sim = start(receiver, Faults(duplicate=1.0, seed=1))
    try:
        sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert len(receiver.received) == 2
    assert receiver.received[0] == receiver.received[1]
    secrets = sim.source()["secrets"]
    ids = {douyin.accept(h, raw, secrets, now()).delivery_id for h, raw in receiver.received}
    assert len(ids) == 1  # the same msg_id: we store it once
    assert sim.fates[0].fate == "duplicated" and sim.fates[0].answers == [200, 200]
