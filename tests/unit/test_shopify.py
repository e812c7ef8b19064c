from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from chalicelib.core.errors import ApiError
from chalicelib.marketplaces import shopify
from chalicelib.orders.order import InvalidOrder, OrderStatus
from tests.support import SHOPIFY_SECRET, dumps, shopify_headers, shopify_order

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def accept(body: bytes, headers: dict[str, str], secrets: tuple[str, ...] = (SHOPIFY_SECRET,)):
    return shopify.accept(lower(headers), body, secrets, NOW)


def test_correctly_signed_order_is_accepted_with_its_delivery_id() -> None:
    body = dumps(shopify_order())
    headers = shopify_headers(body, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    accepted = accept(body, headers)
    assert accepted.delivery_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert accepted.topic == "orders/paid"
    assert accepted.shop == "demo-brand.myshopify.com"
    assert accepted.actionable


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b'"410.00"', b'"010.00"', 1),  # one byte of the body
    lambda b: b + b" ",  # trailing whitespace: re-serialised JSON would hide this
])
def test_a_changed_body_is_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    body = dumps(shopify_order())
    headers = shopify_headers(body)
    with pytest.raises(ApiError) as error:
        accept(mutate(body), headers)
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


def test_wrong_secret_and_missing_signature_are_401() -> None:
    body = dumps(shopify_order())
    with pytest.raises(ApiError) as wrong:
        accept(body, shopify_headers(body, secret="shpss_someone_else"))
    assert wrong.value.reason == "invalid_signature"
    headers = shopify_headers(body)
    del headers["X-Shopify-Hmac-Sha256"]
    with pytest.raises(ApiError) as missing:
        accept(body, headers)
    assert (missing.value.status, missing.value.reason) == (401, "missing_signature")


def test_rotated_secret_still_verifies_with_the_old_one_listed() -> None:
    body = dumps(shopify_order())
    headers = shopify_headers(body, secret="shpss_old")
    assert accept(body, headers, secrets=("shpss_new", "shpss_old")).actionable


def test_garbage_signature_is_401_not_a_crash() -> None:
    body = dumps(shopify_order())
    headers = shopify_headers(body)
    headers["X-Shopify-Hmac-Sha256"] = "not base64!!"
    with pytest.raises(ApiError) as error:
        accept(body, headers)
    assert error.value.reason == "invalid_signature"


def test_malformed_json_is_400_and_invalid_order_is_422_with_fields() -> None:
    body = b'{"id": 1, "line_items": ['
    with pytest.raises(ApiError) as malformed:
        accept(body, shopify_headers(body))
    assert (malformed.value.status, malformed.value.reason) == (400, "malformed_json")
    body = dumps(shopify_order(line_items=[], currency=None))
    with pytest.raises(ApiError) as invalid:
        accept(body, shopify_headers(body))
    assert (invalid.value.status, invalid.value.reason) == (422, "invalid_payload")
    fields = {p["field"] for p in invalid.value.details["problems"]}
    assert {"line_items", "currency"} <= fields


def test_missing_delivery_id_is_400() -> None:
    body = dumps(shopify_order())
    headers = shopify_headers(body)
    del headers["X-Shopify-Webhook-Id"]
    with pytest.raises(ApiError) as error:
        accept(body, headers)
    assert (error.value.status, error.value.reason) == (400, "missing_delivery_id")


def test_other_topics_are_accepted_but_not_actionable() -> None:
    body = dumps({"id": 5678901234567})
    accepted = accept(body, shopify_headers(body, topic="orders/delete"))
    assert not accepted.actionable


def test_normalise_maps_the_realistic_payload() -> None:
    body = dumps(shopify_order())
    order = shopify.normalise(body, lower(shopify_headers(body)), "shopify")
    assert order.marketplace == "shopify"
    assert order.shop == "demo-brand.myshopify.com"
    assert order.external_id == "5678901234567"
    assert order.name == "#1042"
    assert order.status is OrderStatus.PAID
    assert order.currency == "CNY"
    assert order.totals.total == Decimal("410.00")
    assert order.totals.shipping == Decimal("12.00")
    assert [(line.sku, line.quantity) for line in order.lines] == [("LS-WHT-M", 2), ("TOTE-NAT", 1)]
    assert order.shipping_address is not None
    assert order.shipping_address.city == "上海"
    assert order.shipping_address.postal_code == "200040"
    assert order.buyer.name == "林伟"  # family name first, as written
    assert order.buyer_note == "请用纸箱包装，谢谢"
    assert order.updated_at == datetime(2026, 11, 23, 2, 15, 43, tzinfo=UTC)
    assert order.paid_at is not None
    assert order.order_id.startswith("ord_")


@pytest.mark.parametrize(("financial", "cancelled_at", "expected"), [
    ("pending", None, OrderStatus.PENDING_PAYMENT),
    ("authorized", None, OrderStatus.PENDING_PAYMENT),
    ("partially_paid", None, OrderStatus.PENDING_PAYMENT),
    ("paid", None, OrderStatus.PAID),
    ("partially_refunded", None, OrderStatus.PAID),
    ("refunded", None, OrderStatus.REFUNDED),
    ("voided", None, OrderStatus.CANCELLED),
    ("paid", "2026-11-23T12:00:00+08:00", OrderStatus.CANCELLED),
    (None, None, OrderStatus.PENDING_PAYMENT),
])
def test_status_mapping_covers_every_financial_status(financial: str | None,
                                                      cancelled_at: str | None,
                                                      expected: OrderStatus) -> None:
    body = dumps(shopify_order(financial_status=financial, cancelled_at=cancelled_at))
    order = shopify.normalise(body, {"x-shopify-shop-domain": "s"}, "shopify")
    assert order.status is expected


def test_lines_not_requiring_shipping_are_not_sent_to_the_warehouse() -> None:
    payload = shopify_order()
    payload["line_items"][1]["requires_shipping"] = False
    order = shopify.normalise(dumps(payload), {}, "shopify")
    assert [line.sku for line in order.lines] == ["LS-WHT-M"]


def test_normalise_refuses_an_unreadable_payload() -> None:
    with pytest.raises(InvalidOrder):
        shopify.normalise(b'{"id": "x"}', {}, "shopify")


def test_a_signed_body_that_is_not_utf8_is_400() -> None:
    body = '{"id": 1}'.encode("utf-16")
    with pytest.raises(ApiError) as error:
        accept(body, shopify_headers(body))
    assert (error.value.status, error.value.reason) == (400, "malformed_json")


@pytest.mark.parametrize(("first", "last", "full"), [
    ("伟", "林", "林伟"), ("Wei", "Lin", "Wei Lin"), ("", "林", "林"), ("Ann", "", "Ann")])
def test_the_buyer_is_named_as_names_are_written(first: str, last: str, full: str) -> None:
    payload = shopify_order()
    payload["customer"].update(first_name=first, last_name=last)
    assert shopify.normalise(dumps(payload), {}, "shopify").buyer.name == full
