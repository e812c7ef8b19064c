from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.marketplaces import shopee
from chalicelib.marketplaces.calls import OrderRef, Shipped, WritebackResult
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
NOW_UNIX = "1795402800"
PARTNER_ID = "2011535"
PARTNER_KEY = "6a57414d766c79786863726c58624f466b51525673485375644756436f4b6c74"
CALLBACK = "https://orders.example.com/webhooks/shopee"
SECRET = f"{PARTNER_KEY}|{CALLBACK}"
TOKEN = "c09222e3fc40ffb25fc947f738b1abf1"
SHOP = "1024685172"
CREDENTIALS = {"partner_id": PARTNER_ID, "partner_key": PARTNER_KEY, "access_token": TOKEN,
               "shop_id": SHOP}
ORDER_SN = "261123AB3K7Q2M"
REF = OrderRef(shop=SHOP, external_id=ORDER_SN)
BASE = "https://partner.shopeemobile.com"


def raw(name: str) -> bytes:
    return (FIXTURES / "shopee" / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))


def push_sig(body: bytes, key: str = PARTNER_KEY, url: str = CALLBACK) -> str:
    """The documented recipe, written out here independently of the module."""
    return hmac.new(key.encode(), url.encode() + b"|" + body, hashlib.sha256).hexdigest()


def api_sign(path: str, timestamp: str = NOW_UNIX) -> str:
    base = f"{PARTNER_ID}{path}{timestamp}{TOKEN}{SHOP}"
    return hmac.new(PARTNER_KEY.encode(), base.encode(), hashlib.sha256).hexdigest()


def common(path: str) -> dict[str, str]:
    return {"partner_id": PARTNER_ID, "timestamp": NOW_UNIX, "access_token": TOKEN,
            "shop_id": SHOP, "sign": api_sign(path)}


def accept(body: bytes, signature: str | None = None, secrets: tuple[str, ...] = (SECRET,),
           now: datetime = NOW) -> Any:
    headers = {} if signature is None else {"authorization": signature}
    return shopee.accept(headers, body, secrets, now)


def push(**changes: Any) -> bytes:
    body = load("push_order_status.json")
    body.update(changes)
    return json.dumps(body).encode()


# The push ---------------------------------------------------------------------------------------


def test_the_answer_is_200_with_an_empty_body() -> None:
    status, _, body = shopee.REPLY
    assert (status, body) == (200, "")


@pytest.mark.parametrize(("name", "topic", "delivery_id", "actionable"), [
    ("push_order_status.json", "order_status_push", "261123AB3K7Q2M:READY_TO_SHIP:1795401000",
     True),
    ("push_tracking_no.json", "order_trackingno_push",
     "261123AB3K7Q2M:tracking:OFG1795401327645:SPXSG04381275590", False),
    ("push_shopee_updates.json", "shopee_updates", "c0ffee00b1d84c7aa5b6c7d8e9f00112", False),
])
def test_a_correctly_signed_push_is_accepted(name: str, topic: str, delivery_id: str,
                                             actionable: bool) -> None:
    body = raw(name)
    accepted = accept(body, push_sig(body))
    assert (accepted.delivery_id, accepted.topic, accepted.shop, accepted.actionable) == (
        delivery_id, topic, SHOP, actionable)


def test_a_retry_of_the_same_event_has_the_same_delivery_id() -> None:
    first = push(msg_id="aaaa", timestamp=1795401001)
    retry = push(msg_id="bbbb", timestamp=1795401301)
    later = push(data={"ordersn": ORDER_SN, "status": "READY_TO_SHIP", "update_time": 1795401900})
    ids = [accept(b, push_sig(b)).delivery_id for b in (first, retry, later)]
    assert ids[0] == ids[1] != ids[2]


def test_without_update_time_the_push_timestamp_keys_the_event() -> None:
    body = push(data={"ordersn": ORDER_SN, "status": "PROCESSED"})
    assert accept(body, push_sig(body)).delivery_id == f"{ORDER_SN}:PROCESSED:1795401001"


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b"READY_TO_SHIP", b"READY_TO_SHIQ", 1),
    lambda b: b.replace(b"1024685172", b"1024685173", 1),
    lambda b: b + b"\n",
])
def test_a_changed_body_is_rejected(mutate: Any) -> None:
    body = raw("push_order_status.json")
    with pytest.raises(ApiError) as error:
        accept(mutate(body), push_sig(body))
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


@given(st.data())
def test_flipping_any_byte_breaks_the_signature(data: st.DataObject) -> None:
    body = raw("push_order_status.json")
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    with pytest.raises(ApiError) as error:
        accept(changed, push_sig(body))
    assert error.value.reason == "invalid_signature"


@pytest.mark.parametrize(("key", "url"), [
    (PARTNER_KEY[:-1] + "5", CALLBACK),  # wrong key
    (PARTNER_KEY, CALLBACK + "/"),  # another callback URL
    (PARTNER_KEY, "http://orders.example.com/webhooks/shopee"),
])
def test_the_key_and_the_callback_url_are_both_signed(key: str, url: str) -> None:
    body = raw("push_order_status.json")
    with pytest.raises(ApiError) as error:
        accept(body, push_sig(body, key, url))
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


def test_the_body_alone_is_not_what_is_signed() -> None:
    body = raw("push_order_status.json")
    bare = hmac.new(PARTNER_KEY.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(ApiError):
        accept(body, bare)


@pytest.mark.parametrize("signature", [None, "", " "])
def test_a_missing_signature_is_401(signature: str | None) -> None:
    with pytest.raises(ApiError) as error:
        accept(raw("push_order_status.json"), signature)
    assert (error.value.status, error.value.reason) == (401, "missing_signature")


def test_rotation_case_and_garbage() -> None:
    body = raw("push_order_status.json")
    old = f"{'0' * 64}|{CALLBACK}"
    assert accept(body, push_sig(body, "0" * 64), secrets=(SECRET, old)).actionable
    assert accept(body, push_sig(body).upper()).actionable
    with pytest.raises(ApiError) as error:
        accept(body, "Bearer ü")
    assert error.value.reason == "invalid_signature"


def test_a_secret_without_the_callback_url_is_a_configuration_error() -> None:
    body = raw("push_order_status.json")
    with pytest.raises(ValueError, match=r"partner_key\|callback_url"):
        accept(body, push_sig(body), secrets=(PARTNER_KEY,))
    assert shopee.parse_secret(SECRET) == (PARTNER_KEY, CALLBACK)
    assert shopee.parse_secret(f"{PARTNER_KEY}|{CALLBACK}?v=1|x") == (
        PARTNER_KEY, f"{CALLBACK}?v=1|x")


@pytest.mark.parametrize(("offset", "fresh"), [
    (timedelta(0), True),
    (-timedelta(hours=23), True),
    (-timedelta(hours=25), False),
    (timedelta(minutes=14), True),
    (timedelta(minutes=16), False),
])
def test_the_signed_timestamp_must_be_recent(offset: timedelta, fresh: bool) -> None:
    body = push(timestamp=int((NOW + offset).timestamp()))
    if fresh:
        assert accept(body, push_sig(body)).actionable
        return
    with pytest.raises(ApiError) as error:
        accept(body, push_sig(body))
    assert (error.value.status, error.value.reason) == (401, "stale_or_invalid_timestamp")


def test_malformed_json_is_400() -> None:
    body = b'{"code": 3, "data": '
    with pytest.raises(ApiError) as error:
        accept(body, push_sig(body))
    assert (error.value.status, error.value.reason) == (400, "malformed_json")


@pytest.mark.parametrize(("body", "fields"), [
    ({"shop_id": 1024685172, "data": {}}, {"code", "timestamp"}),
    ({"code": 3, "shop_id": 1024685172, "timestamp": 1795401001, "data": {"status": "SHIPPED"}},
     {"data.ordersn"}),
    ({"code": 3, "timestamp": 1795401001,
      "data": {"ordersn": ORDER_SN, "status": "SHIPPED"}}, {"shop_id"}),
])
def test_an_invalid_push_is_422_with_the_fields(body: dict[str, Any], fields: set[str]) -> None:
    data = json.dumps(body).encode()
    with pytest.raises(ApiError) as error:
        accept(data, push_sig(data))
    assert (error.value.status, error.value.reason) == (422, "invalid_payload")
    assert fields <= {p["field"] for p in error.value.details["problems"]}


def test_ref_names_the_order_and_its_change_time() -> None:
    assert shopee.ref(raw("push_order_status.json"), {}) == OrderRef(
        shop=SHOP, external_id=ORDER_SN, status="READY_TO_SHIP",
        updated_at=datetime(2026, 11, 23, 2, 30, tzinfo=UTC))
    with pytest.raises(InvalidOrder):
        shopee.ref(raw("push_tracking_no.json"), {})


# Re-fetch ---------------------------------------------------------------------------------------


def test_fetch_call_is_signed_exactly() -> None:
    path = "/api/v2/order/get_order_detail"
    call = shopee.fetch_call(REF, CREDENTIALS, NOW)
    assert call == Request(method="GET", url=BASE + path, params={
        **common(path), "order_sn_list": ORDER_SN,
        "response_optional_fields": shopee.DETAIL_FIELDS})
    assert list(call.params)[:5] == ["partner_id", "timestamp", "access_token", "shop_id",
                                     "sign"]
    assert {"item_list", "recipient_address", "pay_time", "total_amount",
            "fulfillment_flag"} <= set(shopee.DETAIL_FIELDS.split(","))


def test_the_request_signature_depends_on_key_time_token_shop_and_path() -> None:
    base = shopee.sign(PARTNER_ID, "/api/v2/order/get_order_detail", NOW_UNIX, TOKEN, SHOP,
                       PARTNER_KEY)
    assert base == api_sign("/api/v2/order/get_order_detail")
    variants = [
        (PARTNER_ID, "/api/v2/order/get_order_list", NOW_UNIX, TOKEN, SHOP, PARTNER_KEY),
        (PARTNER_ID, "/api/v2/order/get_order_detail", "1795402801", TOKEN, SHOP, PARTNER_KEY),
        (PARTNER_ID, "/api/v2/order/get_order_detail", NOW_UNIX, TOKEN + "0", SHOP, PARTNER_KEY),
        (PARTNER_ID, "/api/v2/order/get_order_detail", NOW_UNIX, TOKEN, "1024685173",
         PARTNER_KEY),
        (PARTNER_ID, "/api/v2/order/get_order_detail", NOW_UNIX, TOKEN, SHOP, "x" + PARTNER_KEY),
    ]
    assert all(shopee.sign(*variant) != base for variant in variants)


def test_fetch_call_needs_a_token_a_shop_and_an_aware_time() -> None:
    with pytest.raises(ValueError):
        shopee.fetch_call(REF, {**CREDENTIALS, "access_token": ""}, NOW)
    with pytest.raises(ValueError):
        shopee.fetch_call(REF, {k: v for k, v in CREDENTIALS.items() if k != "shop_id"}, NOW)
    with pytest.raises(ValueError):
        shopee.fetch_call(REF, CREDENTIALS, NOW.replace(tzinfo=None))


def expected_order(**changes: Any) -> Order:
    order = Order(
        marketplace="shopee",
        shop=SHOP,
        external_id=ORDER_SN,
        name=ORDER_SN,
        status=OrderStatus.PAID,
        buyer=Buyer(external_id="384017265", name="lim.wei88"),
        shipping_address=Address(
            name="林伟", line1="391 Orchard Road, #12-01 Ngee Ann City Tower B, Singapore 238839",
            postal_code="238839", country_code="SG", phone="6591234567"),
        lines=(
            OrderLine(line_id="23620853561:221404189791", sku="LS-WHT-M",
                      title="Linen Blend Shirt 亚麻衬衫", variant="White,M", quantity=2,
                      unit_price=Decimal("25.9")),
            OrderLine(line_id="23620853999:0", sku="TOTE-NAT", title="Canvas Tote Bag 帆布袋",
                      quantity=1, unit_price=Decimal("12.9")),
        ),
        currency="SGD",
        totals=Totals(subtotal=Decimal("72.7"), discounts=Decimal("8.0"),
                      shipping=Decimal("3.7"), total=Decimal("68.4"), tax_included=True),
        placed_at=datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
        paid_at=datetime(2026, 11, 23, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 11, 23, 2, 30, tzinfo=UTC),
        buyer_note="请用纸箱包装，谢谢",
    )
    return order.model_copy(update=changes)


def test_parse_order_maps_the_recorded_answer_exactly() -> None:
    order = shopee.parse_order(load("order_detail.json"), REF, "shopee")
    assert order == expected_order()
    # A Singapore address has no city or province: the warehouse is told it is incomplete.
    assert fulfilment_problems(order) == ["incomplete_shipping_address"]


def test_amounts_are_read_through_their_text() -> None:
    answer = load("order_detail.json")
    answer["response"]["order_list"][0]["total_amount"] = 0.1 + 0.2
    assert shopee.parse_order(answer, REF, "shopee").totals.total == Decimal(str(0.1 + 0.2))
    assert str(shopee.parse_order(load("order_detail.json"), REF, "shopee").totals.total) == (
        "68.4")


EVERY_STATUS: dict[str, OrderStatus | None] = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    "READY_TO_SHIP": OrderStatus.PAID,
    "PROCESSED": OrderStatus.PAID,
    "RETRY_SHIP": OrderStatus.PAID,
    "SHIPPED": OrderStatus.PAID,
    "TO_CONFIRM_RECEIVE": OrderStatus.PAID,
    "IN_CANCEL": OrderStatus.PAID,
    "CANCELLED": OrderStatus.CANCELLED,
    "TO_RETURN": OrderStatus.PAID,
    "COMPLETED": OrderStatus.PAID,
    "INVOICE_PENDING": None,
    "PENDING": None,
}


def test_the_status_table_covers_every_documented_status() -> None:
    assert shopee.STATUSES == EVERY_STATUS


@pytest.mark.parametrize(("status", "expected"), sorted(EVERY_STATUS.items()))
def test_every_status_maps_through_parse_order(status: str,
                                               expected: OrderStatus | None) -> None:
    answer = load("order_detail.json")
    answer["response"]["order_list"][0]["order_status"] = status
    assert shopee.map_status(status) is expected
    if expected is None:
        with pytest.raises(InvalidOrder) as error:
            shopee.parse_order(answer, REF, "shopee")
        assert error.value.reason == "ignored_status"
        return
    order = shopee.parse_order(answer, REF, "shopee")
    assert order.status is expected
    assert (order.cancelled_at is not None) is (expected is OrderStatus.CANCELLED)


def test_an_unpaid_order_has_no_payment_time() -> None:
    answer = load("order_detail.json")
    answer["response"]["order_list"][0].update(order_status="UNPAID", pay_time=None)
    order = shopee.parse_order(answer, REF, "shopee")
    assert (order.status, order.paid_at) == (OrderStatus.PENDING_PAYMENT, None)


def test_an_order_fulfilled_by_shopee_is_not_ours() -> None:
    answer = load("order_detail.json")
    answer["response"]["order_list"][0]["fulfillment_flag"] = "fulfilled_by_shopee"
    with pytest.raises(InvalidOrder) as error:
        shopee.parse_order(answer, REF, "shopee")
    assert error.value.reason == "not_seller_fulfilled"


def test_an_answer_without_the_order_is_refused() -> None:
    with pytest.raises(InvalidOrder) as error:
        shopee.parse_order(load("order_detail.json"),
                           OrderRef(shop=SHOP, external_id="261123ZZZZZZZZ"), "shopee")
    assert error.value.reason == "order_not_found"


@pytest.mark.parametrize(("name", "code", "retryable"), [
    ("error_auth.json", "error_auth", False),
    ("error_server.json", "error_server", True),
])
def test_an_error_answer_raises_with_its_class(name: str, code: str, retryable: bool) -> None:
    with pytest.raises(shopee.ShopeeError) as error:
        shopee.parse_order(load(name), REF, "shopee")
    assert (error.value.code, error.value.retryable) == (code, retryable)


# Writeback --------------------------------------------------------------------------------------


SHIPPED = Shipped(external_id=ORDER_SN, carrier_code="SF", tracking_number="SF1489327765012",
                  shipped_at=datetime(2026, 11, 23, 2, 57, tzinfo=UTC), package_id="pkg_01")


def test_carriers_cover_our_codes() -> None:
    assert {"STO", "SF", "YTO", "ZTO", "YUNDA", "JD", "EMS"} <= set(shopee.CARRIERS)


def test_writeback_call_is_exact() -> None:
    path = "/api/v2/logistics/ship_order"
    assert shopee.writeback_call(SHIPPED, CREDENTIALS, NOW) == Request(
        method="POST", url=BASE + path, params=common(path),
        json_body={"order_sn": ORDER_SN, "non_integrated": {"tracking_number": "SF1489327765012"}})
    package = shopee.writeback_call(SHIPPED, CREDENTIALS, NOW, package_number="OFG1795401327645")
    assert package.json_body == {"order_sn": ORDER_SN, "package_number": "OFG1795401327645",
                                 "non_integrated": {"tracking_number": "SF1489327765012"}}


def test_writeback_call_refuses_a_carrier_we_do_not_know() -> None:
    with pytest.raises(ValueError):
        shopee.writeback_call(SHIPPED.model_copy(update={"carrier_code": "DHL"}), CREDENTIALS,
                              NOW)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, raw("ship_order_ok.json"), WritebackResult(ok=True)),
    # Shipped already, or cancelled: not read as done; the next attempt asks already_shipped.
    (200, raw("ship_order_not_ready.json"),
     WritebackResult(ok=False, retryable=True, code="logistics.ship_order_not_ready_to_ship",
                     detail="The order is not ready to ship.")),
    (200, raw("ship_order_bad_tracking.json"),
     WritebackResult(ok=False, code="logistics.error_param",
                     detail="Tracking Number Error. Please input a valid tracking number.")),
    (200, raw("error_server.json"),
     WritebackResult(ok=False, retryable=True, code="error_server",
                     detail="System error. Please try again later.")),
    (403, raw("error_auth.json"),
     WritebackResult(ok=False, code="error_auth", detail="Invalid access_token.")),
    (429, b"", WritebackResult(ok=False, retryable=True, code="429")),
    (504, b"upstream timeout", WritebackResult(ok=False, retryable=True, code="504")),
    (200, b"not json", WritebackResult(ok=False, code="200", detail="not json")),
])
def test_parse_writeback(status: int, body: bytes, expected: WritebackResult) -> None:
    assert shopee.parse_writeback(status, body) == expected


def test_existing_call_is_exact() -> None:
    path = "/api/v2/logistics/get_tracking_number"
    assert shopee.existing_call(SHIPPED, CREDENTIALS, NOW) == Request(
        method="GET", url=BASE + path, params={**common(path), "order_sn": ORDER_SN})


@pytest.mark.parametrize(("name", "number", "expected"), [
    ("tracking_number.json", "SF1489327765012", True),
    ("tracking_number.json", "SF1489327765099", False),
    ("error_auth.json", "SF1489327765012", False),
])
def test_already_shipped(name: str, number: str, expected: bool) -> None:
    shipped = SHIPPED.model_copy(update={"tracking_number": number})
    assert shopee.already_shipped(load(name), shipped) is expected


def test_a_repeated_writeback_is_confirmed_by_the_number_not_by_the_refusal() -> None:
    refusal = shopee.parse_writeback(200, raw("ship_order_not_ready.json"))
    assert (refusal.ok, refusal.already_done, refusal.retryable) == (False, False, True)
    assert shopee.already_shipped(load("tracking_number.json"), SHIPPED)


# Reconciliation ---------------------------------------------------------------------------------


SINCE = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("cursor", [None, "20"])
def test_list_call_is_exact(cursor: str | None) -> None:
    path = "/api/v2/order/get_order_list"
    params = {**common(path), "time_range_field": "update_time", "time_from": "1795316400",
              "time_to": NOW_UNIX, "page_size": "100", "response_optional_fields": "order_status"}
    if cursor:
        params["cursor"] = cursor
    assert shopee.list_call(SHOP, SINCE, NOW, cursor, CREDENTIALS, NOW) == Request(
        method="GET", url=BASE + path, params=params)


@pytest.mark.parametrize(("since", "until"), [
    (NOW, SINCE),  # backwards
    (NOW - timedelta(days=15, seconds=1), NOW),  # longer than Shopee allows
])
def test_list_call_refuses_a_bad_window(since: datetime, until: datetime) -> None:
    with pytest.raises(ValueError):
        shopee.list_call(SHOP, since, until, None, CREDENTIALS, NOW)


def test_parse_list_reads_refs_and_the_cursor() -> None:
    refs, cursor = shopee.parse_list(load("order_list.json"), shop=SHOP)
    assert refs == [OrderRef(shop=SHOP, external_id=ORDER_SN, status="READY_TO_SHIP"),
                    OrderRef(shop=SHOP, external_id="261123AB1X9P0C", status="CANCELLED")]
    assert cursor == "20"
    last, end = shopee.parse_list(load("order_list_last.json"), shop=SHOP)
    assert ([r.external_id for r in last], end) == (["261123AB7H2J4K"], None)
    with pytest.raises(shopee.ShopeeError):
        shopee.parse_list(load("error_server.json"))
