from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.errors import ApiError
from chalicelib.marketplaces import woocommerce as wc
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import Address, InvalidOrder, OrderStatus
from tests.support import FIXTURES

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
SECRET = "wc_whsec_7Hq2@kP9#xL4vN8m"
SOURCE = "https://shop.example.cn/"
SHOP = "shop.example.cn"
CREDENTIALS = {"store_url": "https://shop.example.cn/", "consumer_key": "ck_4f9a1b2c3d",
               "consumer_secret": "cs_8e7d6c5b4a"}
BASIC = "Basic " + base64.b64encode(b"ck_4f9a1b2c3d:cs_8e7d6c5b4a").decode()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "woocommerce" / name).read_text())


def order(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(fixture("order_processing.json"))
    payload.update(changes)
    return payload


def wp_json(value: Any) -> bytes:
    """As WooCommerce sends it: wp_json_encode escapes non-ASCII and slashes."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def headers(body: bytes, *, topic: str = "order.created", secret: str = SECRET,
            delivery: str = "0f6f4b1dd2b64ac6b1a0c4a4cb6e3e0d") -> dict[str, str]:
    resource, event = topic.split(".", 1)
    return {
        "content-type": "application/json",
        "user-agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)",
        "x-wc-webhook-source": SOURCE,
        "x-wc-webhook-topic": topic,
        "x-wc-webhook-resource": resource,
        "x-wc-webhook-event": event,
        "x-wc-webhook-signature": sign(body, secret),
        "x-wc-webhook-id": "14",
        "x-wc-webhook-delivery-id": delivery,
    }


def accept(body: bytes, hdrs: dict[str, str], secrets: tuple[str, ...] = (SECRET,)):
    return wc.accept(hdrs, body, secrets, NOW)


def reason(excinfo: pytest.ExceptionInfo[ApiError]) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.reason


# Signature ----------------------------------------------------------------------------------------


def test_a_signed_order_is_accepted_and_keyed_by_order_and_modification_time() -> None:
    body = wp_json(order())
    accepted = accept(body, headers(body))
    assert accepted.delivery_id == "shop.example.cn:727:2026-11-23T02:06:40"
    assert accepted.topic == "order.created"
    assert accepted.shop == SHOP
    assert accepted.actionable
    assert accepted.headers["x-wc-webhook-source"] == SOURCE
    assert accepted.headers["x-wc-webhook-delivery-id"] == "0f6f4b1dd2b64ac6b1a0c4a4cb6e3e0d"
    assert "x-wc-webhook-signature" not in accepted.headers


def test_two_deliveries_of_one_version_share_a_key_and_a_newer_version_does_not() -> None:
    body = wp_json(order())
    first = accept(body, headers(body, delivery="a" * 32))
    again = accept(body, headers(body, topic="order.updated", delivery="b" * 32))
    newer_body = wp_json(order(date_modified_gmt="2026-11-23T02:30:00"))
    newer = accept(newer_body, headers(newer_body, topic="order.updated"))
    assert first.delivery_id == again.delivery_id
    assert newer.delivery_id != first.delivery_id


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b'"total":"390.00"', b'"total":"890.00"', 1),  # one byte of the body
    lambda b: b + b" ",  # trailing whitespace: re-serialised JSON would hide this
    lambda b: b.replace(b"\\/", b"/"),  # the same JSON, re-serialised
])
def test_a_changed_body_is_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    body = wp_json(order())
    changed = mutate(body)
    assert changed != body
    with pytest.raises(ApiError) as error:
        accept(changed, headers(body))
    assert reason(error) == (401, "invalid_signature")


def test_a_wrong_secret_a_garbled_and_a_missing_signature_are_401() -> None:
    body = wp_json(order())
    with pytest.raises(ApiError) as wrong:
        accept(body, headers(body, secret="someone-else"))
    assert reason(wrong) == (401, "invalid_signature")
    garbled = headers(body) | {"x-wc-webhook-signature": "not base64!!"}
    with pytest.raises(ApiError) as garbage:
        accept(body, garbled)
    assert reason(garbage) == (401, "invalid_signature")
    missing = headers(body)
    del missing["x-wc-webhook-signature"]
    with pytest.raises(ApiError) as absent:
        accept(body, missing)
    assert reason(absent) == (401, "missing_signature")


def test_a_rotated_secret_still_verifies_while_the_old_one_is_listed() -> None:
    body = wp_json(order())
    assert accept(body, headers(body, secret="old"), secrets=("new", "old")).actionable


@given(body=st.binary(max_size=300), secret=st.text(min_size=1, max_size=40),
       index=st.integers(min_value=0))
def test_any_signed_body_passes_the_signature_and_any_flipped_byte_fails(
        body: bytes, secret: str, index: int) -> None:
    hdrs = headers(body, secret=secret)
    try:
        wc.accept(hdrs, body, (secret,), NOW)
    except ApiError as error:
        assert error.reason not in ("invalid_signature", "missing_signature")
    if body:
        i = index % len(body)
        flipped = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        with pytest.raises(ApiError) as rejected:
            wc.accept(hdrs, flipped, (secret,), NOW)
        assert rejected.value.reason == "invalid_signature"


# Ping, topics, validation -------------------------------------------------------------------------


def test_the_unsigned_ping_on_webhook_creation_is_answered_200_and_not_stored_as_an_order() -> None:
    ping = {"user-agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)",
            "content-type": "application/x-www-form-urlencoded"}
    accepted = accept(b"webhook_id=14", ping)
    assert (accepted.delivery_id, accepted.topic, accepted.actionable) == ("ping:14", "ping", False)
    assert wc.REPLY[0] == 200


def test_an_unsigned_body_that_only_looks_like_a_ping_is_still_refused() -> None:
    with pytest.raises(ApiError) as error:
        accept(b"webhook_id=14", {"x-wc-webhook-topic": "order.created"})
    assert reason(error) == (401, "missing_signature")
    with pytest.raises(ApiError) as other:
        accept(b"webhook_id=14&x=1", {})
    assert reason(other) == (401, "missing_signature")


def test_order_deleted_carries_only_the_id_and_is_not_normalised() -> None:
    body = wp_json(fixture("order_deleted.json"))
    accepted = accept(body, headers(body, topic="order.deleted", delivery="d" * 32))
    assert accepted.delivery_id == f"shop.example.cn:727:deleted:{'d' * 32}"
    assert not accepted.actionable
    named = wc.ref(body, headers(body, topic="order.deleted"))
    assert named == OrderRef(shop=SHOP, external_id="727")


def test_order_restored_is_an_order_topic() -> None:
    body = wp_json(order())
    assert accept(body, headers(body, topic="order.restored")).actionable


def test_other_topics_are_accepted_but_not_actionable_and_need_a_delivery_id() -> None:
    body = wp_json({"id": 93, "name": "亚麻衬衫"})
    accepted = accept(body, headers(body, topic="product.updated", delivery="p" * 32))
    assert (accepted.delivery_id, accepted.actionable) == ("p" * 32, False)
    no_id = headers(body, topic="product.updated")
    del no_id["x-wc-webhook-delivery-id"]
    with pytest.raises(ApiError) as error:
        accept(body, no_id)
    assert reason(error) == (400, "missing_delivery_id")


def test_a_checkout_draft_is_accepted_but_ignored_even_without_lines() -> None:
    body = wp_json(order(status="checkout-draft", line_items=[], date_paid_gmt=None))
    assert not accept(body, headers(body, topic="order.updated")).actionable


def test_malformed_json_is_400_and_an_invalid_order_is_422_with_the_fields() -> None:
    body = b'{"id": 727, "line_items": ['
    with pytest.raises(ApiError) as malformed:
        accept(body, headers(body))
    assert reason(malformed) == (400, "malformed_json")
    invalid = order(line_items=[])
    del invalid["currency"]
    body = wp_json(invalid)
    with pytest.raises(ApiError) as error:
        accept(body, headers(body))
    assert reason(error) == (422, "invalid_payload")
    assert {"line_items", "currency"} <= {p["field"] for p in error.value.details["problems"]}


def test_an_order_without_its_store_is_400() -> None:
    body = wp_json(order())
    hdrs = headers(body)
    del hdrs["x-wc-webhook-source"]
    with pytest.raises(ApiError) as error:
        accept(body, hdrs)
    assert reason(error) == (400, "missing_shop")


@pytest.mark.parametrize(("source", "shop"), [
    ("https://shop.example.cn/", "shop.example.cn"),
    ("https://Shop.Example.cn", "shop.example.cn"),
    ("http://example.com/store/", "example.com/store"),
    ("shop.example.cn", "shop.example.cn"),
    ("", ""),
])
def test_shop_identity_from_the_source_header(source: str, shop: str) -> None:
    assert wc.shop_of(source) == shop


# Normalise ----------------------------------------------------------------------------------------


def test_normalise_maps_the_rest_v3_order_exactly() -> None:
    body = wp_json(order())
    result = wc.normalise(body, headers(body), "woocommerce")
    assert (result.marketplace, result.shop, result.external_id, result.name) == (
        "woocommerce", SHOP, "727", "#727")
    assert result.status is OrderStatus.PAID
    assert result.currency == "CNY"
    assert result.buyer.model_dump() == {"external_id": "26", "name": "林伟",
                                         "email": "lin.wei@example.com", "phone": "13800138000"}
    assert result.shipping_address == Address(
        name="王芳", company="杭州茶研所", line1="西湖区文三路 90 号", line2="3 号楼 502 室",
        city="杭州", province="浙江", province_code="CN12", postal_code="310012",
        country_code="CN", phone="13800138000")
    assert [(line.line_id, line.sku, line.title, line.variant, line.quantity, line.unit_price)
            for line in result.lines] == [
        ("315", "LS-WHT-M", "亚麻衬衫 - 白色, M", "白色 / M", 2, Decimal("149.00")),
        ("316", "TOTE-NAT", "帆布托特包", "", 1, Decimal("100.00")),
    ]
    assert result.totals.model_dump() == {
        "subtotal": Decimal("398.00"), "shipping": Decimal("12.00"), "tax": Decimal("0.00"),
        "discounts": Decimal("20.00"), "total": Decimal("390.00"), "fees": Decimal("0"),
        "tax_included": False}
    assert result.totals.adds_up()
    assert result.placed_at == datetime(2026, 11, 23, 2, 5, 12, tzinfo=UTC)
    assert result.paid_at == datetime(2026, 11, 23, 2, 6, 40, tzinfo=UTC)
    assert result.updated_at == datetime(2026, 11, 23, 2, 6, 40, tzinfo=UTC)
    assert result.cancelled_at is None
    assert result.buyer_note == "请周末送货，谢谢"
    assert result.requested_courier == "SF"
    assert result.presale_ship_date == date(2026, 12, 5)


def test_the_shipping_method_is_the_courier_wish_when_no_meta_names_one() -> None:
    payload = order(meta_data=[])
    result = wc.normalise(wp_json(payload), {"x-wc-webhook-source": SOURCE}, "woocommerce")
    assert result.requested_courier == "顺丰速运"
    assert result.presale_ship_date is None


def test_an_order_without_a_shipping_address_has_none() -> None:
    empty = {k: "" for k in ("first_name", "last_name", "company", "address_1", "address_2",
                             "city", "state", "postcode", "country", "phone")}
    result = wc.normalise(wp_json(order(shipping=empty)), {}, "woocommerce")
    assert result.shipping_address is None


def test_a_western_name_keeps_its_order_and_a_foreign_state_stays_a_code() -> None:
    shipping = {"first_name": "Anna", "last_name": "Schmidt", "address_1": "Hauptstr. 5",
                "city": "Berlin", "state": "BE", "postcode": "10115", "country": "DE",
                "phone": "+49 30 1234567"}
    result = wc.normalise(wp_json(order(shipping=shipping)), {}, "woocommerce")
    assert result.shipping_address is not None
    assert (result.shipping_address.name, result.shipping_address.province) == (
        "Anna Schmidt", "BE")


def test_nulls_written_by_plugins_read_as_empty_text() -> None:
    payload = order(customer_note=None)
    payload["shipping"]["company"] = None
    result = wc.normalise(wp_json(payload), {}, "woocommerce")
    assert result.buyer_note == ""
    assert result.shipping_address is not None and result.shipping_address.company == ""


def test_normalise_refuses_an_unreadable_payload_and_an_ignored_status() -> None:
    with pytest.raises(InvalidOrder):
        wc.normalise(b'{"id": "x"}', {}, "woocommerce")
    with pytest.raises(InvalidOrder) as ignored:
        wc.normalise(wp_json(order(status="checkout-draft", date_paid_gmt=None)), {},
                     "woocommerce")
    assert ignored.value.reason == "ignored_status"


DOCUMENTED = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed",
              "checkout-draft", "trash")


def test_the_status_table_covers_exactly_the_documented_statuses() -> None:
    assert set(wc.STATUSES) == set(DOCUMENTED)


@pytest.mark.parametrize(("status", "paid", "expected"), [
    ("pending", False, OrderStatus.PENDING_PAYMENT),
    ("pending", True, OrderStatus.PAID),  # paid already, status not moved yet
    ("processing", True, OrderStatus.PAID),
    ("processing", False, OrderStatus.PAID),
    ("on-hold", False, OrderStatus.PENDING_PAYMENT),
    ("on-hold", True, OrderStatus.PAID),
    ("completed", True, OrderStatus.PAID),
    ("cancelled", False, OrderStatus.CANCELLED),
    ("cancelled", True, OrderStatus.CANCELLED),
    ("refunded", True, OrderStatus.REFUNDED),
    ("failed", False, OrderStatus.PENDING_PAYMENT),
    ("trash", True, OrderStatus.CANCELLED),
])
def test_status_mapping_over_every_documented_status(status: str, paid: bool,
                                                     expected: OrderStatus) -> None:
    payload = order(status=status, date_paid_gmt="2026-11-23T02:06:40" if paid else None)
    result = wc.normalise(wp_json(payload), {}, "woocommerce")
    assert result.status is expected
    assert (result.paid_at is not None) is (expected is OrderStatus.PAID)
    assert (result.cancelled_at is not None) is (expected is OrderStatus.CANCELLED)


def test_map_status_ignores_drafts_and_unknown_plugin_statuses() -> None:
    assert wc.map_status("checkout-draft") is None
    assert wc.map_status("shipped") is None


def test_a_created_order_that_is_already_paid_is_paid_on_arrival() -> None:
    body = wp_json(order(status="pending"))  # date_paid_gmt set by the gateway
    assert wc.normalise(body, headers(body), "woocommerce").status is OrderStatus.PAID


# Re-fetch -----------------------------------------------------------------------------------------


def test_fetch_call_and_parse_order() -> None:
    ref = OrderRef(shop=SHOP, external_id="727")
    call = wc.fetch_call(ref, CREDENTIALS, NOW)
    assert (call.method, call.url, call.params, call.headers) == (
        "GET", "https://shop.example.cn/wp-json/wc/v3/orders/727", {}, {"Authorization": BASIC})
    parsed = wc.parse_order(json.dumps(order(status="trash")).encode(), ref, "woocommerce")
    assert (parsed.external_id, parsed.shop, parsed.status) == ("727", SHOP, OrderStatus.CANCELLED)


@pytest.mark.parametrize(("name", "code", "retryable"), [
    ("error_invalid_order.json", "woocommerce_rest_shop_order_invalid_id", False),
    ("error_unauthorized.json", "woocommerce_rest_cannot_create", False),
    ("error_internal.json", "internal_server_error", True),
])
def test_an_error_answer_raises_with_its_code(name: str, code: str, retryable: bool) -> None:
    with pytest.raises(wc.WooCommerceError) as error:
        wc.parse_order(fixture(name), OrderRef(shop=SHOP, external_id="727"), "woocommerce")
    assert (error.value.code, error.value.retryable) == (code, retryable)


def test_plain_http_stores_are_refused() -> None:
    with pytest.raises(ValueError):
        wc.fetch_call(OrderRef(shop=SHOP, external_id="1"),
                      CREDENTIALS | {"store_url": "http://shop.example.cn"}, NOW)


# Writeback ----------------------------------------------------------------------------------------

SHIPPED = Shipped(external_id="727", carrier_code="SF", tracking_number="SF1428819366352",
                  shipped_at=datetime(2026, 11, 23, 17, 30, tzinfo=UTC), package_id="pkg_01")
TRACKINGS = "https://shop.example.cn/wp-json/wc-shipment-tracking/v3/orders/727/shipment-trackings"


def test_writeback_call_is_exact() -> None:
    call = wc.writeback_call(SHIPPED, CREDENTIALS, NOW)
    assert call.method == "POST"
    assert call.url == TRACKINGS
    assert call.params == {}
    assert call.headers == {"Authorization": BASIC, "Content-Type": "application/json"}
    assert call.json_body == {
        "custom_tracking_provider": "顺丰速运 SF Express",
        "custom_tracking_link": "https://www.kuaidi100.com/chaxun?com=shunfeng&nu=SF1428819366352",
        "tracking_number": "SF1428819366352",
        "date_shipped": "2026-11-24",  # 01:30 on the 24th in China
    }
    assert call.form is None and call.raw_body is None


def test_every_carrier_of_ours_has_a_provider() -> None:
    assert {"STO", "SF", "YTO", "ZTO", "YUNDA", "JD", "EMS"} <= set(wc.CARRIERS)
    for code in wc.CARRIERS:
        shipped = SHIPPED.model_copy(update={"carrier_code": code})
        assert wc.writeback_call(shipped, CREDENTIALS, NOW).json_body["custom_tracking_provider"]
    with pytest.raises(ValueError):
        wc.writeback_call(SHIPPED.model_copy(update={"carrier_code": "DHL"}), CREDENTIALS, NOW)


@pytest.mark.parametrize(("status", "body", "ok", "retryable", "code"), [
    (201, (FIXTURES / "woocommerce" / "tracking_created.json").read_bytes(), True, False,
     "c7a4e3b2f1d0e9c8b7a6f5e4d3c2b1a0"),
    (500, (FIXTURES / "woocommerce" / "error_internal.json").read_bytes(), False, True,
     "internal_server_error"),
    (502, b"<html>Bad Gateway</html>", False, True, "http_502"),
    (429, b"", False, True, "http_429"),
    (401, (FIXTURES / "woocommerce" / "error_unauthorized.json").read_bytes(), False, False,
     "woocommerce_rest_cannot_create"),
    (404, (FIXTURES / "woocommerce" / "error_invalid_order.json").read_bytes(), False, False,
     "woocommerce_rest_shop_order_invalid_id"),
    (404, b'{"code":"rest_no_route","message":"No route was found","data":{"status":404}}',
     False, False, "rest_no_route"),
])
def test_parse_writeback(status: int, body: bytes, ok: bool, retryable: bool, code: str) -> None:
    result = wc.parse_writeback(status, body)
    assert (result.ok, result.retryable, result.already_done, result.code) == (
        ok, retryable, False, code)


def test_before_a_retry_the_existing_items_tell_whether_it_already_shipped() -> None:
    call = wc.existing_call(SHIPPED, CREDENTIALS, NOW)
    assert (call.method, call.url, call.headers, call.json_body) == (
        "GET", TRACKINGS, {"Authorization": BASIC}, None)
    existing = (FIXTURES / "woocommerce" / "trackings_existing.json").read_bytes()
    assert wc.already_shipped(existing, SHIPPED)
    assert wc.already_shipped(json.loads(existing), SHIPPED.model_copy(
        update={"tracking_number": " sf1428819366352 "}))
    assert not wc.already_shipped(existing, SHIPPED.model_copy(
        update={"tracking_number": "SF0000000000000"}))
    assert not wc.already_shipped(b"[]", SHIPPED)


# Reconciliation -----------------------------------------------------------------------------------

SINCE = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_list_call_is_exact() -> None:
    call = wc.list_call(SHOP, SINCE, UNTIL, None, CREDENTIALS, NOW)
    assert (call.method, call.url, call.headers) == (
        "GET", "https://shop.example.cn/wp-json/wc/v3/orders", {"Authorization": BASIC})
    assert call.params == {
        "modified_after": "2026-11-23T00:00:00", "modified_before": "2026-11-23T12:00:00",
        "dates_are_gmt": "true", "orderby": "modified", "order": "asc", "per_page": "100",
        "page": "1"}
    later = wc.list_call(SHOP, SINCE, UNTIL, "2026-11-23T05:00:00", CREDENTIALS, NOW)
    assert later.params["modified_after"] == "2026-11-23T05:00:00"


def test_parse_list_of_a_short_page_ends() -> None:
    refs, cursor = wc.parse_list((FIXTURES / "woocommerce" / "orders_list.json").read_bytes())
    assert refs == [
        OrderRef(shop=SHOP, external_id="727", status="processing",
                 updated_at=datetime(2026, 11, 23, 2, 6, 40, tzinfo=UTC)),
        OrderRef(shop=SHOP, external_id="731", status="cancelled",
                 updated_at=datetime(2026, 11, 23, 3, 50, 41, tzinfo=UTC)),
    ]
    assert cursor is None


def _page(start: datetime, step: timedelta) -> list[dict[str, Any]]:
    base = fixture("orders_list.json")[0]
    return [base | {"id": 1000 + i, "date_modified_gmt": (start + step * i).strftime(
        "%Y-%m-%dT%H:%M:%S")} for i in range(wc.PER_PAGE)]


def test_a_full_page_continues_from_one_second_before_its_last_change() -> None:
    page = _page(datetime(2026, 11, 23, 1, 0, tzinfo=UTC), timedelta(seconds=30))
    refs, cursor = wc.parse_list(page)
    assert len(refs) == 100
    last = datetime(2026, 11, 23, 1, 0, tzinfo=UTC) + timedelta(seconds=30 * 99)
    assert cursor == (last - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    # The next request starts there and cannot loop on the same bound.
    nxt = wc.list_call(SHOP, SINCE, UNTIL, cursor, CREDENTIALS, NOW)
    assert nxt.params["modified_after"] == cursor


def test_a_full_page_within_one_second_moves_past_that_second() -> None:
    page = _page(datetime(2026, 11, 23, 1, 0, tzinfo=UTC), timedelta(0))
    _, cursor = wc.parse_list(page)
    assert cursor == "2026-11-23T01:00:00"


def test_parse_list_raises_on_an_error_answer() -> None:
    with pytest.raises(wc.WooCommerceError) as error:
        wc.parse_list(fixture("error_unauthorized.json"))
    assert error.value.code == "woocommerce_rest_cannot_create"
