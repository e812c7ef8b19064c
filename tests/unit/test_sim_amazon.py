"""The local Amazon simulator, checked through OUR adapter (chalicelib.marketplaces.amazon), its
I/O edge (chalicelib.flows.marketplace_calls: credentials_for, read_order) over real HTTP on
127.0.0.1, and an SQS queue (moto's in-process mock: the simulator sends with boto3 as in
`make run`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.core import http
from chalicelib.core.http import Request
from chalicelib.flows import marketplace_calls
from chalicelib.marketplaces import amazon
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import OrderStatus, fulfilment_problems
from devstack.marketplaces.amazon import AmazonSimulator
from devstack.marketplaces.base import Faults, SimLine, SimOrder
from tests.sim_support import Clock

SHOP = "A2Q3Y263D00KWC/ATVPDKIKX0DER"
SELLER, MARKETPLACE = SHOP.split("/")
SEEDED = Faults(seed=7)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "amazon"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # moto's mock, not a local endpoint
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="order-backbone-test-amazon-notifications")["QueueUrl"]
    return url


def received(sqs: Any, queue: str) -> list[bytes]:
    """Every message body on the queue (read and deleted, as our consumer does)."""
    bodies: list[bytes] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"].encode("utf-8"))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def start(queue: str, faults: Faults = SEEDED, **options: Any) -> AmazonSimulator:
    sim = AmazonSimulator(shop=SHOP, webhook_url=queue, faults=faults, **options)
    sim.start()
    return sim


@pytest.fixture
def sim(queue: str) -> Iterator[AmazonSimulator]:
    found = start(queue)
    yield found
    found.stop()


def token_of(sim: AmazonSimulator) -> str:
    call = amazon.token_call(sim.credentials())
    assert call is not None
    token, lifetime = amazon.parse_token(http.send(call).json())
    assert lifetime == 3600
    return token


def signed_in(sim: AmazonSimulator) -> dict[str, str]:
    return {**sim.credentials(), "access_token": token_of(sim)}


def send(call: Request) -> Any:
    return http.send(call).json()


def ref_of(order: SimOrder) -> OrderRef:
    return OrderRef(shop=SHOP, external_id=order.external_id)


def shipped_of(order: SimOrder, package_id: str = "shp_1-1", number: str = "EM123456789CN",
               carrier: str = "EMS", lines: tuple[tuple[str, int], ...] = ()) -> Shipped:
    everything = tuple((line.line_id, line.quantity) for line in order.lines)
    return Shipped(external_id=order.external_id, carrier_code=carrier, tracking_number=number,
                   shipped_at=now(), package_id=package_id, lines=lines,
                   order_lines=() if lines else everything)


def raw_get(sim: AmazonSimulator, path: str, token: str, **params: str) -> http.Answer:
    return http.send(Request(method="GET", url=sim.url + path, params=params, headers={
        "x-amz-access-token": token, "x-amz-date": amazon.amz_date(now())}))


def test_order_changes_go_to_the_queue_as_amazon_sends_them(
        sim: AmazonSimulator, sqs: Any, queue: str) -> None:
    assert sim.source() is None
    first = sim.place_order(paid=False)
    sim.pay(first.external_id)
    second = sim.place_order()
    sim.request_cancel(second.external_id)
    sim.cancel(second.external_id)
    sim.drain()
    bodies = received(sqs, queue)
    assert len(bodies) == 5
    template = fixture("order_change_unshipped.json")
    seen: dict[str, list[tuple[str, str, str]]] = {}
    ids = set()
    for raw in bodies:
        message = json.loads(raw)
        assert set(message) == set(template)
        change = message["Payload"]["OrderChangeNotification"]
        template_change = template["Payload"]["OrderChangeNotification"]
        assert set(change) == set(template_change)
        assert set(change["Summary"]) == set(template_change["Summary"])
        assert set(message["NotificationMetadata"]) == set(template["NotificationMetadata"])
        accepted = amazon.accept_message(raw, now())
        assert accepted.delivery_id == message["NotificationMetadata"]["NotificationId"]
        assert accepted.shop == SHOP and accepted.actionable
        assert accepted.headers["fulfillment-type"] == "MFN"
        ref = amazon.ref(raw, accepted.headers)
        assert ref.shop == SHOP and ref.updated_at is not None
        ids.add(accepted.delivery_id)
        seen.setdefault(ref.external_id, []).append(
            (accepted.topic, ref.status, change["OrderChangeTrigger"]["ChangeReason"]))
        order = sim.orders[ref.external_id]
        assert [item["OrderItemId"] for item in change["Summary"]["OrderItems"]] == [
            line.line_id for line in order.lines]
        assert change["Summary"]["DestinationPostalCode"] == order.postcode[:5]
    assert len(ids) == 5  # a fresh NotificationId per notification
    status_change = "ORDER_CHANGE/OrderStatusChange"
    assert sorted(seen[first.external_id]) == sorted([
        (status_change, "Pending", "Order status changed to Pending"),
        (status_change, "Unshipped", "Order status changed to Unshipped")])
    assert sorted(seen[second.external_id]) == sorted([
        (status_change, "Unshipped", "Order status changed to Unshipped"),
        ("ORDER_CHANGE/BuyerRequestedChange", "Unshipped", "Buyer Requested Cancel"),
        (status_change, "Canceled", "Order status changed to Canceled")])
    assert [f.topic for f in sim.fates] == ["created", "paid", "paid", "cancel_requested",
                                           "cancelled"]
    assert all(f.fate == "sent" and f.answers == [200] for f in sim.fates)


def test_the_token_exchange_and_read_give_the_whole_order_with_its_address(
        sim: AmazonSimulator, sqs: Any, queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    order = sim.place_order()
    sim.drain()
    (raw,) = received(sqs, queue)
    accepted = amazon.accept_message(raw, now())
    ref = amazon.ref(raw, accepted.headers)
    assert (ref.shop, ref.external_id, ref.status) == (SHOP, order.external_id, "Unshipped")

    credentials = signed_in(sim)
    assert credentials["access_token"].startswith("Atza|")
    read = amazon.read(ref, credentials, now(), send, "amazon")
    assert (read.marketplace, read.shop, read.external_id, read.name) == (
        "amazon", SHOP, order.external_id, order.external_id)
    assert read.status is OrderStatus.PAID and read.currency == "USD"
    address = read.shipping_address
    assert address is not None
    assert (address.name, address.line1, address.line2, address.city, address.province,
            address.province_code, address.postal_code, address.country_code,
            address.phone) == (order.buyer_name, order.street, order.district, order.city,
                               order.province, order.province, order.postcode, "US",
                               order.phone)
    assert read.buyer.name == order.buyer_name
    assert read.buyer.email.endswith("@marketplace.amazon.com")
    assert [(line.line_id, line.sku, line.title, line.quantity, line.unit_price)
            for line in read.lines] == [(line.line_id, line.sku, line.title, line.quantity,
                                         line.price) for line in order.lines]
    assert all(len(line.line_id) == 14 and line.line_id.isdigit() for line in read.lines)
    assert read.totals.total == order.total and read.totals.subtotal == order.total
    assert read.totals.adds_up(), read.totals.summary()  # the simulator's orders add up too
    assert read.placed_at == order.created_at.replace(microsecond=0)
    assert fulfilment_problems(read) == []

    # Without a Restricted Data Token, Amazon leaves the buyer's PII out: not shippable.
    plain = [send(c) for c in amazon.fetch_calls(ref, credentials, now())]
    assert set(plain[0]["payload"]["ShippingAddress"]) == {
        "City", "StateOrRegion", "PostalCode", "CountryCode"}
    assert "BuyerInfo" not in plain[0]["payload"]
    bare = amazon.parse_order(plain, ref, "amazon")
    assert "incomplete_shipping_address" in fulfilment_problems(bare)

    # A data token for another order does not open this one.
    other = sim.place_order(drop=True)
    token = amazon.parse_rdt(send(amazon.rdt_call(ref_of(other), credentials, now())))
    refused = http.send(amazon.fetch_call(ref, credentials, now(), restricted_data_token=token))
    assert refused.status == 403 and refused.json()["errors"][0]["code"] == "Unauthorized"
    # ... nor is it an access token for the items.
    items = http.send(amazon.items_call(ref_of(other), {**credentials, "access_token": token},
                                        now()))
    assert items.status == 403

    # What the order worker does: credentials_for (LWA, cached), then read.
    monkeypatch.setattr(shop_credentials, "get", lambda scheme, shop: sim.credentials())
    monkeypatch.setattr(marketplace_calls, "_tokens", {})
    worker = marketplace_calls.read_order("amazon", raw, accepted.headers, "amazon", now())
    assert worker == read
    cached = marketplace_calls._tokens[("amazon", SHOP)][0]
    assert marketplace_calls.credentials_for("amazon", SHOP, now())["access_token"] == cached


def test_order_items_come_in_pages(queue: str) -> None:
    sim = start(queue, items_page_size=2)
    try:
        order = sim.place_order(drop=True)
        with sim.lock:
            for n in range(len(order.lines) + 1, 6):
                order.lines.append(SimLine(line_id=sim.new_line_id(order.external_id, n),
                                           sku=f"SKU-{n}", title=f"Item {n}", quantity=1,
                                           price=Decimal("5.00")))
        credentials = signed_in(sim)
        calls: list[Request] = []

        def counted(call: Request) -> Any:
            calls.append(call)
            return send(call)

        read = amazon.read(ref_of(order), credentials, now(), counted, "amazon")
        assert [line.line_id for line in read.lines] == [line.line_id for line in order.lines]
        pages = [c for c in calls if c.url.endswith("/orderItems")]
        assert len(pages) == 3  # 5 items, 2 a page
        tokens = [c.params.get("NextToken") for c in pages]
        assert tokens[0] is None and tokens[1] and tokens[2] and tokens[1] != tokens[2]
        assert read.totals.total == order.total

        stale = send(amazon.items_call(ref_of(order), credentials, now(), "not-a-token"))
        with pytest.raises(amazon.AmazonError) as error:
            amazon.items_next_token(stale)
        assert error.value.code == "InvalidInput" and not error.value.retryable
    finally:
        sim.stop()


def test_the_listing_finds_orders_in_the_window_page_by_page(queue: str) -> None:
    start_at = now()
    clock = Clock(start_at)
    sim = start(queue, clock=clock, list_page_size=2)
    try:
        placed = []
        for _ in range(5):
            placed.append(sim.place_order(drop=True))
            clock.advance(1)
        cancelled = sim.cancel(placed[0].external_id, drop=True)
        credentials = signed_in(sim)
        clock.advance(180)  # Amazon lists only what changed more than 2 minutes ago
        since = start_at - timedelta(hours=1)

        def unpaced(call: Request) -> http.Answer:  # getOrders' 1-a-minute pace is not ours
            return http.send(call.model_copy(update={"pace": None}))

        found: list[OrderRef] = []
        cursor: str | None = None
        cursors = []
        while True:
            call = amazon.list_call(SHOP, since, clock.now, cursor, credentials, clock.now)
            answer = unpaced(call)
            assert answer.status == 200
            refs, cursor = amazon.parse_list(answer.json(), shop=SHOP, cursor=cursor)
            assert len(refs) <= 2
            found += refs
            cursors.append(cursor)
            if cursor is None:
                break
        assert len(cursors) == 3 and len(set(cursors)) == 3
        expected = sorted(placed, key=lambda o: (o.updated_at.replace(microsecond=0),
                                                 o.external_id))
        assert [r.external_id for r in found] == [o.external_id for o in expected]
        assert all(r.shop == SHOP for r in found)
        by_id = {r.external_id: r for r in found}
        assert by_id[cancelled.external_id].status == "Canceled"
        assert {by_id[o.external_id].status for o in placed[1:]} == {"Unshipped"}
        assert all(by_id[o.external_id].updated_at == o.updated_at.replace(microsecond=0)
                   for o in placed)

        earlier = amazon.list_call(SHOP, since - timedelta(hours=1), since, None, credentials,
                                   clock.now)
        assert amazon.parse_list(unpaced(earlier).json(), shop=SHOP) == ([], None)
        # Amazon refuses a window that ends within the last 2 minutes.
        too_late = earlier.model_copy(update={"params": {
            **earlier.params, "LastUpdatedBefore": amazon.iso_z(clock.now)}})
        refused = unpaced(too_late)
        assert refused.status == 400
        with pytest.raises(amazon.AmazonError) as error:
            amazon.parse_list(refused.json(), shop=SHOP)
        assert error.value.code == "InvalidInput" and "two minutes" in error.value.message
        afn_only = earlier.model_copy(update={"params": {
            **earlier.params, "LastUpdatedAfter": amazon.iso_z(since),
            "LastUpdatedBefore": amazon.iso_z(clock.now - timedelta(minutes=2)),
            "FulfillmentChannels": "AFN"}})
        assert unpaced(afn_only).json() == {"payload": {
            "Orders": [], "LastUpdatedBefore": amazon.iso_z(clock.now - timedelta(minutes=2))}}
    finally:
        sim.stop()


def test_a_writeback_is_recorded_once_and_the_order_shows_it(
        sim: AmazonSimulator, sqs: Any, queue: str) -> None:
    order = sim.place_order()
    credentials = signed_in(sim)
    shipped = shipped_of(order)
    answer = http.send(amazon.writeback_call(shipped, credentials, now()))
    assert (answer.status, answer.body) == (204, b"")
    assert amazon.parse_writeback(answer.status, answer.body).ok
    assert len(sim.writebacks) == 1
    detail = sim.writebacks[0]["body"]["packageDetail"]
    assert (detail["carrierCode"], detail["carrierName"], detail["trackingNumber"]) == (
        "China Post", "China EMS", "EM123456789CN")
    reference = amazon.package_reference_id("shp_1-1")
    assert sim.writebacks[0]["package_reference_id"] == reference
    (shipment,) = sim.orders[order.external_id].shipments
    assert shipment.tracking_number == "EM123456789CN" and shipment.carrier == "China Post"
    assert shipment.line_ids == tuple(line.line_id for line in order.lines)

    # A retry, here with a corrected number: the same packageReferenceId edits the package.
    fixed = shipped.model_copy(update={"tracking_number": "EM987654321CN"})
    again = http.send(amazon.writeback_call(fixed, credentials, now()))
    assert again.status == 204 and amazon.parse_writeback(again.status, again.body).ok
    assert len(sim.writebacks) == 1 and len(sim.orders[order.external_id].shipments) == 1
    assert sim.orders[order.external_id].shipments[0].tracking_number == "EM987654321CN"
    assert sim.packages[order.external_id][reference].confirmations == 2

    got = send(amazon.fetch_call(ref_of(order), credentials, now()))["payload"]
    units = sum(line.quantity for line in order.lines)
    assert (got["OrderStatus"], got["NumberOfItemsShipped"], got["NumberOfItemsUnshipped"]) == (
        "Shipped", units, 0)
    items = send(amazon.items_call(ref_of(order), credentials, now()))["payload"]["OrderItems"]
    assert all(item["QuantityShipped"] == item["QuantityOrdered"] for item in items)
    assert amazon.read(ref_of(order), credentials, now(), send, "amazon").status \
        is OrderStatus.PAID
    sim.drain()
    statuses = sorted(json.loads(raw)["Payload"]["OrderChangeNotification"]["Summary"]
                      ["OrderStatus"] for raw in received(sqs, queue))
    assert statuses == ["Shipped", "Unshipped"]  # the edit sent nothing

    # Another package with items already shipped is refused, as is a foreign item id.
    more = shipped_of(order, "shp_2-1", lines=((order.lines[0].line_id, 1),))
    over = http.send(amazon.writeback_call(more, credentials, now()))
    result = amazon.parse_writeback(over.status, over.body)
    assert over.status == 400 and not result.ok and not result.retryable
    assert result.code == "InvalidInput" and "unshipped quantity 0" in result.detail
    stranger = shipped_of(order, "shp_3-1", lines=(("99999999999999", 1),))
    unknown = http.send(amazon.writeback_call(stranger, credentials, now()))
    assert unknown.status == 400 and "99999999999999" in amazon.parse_writeback(
        unknown.status, unknown.body).detail
    elsewhere = {**credentials, "marketplace_id": "A1F83G8C2ARO7P"}
    wrong = http.send(amazon.writeback_call(shipped, elsewhere, now()))
    assert wrong.status == 400 and "marketplaceId" in wrong.json()["errors"][0]["message"]
    assert len(sim.writebacks) == 1


def test_a_partial_shipment_then_the_rest(sim: AmazonSimulator, sqs: Any, queue: str) -> None:
    order = sim.place_order(drop=True)
    with sim.lock:
        order.lines[0].quantity = 2
    credentials = signed_in(sim)
    line = order.lines[0].line_id
    first = shipped_of(order, "shp_1-1", "EM000000001CN", lines=((line, 1),))
    assert http.send(amazon.writeback_call(first, credentials, now())).status == 204
    got = send(amazon.fetch_call(ref_of(order), credentials, now()))["payload"]
    assert got["OrderStatus"] == "PartiallyShipped"
    rest = [(item.line_id, item.quantity - (1 if item.line_id == line else 0))
            for item in order.lines]
    second = shipped_of(order, "shp_1-2", "SF1428819366352", "SF", lines=tuple(rest))
    answer = http.send(amazon.writeback_call(second, credentials, now()))
    assert answer.status == 204
    assert [s.carrier for s in sim.orders[order.external_id].shipments] == [
        "China Post", "SF Express"]
    got = send(amazon.fetch_call(ref_of(order), credentials, now()))["payload"]
    assert got["OrderStatus"] == "Shipped"
    sim.drain()
    statuses = sorted(json.loads(raw)["Payload"]["OrderChangeNotification"]["Summary"]
                      ["OrderStatus"] for raw in received(sqs, queue))
    assert statuses == ["PartiallyShipped", "Shipped"]


def test_wrong_tokens_are_refused_as_amazon_refuses(queue: str) -> None:
    clock = Clock(now())
    sim = start(queue, clock=clock)
    try:
        order = sim.place_order(drop=True)
        ref = ref_of(order)
        bad = {**sim.credentials(), "access_token": "Atza|not-ours"}
        with pytest.raises(amazon.AmazonError) as error:
            amazon.read(ref, bad, now(), send, "amazon")
        assert error.value.code == "Unauthorized" and not error.value.retryable
        answer = http.send(amazon.fetch_call(ref, bad, now()))
        assert answer.status == 403
        assert answer.json()["errors"][0]["message"] == "Access to requested resource is denied."
        write = http.send(amazon.writeback_call(shipped_of(order), bad, now()))
        result = amazon.parse_writeback(write.status, write.body)
        assert not result.ok and not result.retryable and result.code == "Unauthorized"
        assert sim.writebacks == [] and sim.orders[order.external_id].shipments == []

        token = token_of(sim)
        undated = http.send(Request(method="GET", url=f"{sim.url}/orders/v0/orders/"
                                    f"{order.external_id}", headers={"x-amz-access-token": token}))
        assert undated.status == 400 and undated.json()["errors"][0]["code"] == "InvalidInput"
        assert raw_get(sim, f"/orders/v0/orders/{order.external_id}", token).status == 200
        missing = raw_get(sim, "/orders/v0/orders/113-0000000-0000000", token)
        assert missing.status == 404
        assert missing.json() == fixture("error_not_found.json")
        clock.advance(3600)
        expired = raw_get(sim, f"/orders/v0/orders/{order.external_id}", token)
        assert expired.status == 403 and "expired" in expired.json()["errors"][0]["details"]

        for changed, code in (({"refresh_token": "Atzr|revoked"}, "invalid_grant"),
                              ({"client_secret": "amzn1.oa2-cs.v1.wrong"}, "invalid_client")):
            call = amazon.token_call({**sim.credentials(), **changed})
            assert call is not None
            with pytest.raises(amazon.AmazonError) as refused:
                amazon.parse_token(http.send(call).json())
            assert refused.value.code == code and not refused.value.retryable
    finally:
        sim.stop()


def test_a_dropped_notification_is_never_sent(sqs: Any, queue: str) -> None:
    sim = start(queue, Faults(drop=1.0, seed=1))
    try:
        order = sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    assert received(sqs, queue) == []
    assert [(f.external_id, f.topic, f.fate) for f in sim.fates] == [
        (order.external_id, "paid", "dropped")]


def test_a_duplicated_notification_is_the_same_message_twice(sqs: Any, queue: str) -> None:
    sim = start(queue, Faults(duplicate=1.0, seed=1))
    try:
        sim.place_order()
        sim.drain()
    finally:
        sim.stop()
    bodies = received(sqs, queue)
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert len({amazon.accept_message(raw, now()).delivery_id for raw in bodies}) == 1
    assert sim.fates[0].fate == "duplicated" and sim.fates[0].answers == [200, 200]


def test_the_shop_must_name_seller_and_marketplace(queue: str) -> None:
    with pytest.raises(ValueError, match="SellerId/MarketplaceId"):
        AmazonSimulator(shop=SELLER, webhook_url=queue)
