from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.marketplaces import amazon
from chalicelib.marketplaces.calls import OrderRef, Shipped, WritebackResult
from chalicelib.orders.deliveries import Accepted
from chalicelib.orders.order import (
    Address,
    Buyer,
    InvalidOrder,
    Order,
    OrderLine,
    OrderStatus,
    Totals,
    fulfilment_problems,
)
from tests.support import FIXTURES

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
SELLER = "A2Q3Y263D00KWC"
MARKETPLACE = "ATVPDKIKX0DER"
SHOP = f"{SELLER}/{MARKETPLACE}"
ORDER_ID = "113-4857392-2093816"
TOKEN = "Atza|IwEBIExampleLwaAccessToken"
CREDENTIALS = {"access_token": TOKEN, "region": "na", "marketplace_id": MARKETPLACE}
NA = "https://sellingpartnerapi-na.amazon.com"
AMZ_DATE = "20261123T030000Z"
REF = OrderRef(shop=SHOP, external_id=ORDER_ID)


def load(name: str) -> Any:
    return json.loads((FIXTURES / "amazon" / name).read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    return (FIXTURES / "amazon" / name).read_bytes()


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode()


def answers() -> list[Any]:
    return [load("get_order.json"), load("get_order_items.json")]


# The SQS notification ----------------------------------------------------------------------


def test_there_is_no_http_answer_an_sqs_message_is_deleted() -> None:
    assert amazon.REPLY is None
    assert amazon.ACK == "delete_message"


def test_http_posts_are_refused_as_an_unknown_source() -> None:
    with pytest.raises(ApiError) as error:
        amazon.accept({}, raw("order_change_unshipped.json"), ("any",), NOW)
    assert (error.value.status, error.value.reason) == (404, "unknown_source")


@pytest.mark.parametrize(("fixture", "expected"), [
    ("order_change_unshipped.json", Accepted(
        delivery_id="3f2c7a9e-6d1b-4e5a-8c2f-9b0a1d2e3f4c",
        topic="ORDER_CHANGE/OrderStatusChange", shop=SHOP,
        headers={"order-change-type": "OrderStatusChange",
                 "change-reason": "Order status changed to Unshipped",
                 "fulfillment-type": "MFN", "order-status": "Unshipped"},
        actionable=True)),
    ("order_change_buyer_cancel.json", Accepted(
        delivery_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        topic="ORDER_CHANGE/BuyerRequestedChange", shop=SHOP,
        headers={"order-change-type": "BuyerRequestedChange",
                 "change-reason": "Buyer Requested Cancel",
                 "fulfillment-type": "MFN", "order-status": "Unshipped"},
        actionable=True)),
    ("order_change_afn.json", Accepted(
        delivery_id="c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
        topic="ORDER_CHANGE/OrderStatusChange", shop=SHOP,
        headers={"order-change-type": "OrderStatusChange",
                 "change-reason": "Order status changed to Shipped",
                 "fulfillment-type": "AFN", "order-status": "Shipped"},
        actionable=False)),  # fulfilled by Amazon: not ours to ship
])
def test_each_notification_is_accepted_with_its_notification_id(fixture: str,
                                                                expected: Accepted) -> None:
    assert amazon.accept_message(raw(fixture), NOW) == expected


def test_another_notification_type_on_the_queue_is_kept_but_not_actionable() -> None:
    notification = load("order_change_unshipped.json")
    notification["NotificationType"] = "FEED_PROCESSING_FINISHED"
    notification["Payload"] = {"feedProcessingFinishedNotification": {"feedId": "50014"}}
    accepted = amazon.accept_message(body_of(notification), NOW)
    assert (accepted.topic, accepted.actionable, accepted.shop) == (
        "FEED_PROCESSING_FINISHED", False, "")
    assert accepted.delivery_id == "3f2c7a9e-6d1b-4e5a-8c2f-9b0a1d2e3f4c"


def test_malformed_json_is_400() -> None:
    for body in (b'{"NotificationType": "ORDER_CHANGE"', b"[1, 2]", '{"a": 1}'.encode("utf-16")):
        with pytest.raises(ApiError) as error:
            amazon.accept_message(body, NOW)
        assert (error.value.status, error.value.reason) == (400, "malformed_json")


def _without(path: tuple[str, ...]) -> bytes:
    notification = load("order_change_unshipped.json")
    node = notification
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return body_of(notification)


@pytest.mark.parametrize(("path", "field"), [
    (("NotificationMetadata", "NotificationId"), "NotificationMetadata.NotificationId"),
    (("EventTime",), "EventTime"),
    (("PayloadVersion",), "PayloadVersion"),
    (("Payload", "OrderChangeNotification", "SellerId"),
     "Payload.OrderChangeNotification.SellerId"),
    (("Payload", "OrderChangeNotification", "AmazonOrderId"),
     "Payload.OrderChangeNotification.AmazonOrderId"),
    (("Payload", "OrderChangeNotification", "OrderChangeTrigger", "ChangeReason"),
     "Payload.OrderChangeNotification.OrderChangeTrigger.ChangeReason"),
    (("Payload", "OrderChangeNotification", "Summary", "MarketplaceId"),
     "Payload.OrderChangeNotification.Summary.MarketplaceId"),
    (("Payload", "OrderChangeNotification", "Summary", "FulfillmentType"),
     "Payload.OrderChangeNotification.Summary.FulfillmentType"),
    (("Payload", "OrderChangeNotification", "Summary", "PurchaseDate"),
     "Payload.OrderChangeNotification.Summary.PurchaseDate"),
])
def test_a_notification_missing_a_required_field_is_422_naming_it(path: tuple[str, ...],
                                                                   field: str) -> None:
    with pytest.raises(ApiError) as error:
        amazon.accept_message(_without(path), NOW)
    assert (error.value.status, error.value.reason) == (422, "invalid_payload")
    assert field in {p["field"] for p in error.value.details["problems"]}


@pytest.mark.parametrize(("key", "value"), [
    ("OrderStatus", "Delivered"), ("FulfillmentType", "SFN"),
])
def test_an_undocumented_summary_value_is_422(key: str, value: str) -> None:
    notification = load("order_change_unshipped.json")
    notification["Payload"]["OrderChangeNotification"]["Summary"][key] = value
    with pytest.raises(ApiError) as error:
        amazon.accept_message(body_of(notification), NOW)
    assert error.value.status == 422


def test_ref_names_the_order_and_the_time_of_the_change() -> None:
    assert amazon.ref(raw("order_change_unshipped.json"), {}) == OrderRef(
        shop=SHOP, external_id=ORDER_ID, status="Unshipped",
        updated_at=datetime(2026, 11, 23, 2, 15, 41, 93000, tzinfo=UTC))
    # No TimeOfOrderChange: the event time stands in.
    afn = amazon.ref(raw("order_change_afn.json"), {})
    assert afn.updated_at == datetime(2026, 11, 23, 2, 15, 44, 512000, tzinfo=UTC)
    assert afn.external_id == "114-2038475-6610247"
    with pytest.raises(InvalidOrder):
        amazon.ref(b'{"NotificationType": "ORDER_CHANGE"}', {})


# Statuses ---------------------------------------------------------------------------------


DOCUMENTED = {
    "PendingAvailability": OrderStatus.PENDING_PAYMENT,
    "Pending": OrderStatus.PENDING_PAYMENT,
    "Unshipped": OrderStatus.PAID,
    "PartiallyShipped": OrderStatus.PAID,
    "Shipped": OrderStatus.PAID,
    "InvoiceUnconfirmed": OrderStatus.PAID,
    "Canceled": OrderStatus.CANCELLED,
    "Unfulfillable": None,
}


@pytest.mark.parametrize(("status", "expected"), DOCUMENTED.items())
def test_status_mapping_covers_every_documented_status(status: str,
                                                       expected: OrderStatus | None) -> None:
    assert amazon.map_status(status) is expected


def test_the_status_table_is_exactly_the_documented_list() -> None:
    assert set(amazon.STATUSES) == set(DOCUMENTED)
    assert amazon.map_status("Delivered") is None


# Re-fetch ---------------------------------------------------------------------------------


def test_fetch_calls_are_get_order_then_get_order_items() -> None:
    headers = {"x-amz-access-token": TOKEN, "x-amz-date": AMZ_DATE}
    assert amazon.fetch_calls(REF, CREDENTIALS, NOW) == [
        Request(method="GET", url=f"{NA}/orders/v0/orders/{ORDER_ID}", headers=headers,
                pace=amazon.PACES["getOrder"]),
        Request(method="GET", url=f"{NA}/orders/v0/orders/{ORDER_ID}/orderItems",
                headers=headers, pace=amazon.PACES["getOrderItems"]),
    ]


def test_the_restricted_data_token_authorises_get_order_only() -> None:
    order, items = amazon.fetch_calls(REF, CREDENTIALS, NOW, restricted_data_token="Atz.sprdt|x")
    assert order.headers["x-amz-access-token"] == "Atz.sprdt|x"
    assert items.headers["x-amz-access-token"] == TOKEN


def test_the_next_items_page_carries_the_token() -> None:
    call = amazon.items_call(REF, CREDENTIALS, NOW, next_token="2YgYW55IGNhcm5h")
    assert call.params == {"NextToken": "2YgYW55IGNhcm5h"}


@pytest.mark.parametrize(("credentials", "base"), [
    ({"access_token": TOKEN, "region": "eu"}, "https://sellingpartnerapi-eu.amazon.com"),
    ({"access_token": TOKEN, "region": "fe"}, "https://sellingpartnerapi-fe.amazon.com"),
    ({"access_token": TOKEN, "endpoint": "https://sandbox.sellingpartnerapi-na.amazon.com/"},
     "https://sandbox.sellingpartnerapi-na.amazon.com"),
])
def test_the_region_picks_the_endpoint(credentials: dict[str, str], base: str) -> None:
    assert amazon.fetch_call(REF, credentials, NOW).url == f"{base}/orders/v0/orders/{ORDER_ID}"


def test_bad_credentials_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="region"):
        amazon.fetch_call(REF, {"access_token": TOKEN, "region": "cn"}, NOW)
    with pytest.raises(ValueError, match="access token"):
        amazon.fetch_call(REF, {"region": "na"}, NOW)
    with pytest.raises(ValueError, match="naive"):
        amazon.fetch_call(REF, CREDENTIALS, datetime(2026, 11, 23, 3, 0))


def test_rdt_call_asks_for_buyer_info_and_shipping_address_of_this_order() -> None:
    assert amazon.rdt_call(REF, CREDENTIALS, NOW) == Request(
        pace=amazon.PACES["createRestrictedDataToken"],
        method="POST", url=f"{NA}/tokens/2021-03-01/restrictedDataToken",
        headers={"x-amz-access-token": TOKEN, "x-amz-date": AMZ_DATE},
        json_body={"restrictedResources": [{
            "method": "GET", "path": f"/orders/v0/orders/{ORDER_ID}",
            "dataElements": ["buyerInfo", "shippingAddress"]}]})
    assert amazon.parse_rdt(load("restricted_data_token.json")) == (
        "Atz.sprdt|IQEBLjAsAhRmHjNgHpi0U-Dme37rR6CuUpSR")
    with pytest.raises(amazon.AmazonError):
        amazon.parse_rdt(load("error_quota.json"))


EXPECTED = Order(
    marketplace="amazon",
    shop=SHOP,
    external_id=ORDER_ID,
    name=ORDER_ID,
    status=OrderStatus.PAID,
    buyer=Buyer(name="Jordan Ellis", email="h3kq8x2m9v7w4p1@marketplace.amazon.com"),
    shipping_address=Address(
        name="Jordan Ellis", line1="1200 Westlake Ave N", line2="Apt 504", city="SEATTLE",
        province="WA", province_code="WA", postal_code="98109-3528", country_code="US",
        phone="+1 206-555-0142 ext. 81217"),
    lines=(
        OrderLine(line_id="52986411826454", sku="LS-WHT-M", title="Qimu Linen Shirt, White, M",
                  quantity=2, unit_price=Decimal("24.99")),
        OrderLine(line_id="52986411826478", sku="TOTE-NAT", title="Qimu Canvas Tote, Natural",
                  quantity=1, unit_price=Decimal("12.99")),
    ),
    currency="USD",
    totals=Totals(subtotal=Decimal("62.97"), shipping=Decimal("2.00"), tax=Decimal("6.45"),
                  discounts=Decimal("5.00"), total=Decimal("66.42")),
    placed_at=datetime(2026, 11, 23, 2, 9, 12, tzinfo=UTC),
    paid_at=datetime(2026, 11, 23, 2, 9, 12, tzinfo=UTC),
    updated_at=datetime(2026, 11, 23, 2, 15, 41, tzinfo=UTC),
)


def test_parse_order_maps_the_order_and_its_items_exactly() -> None:
    order = amazon.parse_order(answers(), REF, "amazon-us")
    assert order == EXPECTED
    assert fulfilment_problems(order) == []


def test_without_a_restricted_data_token_the_address_is_incomplete() -> None:
    order_answer, items = answers()
    order_answer["payload"]["ShippingAddress"] = {
        "City": "SEATTLE", "StateOrRegion": "WA", "PostalCode": "98109-3528",
        "CountryCode": "US"}
    del order_answer["payload"]["BuyerInfo"]
    order = amazon.parse_order([order_answer, items], REF, "amazon-us")
    assert order.buyer == Buyer()
    assert order.shipping_address == Address(city="SEATTLE", province="WA", province_code="WA",
                                             postal_code="98109-3528", country_code="US")
    assert fulfilment_problems(order) == ["incomplete_shipping_address"]


def test_items_spread_over_pages_are_joined() -> None:
    order_answer, items = answers()
    first = copy.deepcopy(items)
    second = copy.deepcopy(items)
    first["payload"]["OrderItems"] = items["payload"]["OrderItems"][:1]
    first["payload"]["NextToken"] = "page-2"
    second["payload"]["OrderItems"] = items["payload"]["OrderItems"][1:]
    assert amazon.items_next_token(first) == "page-2"
    assert amazon.items_next_token(second) is None
    assert amazon.parse_order([order_answer, first, second], REF, "amazon-us") == EXPECTED
    only_first = amazon.parse_order([order_answer, first], REF, "amazon-us")
    assert [line.sku for line in only_first.lines] == ["LS-WHT-M"]


@pytest.mark.parametrize(("fixture", "code", "retryable"), [
    ("error_quota.json", "QuotaExceeded", True),
    ("error_not_found.json", "NotFound", False),
])
def test_an_error_answer_raises_amazon_error(fixture: str, code: str, retryable: bool) -> None:
    for position in (0, 1):
        broken = answers()
        broken[position] = load(fixture)
        with pytest.raises(amazon.AmazonError) as error:
            amazon.parse_order(broken, REF, "amazon-us")
        assert (error.value.code, error.value.retryable) == (code, retryable)


def test_an_order_fulfilled_by_amazon_is_refused() -> None:
    order_answer, items = answers()
    order_answer["payload"]["FulfillmentChannel"] = "AFN"
    with pytest.raises(InvalidOrder) as error:
        amazon.parse_order([order_answer, items], REF, "amazon-us")
    assert error.value.reason == "not_seller_fulfilled"


def test_answers_about_another_order_are_refused() -> None:
    other = OrderRef(shop=SHOP, external_id="113-0000000-0000000")
    with pytest.raises(InvalidOrder) as error:
        amazon.parse_order(answers(), other, "amazon-us")
    assert error.value.reason == "order_mismatch"
    with pytest.raises(ValueError, match="getOrderItems"):
        amazon.parse_order(answers()[:1], REF, "amazon-us")
    order_answer, items = answers()
    del order_answer["payload"]["LastUpdateDate"]
    with pytest.raises(InvalidOrder) as invalid:
        amazon.parse_order([order_answer, items], REF, "amazon-us")
    assert invalid.value.reason == "invalid_payload"


def test_a_cancelled_order_keeps_its_cancellation_time() -> None:
    order_answer, items = answers()
    order_answer["payload"]["OrderStatus"] = "Canceled"
    order_answer["payload"]["LastUpdateDate"] = "2026-11-23T05:41:10Z"
    for item in items["payload"]["OrderItems"]:
        item["QuantityOrdered"] = 0  # Amazon zeroes the quantities of a cancelled order
    order = amazon.parse_order([order_answer, items], REF, "amazon-us")
    assert order.status is OrderStatus.CANCELLED
    assert order.cancelled_at == datetime(2026, 11, 23, 5, 41, 10, tzinfo=UTC)
    assert order.paid_at is None
    assert order.lines == ()


def test_a_pending_order_without_total_takes_currency_and_total_from_its_items() -> None:
    order_answer, items = answers()
    order_answer["payload"]["OrderStatus"] = "Pending"
    del order_answer["payload"]["OrderTotal"]
    order = amazon.parse_order([order_answer, items], REF, "amazon-us")
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert order.paid_at is None
    assert (order.currency, order.totals.total) == ("USD", Decimal("66.42"))


def test_a_preorder_ships_from_its_earliest_ship_date() -> None:
    order_answer, items = answers()
    order_answer["payload"]["OrderType"] = "Preorder"
    order_answer["payload"]["EarliestShipDate"] = "2026-12-15T08:00:00Z"
    order = amazon.parse_order([order_answer, items], REF, "amazon-us")
    assert order.presale_ship_date == date(2026, 12, 15)
    assert amazon.parse_order(answers(), REF, "amazon-us").presale_ship_date is None


# Writeback --------------------------------------------------------------------------------


SHIPPED = Shipped(
    external_id=ORDER_ID, carrier_code="STO", tracking_number="773012345678901",
    shipped_at=datetime(2026, 11, 24, 9, 30, tzinfo=UTC), package_id="1001",
    lines=(("52986411826454", 2), ("52986411826478", 1)),
)


def test_writeback_call_is_the_exact_shipment_confirmation() -> None:
    assert amazon.writeback_call(SHIPPED, CREDENTIALS, NOW) == Request(
        pace=amazon.PACES["confirmShipment"],
        method="POST",
        url=f"{NA}/orders/v0/orders/{ORDER_ID}/shipmentConfirmation",
        headers={"x-amz-access-token": TOKEN, "x-amz-date": AMZ_DATE},
        json_body={
            "marketplaceId": MARKETPLACE,
            "packageDetail": {
                "packageReferenceId": "1001",
                "carrierCode": "Other",
                "carrierName": "STO Express",
                "trackingNumber": "773012345678901",
                "shipDate": "2026-11-24T09:30:00Z",
                "orderItems": [{"orderItemId": "52986411826454", "quantity": 2},
                               {"orderItemId": "52986411826478", "quantity": 1}],
            },
        },
    )


@pytest.mark.parametrize(("ours", "code", "name"), [
    ("SF", "SF Express", "SF Express"),
    ("EMS", "China Post", "China EMS"),
    ("STO", "Other", "STO Express"),
    ("YTO", "Other", "YTO Express"),
    ("ZTO", "Other", "ZTO Express"),
    ("YUNDA", "Other", "Yunda Express"),
    ("JD", "Other", "JD Logistics"),
    ("sf", "SF Express", "SF Express"),
    ("DHL", "Other", "DHL"),  # not ours: sent as Other under its own name
])
def test_carriers_map_to_amazon_codes(ours: str, code: str, name: str) -> None:
    detail = amazon.writeback_call(SHIPPED.model_copy(update={"carrier_code": ours}),
                                   CREDENTIALS, NOW).json_body["packageDetail"]
    assert (detail["carrierCode"], detail["carrierName"]) == (code, name)


def test_every_carrier_of_ours_is_mapped_and_the_other_ones_are_marked() -> None:
    assert set(amazon.CARRIERS) == {"STO", "SF", "YTO", "ZTO", "YUNDA", "JD", "EMS"}
    assert set(amazon.CARRIER_NAMES) == set(amazon.CARRIERS)
    assert sorted(amazon.OTHER_CARRIERS) == ["JD", "STO", "YTO", "YUNDA", "ZTO"]


def test_writeback_needs_the_items_and_the_marketplace() -> None:
    with pytest.raises(ValueError, match="items"):
        amazon.writeback_call(SHIPPED.model_copy(update={"lines": ()}), CREDENTIALS, NOW)
    with pytest.raises(ValueError, match="marketplace_id"):
        amazon.writeback_call(SHIPPED, {"access_token": TOKEN, "region": "na"}, NOW)


def test_a_non_numeric_package_id_becomes_a_stable_positive_number() -> None:
    first = amazon.package_reference_id("pkg_7f3a9c")
    assert first == amazon.package_reference_id("pkg_7f3a9c")
    assert first != amazon.package_reference_id("pkg_7f3a9d")
    assert first.isdigit() and 0 < int(first) <= 2_147_483_647
    assert amazon.package_reference_id("0042") == "42"
    assert amazon.package_reference_id("0") != "0"
    assert amazon.package_reference_id("²").isascii()  # a digit, but not a number Amazon reads


@given(st.text(min_size=1, max_size=40))
def test_package_reference_ids_are_always_positive_numbers(package_id: str) -> None:
    reference = amazon.package_reference_id(package_id)
    assert reference.isdigit() and 0 < int(reference) <= 2_147_483_647
    assert reference == amazon.package_reference_id(package_id)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (204, b"", WritebackResult(ok=True)),
    (429, raw("error_quota.json"), WritebackResult(
        ok=False, retryable=True, code="QuotaExceeded",
        detail="You exceeded your quota for the requested resource.")),
    (503, b"<html>Service Unavailable</html>", WritebackResult(
        ok=False, retryable=True, code="503", detail="<html>Service Unavailable</html>")),
    (400, raw("writeback_duplicate.json"), WritebackResult(
        ok=True, already_done=True, code="InvalidInput",
        detail="A package with PackageReferenceId 1001 already exists for this order.")),
    (400, raw("writeback_invalid.json"), WritebackResult(
        ok=False, code="InvalidInput",
        detail="PackageReferenceId: is invalid, must be a positive numeric value.")),
    (403, b'{"errors": [{"code": "Unauthorized", "message": "Access to requested resource is '
          b'denied.", "details": ""}]}', WritebackResult(
        ok=False, code="Unauthorized", detail="Access to requested resource is denied.")),
])
def test_parse_writeback(status: int, body: bytes, expected: WritebackResult) -> None:
    assert amazon.parse_writeback(status, body) == expected


# Reconciliation ---------------------------------------------------------------------------


def test_list_call_asks_for_seller_fulfilled_orders_updated_in_the_window() -> None:
    since = NOW - timedelta(hours=6)
    assert amazon.list_call(SHOP, since, NOW, None, CREDENTIALS, NOW) == Request(
        pace=amazon.PACES["getOrders"],
        method="GET", url=f"{NA}/orders/v0/orders",
        params={"MarketplaceIds": MARKETPLACE,
                "LastUpdatedAfter": "2026-11-22T21:00:00Z",
                "LastUpdatedBefore": "2026-11-23T02:58:00Z",  # 2 minutes before now
                "FulfillmentChannels": "MFN",
                "MaxResultsPerPage": "100"},
        headers={"x-amz-access-token": TOKEN, "x-amz-date": AMZ_DATE})
    earlier = amazon.list_call(SHOP, since, NOW - timedelta(hours=1), None, CREDENTIALS, NOW)
    assert earlier.params["LastUpdatedBefore"] == "2026-11-23T02:00:00Z"


def test_list_call_with_a_cursor_sends_only_the_next_token() -> None:
    call = amazon.list_call(SHOP, NOW - timedelta(hours=6), NOW, "2YgYW55IGNhcm5hbCBwbGVhc3VyZS4",
                            CREDENTIALS, NOW)
    assert call.params == {"MarketplaceIds": MARKETPLACE,
                           "NextToken": "2YgYW55IGNhcm5hbCBwbGVhc3VyZS4"}


def test_list_call_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError):
        amazon.list_call(SHOP, NOW - timedelta(minutes=1), NOW, None, CREDENTIALS, NOW)


def test_parse_list_returns_seller_fulfilled_refs_and_the_next_token() -> None:
    refs, cursor = amazon.parse_list(load("get_orders.json"), shop=SHOP)
    assert refs == [
        OrderRef(shop=SHOP, external_id=ORDER_ID, status="Unshipped",
                 updated_at=datetime(2026, 11, 23, 2, 15, 41, tzinfo=UTC)),
        OrderRef(shop=SHOP, external_id="113-9912834-4471025", status="Canceled",
                 updated_at=datetime(2026, 11, 23, 1, 2, 19, tzinfo=UTC)),
    ]
    assert cursor == "2YgYW55IGNhcm5hbCBwbGVhc3VyZS4"
    last = load("get_orders.json")
    del last["payload"]["NextToken"]
    assert amazon.parse_list(last, shop=SHOP)[1] is None
    with pytest.raises(amazon.AmazonError):
        amazon.parse_list(load("error_quota.json"), shop=SHOP)
