"""The local Lazada seller, checked through OUR adapter (accept, ref, the signed calls and their
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
from chalicelib.marketplaces import lazada
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import Order, OrderStatus
from devstack.marketplaces import simulator_class
from devstack.marketplaces.base import Faults, SimLine, SimOrder
from devstack.marketplaces.lazada import LazadaSimulator
from tests.sim_support import Clock, Receiver

SHOP = "200166741623"
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SEEDED = Faults(seed=7)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("/webhooks/lazada") as found:
        yield found


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def started(receiver: Receiver, clock: Clock, faults: Faults = SEEDED) -> LazadaSimulator:
    sim = LazadaSimulator(shop=SHOP, webhook_url=receiver.url, faults=faults, clock=clock)
    sim.start()
    return sim


@pytest.fixture
def sim(receiver: Receiver, clock: Clock) -> Iterator[LazadaSimulator]:
    simulator = started(receiver, clock)
    yield simulator
    simulator.stop()


def placed(sim: LazadaSimulator, *, paid: bool = True, drop: bool | None = None) -> SimOrder:
    """An order with a line of two units and a line of one (Lazada: three order items)."""
    order = sim.place_order(paid=paid, drop=drop)
    with sim.lock:
        first = order.lines[0]
        order.lines = [SimLine(first.line_id, first.sku, first.title, 2, first.price),
                       SimLine(f"{order.external_id}9", "MUG-CER-01", "陶瓷马克杯 白", 1,
                               first.price)]
    return order


def fetch(sim: LazadaSimulator, external_id: str, now: datetime) -> Order:
    ref = OrderRef(shop=SHOP, external_id=external_id)
    answers = [send(call).json() for call in lazada.fetch_calls(ref, sim.credentials(), now)]
    return lazada.parse_order(answers, ref, "lazada")


def item_ids(sim: LazadaSimulator, order: SimOrder) -> list[str]:
    return [unit.item_id for unit in sim.units(order)]


def shipped(item_ids: list[str], order: SimOrder, now: datetime,
            number: str = "SF1489327765012") -> Shipped:
    return Shipped(external_id=order.external_id, carrier_code="SF", tracking_number=number,
                   shipped_at=now, package_id="p1", lines=tuple((i, 1) for i in item_ids))


def test_the_registry_names_this_class() -> None:
    assert simulator_class("lazada") is LazadaSimulator


# (1) Pushes ----------------------------------------------------------------------------------


def test_a_placed_order_is_pushed_once_per_order_item_and_our_adapter_accepts_each(
        sim: LazadaSimulator, receiver: Receiver, clock: Clock) -> None:
    order = sim.place_order()
    sim.drain()
    units = item_ids(sim, order)
    assert len(units) == sum(line.quantity for line in order.lines)
    assert len(receiver.received) == len(units)
    source = WebhookSource.model_validate(sim.source())
    accepted = [lazada.accept(h, b, source.secrets, clock.now) for h, b in receiver.received]
    assert {(a.topic, a.shop, a.actionable) for a in accepted} == {("trade_order", SHOP, True)}
    when = int(START.timestamp())
    assert [a.delivery_id for a in accepted] == [f"{i}:pending:{when}" for i in units]
    refs = {lazada.ref(b, h) for h, b in receiver.received}
    assert refs == {OrderRef(shop=SHOP, external_id=order.external_id, status="pending",
                             updated_at=START)}
    headers, body = receiver.received[0]
    for wrong in (f"{sim.app_key}:not-the-secret", f"123:{sim.app_secret}"):
        with pytest.raises(ApiError) as refused:
            lazada.accept(headers, body, [wrong], clock.now)
        assert refused.value.status == 401


def test_only_the_items_that_changed_are_pushed(sim: LazadaSimulator, receiver: Receiver,
                                                clock: Clock) -> None:
    order = placed(sim, paid=False, drop=True)
    units = item_ids(sim, order)
    clock.advance(60)
    sim.pay(order.external_id)
    sim.drain()
    assert [json.loads(b)["data"]["order_status"] for _, b in receiver.received] == [
        "pending"] * 3
    clock.advance(60)
    answer = send(lazada.writeback_call(shipped(units[:1], order, clock.now),
                                        sim.credentials(), clock.now))
    assert lazada.parse_writeback(answer.status, answer.body).ok
    sim.drain()
    body = receiver.received[-1][1]
    assert len(receiver.received) == 4
    assert json.loads(body)["data"] == {
        "order_status": "ready_to_ship", "trade_order_id": order.external_id,
        "trade_order_line_id": units[0], "status_update_time": int(clock.now.timestamp())}


def test_a_handed_over_push_names_the_first_item_and_later_pushes_the_rest(
        sim: LazadaSimulator, receiver: Receiver, clock: Clock) -> None:
    order, note = sim.hand_over_order()
    headers = {k.lower(): v for k, v in note.headers.items()}
    first, *rest = item_ids(sim, order)
    accepted = lazada.accept(headers, note.body, sim.source()["secrets"], clock.now)
    assert accepted.delivery_id == f"{first}:pending:{int(START.timestamp())}"
    clock.advance(60)
    sim.cancel(order.external_id)
    sim.drain()
    lines = [json.loads(b)["data"]["trade_order_line_id"] for _, b in receiver.received]
    assert lines == [first, *rest]  # all canceled now


# (2) Fetch -----------------------------------------------------------------------------------


def test_the_adapters_fetch_reads_one_line_per_unit_with_address_status_and_time(
        sim: LazadaSimulator, clock: Clock) -> None:
    order = placed(sim, drop=True)
    parsed = fetch(sim, order.external_id, clock.now)
    assert (parsed.external_id, parsed.status, parsed.shop) == (
        order.external_id, OrderStatus.PAID, SHOP)
    units = sim.units(order)
    assert [(li.line_id, li.sku, li.title, li.quantity, li.unit_price) for li in parsed.lines] \
        == [(u.item_id, u.line.sku, u.line.title, 1, u.line.price) for u in units]
    assert len(parsed.lines) == 3 and len(set(item_ids(sim, order))) == 3
    address = parsed.shipping_address
    assert address is not None
    assert (address.name, address.phone, address.line1, address.line2, address.city,
            address.province, address.postal_code, address.country_code) == (
        order.buyer_name, order.phone, order.street, order.district, order.city,
        order.province, order.postcode, "CN")
    assert parsed.totals.total == order.total
    assert parsed.totals.adds_up(), parsed.totals.summary()  # the simulator's orders add up too
    assert parsed.updated_at == START
    clock.advance(120)
    sim.cancel(order.external_id, drop=True)
    cancelled = fetch(sim, order.external_id, clock.now)
    assert (cancelled.status, cancelled.lines) == (OrderStatus.CANCELLED, ())
    assert cancelled.updated_at == START + timedelta(seconds=120)


def test_an_unpaid_order_reads_as_pending_payment(sim: LazadaSimulator, clock: Clock) -> None:
    order = sim.place_order(paid=False, drop=True)
    assert fetch(sim, order.external_id, clock.now).status is OrderStatus.PENDING_PAYMENT


# (3) Listing ---------------------------------------------------------------------------------


def test_the_adapters_listing_pages_by_offset_through_the_window(
        sim: LazadaSimulator, clock: Clock) -> None:
    before_window = sim.place_order(drop=True)
    clock.advance(10)
    since = clock.now
    wanted = set()
    for _ in range(lazada.PAGE_SIZE + 30):
        clock.advance(1)
        wanted.add(sim.place_order(drop=True).external_id)
    seen: list[OrderRef] = []
    cursor: str | None = None
    cursors = []
    while True:
        call = lazada.list_call(SHOP, since, clock.now, cursor, sim.credentials(), clock.now)
        refs, cursor = lazada.parse_list(send(call).json(), shop=SHOP, cursor=cursor)
        seen.extend(refs)
        cursors.append(cursor)
        if cursor is None:
            break
        assert len(cursors) < 5
    assert cursors == [str(lazada.PAGE_SIZE), None]
    assert {r.external_id for r in seen} == wanted and len(seen) == len(wanted)
    assert before_window.external_id not in {r.external_id for r in seen}
    assert [r.updated_at for r in seen] == sorted(r.updated_at for r in seen)  # type: ignore[type-var]


# (4) Writeback -------------------------------------------------------------------------------


def test_rts_is_recorded_once_and_the_items_show_our_tracking_number(
        sim: LazadaSimulator, clock: Clock) -> None:
    order = placed(sim, drop=True)
    clock.advance(3600)
    package = shipped(item_ids(sim, order), order, clock.now)
    credentials = sim.credentials()
    assert not lazada.already_shipped(
        send(lazada.existing_call(package, credentials, clock.now)).json(), package)

    answer = send(lazada.writeback_call(package, credentials, clock.now))
    assert lazada.parse_writeback(answer.status, answer.body).ok
    assert len(sim.writebacks) == 1
    recorded = sim.writebacks[0]["params"]
    assert (recorded["delivery_type"], recorded["shipment_provider"],
            recorded["tracking_number"]) == ("dropship", lazada.CARRIERS["SF"], "SF1489327765012")
    assert json.loads(recorded["order_item_ids"]) == [int(i) for i in item_ids(sim, order)]
    held = sim.orders[order.external_id]
    assert held.status == "shipped"
    assert [s.tracking_number for s in held.shipments] == ["SF1489327765012"]
    items = sim.items(held)
    assert {(i["status"], i["tracking_code"]) for i in items} == {
        ("ready_to_ship", "SF1489327765012")}
    assert lazada.already_shipped(
        send(lazada.existing_call(package, credentials, clock.now)).json(), package)
    assert fetch(sim, order.external_id, clock.now).updated_at == clock.now


def test_a_partial_shipment_leaves_the_other_items_pending(sim: LazadaSimulator,
                                                           clock: Clock) -> None:
    order = placed(sim, drop=True)
    first, *rest = item_ids(sim, order)
    package = shipped([first], order, clock.now)
    answer = send(lazada.writeback_call(package, sim.credentials(), clock.now))
    assert lazada.parse_writeback(answer.status, answer.body).ok
    statuses = {str(i["order_item_id"]): i["status"] for i in sim.items(order)}
    assert statuses == {first: "ready_to_ship", **dict.fromkeys(rest, "pending")}
    whole = shipped([first, *rest], order, clock.now)
    existing = send(lazada.existing_call(whole, sim.credentials(), clock.now)).json()
    assert lazada.already_shipped(existing, package) and not lazada.already_shipped(existing,
                                                                                    whole)


def test_rts_of_a_cancelled_order_is_e073_which_the_adapter_retries_after_asking(
        sim: LazadaSimulator, clock: Clock) -> None:
    order = placed(sim, drop=True)
    sim.cancel(order.external_id, drop=True)
    package = shipped(item_ids(sim, order), order, clock.now)
    answer = send(lazada.writeback_call(package, sim.credentials(), clock.now))
    result = lazada.parse_writeback(answer.status, answer.body)
    assert (result.ok, result.retryable, result.code) == (False, True, "73")
    assert sim.writebacks == []


def test_a_tracking_number_of_another_order_is_e063(sim: LazadaSimulator, clock: Clock) -> None:
    first, second = sim.place_order(drop=True), sim.place_order(drop=True)
    for order, expected in ((first, True), (second, False)):
        package = shipped(item_ids(sim, order), order, clock.now, number="SF100")
        answer = send(lazada.writeback_call(package, sim.credentials(), clock.now))
        assert lazada.parse_writeback(answer.status, answer.body).ok is expected
    assert answer.json()["code"] == "63" and len(sim.writebacks) == 1


# (5) Refusals --------------------------------------------------------------------------------


def test_a_wrong_signature_is_refused_as_lazada_does(sim: LazadaSimulator, clock: Clock) -> None:
    order = placed(sim, drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    wrong = {**sim.credentials(), "app_secret": "not-the-secret"}
    answers = [send(call).json() for call in lazada.fetch_calls(ref, wrong, clock.now)]
    assert {(a["type"], a["code"]) for a in answers} == {("ISV", "IncompleteSignature")}
    with pytest.raises(lazada.LazadaError) as error:
        lazada.parse_order(answers, ref, "lazada")
    assert (error.value.code, error.value.retryable) == ("IncompleteSignature", False)
    package = shipped(item_ids(sim, order), order, clock.now)
    write = send(lazada.writeback_call(package, wrong, clock.now))
    result = lazada.parse_writeback(write.status, write.body)
    assert (result.ok, result.retryable, result.code) == (False, False, "IncompleteSignature")
    assert sim.writebacks == []


def test_the_form_of_a_post_is_signed_too(sim: LazadaSimulator, clock: Clock) -> None:
    order = placed(sim, drop=True)
    call = lazada.writeback_call(shipped(item_ids(sim, order), order, clock.now),
                                 sim.credentials(), clock.now)
    assert call.form is not None
    tampered = call.model_copy(update={"form": {**call.form, "tracking_number": "SF999"}})
    assert send(tampered).json()["code"] == "IncompleteSignature"
    assert sim.writebacks == []
    assert send(call).json()["code"] == "0"


def test_a_wrong_token_or_a_stale_timestamp_is_refused(sim: LazadaSimulator,
                                                       clock: Clock) -> None:
    order = placed(sim, drop=True)
    ref = OrderRef(shop=SHOP, external_id=order.external_id)
    token = send(lazada.fetch_call(ref, {**sim.credentials(), "access_token": "expired"},
                                   clock.now)).json()
    assert (token["type"], token["code"]) == ("ISV", "IllegalAccessToken")
    stale = send(lazada.fetch_call(ref, sim.credentials(), clock.now - timedelta(hours=3)))
    assert stale.json()["code"] == "InvalidTimestamp"


# (6) Faults ----------------------------------------------------------------------------------


def test_dropped_pushes_are_never_sent_and_their_fates_recorded(receiver: Receiver,
                                                                clock: Clock) -> None:
    sim = started(receiver, clock, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert receiver.received == []
    units = sum(line.quantity for line in order.lines)
    assert [(f.external_id, f.fate) for f in sim.fates] == [(order.external_id, "dropped")] * units


def test_a_duplicated_push_arrives_twice_with_one_dedupe_key(receiver: Receiver,
                                                             clock: Clock) -> None:
    sim = started(receiver, clock, Faults(duplicate=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    units = sum(line.quantity for line in order.lines)
    assert len(receiver.received) == 2 * units
    secrets = sim.source()["secrets"]
    keys = [lazada.accept(h, b, secrets, clock.now).delivery_id for h, b in receiver.received]
    assert len(set(keys)) == units
    assert {(f.fate, tuple(f.answers)) for f in sim.fates} == {("duplicated", (200, 200))}
