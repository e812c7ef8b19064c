"""The search box's rule (chalicelib/orders/search.py): what a typed text can be looked up as,
and the index attributes an order's current view carries."""

from __future__ import annotations

import pytest

from chalicelib.core.errors import ApiError
from chalicelib.marketplaces import shopify
from chalicelib.orders.order import Address, Buyer, Order, order_id_for
from chalicelib.orders.search import (
    MAX_QUERY_CHARS,
    Lookup,
    index_fields,
    name_key,
    parse,
    phone_last4,
)
from tests.support import dumps, shopify_order


def lookups(text: str) -> list[tuple[str, str, str]]:
    return [(x.kind, x.value, x.name) for x in parse(text).lookups]


def refused(text: str) -> str:
    with pytest.raises(ApiError) as caught:
        parse(text)
    assert caught.value.status == 400 and caught.value.reason == "invalid_query"
    return caught.value.message


def test_our_order_id_is_that_alone_in_any_case() -> None:
    order_id = order_id_for("shopify", "demo", "4501")
    assert lookups(f"  {order_id} ") == [("order_id", order_id, "")]
    assert lookups(order_id.upper()) == [("order_id", order_id, "")]
    assert parse(order_id).kinds == ["order_id"]


def test_a_long_digit_string_is_an_order_number_and_a_tracking_number() -> None:
    assert lookups("773099887766") == [("external_id", "773099887766", ""),
                                       ("tracking_number", "773099887766", "")]


def test_a_tracking_number_is_upper_cased_the_order_number_kept_as_typed() -> None:
    assert lookups("sf1234567890") == [("external_id", "sf1234567890", ""),
                                       ("tracking_number", "SF1234567890", "")]


def test_a_short_or_dashed_order_number() -> None:
    assert lookups("A-1001") == [("external_id", "A-1001", "")]
    assert lookups("123-1234567-1234567") == [
        ("external_id", "123-1234567-1234567", ""),
        ("tracking_number", "12312345671234567", "")]


def test_four_digits_alone_are_a_phone_last_four_and_perhaps_an_order_number() -> None:
    assert lookups("1234") == [("external_id", "1234", ""), ("phone", "1234", "")]


@pytest.mark.parametrize("text", ["1234 张三", "张三 1234", "1234　张三", "１２３４ 张三"])
def test_last_four_with_a_name_before_or_after(text: str) -> None:
    assert lookups(text) == [("phone", "1234", "张三")]


def test_a_latin_name_is_folded_and_its_spaces_dropped() -> None:
    assert lookups("Zhang San 8000") == [("phone", "8000", "zhangsan")]
    assert lookups("ＺＨＡＮＧ san 8000") == [("phone", "8000", "zhangsan")]


def test_a_full_mobile_number_gives_its_last_four_and_is_tried_as_numbers_too() -> None:
    expected = [("external_id", "13800138000", ""), ("tracking_number", "13800138000", ""),
                ("phone", "8000", "")]
    assert lookups("13800138000") == expected
    assert lookups("１３８００１３８０００") == expected  # full-width, as some IMEs type
    assert lookups("138 0013 8000") == expected
    assert lookups("13800138000 张三") == [("phone", "8000", "张三")]
    assert lookups("+86 138 0013 8000 张三") == [("phone", "8000", "张三")]


def test_a_long_number_that_is_not_a_phone_is_not_tried_as_one() -> None:
    assert "phone" not in parse("4501234567890123").kinds
    assert "phone" not in parse("12345678901").kinds  # 11 digits, not from 1[3-9]


def test_kinds_say_what_was_tried_in_order() -> None:
    assert parse("13800138000").kinds == ["external_id", "tracking_number", "phone"]


@pytest.mark.parametrize("text", ["", "   ", "　"])
def test_nothing_is_refused(text: str) -> None:
    refused(text)


def test_too_long_is_refused_after_normalising() -> None:
    assert "at most" in refused("9" * (MAX_QUERY_CHARS + 1))
    refused("x" * 500)
    assert parse("   " + "9" * 20 + "   ").text == "9" * 20


@pytest.mark.parametrize("text", ["<img src=x onerror=alert(1)>", "<script>", "1234 <b>",
                                  'x" or 1=1', "a&b 1234"])
def test_markup_and_symbols_are_refused(text: str) -> None:
    refused(text)


@pytest.mark.parametrize("text", ["张三", "zhangsan", "1234 5678 张三", "Zhang 12 San"])
def test_what_is_none_of_the_kinds_is_refused(text: str) -> None:
    refused(text)


def test_helpers() -> None:
    assert name_key("  Ｚhang　San ") == name_key("zhang san") == "zhangsan"
    assert name_key("O'Brien") == "obrien"
    assert phone_last4("+86 138****1234") == "1234"
    assert phone_last4("123") == ""
    assert Lookup("phone", "1234") == Lookup("phone", "1234", "")


def _order(address_phone: str = "", buyer_phone: str = "", name: str = "张三",
           buyer_name: str = "Buyer") -> Order:
    return _base().model_copy(update={
        "shipping_address": Address(name=name, phone=address_phone),
        "buyer": Buyer(name=buyer_name, phone=buyer_phone)})


def _base() -> Order:
    return shopify.normalise(dumps(shopify_order()),
                             {"x-shopify-shop-domain": "demo-brand.myshopify.com"}, "shopify")


def test_the_index_holds_the_address_phone_last_four_and_its_name_never_the_number() -> None:
    order = _order(address_phone="+86 138-0013-8000", buyer_phone="13911112222",
                   name="Zhang San")
    fields = index_fields(order)
    assert fields["buyer_phone4"] == "8000"
    assert fields["buyer_name_key"] == f"zhangsan#{order.order_id}"
    assert fields["buyer_name"] == "Zhang San"
    assert "13800138000" not in str(fields) and "0013" not in str(fields)
    assert fields["status"] == order.status.value
    assert fields["placed_at"].endswith("Z")


def test_without_an_address_phone_the_buyers_phone_and_name() -> None:
    fields = index_fields(_order(buyer_phone="139 1111 2222", buyer_name="Li Si"))
    assert fields["buyer_phone4"] == "2222"
    assert fields["buyer_name_key"].startswith("lisi#")


def test_no_phone_no_phone_index_attributes() -> None:
    fields = index_fields(_order())
    assert "buyer_phone4" not in fields and "buyer_name_key" not in fields
    assert fields["buyer_name"] == "Buyer"


def test_the_index_keys_stay_within_dynamodbs_limits_whatever_the_name() -> None:
    fields = index_fields(_order(address_phone="13800138000", name="林" * 5000))
    assert len(fields["buyer_name_key"].encode()) < 1024
    assert len(fields["buyer_name"]) <= 200
