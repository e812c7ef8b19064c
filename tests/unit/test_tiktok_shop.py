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
from chalicelib.marketplaces import tiktok_shop as tts
from chalicelib.marketplaces.calls import OrderRef, Shipped, WritebackResult
from chalicelib.orders.order import (
    Address,
    Buyer,
    InvalidOrder,
    Order,
    OrderLine,
    OrderStatus,
    Totals,
)
from tests.support import FIXTURES

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
NOW_UNIX = "1795402800"
APP_KEY = "6abc3j8v1u9kq"
APP_SECRET = "e59af819cc6dd9c1d0e0bcd34bd3fa9a1d9dd2c3"
SECRET = f"{APP_KEY}:{APP_SECRET}"
TOKEN = "ROW_Mfxq0QAAAADY9jhQTMr4JXq4U19IpM5-Oe3xMvV6PStxTQa0pQ1ipw"
CIPHER = "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3"
SF_PROVIDER = "7208502187360519982"
CREDENTIALS = {"app_key": APP_KEY, "app_secret": APP_SECRET, "access_token": TOKEN,
               "shop_cipher": CIPHER, "shipping_provider_id.SF": SF_PROVIDER}
SHOP = "7494105515082810525"
ORDER_ID = "576886453712341234"
REF = OrderRef(shop=SHOP, external_id=ORDER_ID)
BASE = "https://open-api.tiktokglobalshop.com"


def raw(name: str) -> bytes:
    return (FIXTURES / "tiktok_shop" / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))


def webhook_sig(body: bytes, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> str:
    """The documented recipe, written out here independently of the module."""
    return hmac.new(app_secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def api_sign(path: str, params: dict[str, str], body: bytes = b"") -> str:
    joined = "".join(k + params[k] for k in sorted(params) if k not in ("sign", "access_token"))
    text = APP_SECRET.encode() + path.encode() + joined.encode() + body + APP_SECRET.encode()
    return hmac.new(APP_SECRET.encode(), text, hashlib.sha256).hexdigest()


def accept(body: bytes, signature: str | None = None, secrets: tuple[str, ...] = (SECRET,),
           now: datetime = NOW) -> Any:
    headers = {} if signature is None else {"authorization": signature}
    return tts.accept(headers, body, secrets, now)


def signed_body(**changes: Any) -> bytes:
    body = load("notification_order_status.json")
    body.update(changes)
    return json.dumps(body).encode()


# The notification ---------------------------------------------------------------------------


def test_the_answer_is_an_empty_200() -> None:
    assert tts.REPLY == (200, "text/plain", "")


@pytest.mark.parametrize(("name", "topic", "delivery_id", "actionable"), [
    ("notification_order_status.json", "ORDER_STATUS_CHANGE", "7327112393057371910", True),
    ("notification_cancellation.json", "CANCELLATION_STATUS_CHANGE", "7327112393057371925",
     True),
    ("notification_package_update.json", "PACKAGE_UPDATE", "7327112393057371933", False),
])
def test_a_correctly_signed_notification_is_accepted(name: str, topic: str, delivery_id: str,
                                                     actionable: bool) -> None:
    body = raw(name)
    accepted = accept(body, webhook_sig(body))
    assert (accepted.delivery_id, accepted.topic, accepted.shop, accepted.actionable) == (
        delivery_id, topic, SHOP, actionable)


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b"AWAITING_SHIPMENT", b"AWAITING_SHIPMENU", 1),
    lambda b: b.replace(b"576886453712341234", b"576886453712341235", 1),
    lambda b: b + b" ",
    lambda b: b" " + b,
])
def test_a_changed_body_is_rejected(mutate: Any) -> None:
    body = raw("notification_order_status.json")
    with pytest.raises(ApiError) as error:
        accept(mutate(body), webhook_sig(body))
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


@given(st.data())
def test_flipping_any_byte_breaks_the_signature(data: st.DataObject) -> None:
    body = raw("notification_order_status.json")
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    with pytest.raises(ApiError) as error:
        accept(changed, webhook_sig(body))
    assert error.value.reason == "invalid_signature"


@pytest.mark.parametrize(("app_key", "app_secret"), [
    (APP_KEY, APP_SECRET[:-1] + "b"),  # wrong secret
    ("6abc3j8v1u9kr", APP_SECRET),  # another app's key
])
def test_a_signature_made_with_other_credentials_is_rejected(app_key: str,
                                                             app_secret: str) -> None:
    body = raw("notification_order_status.json")
    with pytest.raises(ApiError) as error:
        accept(body, webhook_sig(body, app_key, app_secret))
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


def test_the_body_alone_is_not_what_is_signed() -> None:
    body = raw("notification_order_status.json")
    bare = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(ApiError):
        accept(body, bare)


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_a_missing_signature_is_401(signature: str | None) -> None:
    with pytest.raises(ApiError) as error:
        accept(raw("notification_order_status.json"), signature)
    assert (error.value.status, error.value.reason) == (401, "missing_signature")


def test_garbage_and_upper_case_signatures() -> None:
    body = raw("notification_order_status.json")
    with pytest.raises(ApiError) as error:
        accept(body, "签名 not hex")
    assert error.value.reason == "invalid_signature"
    assert accept(body, webhook_sig(body).upper()).actionable


def test_a_rotated_secret_still_verifies_with_the_old_one_listed() -> None:
    body = raw("notification_order_status.json")
    old = "6abc3j8v1u9kq:0ld5ecret0ld5ecret"
    assert accept(body, webhook_sig(body, APP_KEY, "0ld5ecret0ld5ecret"),
                  secrets=(SECRET, old)).actionable


def test_a_secret_without_its_app_key_is_a_configuration_error() -> None:
    body = raw("notification_order_status.json")
    with pytest.raises(ValueError, match="app_key:app_secret"):
        accept(body, webhook_sig(body), secrets=(APP_SECRET,))


@pytest.mark.parametrize(("offset", "fresh"), [
    (timedelta(0), True),
    (-timedelta(hours=71), True),
    (-timedelta(hours=73), False),
    (timedelta(minutes=14), True),
    (timedelta(minutes=16), False),
])
def test_the_signed_timestamp_must_be_recent(offset: timedelta, fresh: bool) -> None:
    body = signed_body(timestamp=int((NOW + offset).timestamp()))
    if fresh:
        assert accept(body, webhook_sig(body)).actionable
        return
    with pytest.raises(ApiError) as error:
        accept(body, webhook_sig(body))
    assert (error.value.status, error.value.reason) == (401, "stale_or_invalid_timestamp")


def test_an_absurd_timestamp_is_401_not_a_crash() -> None:
    body = signed_body(timestamp=10**20)
    with pytest.raises(ApiError) as error:
        accept(body, webhook_sig(body))
    assert error.value.reason == "stale_or_invalid_timestamp"


def test_malformed_json_is_400() -> None:
    body = b'{"type": 1, "tts_notification_id": '
    with pytest.raises(ApiError) as error:
        accept(body, webhook_sig(body))
    assert (error.value.status, error.value.reason) == (400, "malformed_json")


def test_an_invalid_payload_is_422_with_the_fields() -> None:
    body = json.dumps({"type": 1, "shop_id": SHOP, "data": {}}).encode()
    with pytest.raises(ApiError) as error:
        accept(body, webhook_sig(body))
    assert (error.value.status, error.value.reason) == (422, "invalid_payload")
    fields = {p["field"] for p in error.value.details["problems"]}
    assert {"tts_notification_id", "timestamp"} <= fields


def test_an_order_notification_without_an_order_id_is_422() -> None:
    body = signed_body(data={"order_status": "AWAITING_SHIPMENT", "update_time": 1795401000})
    with pytest.raises(ApiError) as error:
        accept(body, webhook_sig(body))
    assert error.value.reason == "invalid_payload"
    assert {p["field"] for p in error.value.details["problems"]} == {"order_id"}


def test_numeric_ids_are_kept_as_exact_text() -> None:
    body = (b'{"type":1,"tts_notification_id":7327112393057371910,"shop_id":7494105515082810525,'
            b'"timestamp":1795401002,"data":{"order_id":576886453712341234,'
            b'"order_status":"AWAITING_SHIPMENT","update_time":1795401000}}')
    accepted = accept(body, webhook_sig(body))
    assert (accepted.delivery_id, accepted.shop) == ("7327112393057371910", SHOP)
    assert tts.ref(body, {}).external_id == ORDER_ID


def test_ref_names_the_order_and_its_change_time() -> None:
    assert tts.ref(raw("notification_order_status.json"), {}) == OrderRef(
        shop=SHOP, external_id=ORDER_ID, status="AWAITING_SHIPMENT",
        updated_at=datetime(2026, 11, 23, 2, 30, tzinfo=UTC))
    cancellation = tts.ref(raw("notification_cancellation.json"), {})
    assert (cancellation.external_id, cancellation.status) == (ORDER_ID, "")
    assert cancellation.updated_at == datetime(2026, 11, 23, 2, 55, tzinfo=UTC)


def test_ref_refuses_an_unreadable_notification() -> None:
    with pytest.raises(InvalidOrder):
        tts.ref(b'{"type": 1}', {})


# Re-fetch ---------------------------------------------------------------------------------------


def test_fetch_call_is_signed_exactly() -> None:
    call = tts.fetch_call(REF, CREDENTIALS, NOW)
    params = {"app_key": APP_KEY, "timestamp": NOW_UNIX, "shop_cipher": CIPHER,
              "ids": ORDER_ID}
    params["sign"] = api_sign("/order/202309/orders", params)
    assert call == Request(method="GET", url=f"{BASE}/order/202309/orders", params=params,
                           headers={"x-tts-access-token": TOKEN,
                                    "content-type": "application/json"})
    assert "access_token" not in call.params


def test_the_request_signature_depends_on_the_secret_the_time_and_the_order() -> None:
    base = tts.fetch_call(REF, CREDENTIALS, NOW).params["sign"]
    assert tts.fetch_call(REF, {**CREDENTIALS, "app_secret": "x" + APP_SECRET[1:]},
                          NOW).params["sign"] != base
    assert tts.fetch_call(REF, CREDENTIALS, NOW + timedelta(seconds=1)).params["sign"] != base
    other = OrderRef(shop=SHOP, external_id=ORDER_ID[:-1] + "5")
    assert tts.fetch_call(other, CREDENTIALS, NOW).params["sign"] != base
    # The access token travels in the header and is not signed.
    assert tts.fetch_call(REF, {**CREDENTIALS, "access_token": "other"}, NOW).params[
        "sign"] == base


def test_sign_leaves_out_sign_and_access_token_and_covers_the_body() -> None:
    params = {"app_key": APP_KEY, "timestamp": NOW_UNIX}
    base = tts.sign("/p", params, b"", APP_SECRET)
    assert base == api_sign("/p", params)
    assert tts.sign("/p", {**params, "access_token": TOKEN, "sign": "x"}, b"", APP_SECRET) == base
    assert tts.sign("/p", params, b"{}", APP_SECRET) != base


def test_fetch_call_needs_an_access_token_and_an_aware_time() -> None:
    with pytest.raises(ValueError):
        tts.fetch_call(REF, {**CREDENTIALS, "access_token": ""}, NOW)
    with pytest.raises(ValueError):
        tts.fetch_call(REF, CREDENTIALS, NOW.replace(tzinfo=None))


def expected_order(**changes: Any) -> Order:
    order = Order(
        marketplace="tiktok_shop",
        shop=SHOP,
        external_id=ORDER_ID,
        name=ORDER_ID,
        status=OrderStatus.PAID,
        buyer=Buyer(external_id="7021436810468868333",
                    email="v2-aeqpe4vq3ggsxl3gmdfpmwhpha@scs.tiktokw.eu"),
        shipping_address=Address(name="Olivia Bennett", line1="27 Chalcot Road", line2="Flat 3",
                                 city="London", province="England", postal_code="NW1 8LN",
                                 country_code="GB", phone="(+44)7700***123"),
        lines=(
            OrderLine(line_id="576886453712405678", sku="LS-WHT-M", title="Linen Blend Shirt",
                      variant="White, M", quantity=1, unit_price=Decimal("17.99")),
            OrderLine(line_id="576886453712405679", sku="LS-WHT-M", title="Linen Blend Shirt",
                      variant="White, M", quantity=1, unit_price=Decimal("17.99")),
            OrderLine(line_id="576886453712405680", sku="TOTE-NAT", title="Canvas Tote Bag",
                      variant="Natural", quantity=1, unit_price=Decimal("16.99")),
        ),
        currency="GBP",
        totals=Totals(subtotal=Decimal("56.97"), shipping=Decimal("2.99"), tax=Decimal("0"),
                      discounts=Decimal("4.00"), total=Decimal("55.96")),
        placed_at=datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
        paid_at=datetime(2026, 11, 23, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 11, 23, 2, 30, tzinfo=UTC),
        buyer_note="Please leave with the neighbour at no. 14 if I'm out",
    )
    return order.model_copy(update=changes)


def test_parse_order_maps_the_recorded_answer_exactly() -> None:
    order = tts.parse_order(load("order_detail.json"), REF, "tiktok_shop")
    assert order == expected_order()
    assert order.totals.subtotal - order.totals.discounts + order.totals.shipping == (
        order.totals.total)


def test_cancelled_line_items_are_not_sent_to_the_warehouse() -> None:
    order = tts.parse_order(load("order_detail.json"), REF, "tiktok_shop")
    assert "TOTE-BLK" not in {line.sku for line in order.lines}
    assert sum(line.quantity for line in order.lines) == 3


EVERY_STATUS = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    "ON_HOLD": OrderStatus.PENDING_PAYMENT,
    "AWAITING_SHIPMENT": OrderStatus.PAID,
    "PARTIALLY_SHIPPING": OrderStatus.PAID,
    "AWAITING_COLLECTION": OrderStatus.PAID,
    "IN_TRANSIT": OrderStatus.PAID,
    "DELIVERED": OrderStatus.PAID,
    "COMPLETED": OrderStatus.PAID,
    "CANCELLED": OrderStatus.CANCELLED,
}


def test_the_status_table_covers_every_documented_status() -> None:
    assert tts.STATUSES == EVERY_STATUS


@pytest.mark.parametrize(("status", "expected"), sorted(EVERY_STATUS.items()))
def test_every_status_maps_through_parse_order(status: str, expected: OrderStatus) -> None:
    answer = load("order_detail.json")
    answer["data"]["orders"][0]["status"] = status
    answer["data"]["orders"][0]["cancel_time"] = 1795401000
    order = tts.parse_order(answer, REF, "tiktok_shop")
    assert tts.map_status(status) is expected
    assert order.status is expected
    assert (order.cancelled_at is not None) is (expected is OrderStatus.CANCELLED)


def test_an_unknown_status_is_refused() -> None:
    answer = load("order_detail.json")
    answer["data"]["orders"][0]["status"] = "AWAITING_SOMETHING_NEW"
    with pytest.raises(InvalidOrder) as error:
        tts.parse_order(answer, REF, "tiktok_shop")
    assert error.value.reason == "unknown_status"


def test_an_order_fulfilled_by_tiktok_is_not_ours() -> None:
    answer = load("order_detail.json")
    answer["data"]["orders"][0]["fulfillment_type"] = "FULFILLMENT_BY_TIKTOK"
    with pytest.raises(InvalidOrder) as error:
        tts.parse_order(answer, REF, "tiktok_shop")
    assert error.value.reason == "not_seller_fulfilled"


def test_an_unpaid_order_has_no_address_yet() -> None:
    answer = load("order_detail.json")
    order_json = answer["data"]["orders"][0]
    order_json.update(status="UNPAID", paid_time=None)
    del order_json["recipient_address"]
    order = tts.parse_order(answer, REF, "tiktok_shop")
    assert (order.status, order.paid_at, order.shipping_address) == (
        OrderStatus.PENDING_PAYMENT, None, None)


def test_an_answer_without_the_order_is_refused() -> None:
    with pytest.raises(InvalidOrder) as error:
        tts.parse_order(load("order_detail.json"),
                        OrderRef(shop=SHOP, external_id="576886453712399999"), "tiktok_shop")
    assert error.value.reason == "order_not_found"


@pytest.mark.parametrize(("name", "code", "retryable"), [
    ("error_token.json", "105002", False),
    ("error_rate_limit.json", "36009002", True),
])
def test_an_error_answer_raises_with_its_class(name: str, code: str, retryable: bool) -> None:
    with pytest.raises(tts.TikTokShopError) as error:
        tts.parse_order(load(name), REF, "tiktok_shop")
    assert (error.value.code, error.value.retryable) == (code, retryable)


# Writeback --------------------------------------------------------------------------------------


SHIPPED = Shipped(external_id=ORDER_ID, carrier_code="SF", tracking_number="SF1489327765012",
                  shipped_at=datetime(2026, 11, 23, 2, 57, tzinfo=UTC), package_id="pkg_01")


def test_carriers_cover_our_codes() -> None:
    assert {"STO", "SF", "YTO", "ZTO", "YUNDA", "JD", "EMS"} <= set(tts.CARRIERS)


def test_writeback_call_is_exact() -> None:
    call = tts.writeback_call(SHIPPED, CREDENTIALS, NOW)
    path = f"/fulfillment/202309/orders/{ORDER_ID}/packages"
    body = b'{"tracking_number":"SF1489327765012","shipping_provider_id":"7208502187360519982"}'
    params = {"app_key": APP_KEY, "timestamp": NOW_UNIX, "shop_cipher": CIPHER}
    params["sign"] = api_sign(path, params, body)
    assert call == Request(method="POST", url=BASE + path, params=params,
                           headers={"x-tts-access-token": TOKEN,
                                    "content-type": "application/json"},
                           raw_body=body)


def test_a_partial_writeback_names_the_line_items_and_signs_them() -> None:
    shipped = SHIPPED.model_copy(update={"lines": (("576886453712405678", 1),
                                                   ("576886453712405679", 1))})
    call = tts.writeback_call(shipped, CREDENTIALS, NOW)
    assert call.raw_body is not None
    assert json.loads(call.raw_body)["order_line_item_ids"] == [
        "576886453712405678", "576886453712405679"]
    path = f"/fulfillment/202309/orders/{ORDER_ID}/packages"
    unsigned = {k: v for k, v in call.params.items() if k != "sign"}
    assert call.params["sign"] == api_sign(path, unsigned, call.raw_body)
    assert call.params["sign"] != tts.writeback_call(SHIPPED, CREDENTIALS, NOW).params["sign"]


@pytest.mark.parametrize(("shipped", "credentials"), [
    (SHIPPED.model_copy(update={"carrier_code": "DHL"}), CREDENTIALS),  # not one of ours
    (SHIPPED.model_copy(update={"carrier_code": "ZTO"}), CREDENTIALS),  # shop has no id
    (SHIPPED.model_copy(update={"lines": (("576886453712405678", 2),)}), CREDENTIALS),
])
def test_writeback_call_refuses_what_tiktok_cannot_take(shipped: Shipped,
                                                        credentials: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        tts.writeback_call(shipped, credentials, NOW)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, raw("writeback_ok.json"), WritebackResult(ok=True)),
    # A duplicate is not read as done (it does not say with which number): retryable, so the
    # next attempt asks already_shipped first.
    (200, raw("writeback_already_shipped.json"),
     WritebackResult(ok=False, retryable=True, code="21011001",
                     detail="Order status does not allow this operation: the package has "
                            "already been shipped.")),
    (200, raw("writeback_invalid_tracking.json"),
     WritebackResult(ok=False, code="21011008",
                     detail="The tracking number format is invalid for the selected shipping "
                            "provider.")),
    (200, raw("error_rate_limit.json"),
     WritebackResult(ok=False, retryable=True, code="36009002",
                     detail="Too many requests. Please retry later.")),
    (200, raw("error_token.json"),
     WritebackResult(ok=False, code="105002",
                     detail="Expired credentials. The access token has expired, please "
                            "refresh it.")),
    (429, b"", WritebackResult(ok=False, retryable=True, code="429")),
    (502, b"<html>Bad Gateway</html>", WritebackResult(ok=False, retryable=True, code="502")),
    (200, b"<html>maintenance</html>",
     WritebackResult(ok=False, code="200", detail="<html>maintenance</html>")),
])
def test_parse_writeback(status: int, body: bytes, expected: WritebackResult) -> None:
    assert tts.parse_writeback(status, body) == expected


def test_existing_call_reads_the_order() -> None:
    assert tts.existing_call(SHIPPED, CREDENTIALS, NOW) == tts.fetch_call(REF, CREDENTIALS, NOW)


@pytest.mark.parametrize(("name", "changes", "expected"), [
    ("order_detail_shipped.json", {}, True),
    ("order_detail_shipped.json", {"lines": (("576886453712405680", 1),)}, True),
    ("order_detail_shipped.json", {"tracking_number": "SF1489327765099"}, False),
    ("order_detail_shipped.json", {"lines": (("576886453712400000", 1),)}, False),
    ("order_detail.json", {}, False),
    ("error_token.json", {}, False),
])
def test_already_shipped(name: str, changes: dict[str, Any], expected: bool) -> None:
    assert tts.already_shipped(load(name), SHIPPED.model_copy(update=changes)) is expected


def test_a_repeated_writeback_is_confirmed_by_the_order_not_by_the_refusal() -> None:
    refusal = tts.parse_writeback(200, raw("writeback_already_shipped.json"))
    assert (refusal.ok, refusal.already_done, refusal.retryable) == (False, False, True)
    assert tts.already_shipped(load("order_detail_shipped.json"), SHIPPED)


# Reconciliation ---------------------------------------------------------------------------------


SINCE = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("cursor", [None, "aDU2dlIrSEtBa0g0QUJxNk5aUGNBcUt3M1F0N0xKQUpRZ1E9PQ=="])
def test_list_call_is_exact(cursor: str | None) -> None:
    call = tts.list_call(SHOP, SINCE, UNTIL, cursor, CREDENTIALS, NOW)
    body = b'{"update_time_ge":1795395600,"update_time_lt":1795402800}'
    params = {"app_key": APP_KEY, "timestamp": NOW_UNIX, "shop_cipher": CIPHER,
              "page_size": "100", "sort_field": "update_time", "sort_order": "ASC"}
    if cursor:
        params["page_token"] = cursor
    params["sign"] = api_sign("/order/202309/orders/search", params, body)
    assert call == Request(method="POST", url=f"{BASE}/order/202309/orders/search",
                           params=params, headers={"x-tts-access-token": TOKEN,
                                                   "content-type": "application/json"},
                           raw_body=body)


def test_list_call_needs_a_window() -> None:
    with pytest.raises(ValueError):
        tts.list_call(SHOP, UNTIL, SINCE, None, CREDENTIALS, NOW)


def test_parse_list_reads_refs_and_the_next_page_token() -> None:
    refs, cursor = tts.parse_list(load("orders_search.json"), shop=SHOP)
    assert refs == [
        OrderRef(shop=SHOP, external_id=ORDER_ID, status="AWAITING_SHIPMENT",
                 updated_at=datetime(2026, 11, 23, 2, 30, tzinfo=UTC)),
        OrderRef(shop=SHOP, external_id="576886453712346613", status="CANCELLED",
                 updated_at=datetime(2026, 11, 23, 2, 40, tzinfo=UTC)),
    ]
    assert cursor == "aDU2dlIrSEtBa0g0QUJxNk5aUGNBcUt3M1F0N0xKQUpRZ1E9PQ=="
    last, end = tts.parse_list(load("orders_search_last.json"), shop=SHOP)
    assert ([r.external_id for r in last], end) == (["576886453712349970"], None)


def test_parse_list_raises_on_an_error_answer() -> None:
    with pytest.raises(tts.TikTokShopError) as error:
        tts.parse_list(load("error_rate_limit.json"))
    assert error.value.retryable


def test_districts_below_the_city_stay_on_the_label() -> None:
    answer = load("order_detail.json")
    address = answer["data"]["orders"][0]["recipient_address"]
    address["district_info"] = [
        {"address_level_name": "Country", "address_name": "Malaysia", "address_level": "L0"},
        {"address_level_name": "State", "address_name": "Selangor", "address_level": "L1"},
        {"address_level_name": "City", "address_name": "Petaling Jaya", "address_level": "L2"},
        {"address_level_name": "District", "address_name": "Damansara", "address_level": "L3"},
        {"address_level_name": "Area", "address_name": "Section 13", "address_level": "L4"}]
    address.update(address_line1="12 Jalan 13/6", address_line2="Section 13")
    shipping = tts.parse_order(answer, REF, "tiktok_shop").shipping_address
    assert shipping is not None and shipping.city == "Petaling Jaya"
    assert shipping.line2 == "Section 13, Damansara"  # said once, the missing district added
