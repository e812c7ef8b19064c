"""The local Taobao / Tmall shop, checked through OUR adapter (chalicelib.marketplaces.taobao)
and its I/O edge, over real HTTP on 127.0.0.1: the TMC queue our poller consumes and confirms,
the trade it re-fetches and lists, the offline.send writeback, and the gateway's checks of every
signed call."""

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
from chalicelib.marketplaces import taobao
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import OrderStatus
from devstack.marketplaces.base import Faults, SimOrder
from devstack.marketplaces.taobao import TaobaoSimulator
from tests.sim_support import Clock
from tests.support import FIXTURES

SHOP = "栖木家居旗舰店"
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
REDELIVER = 5.0
SEEDED = Faults(seed=7)
PAY = "taobao_trade_TradeBuyerPay"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "taobao" / name).read_text(encoding="utf-8"))


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def started(clock: Clock, faults: Faults = SEEDED, **options: Any) -> TaobaoSimulator:
    sim = TaobaoSimulator(shop=SHOP, faults=faults, clock=clock, redeliver_after=REDELIVER,
                          **options)
    sim.start()
    return sim


@pytest.fixture
def sim(clock: Clock) -> Iterator[TaobaoSimulator]:
    simulator = started(clock)
    yield simulator
    simulator.stop()


def top(sim: TaobaoSimulator, clock: Clock, method: str, params: dict[str, str],
        **credentials: str) -> Any:
    """One TOP call signed by our adapter's top_call, sent by our I/O edge."""
    answer = http.send(taobao.top_call(method, params, {**sim.credentials(), **credentials},
                                       clock.now))
    assert answer.status == 200
    return answer.json()


def consume(sim: TaobaoSimulator, clock: Clock) -> list[taobao.TmcMessage]:
    answer = http.send(taobao.consume_call("", 100, sim.credentials(), clock.now))
    return taobao.parse_messages(answer.json())


def confirm(sim: TaobaoSimulator, clock: Clock, ids: list[str]) -> bool:
    answer = http.send(taobao.confirm_call(ids, sim.credentials(), clock.now))
    return taobao.parse_confirm(answer.json())


def fetch(sim: TaobaoSimulator, clock: Clock, external_id: str, **credentials: str) -> Any:
    ref = OrderRef(shop=SHOP, external_id=external_id)
    answer = http.send(taobao.fetch_call(ref, {**sim.credentials(), **credentials}, clock.now))
    assert answer.status == 200
    return answer.json()


def shipped(order: SimOrder, clock: Clock, number: str = "SF1428819366352",
            lines: tuple[tuple[str, int], ...] = (), carrier: str = "SF") -> Shipped:
    return Shipped(external_id=order.external_id, carrier_code=carrier, tracking_number=number,
                   shipped_at=clock.now, package_id=f"pkg-{number}", lines=lines)


def write_back(sim: TaobaoSimulator, clock: Clock, package: Shipped) -> Any:
    answer = http.send(taobao.writeback_call(package, sim.credentials(), clock.now))
    return taobao.parse_writeback(answer.status, answer.body)


def two_line_order(sim: TaobaoSimulator) -> SimOrder:
    for _ in range(50):
        order = sim.place_order(drop=True)
        if len(order.lines) == 2:
            return order
    raise AssertionError("the shop never sold two goods at once")


def test_credentials_point_our_adapter_at_the_gateway_and_there_is_no_webhook(
        sim: TaobaoSimulator, clock: Clock) -> None:
    credentials = sim.credentials()
    assert sim.source() is None
    assert credentials["gateway"] == f"{sim.url}/router/rest"
    assert credentials["sign_method"] in taobao.SIGN_METHODS
    assert set(credentials) == {"app_key", "app_secret", "session", "sign_method", "gateway"}
    call = taobao.consume_call("", 10, credentials, clock.now)
    assert call.url == credentials["gateway"]
    default = taobao.consume_call("", 10, {**credentials, "gateway": ""}, clock.now)
    assert default.url == taobao.GATEWAY == "https://eco.taobao.com/router/rest"


def test_a_paid_order_waits_on_tmc_until_confirmed(sim: TaobaoSimulator, clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    assert len(order.external_id) == 19 and order.external_id.isdigit()
    (message,) = consume(sim, clock)
    recorded = fixture("tmc_consume.json")["tmc_messages_consume_response"]["messages"]
    raw = http.send(taobao.consume_call("", 100, sim.credentials(), clock.now)).json()
    assert raw == {"tmc_messages_consume_response": {"request_id": raw[
        "tmc_messages_consume_response"]["request_id"]}}  # invisible now: nothing, as recorded
    assert message.topic == PAY and message.user_nick == SHOP
    assert message.pub_app_key == recorded["tmc_message"][0]["pub_app_key"]
    content = json.loads(message.content)
    assert set(content) == set(json.loads(recorded["tmc_message"][0]["content"]))
    assert (str(content["tid"]), content["status"]) == (order.external_id,
                                                        "WAIT_SELLER_SEND_GOODS")

    accepted = taobao.accept_message(message, clock.now)
    assert accepted.actionable and accepted.shop == SHOP and accepted.topic == PAY
    assert accepted.delivery_id == message.id and message.id.isdigit()
    ref = taobao.ref(taobao.message_bytes(message), accepted.headers)
    assert (ref.shop, ref.external_id, ref.status) == (SHOP, order.external_id,
                                                       "WAIT_SELLER_SEND_GOODS")
    assert ref.updated_at == START

    # Not confirmed: TMC hands it out again after the redelivery delay, not before.
    clock.advance(REDELIVER - 1)
    assert consume(sim, clock) == []
    clock.advance(1)
    (again,) = consume(sim, clock)
    assert again == message
    assert sim.queued()[0]["deliveries"] == 2
    assert confirm(sim, clock, [again.id])
    clock.advance(REDELIVER * 3)
    assert consume(sim, clock) == []
    assert sim.queued() == []


def test_each_change_of_a_trade_is_a_message_with_its_status_then(sim: TaobaoSimulator,
                                                                  clock: Clock) -> None:
    first = sim.place_order(paid=False)
    clock.advance(1)
    sim.pay(first.external_id)
    clock.advance(1)
    sim.cancel(first.external_id)  # closed after payment: refunded
    second = sim.place_order(paid=False)
    sim.cancel(second.external_id)  # closed before payment
    sim.drain()
    messages = consume(sim, clock)
    seen = [(json.loads(m.content)["tid"], m.topic, json.loads(m.content)["status"])
            for m in messages]
    a, b = int(first.external_id), int(second.external_id)
    assert seen == [(a, "taobao_trade_TradeCreate", "WAIT_BUYER_PAY"),
                    (a, PAY, "WAIT_SELLER_SEND_GOODS"),
                    (a, "taobao_trade_TradeClose", "TRADE_CLOSED"),
                    (b, "taobao_trade_TradeCreate", "WAIT_BUYER_PAY"),
                    (b, "taobao_trade_TradeClose", "TRADE_CLOSED_BY_TAOBAO")]
    assert len({m.id for m in messages}) == 5
    assert all(m.topic in taobao.ORDER_TOPICS for m in messages)
    assert [m.pub_time for m in messages[:3]] == ["2026-11-23 10:00:00", "2026-11-23 10:00:01",
                                                 "2026-11-23 10:00:02"]
    refunded = taobao.parse_order(fetch(sim, clock, first.external_id),
                                  OrderRef(shop=SHOP, external_id=first.external_id), "taobao")
    assert refunded.status is OrderStatus.REFUNDED and refunded.lines == ()
    cancelled = taobao.parse_order(fetch(sim, clock, second.external_id),
                                   OrderRef(shop=SHOP, external_id=second.external_id), "taobao")
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.paid_at is None
    assert cancelled.cancelled_at == START + timedelta(seconds=2)


def test_the_adapter_refetches_the_trade_the_message_names(sim: TaobaoSimulator,
                                                            clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    (message,) = consume(sim, clock)
    ref = taobao.ref(taobao.message_bytes(message), {})
    answer = fetch(sim, clock, ref.external_id)
    trade = answer["trade_fullinfo_get_response"]["trade"]
    assert set(trade) <= set(taobao.TRADE_FIELDS.split(","))  # only the fields asked for
    assert trade["tid"] == int(order.external_id) and trade["tid_str"] == order.external_id
    parsed = taobao.parse_order(answer, ref, "taobao")
    assert (parsed.external_id, parsed.shop, parsed.status) == (order.external_id, SHOP,
                                                                OrderStatus.PAID)
    assert [(line.line_id, line.sku, line.title, line.quantity, line.unit_price)
            for line in parsed.lines] == [(line.line_id, line.sku, line.title, line.quantity,
                                           line.price) for line in order.lines]
    assert [line.line_id for line in parsed.lines] == [
        str(int(order.external_id) + n) for n in range(1, len(order.lines) + 1)]
    address = parsed.shipping_address
    assert address is not None
    assert (address.name, address.phone, address.province, address.city, address.line2,
            address.line1, address.postal_code, address.country_code) == (
        order.buyer_name, order.phone, order.province, order.city, order.district, order.street,
        order.postcode, "CN")
    assert parsed.totals.total == order.total and parsed.totals.subtotal == order.total
    assert parsed.totals.adds_up(), parsed.totals.summary()  # the simulator's orders add up too
    assert parsed.placed_at == parsed.updated_at == parsed.paid_at == START
    # Everything the recorded answer has, the simulator's trade has too.
    recorded = fixture("trade_fullinfo.json")["trade_fullinfo_get_response"]["trade"]
    rendered = sim.render(order)
    assert set(recorded) <= set(rendered)
    assert set(recorded["orders"]["order"][0]) <= set(rendered["orders"]["order"][0])

    missing = OrderRef(shop=SHOP, external_id="3900000000000000001")
    with pytest.raises(taobao.TaobaoError) as error:
        taobao.parse_order(fetch(sim, clock, missing.external_id), missing, "taobao")
    assert error.value.sub_code == "isv.trade-not-exist" and not error.value.retryable


def test_a_masked_receiver_comes_with_an_oaid(clock: Clock) -> None:
    sim = started(clock, mask_receiver=True)
    try:
        order = sim.place_order(drop=True)
        answer = fetch(sim, clock, order.external_id)
    finally:
        sim.stop()
    parsed = taobao.parse_order(answer, OrderRef(shop=SHOP, external_id=order.external_id),
                                "taobao")
    address = parsed.shipping_address
    assert address is not None
    assert address.name == order.buyer_name[0] + "**" and address.phone.endswith(order.phone[-4:])
    assert address.phone.startswith("*") and address.line1 != order.street
    assert len(sim.render(order)["oaid"]) == 32


def test_the_listing_pages_through_the_window(sim: TaobaoSimulator, clock: Clock,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = sim.place_order(drop=True)
    clock.advance(7200)
    placed = []
    for _ in range(5):
        placed.append(sim.place_order(drop=True))
        clock.advance(1)
    credentials = sim.credentials()
    since, until = clock.now - timedelta(minutes=30), clock.now
    # With the adapter's page size (100), one page.
    refs, cursor = taobao.parse_list(http.send(taobao.list_call(
        SHOP, since, until, None, credentials, clock.now)).json(), shop=SHOP)
    assert cursor is None and [r.external_id for r in refs] == [o.external_id for o in placed]

    monkeypatch.setattr(taobao, "PAGE_SIZE", 2)
    found: list[OrderRef] = []
    cursor = None
    pages = 0
    while True:
        call = taobao.list_call(SHOP, since, until, cursor, credentials, clock.now)
        assert call.form is not None and call.form["page_size"] == "2"
        refs, cursor = taobao.parse_list(http.send(call).json(), shop=SHOP, cursor=cursor)
        found += refs
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert [r.external_id for r in found] == [o.external_id for o in placed]  # oldest first
    assert all(r.shop == SHOP and r.status == "WAIT_SELLER_SEND_GOODS" for r in found)
    assert [r.updated_at for r in found] == [o.updated_at for o in placed]
    assert before.external_id not in {r.external_id for r in found}
    earlier = taobao.list_call(SHOP, START - timedelta(hours=1), START, None, credentials,
                               clock.now)
    refs, cursor = taobao.parse_list(http.send(earlier).json(), shop=SHOP)
    assert [r.external_id for r in refs] == [before.external_id] and cursor is None

    # The gateway holds to its limits (our list_call refuses to build these).
    too_long = top(sim, clock, "taobao.trades.sold.increment.get", {
        "fields": taobao.LIST_FIELDS, "start_modified": taobao.top_time(clock.now - timedelta(
            days=2)), "end_modified": taobao.top_time(clock.now), "use_has_next": "true"})
    with pytest.raises(taobao.TaobaoError) as error:
        taobao.parse_list(too_long)
    assert error.value.code == "41" and error.value.sub_code.endswith("start_modified")
    counted = top(sim, clock, "taobao.trades.sold.increment.get", {
        "fields": "tid", "start_modified": taobao.top_time(since),
        "end_modified": taobao.top_time(until), "page_size": "2"})
    body = counted["trades_sold_increment_get_response"]
    assert body["total_results"] == 5 and "has_next" not in body
    assert body["trades"]["trade"] == [{"tid": int(o.external_id)} for o in placed[:2]]


def test_a_writeback_is_recorded_once_and_the_trade_shows_it(sim: TaobaoSimulator,
                                                             clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    assert confirm(sim, clock, [m.id for m in consume(sim, clock)])
    package = shipped(order, clock)
    credentials = sim.credentials()
    assert not taobao.already_shipped(
        http.send(taobao.existing_call(package, credentials, clock.now)).json(), package)
    clock.advance(60)
    result = write_back(sim, clock, package)
    assert result.ok and not result.already_done, result
    assert len(sim.writebacks) == 1
    assert sim.writebacks[0]["params"] == {"tid": order.external_id,
                                           "out_sid": "SF1428819366352", "company_code": "SF"}

    existing = http.send(taobao.existing_call(package, credentials, clock.now)).json()
    trade = existing["trade_fullinfo_get_response"]["trade"]
    assert trade["status"] == "WAIT_BUYER_CONFIRM_GOODS"
    assert [o["invoice_no"] for o in trade["orders"]["order"]] == ["SF1428819366352"] * len(
        order.lines)
    assert {o["logistics_company"] for o in trade["orders"]["order"]} == {"顺丰速运"}
    assert taobao.already_shipped(existing, package)
    assert not taobao.already_shipped(existing, shipped(order, clock, "SF0000000000001"))
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    again = taobao.parse_order(fetch(sim, clock, order.external_id), ref, "taobao")
    assert again.status is OrderStatus.PAID and again.updated_at == clock.now

    sim.drain()
    (ship,) = consume(sim, clock)
    assert ship.topic == "taobao_trade_TradeSellerShip"
    assert json.loads(ship.content)["status"] == "WAIT_BUYER_CONFIRM_GOODS"
    assert taobao.accept_message(ship, clock.now).actionable

    # A retry after a lost answer: TOP refuses as recorded; the adapter reads "done already".
    answer = http.send(taobao.writeback_call(package, credentials, clock.now))
    refused = answer.json()["error_response"]
    recorded = fixture("offline_send_already.json")["error_response"]
    assert {k: refused[k] for k in ("code", "msg", "sub_code", "sub_msg")} == {
        k: recorded[k] for k in ("code", "msg", "sub_code", "sub_msg")}
    repeated = taobao.parse_writeback(answer.status, answer.body)
    assert repeated.already_done and repeated.ok and repeated.code == taobao.ALREADY_SHIPPED
    assert len(sim.writebacks) == 1 and len(sim.orders[order.external_id].shipments) == 1


def test_a_split_shipment_names_its_sub_orders(sim: TaobaoSimulator, clock: Clock) -> None:
    order = two_line_order(sim)
    first, second = (line.line_id for line in order.lines)
    one = shipped(order, clock, "YT7519283746501", lines=((first, 1),), carrier="YTO")
    assert write_back(sim, clock, one).ok
    assert sim.writebacks[0]["params"] == {"tid": order.external_id,
                                           "out_sid": "YT7519283746501", "company_code": "YTO",
                                           "is_split": "1", "sub_tid": first}
    trade = fetch(sim, clock, order.external_id)["trade_fullinfo_get_response"]["trade"]
    assert trade["status"] == "SELLER_CONSIGNED_PART"
    assert [(o["status"], o.get("invoice_no")) for o in trade["orders"]["order"]] == [
        ("WAIT_BUYER_CONFIRM_GOODS", "YT7519283746501"), ("WAIT_SELLER_SEND_GOODS", None)]
    parsed = taobao.parse_order(fetch(sim, clock, order.external_id),
                                OrderRef(shop=SHOP, external_id=order.external_id), "taobao")
    assert parsed.status is OrderStatus.PAID and len(parsed.lines) == 2

    assert write_back(sim, clock, one).already_done  # the same sub-order again: B04
    two = shipped(order, clock, "YT7519283746502", lines=((second, 1),), carrier="YTO")
    assert write_back(sim, clock, two).ok
    existing = http.send(taobao.existing_call(two, sim.credentials(), clock.now)).json()
    assert existing["trade_fullinfo_get_response"]["trade"]["status"] == (
        "WAIT_BUYER_CONFIRM_GOODS")
    assert taobao.already_shipped(existing, two) and taobao.already_shipped(existing, one)
    sim.drain()
    assert [m.topic for m in consume(sim, clock)] == ["taobao_trade_TradePartlySellerShip",
                                                      "taobao_trade_TradeSellerShip"]
    assert len(sim.writebacks) == 2


def test_writebacks_the_platform_cannot_take_are_refused(sim: TaobaoSimulator,
                                                         clock: Clock) -> None:
    unpaid = sim.place_order(paid=False, drop=True)
    answer = http.send(taobao.writeback_call(shipped(unpaid, clock), sim.credentials(),
                                             clock.now))
    assert answer.json()["error_response"]["sub_code"] == taobao.ALREADY_SHIPPED
    assert sim.writebacks == [] and sim.orders[unpaid.external_id].status == "unpaid"

    paid = sim.place_order(drop=True)
    unknown = top(sim, clock, "taobao.logistics.offline.send", {
        "tid": paid.external_id, "out_sid": "SF1428819366352", "company_code": "NOSUCH"})
    result = taobao.parse_writeback(200, json.dumps(unknown).encode())
    assert not result.ok and not result.retryable and not result.already_done
    assert result.code == "isv.invalid-parameter:company_code"
    for number in ("SF-1", "12"):  # not a waybill of the company's shape
        result = write_back(sim, clock, shipped(paid, clock, number))
        assert not result.ok and result.code == "isv.logistics-offline-service-error:B60"
    assert write_back(sim, clock, shipped(paid, clock, "SF1428819366352")).ok
    other = sim.place_order(drop=True)
    reused = write_back(sim, clock, shipped(other, clock, "SF1428819366352"))
    assert not reused.ok and reused.code == "isv.logistics-offline-service-error:B60"
    assert len(sim.writebacks) == 1


def test_wrongly_signed_calls_are_refused_in_tops_shape(sim: TaobaoSimulator,
                                                        clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    refusals = {
        25: fetch(sim, clock, order.external_id, app_secret="not-the-secret"),
        27: fetch(sim, clock, order.external_id, session="6100stale"),
        29: fetch(sim, clock, order.external_id, app_key="99999999"),
    }
    for code, answer in refusals.items():
        assert set(answer) == {"error_response"}
        assert set(answer["error_response"]) == {"code", "msg", "sub_code", "sub_msg",
                                                 "request_id"}
        assert answer["error_response"]["code"] == code
        with pytest.raises(taobao.TaobaoError) as error:
            taobao.parse_order(answer, ref, "taobao")
        assert error.value.code == str(code) and not error.value.retryable
    recorded = fixture("error_session.json")["error_response"]
    assert {k: refusals[27]["error_response"][k] for k in ("code", "msg", "sub_code")} == {
        k: recorded[k] for k in ("code", "msg", "sub_code")}

    # The timestamp: ten minutes either way of the gateway's clock, no more.
    for skew, ok in ((-9.5, True), (9.5, True), (-11, False), (11, False)):
        call = taobao.fetch_call(ref, sim.credentials(), clock.now + timedelta(minutes=skew))
        answer = http.send(call).json()
        assert ("trade_fullinfo_get_response" in answer) is ok, (skew, answer)
        if not ok:
            assert answer["error_response"]["code"] == 31
    # A form other than the one signed.
    call = taobao.fetch_call(ref, sim.credentials(), clock.now)
    assert call.form is not None
    tampered = call.model_copy(update={"form": {**call.form, "tid": "3900000000000000001"}})
    assert http.send(tampered).json()["error_response"]["code"] == 25

    # TMC is the app's: a stale seller session does not matter there; a wrong sign does.
    assert [m.topic for m in consume(sim, clock)] == [PAY]
    clock.advance(REDELIVER)
    stale = http.send(taobao.consume_call("", 100, {**sim.credentials(), "session": "6100old"},
                                          clock.now)).json()
    assert len(taobao.parse_messages(stale)) == 1
    clock.advance(REDELIVER)
    wrong = http.send(taobao.consume_call("", 100, {**sim.credentials(), "app_secret": "x"},
                                          clock.now)).json()
    with pytest.raises(taobao.TaobaoError):
        taobao.parse_messages(wrong)
    with pytest.raises(taobao.TaobaoError):
        taobao.parse_confirm(http.send(taobao.confirm_call(
            ["1"], {**sim.credentials(), "app_secret": "x"}, clock.now)).json())
    # A writeback the gateway refuses is not recorded and is not read as success.
    bad = {**sim.credentials(), "session": "6100stale"}
    answer = http.send(taobao.writeback_call(shipped(order, clock), bad, clock.now))
    result = taobao.parse_writeback(answer.status, answer.body)
    assert not result.ok and not result.already_done and result.code == "invalid-sessionkey"
    assert sim.writebacks == []
    # Business limits: the consume quantity.
    small = top(sim, clock, "taobao.tmc.messages.consume", {"quantity": "5"})
    assert small["error_response"]["sub_code"] == "isv.invalid-parameter:quantity"


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_our_signer_and_the_gateways_check_agree(clock: Clock, sign_method: str) -> None:
    """The gateway's check against a request signed here from the documented recipe and
    against our adapter's top_call, for each sign method."""
    sim = started(clock, sign_method=sign_method)
    try:
        order = sim.place_order(drop=True)
        params = {"method": "taobao.trade.fullinfo.get", "app_key": sim.app_key,
                  "session": sim.session, "timestamp": taobao.top_time(clock.now),
                  "format": "json", "v": "2.0", "sign_method": sign_method,
                  "fields": "tid,status", "tid": order.external_id}
        text = "".join(name + params[name] for name in sorted(params)).encode()
        key = sim.app_secret.encode()
        by_hand = (hashlib.md5(key + text + key).hexdigest() if sign_method == "md5" else
                   hmac.new(key, text, hashlib.md5 if sign_method == "hmac"
                            else hashlib.sha256).hexdigest()).upper()
        assert by_hand == taobao.sign(params, sim.app_secret, sign_method)
        answer = requests.post(f"{sim.url}/router/rest", data={**params, "sign": by_hand},
                               timeout=5).json()
        assert answer["trade_fullinfo_get_response"]["trade"] == {
            "tid": int(order.external_id), "status": "WAIT_SELLER_SEND_GOODS"}
        ours = fetch(sim, clock, order.external_id)
        assert ours["trade_fullinfo_get_response"]["trade"]["tid_str"] == order.external_id
        other = by_hand[:-1] + ("1" if by_hand.endswith("0") else "0")
        wrong = requests.post(f"{sim.url}/router/rest", data={**params, "sign": other},
                              timeout=5).json()
        assert wrong["error_response"]["code"] == 25
    finally:
        sim.stop()


def test_a_dropped_message_is_never_queued_and_its_fate_recorded(clock: Clock) -> None:
    sim = started(clock, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
        assert consume(sim, clock) == []
    finally:
        sim.stop()
    assert [(f.external_id, f.topic, f.fate) for f in sim.fates] == [
        (order.external_id, "paid", "dropped")]
    assert sim.summary()[0]["notifications"] == ["dropped"]


def test_a_duplicated_message_is_queued_twice_with_one_id(clock: Clock) -> None:
    sim = started(clock, Faults(duplicate=1.0, seed=1))
    try:
        sim.place_order()
        sim.drain()
        messages = consume(sim, clock)
        assert len(messages) == 2 and messages[0] == messages[1]
        ids = {taobao.accept_message(m, clock.now).delivery_id for m in messages}
        assert len(ids) == 1  # the same message id: we store it once
        assert confirm(sim, clock, sorted(ids))  # one confirm takes both
        clock.advance(REDELIVER)
        assert consume(sim, clock) == []
    finally:
        sim.stop()
    assert sim.fates[0].fate == "duplicated"


def test_a_held_message_is_queued_after_the_next(clock: Clock) -> None:
    sim = started(clock, Faults(reorder=1.0, seed=1))
    try:
        first = sim.place_order()
        sim.drain()
        assert consume(sim, clock) == []
        sim.flush_held()
        sim.drain()
        (late,) = consume(sim, clock)
    finally:
        sim.stop()
    assert json.loads(late.content)["tid"] == int(first.external_id)
    assert sim.fates[0].fate == "held"
