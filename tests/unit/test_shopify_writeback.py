"""Shopify: shipment writeback (prepare, already_shipped, fulfillmentCreate) and reconciliation
(orders list, REST re-fetch), against recorded-shape answers in tests/fixtures/shopify."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.marketplaces import shopify, shopify_admin
from chalicelib.marketplaces.calls import OrderRef, PlatformError, Shipped
from chalicelib.orders.order import InvalidOrder, order_id_for
from chalicelib.tracking.couriers import kuaidi100
from tests.support import FIXTURES, SHOP, dumps, shopify_headers, shopify_order

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
TOKEN = "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"
CREDENTIALS = {"shop_domain": SHOP, "access_token": TOKEN}
GRAPHQL = f"https://{SHOP}/admin/api/2026-10/graphql.json"
POST_HEADERS = {"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/json"}
ORDER_ID = "5678901234567"
FO = "gid://shopify/FulfillmentOrder/6712345678901"
FO_SHIRT = "gid://shopify/FulfillmentOrderLineItem/14812345678901"  # line 13579024681357, 2
FO_TOTE = "gid://shopify/FulfillmentOrderLineItem/14812345678902"  # line 13579024681358, 1
SHIRT, TOTE = "13579024681357", "13579024681358"

SHIPPED = Shipped(external_id=ORDER_ID, carrier_code="SF", tracking_number="SF1428819366352",
                  shipped_at=datetime(2026, 11, 23, 17, 30, tzinfo=UTC), package_id="pkg_01")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "shopify" / name).read_text())


def raw(name: str) -> bytes:
    return (FIXTURES / "shopify" / name).read_bytes()


def prepared(*fulfillment_orders: dict[str, Any],
             fulfillments: list[dict[str, Any]] | None = None,
             more: bool = False) -> dict[str, Any]:
    """The open-order answer with its fulfillment orders (and fulfillments) replaced."""
    answer: dict[str, Any] = copy.deepcopy(fixture("fulfillment_orders_open.json"))
    order = answer["data"]["order"]
    if fulfillment_orders:
        order["fulfillmentOrders"]["nodes"] = list(fulfillment_orders)
    order["fulfillmentOrders"]["pageInfo"]["hasNextPage"] = more
    if fulfillments is not None:
        order["fulfillments"] = fulfillments
    return answer


def fulfillment_order(number: int, status: str, *items: tuple[str, int],
                      location: str = "71234567890", name: str = "Hangzhou factory"
                      ) -> dict[str, Any]:
    """A fulfillment order; items are (order line item id, remaining quantity)."""
    return {
        "id": f"gid://shopify/FulfillmentOrder/{number}",
        "status": status,
        "assignedLocation": {"name": name,
                             "location": {"id": f"gid://shopify/Location/{location}"}},
        "lineItems": {"nodes": [
            {"id": f"gid://shopify/FulfillmentOrderLineItem/{number}{i}", "remainingQuantity": q,
             "totalQuantity": max(q, 1), "lineItem": {"id": f"gid://shopify/LineItem/{line}"}}
            for i, (line, q) in enumerate(items)], "pageInfo": {"hasNextPage": False}},
    }


def variables(call: Any) -> dict[str, Any]:
    body: dict[str, Any] = call.json_body
    result: dict[str, Any] = body["variables"]
    return result


def by_fulfillment_order(call: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = variables(call)["fulfillment"]["lineItemsByFulfillmentOrder"]
    return result


# Prepare -----------------------------------------------------------------------------------------


def test_prepare_call_is_exact() -> None:
    call = shopify_admin.prepare_call(SHIPPED, CREDENTIALS, NOW)
    assert (call.method, call.url, call.params) == ("POST", GRAPHQL, {})
    assert call.headers == POST_HEADERS
    assert call.json_body == {"query": shopify_admin.PREPARE_QUERY,
                              "variables": {"id": f"gid://shopify/Order/{ORDER_ID}"}}
    query = shopify_admin.PREPARE_QUERY
    assert f"fulfillmentOrders(first: {shopify_admin.MAX_FULFILLMENT_ORDERS})" in query
    for needed in ("status", "remainingQuantity", "lineItem { id }", "assignedLocation",
                   "trackingInfo { company number url }", "pageInfo { hasNextPage }"):
        assert needed in query
    assert call.form is None and call.raw_body is None


def test_credentials_choose_the_base_and_version_and_refuse_what_is_unsafe() -> None:
    local = shopify_admin.prepare_call(SHIPPED, CREDENTIALS | {
        "api_base": "http://127.0.0.1:8765/", "api_version": "2026-07"}, NOW)
    assert local.url == "http://127.0.0.1:8765/admin/api/2026-07/graphql.json"
    with pytest.raises(ValueError, match="api_base"):
        shopify_admin.prepare_call(SHIPPED, CREDENTIALS | {"api_base": "http://shop.example.com"},
                                   NOW)
    with pytest.raises(ValueError, match="access_token"):
        shopify_admin.prepare_call(SHIPPED, {"shop_domain": SHOP}, NOW)
    with pytest.raises(ValueError, match="shop_domain"):
        shopify_admin.prepare_call(SHIPPED, CREDENTIALS | {"shop_domain": "x.com/admin?"}, NOW)
    with pytest.raises(ValueError, match="api_version"):
        shopify_admin.prepare_call(SHIPPED, CREDENTIALS | {"api_version": "../2026-10"}, NOW)
    with pytest.raises(ValueError):
        shopify_admin.prepare_call(SHIPPED.model_copy(update={"external_id": "#1042"}), CREDENTIALS,
                                   NOW)


# Already shipped ---------------------------------------------------------------------------------


def test_already_shipped_when_a_fulfillment_carries_the_tracking_number() -> None:
    done = fixture("fulfillment_orders_fulfilled.json")
    assert shopify_admin.already_shipped(done, SHIPPED)
    spaced = SHIPPED.model_copy(update={"tracking_number": " sf1428819366352 "})
    assert shopify_admin.already_shipped(raw("fulfillment_orders_fulfilled.json"), spaced)
    assert not shopify_admin.already_shipped(done, SHIPPED.model_copy(
        update={"tracking_number": "SF0000000000000"}))
    assert not shopify_admin.already_shipped(fixture("fulfillment_orders_open.json"), SHIPPED)


def test_a_cancelled_fulfillment_with_the_number_does_not_count() -> None:
    tracking = [{"company": "SF Express", "number": "SF1428819366352", "url": None}]
    cancelled = prepared(fulfillments=[{"id": "gid://shopify/Fulfillment/1", "status": "CANCELLED",
                                        "trackingInfo": tracking}])
    assert not shopify_admin.already_shipped(cancelled, SHIPPED)
    shipped = prepared(fulfillments=[{"id": "gid://shopify/Fulfillment/2", "status": "SUCCESS",
                                      "trackingInfo": tracking}])
    assert shopify_admin.already_shipped(shipped, SHIPPED)


def test_already_shipped_of_a_missing_order_is_false_and_of_an_error_raises() -> None:
    assert not shopify_admin.already_shipped({"data": {"order": None}}, SHIPPED)
    with pytest.raises(shopify_admin.ShopifyError) as throttled:
        shopify_admin.already_shipped(fixture("throttled.json"), SHIPPED)
    assert (throttled.value.code, throttled.value.retryable) == ("THROTTLED", True)
    assert isinstance(throttled.value, PlatformError)


# Writeback call ----------------------------------------------------------------------------------


def test_writeback_call_of_the_whole_order_is_exact() -> None:
    call = shopify_admin.writeback_call(SHIPPED, CREDENTIALS, NOW,
                                        fixture("fulfillment_orders_open.json"))
    assert (call.method, call.url, call.headers) == ("POST", GRAPHQL, POST_HEADERS)
    assert call.json_body == {"query": shopify_admin.FULFILLMENT_CREATE,
                              "variables": {"fulfillment": {
        "lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": FO}],
        "notifyCustomer": True,
        "trackingInfo": {"company": "SF Express", "number": "SF1428819366352"},
    }}}
    assert "fulfillmentCreate(fulfillment: $fulfillment)" in shopify_admin.FULFILLMENT_CREATE
    assert "userErrors { field message }" in shopify_admin.FULFILLMENT_CREATE


def test_the_buyer_notification_can_be_turned_off() -> None:
    call = shopify_admin.writeback_call(SHIPPED, CREDENTIALS | {"notify_customer": "false"}, NOW,
                                        fixture("fulfillment_orders_open.json"))
    assert variables(call)["fulfillment"]["notifyCustomer"] is False


def test_lines_become_fulfillment_order_line_items() -> None:
    open_order = fixture("fulfillment_orders_open.json")
    one_shirt = SHIPPED.model_copy(update={"lines": ((SHIRT, 1),)})
    assert by_fulfillment_order(
        shopify_admin.writeback_call(one_shirt, CREDENTIALS, NOW, open_order)) \
        == [{"fulfillmentOrderId": FO, "fulfillmentOrderLineItems": [{"id": FO_SHIRT,
                                                                      "quantity": 1}]}]
    both = SHIPPED.model_copy(update={"lines": ((TOTE, 1), (f"gid://shopify/LineItem/{SHIRT}", 2))})
    assert by_fulfillment_order(
        shopify_admin.writeback_call(both, CREDENTIALS, NOW, open_order)) == [
        {"fulfillmentOrderId": FO, "fulfillmentOrderLineItems": [
            {"id": FO_SHIRT, "quantity": 2}, {"id": FO_TOTE, "quantity": 1}]}]


def test_a_line_split_over_fulfillment_orders_is_spread_and_clamped_to_what_remains() -> None:
    answer = prepared(fulfillment_order(701, "OPEN", (SHIRT, 1)),
                      fulfillment_order(702, "IN_PROGRESS", (SHIRT, 1), (TOTE, 1)),
                      fulfillment_order(703, "CLOSED", (SHIRT, 0)))
    shipped = SHIPPED.model_copy(update={"lines": ((SHIRT, 3), (TOTE, 1))})
    assert by_fulfillment_order(
        shopify_admin.writeback_call(shipped, CREDENTIALS, NOW, answer)) == [
        {"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/701",
         "fulfillmentOrderLineItems": [{"id": "gid://shopify/FulfillmentOrderLineItem/7010",
                                        "quantity": 1}]},
        {"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/702",
         "fulfillmentOrderLineItems": [
             {"id": "gid://shopify/FulfillmentOrderLineItem/7020", "quantity": 1},
             {"id": "gid://shopify/FulfillmentOrderLineItem/7021", "quantity": 1}]},
    ]


def test_a_line_fulfilled_meanwhile_is_skipped_and_an_unknown_line_is_refused() -> None:
    answer = prepared(fulfillment_order(701, "OPEN", (TOTE, 1)),
                      fulfillment_order(702, "CLOSED", (SHIRT, 0)))
    shipped = SHIPPED.model_copy(update={"lines": ((SHIRT, 2), (TOTE, 1))})
    assert by_fulfillment_order(
        shopify_admin.writeback_call(shipped, CREDENTIALS, NOW, answer)) == [
        {"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/701",
         "fulfillmentOrderLineItems": [{"id": "gid://shopify/FulfillmentOrderLineItem/7010",
                                        "quantity": 1}]}]
    stranger = SHIPPED.model_copy(update={"lines": ((TOTE, 1), ("99999999999999", 1))})
    with pytest.raises(ValueError, match="no line item 99999999999999"):
        shopify_admin.writeback_call(stranger, CREDENTIALS, NOW, answer)


def test_only_fulfillable_fulfillment_orders_with_something_left_are_sent_whole() -> None:
    answer = prepared(fulfillment_order(701, "OPEN", (SHIRT, 2)),
                      fulfillment_order(702, "IN_PROGRESS", (TOTE, 1)),
                      fulfillment_order(703, "CLOSED", (SHIRT, 0)),
                      fulfillment_order(704, "ON_HOLD", (TOTE, 1)),
                      fulfillment_order(705, "OPEN", (SHIRT, 0)))
    assert by_fulfillment_order(
        shopify_admin.writeback_call(SHIPPED, CREDENTIALS, NOW, answer)) == [
        {"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/701"},
        {"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/702"}]


@pytest.mark.parametrize("answer", [
    fixture("fulfillment_orders_fulfilled.json"),
    prepared(fulfillment_order(701, "CANCELLED", (SHIRT, 2))),
    prepared(fulfillment_order(701, "ON_HOLD", (SHIRT, 2)),
             fulfillment_order(702, "SCHEDULED", (TOTE, 1))),
])
def test_nothing_fulfillable_is_a_clear_value_error(answer: dict[str, Any]) -> None:
    statuses = [fo["status"] for fo in answer["data"]["order"]["fulfillmentOrders"]["nodes"]]
    for shipped in (SHIPPED, SHIPPED.model_copy(update={"lines": ((SHIRT, 1),)})):
        with pytest.raises(ValueError, match="nothing of Shopify order 5678901234567") as error:
            shopify_admin.writeback_call(shipped, CREDENTIALS, NOW, answer)
        assert all(status in str(error.value) for status in statuses)


def test_fulfillment_orders_at_several_locations_are_refused() -> None:
    answer = prepared(fulfillment_order(701, "OPEN", (SHIRT, 2)),
                      fulfillment_order(702, "OPEN", (TOTE, 1), location="9", name="Shenzhen"))
    with pytest.raises(ValueError, match="several locations") as error:
        shopify_admin.writeback_call(SHIPPED, CREDENTIALS, NOW, answer)
    assert "Hangzhou factory" in str(error.value) and "Shenzhen" in str(error.value)
    # The shirt alone comes from one location: fine.
    shirt = SHIPPED.model_copy(update={"lines": ((SHIRT, 2),)})
    assert [g["fulfillmentOrderId"] for g in by_fulfillment_order(
        shopify_admin.writeback_call(shirt, CREDENTIALS, NOW, answer))] == [
        "gid://shopify/FulfillmentOrder/701"]


def test_too_many_fulfillment_orders_or_a_missing_order_are_refused() -> None:
    with pytest.raises(ValueError, match="more than 5 fulfillment orders"):
        shopify_admin.writeback_call(SHIPPED, CREDENTIALS, NOW, prepared(more=True))
    with pytest.raises(ValueError, match="no order 5678901234567"):
        shopify_admin.writeback_call(SHIPPED, CREDENTIALS, NOW, {"data": {"order": None}})


def test_an_error_answer_as_prepared_raises_with_its_class() -> None:
    with pytest.raises(shopify_admin.ShopifyError) as throttled:
        shopify_admin.writeback_call(SHIPPED, CREDENTIALS, NOW, raw("throttled.json"))
    assert throttled.value.retryable
    with pytest.raises(shopify_admin.ShopifyError) as denied:
        shopify_admin.writeback_call(SHIPPED, CREDENTIALS, NOW, fixture("access_denied.json"))
    assert (denied.value.code, denied.value.retryable) == ("ACCESS_DENIED", False)


# Carriers ----------------------------------------------------------------------------------------

OURS = ("STO", "SF", "YTO", "ZTO", "YUNDA", "JD", "EMS")
LINK = "https://www.kuaidi100.com/chaxun?com={com}&nu=7700112233"


@pytest.mark.parametrize(("code", "company", "url"), [
    ("SF", "SF Express", None),  # Shopify links it itself
    ("EMS", "China Post", LINK.format(com="ems")),
    ("STO", "STO Express", LINK.format(com="shentong")),
    ("YTO", "YTO Express", LINK.format(com="yuantong")),
    ("ZTO", "ZTO Express", LINK.format(com="zhongtong")),
    ("YUNDA", "Yunda Express", LINK.format(com="yunda")),
    ("JD", "JD Logistics", LINK.format(com="jd")),
])
def test_every_carrier_of_ours_maps_to_a_company_and_a_link(code: str, company: str,
                                                            url: str | None) -> None:
    shipped = SHIPPED.model_copy(update={"carrier_code": code, "tracking_number": "7700112233"})
    call = shopify_admin.writeback_call(shipped, CREDENTIALS, NOW,
                                        fixture("fulfillment_orders_open.json"))
    expected = {"company": company, "number": "7700112233"} | ({"url": url} if url else {})
    assert variables(call)["fulfillment"]["trackingInfo"] == expected


def test_the_carrier_table_covers_ours_and_agrees_with_kuaidi100() -> None:
    assert set(shopify_admin.CARRIERS) == set(OURS) == set(kuaidi100.CARRIERS)
    for code, (_company, com) in shopify_admin.CARRIERS.items():
        assert com is None or com == kuaidi100.CARRIERS[code]
    lower = SHIPPED.model_copy(update={"carrier_code": "yto"})
    assert shopify_admin.tracking_info(lower)["company"] == "YTO Express"


def test_an_unknown_carrier_or_no_tracking_number_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="DHL"):
        shopify_admin.writeback_call(SHIPPED.model_copy(update={"carrier_code": "DHL"}),
                                     CREDENTIALS, NOW, fixture("fulfillment_orders_open.json"))
    with pytest.raises(ValueError, match="tracking number"):
        shopify_admin.tracking_info(SHIPPED.model_copy(update={"tracking_number": "  "}))


# Writeback answers -------------------------------------------------------------------------------

INTERNAL = json.dumps({"errors": [{"message": "Internal error. Looks like something went wrong "
                                              "on our end.", "extensions": {
                                                  "code": "INTERNAL_SERVER_ERROR"}}]}).encode()


@pytest.mark.parametrize(("status", "body", "ok", "retryable", "code"), [
    (200, raw("fulfillment_create_ok.json"), True, False, "gid://shopify/Fulfillment/5912345678901"),
    (200, raw("fulfillment_create_user_errors.json"), False, False, "user_error"),
    (200, raw("throttled.json"), False, True, "THROTTLED"),
    (429, raw("throttled.json"), False, True, "http_429"),
    (500, b"", False, True, "http_500"),
    (502, b"<html>Bad Gateway</html>", False, True, "http_502"),
    (503, raw("throttled.json"), False, True, "http_503"),
    (200, INTERNAL, False, True, "INTERNAL_SERVER_ERROR"),
    (200, raw("access_denied.json"), False, False, "ACCESS_DENIED"),
    (401, raw("rest_unauthorized.json"), False, False, "unauthorized"),
    (404, b"<html>Not Found</html>", False, False, "http_404"),
    (403, b"{}", False, False, "http_403"),
    (200, b"not json", False, False, "unexpected_answer"),
    (200, b'{"data": {"fulfillmentCreate": null}}', False, False, "unexpected_answer"),
    (200, b'{"data": {"fulfillmentCreate": {"fulfillment": null, "userErrors": []}}}', False,
     False, "unexpected_answer"),
])
def test_parse_writeback(status: int, body: bytes, ok: bool, retryable: bool, code: str) -> None:
    result = shopify_admin.parse_writeback(status, body)
    assert (result.ok, result.retryable, result.already_done, result.code) == (
        ok, retryable, False, code)


def test_user_errors_keep_their_field_and_message() -> None:
    result = shopify_admin.parse_writeback(200, raw("fulfillment_create_user_errors.json"))
    assert result.detail == ("fulfillment.lineItemsByFulfillmentOrder.0.fulfillmentOrderLineItems"
                             ".0.quantity: Invalid fulfillment order line item quantity requested.")


# Reconciliation ----------------------------------------------------------------------------------

SINCE = datetime(2026, 11, 23, 8, 0, tzinfo=timezone(timedelta(hours=8)))  # 00:00 UTC
UNTIL = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SEARCH = "updated_at:>='2026-11-23T00:00:00Z' AND updated_at:<='2026-11-23T12:00:00Z'"


def test_list_call_is_exact() -> None:
    call = shopify_admin.list_call(SHOP, SINCE, UNTIL, None, CREDENTIALS, NOW)
    assert (call.method, call.url, call.headers) == ("POST", GRAPHQL, POST_HEADERS)
    assert call.json_body == {"query": shopify_admin.ORDERS_QUERY,
                              "variables": {"first": 100, "after": None, "query": SEARCH}}
    query = shopify_admin.ORDERS_QUERY
    assert "orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT)" in query
    assert "legacyResourceId" in query and "pageInfo { hasNextPage endCursor }" in query


def test_list_call_names_the_shop_when_the_credentials_do_not() -> None:
    call = shopify_admin.list_call("other-brand.myshopify.com", SINCE, UNTIL, None,
                                   {"access_token": TOKEN}, NOW)
    assert call.url == "https://other-brand.myshopify.com/admin/api/2026-10/graphql.json"


def test_paging_follows_end_cursor_until_the_last_page() -> None:
    answers = {None: fixture("orders_page1.json"),
               fixture("orders_page1.json")["data"]["orders"]["pageInfo"]["endCursor"]:
                   fixture("orders_page2.json")}
    cursor: str | None = None
    listed: list[OrderRef] = []
    for _ in range(5):
        call = shopify_admin.list_call(SHOP, SINCE, UNTIL, cursor, CREDENTIALS, NOW)
        assert variables(call)["after"] == cursor
        refs, cursor = shopify_admin.parse_list(answers[variables(call)["after"]])
        listed.extend(refs)
        if cursor is None:
            break
    assert cursor is None
    assert listed == [
        OrderRef(shop="", external_id="5678901234567", status="PAID",
                 updated_at=datetime(2026, 11, 23, 2, 15, 43, tzinfo=UTC)),
        OrderRef(shop="", external_id="5678901234599", status="PENDING",
                 updated_at=datetime(2026, 11, 23, 2, 40, 7, tzinfo=UTC)),
        OrderRef(shop="", external_id="5678901234611", status="REFUNDED",
                 updated_at=datetime(2026, 11, 23, 3, 5, 51, tzinfo=UTC)),
    ]


def test_parse_list_of_the_first_page_returns_its_end_cursor() -> None:
    _, cursor = shopify_admin.parse_list(raw("orders_page1.json"))
    assert cursor == fixture("orders_page1.json")["data"]["orders"]["pageInfo"]["endCursor"]


def test_a_numeric_legacy_id_reads_as_text() -> None:
    page = fixture("orders_page2.json")
    page["data"]["orders"]["nodes"][0]["legacyResourceId"] = 5678901234611
    refs, _ = shopify_admin.parse_list(page)
    assert refs[0].external_id == "5678901234611"


@pytest.mark.parametrize(("name", "code", "retryable"), [
    ("throttled.json", "THROTTLED", True),
    ("access_denied.json", "ACCESS_DENIED", False),
    ("rest_unauthorized.json", "unauthorized", False),
])
def test_parse_list_raises_on_an_error_answer(name: str, code: str, retryable: bool) -> None:
    with pytest.raises(shopify_admin.ShopifyError) as error:
        shopify_admin.parse_list(fixture(name))
    assert (error.value.code, error.value.retryable) == (code, retryable)


def test_fetch_call_is_the_rest_order() -> None:
    ref = OrderRef(shop=SHOP, external_id=ORDER_ID)
    call = shopify_admin.fetch_call(ref, CREDENTIALS, NOW)
    assert (call.method, call.url, call.params, call.headers, call.json_body) == (
        "GET", f"https://{SHOP}/admin/api/2026-10/orders/{ORDER_ID}.json", {},
        {"X-Shopify-Access-Token": TOKEN}, None)
    gid = OrderRef(shop=SHOP, external_id=f"gid://shopify/Order/{ORDER_ID}")
    assert shopify_admin.fetch_call(gid, CREDENTIALS, NOW).url == call.url
    with pytest.raises(ValueError):
        shopify_admin.fetch_call(OrderRef(shop=SHOP, external_id="1/../2"), CREDENTIALS, NOW)


def test_parse_order_is_the_webhook_order_with_the_same_order_id() -> None:
    body = dumps(shopify_order())
    headers = {k.lower(): v for k, v in shopify_headers(body).items()}
    webhook = shopify.normalise(body, headers, "shopify")
    # As reconciliation does it: the listed ref, the shop filled in by the caller, re-fetched.
    refs, _ = shopify_admin.parse_list(fixture("orders_page1.json"))
    ref = refs[0].model_copy(update={"shop": SHOP})
    fetched = shopify_admin.parse_order(fixture("rest_order.json"), ref, "shopify")
    assert fetched == webhook
    assert fetched.shop == SHOP and fetched.external_id == ORDER_ID
    assert order_id_for(shopify.NAME, ref.shop, ref.external_id) == webhook.order_id \
        == fetched.order_id
    assert shopify_admin.parse_order(raw("rest_order.json"), ref, "shopify") == webhook


def test_parse_order_takes_the_shop_from_the_reference() -> None:
    ref = OrderRef(shop="other-brand.myshopify.com", external_id=ORDER_ID)
    fetched = shopify_admin.parse_order(fixture("rest_order.json"), ref, "shopify")
    assert fetched.shop == "other-brand.myshopify.com"
    assert fetched.order_id != order_id_for(shopify.NAME, SHOP, ORDER_ID)


@pytest.mark.parametrize(("name", "code"), [
    ("rest_not_found.json", "not_found"),
    ("rest_unauthorized.json", "unauthorized"),
])
def test_parse_order_raises_on_an_error_answer(name: str, code: str) -> None:
    with pytest.raises(shopify_admin.ShopifyError) as error:
        shopify_admin.parse_order(fixture(name), OrderRef(shop=SHOP, external_id=ORDER_ID),
                                  "shopify")
    assert (error.value.code, error.value.retryable) == (code, False)


def test_parse_order_refuses_an_answer_without_an_order() -> None:
    with pytest.raises(InvalidOrder):
        shopify_admin.parse_order({"orders": []}, OrderRef(shop=SHOP, external_id=ORDER_ID),
                                  "shopify")
    with pytest.raises(InvalidOrder):
        shopify_admin.parse_order({"order": {"id": 1}}, OrderRef(shop=SHOP, external_id="1"),
                                  "shopify")
