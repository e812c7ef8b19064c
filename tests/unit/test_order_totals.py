"""Orders keep what the marketplace sent (issue 16 §4): every adapter's recorded sample adds
up (subtotal + shipping + fees + tax when not in the prices − discounts = total), a sample that
does not is on the order's timeline, and gift messages, invoice titles and the other attributes
reach the order and the job's promises."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.marketplaces import (
    amazon,
    douyin,
    lazada,
    shopee,
    shopify,
    shopify_admin,
    standard_webhooks,
    taobao,
    tiktok_shop,
    woocommerce,
)
from chalicelib.marketplaces.calls import OrderRef
from chalicelib.orders.deliveries import Delivery
from chalicelib.orders.order import Order, Totals, decide, note_fields
from chalicelib.warehouse import jobs
from tests.support import dumps, shopify_order

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOW = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)


def load(platform: str, name: str) -> Any:
    return json.loads((FIXTURES / platform / name).read_text())


def raw(platform: str, name: str) -> bytes:
    return (FIXTURES / platform / name).read_bytes()


def ref(external_id: str, shop: str = "shop") -> OrderRef:
    return OrderRef(shop=shop, external_id=external_id)


SHOPIFY_HEADERS = {"x-shopify-shop-domain": "demo-brand.myshopify.com"}
WOO_HEADERS = {"x-wc-webhook-source": "https://shop.example.cn/"}
TAOBAO_TID = "3912345678901234567"
DOUYIN_ID = "6934518220197312847"
SHOPEE_SN = "261123AB3K7Q2M"
TIKTOK_ID = "576886453712341234"
LAZADA_ID = "416557324702006"
AMAZON_ID = "113-4857392-2093816"


# Every recorded sample, read by its adapter: (name, reader, expected parts).
SAMPLES: list[tuple[str, Callable[[], Order], tuple[str, str, str, str, str]]] = [
    ("shopify orders/paid", lambda: shopify.normalise(
        raw("shopify", "orders_paid.json"), SHOPIFY_HEADERS, "shopify"),
     ("418.00", "12.00", "0.00", "20.00", "410.00")),
    ("shopify orders/create (gift)", lambda: shopify.normalise(
        raw("shopify", "orders_create_gift.json"), SHOPIFY_HEADERS, "shopify"),
     ("598.00", "20.00", "0.00", "0.00", "618.00")),
    ("shopify REST order", lambda: shopify_admin.parse_order(
        load("shopify", "rest_order.json"), ref("5678901234567"), "shopify"),
     ("418.00", "12.00", "0.00", "20.00", "410.00")),
    ("woocommerce order", lambda: woocommerce.parse_order(
        load("woocommerce", "order_processing.json"), ref("727"), "woocommerce"),
     ("398.00", "12.00", "0.00", "20.00", "390.00")),
    ("taobao trade", lambda: taobao.parse_order(
        load("taobao", "trade_fullinfo.json"), ref(TAOBAO_TID), "tmall"),
     ("656.00", "0.00", "0", "20.00", "636.00")),
    ("douyin order", lambda: douyin.parse_order(
        load("douyin", "order_detail.json"), ref(DOUYIN_ID), "douyin"),
     ("597.00", "0.00", "0.00", "40.00", "557.00")),
    ("douyin shipped order", lambda: douyin.parse_order(
        load("douyin", "order_detail_shipped.json"), ref(DOUYIN_ID), "douyin"),
     ("597.00", "0.00", "0.00", "40.00", "557.00")),
    ("shopee order", lambda: shopee.parse_order(
        load("shopee", "order_detail.json"), ref(SHOPEE_SN), "shopee"),
     ("72.7", "3.7", "0", "8.0", "68.4")),
    ("tiktok shop order", lambda: tiktok_shop.parse_order(
        load("tiktok_shop", "order_detail.json"), ref(TIKTOK_ID), "tiktok_shop"),
     ("56.97", "2.99", "0", "4.00", "55.96")),
    ("tiktok shop shipped order", lambda: tiktok_shop.parse_order(
        load("tiktok_shop", "order_detail_shipped.json"), ref(TIKTOK_ID), "tiktok_shop"),
     ("56.97", "2.99", "0", "4.00", "55.96")),
    ("lazada order", lambda: lazada.parse_order(
        [load("lazada", "order_get.json"), load("lazada", "order_items.json")],
        ref(LAZADA_ID), "lazada"),
     ("109.70", "4.90", "0.0", "5.00", "109.59")),
    ("amazon order", lambda: amazon.parse_order(
        [load("amazon", "get_order.json"), load("amazon", "get_order_items.json")],
        ref(AMAZON_ID), "amazon-us"),
     ("62.97", "2.00", "6.45", "5.00", "66.42")),
]


@pytest.mark.parametrize(("name", "read", "parts"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_adapters_sample_adds_up_from_the_platforms_own_fields(
        name: str, read: Callable[[], Order], parts: tuple[str, str, str, str, str]) -> None:
    totals = read().totals
    # Each part as the platform sent it (not derived from the others), then the sum.
    assert (totals.subtotal, totals.shipping, totals.tax, totals.discounts, totals.total) == \
        tuple(Decimal(p) for p in parts)
    assert totals.adds_up(), totals.summary()


def test_the_standard_webhook_order_adds_up_as_its_sender_wrote_it() -> None:
    body = {"type": "order.paid", "timestamp": "2026-12-03T12:00:00Z", "data": {
        "shop": "s", "external_id": "1", "status": "paid", "currency": "CNY",
        "lines": [{"line_id": "1", "sku": "A", "quantity": 2, "unit_price": "299.00"}],
        "totals": {"subtotal": "598.00", "shipping": "20.00", "total": "618.00"},
        "placed_at": "2026-12-03T12:00:00Z", "updated_at": "2026-12-03T12:00:00Z",
        "gift_message": "生日快乐"}}
    order = standard_webhooks.normalise(json.dumps(body).encode(), {}, "erp")
    assert order.totals.adds_up() and order.gift_message == "生日快乐"
    body["data"]["totals"]["shipping"] = "0"
    assert not standard_webhooks.normalise(json.dumps(body).encode(), {}, "erp").totals.adds_up()


# The issue's case --------------------------------------------------------------------------------


def test_the_issues_shopify_order_keeps_its_shipping_and_gift_message_to_the_job() -> None:
    order = shopify.normalise(raw("shopify", "orders_create_gift.json"), SHOPIFY_HEADERS,
                              "shopify")
    # Only shipping_lines say what shipping cost (no total_shipping_price_set): 598 + 20 = 618.
    assert order.totals.shipping == Decimal("20.00")
    assert order.totals.summary() == "598.00 + 20.00 shipping − 0.00 = 618.00 = 618.00"
    assert order.gift_message == "生日快乐！愿你每天都开心 —— 小林"
    assert order.invoice_title == "上海栖木贸易有限公司"
    assert order.attributes == {"Delivery date": "2026-12-06"}  # "_checkout_app" is private
    job = jobs.new_job(order, "factory-1", NOW)
    assert [(p.kind, p.text) for p in job.promises] == [
        ("gift_message", "生日快乐！愿你每天都开心 —— 小林"),
        ("invoice_title", "上海栖木贸易有限公司"),
        ("note", "Delivery date: 2026-12-06"),
    ]


def test_shopify_shipping_prefers_the_shop_money_total_and_sums_the_lines_otherwise() -> None:
    both = shopify_order(total_shipping_price_set={"shop_money": {"amount": 12, "currency_code":
                                                                  "CNY"}},
                         shipping_lines=[{"price": "99.00"}])
    read = shopify.normalise(dumps(both), SHOPIFY_HEADERS, "shopify")
    assert read.totals.shipping == Decimal("12")  # a number, as some apps send it, is read
    lines = shopify_order(total_shipping_price_set=None,
                          shipping_lines=[{"price": "8.00"}, {"price": "4.00"}])
    assert shopify.normalise(dumps(lines), SHOPIFY_HEADERS, "shopify").totals.shipping == \
        Decimal("12.00")


def test_shopify_taxes_inside_the_prices_are_not_added_again() -> None:
    included = shopify_order(total_tax="47.17", taxes_included=True)
    assert shopify.normalise(dumps(included), SHOPIFY_HEADERS, "shopify").totals.adds_up()
    added = shopify_order(total_tax="47.17", taxes_included=False, total_price="457.17")
    totals = shopify.normalise(dumps(added), SHOPIFY_HEADERS, "shopify").totals
    assert totals.adds_up() and not totals.tax_included


def test_woocommerce_fee_lines_and_tax_are_part_of_the_sum() -> None:
    body = load("woocommerce", "order_processing.json")
    body.update(total="413.80", total_tax="13.80",
                fee_lines=[{"id": 9, "name": "礼品包装", "total": "10.00", "total_tax": "0.00"}])
    totals = woocommerce.parse_order(body, ref("727"), "woocommerce").totals
    assert (totals.fees, totals.tax) == (Decimal("10.00"), Decimal("13.80"))
    assert totals.adds_up()


def test_taobao_seller_price_change_and_douyin_packing_are_fees() -> None:
    body = load("taobao", "trade_fullinfo.json")
    trade = body["trade_fullinfo_get_response"]["trade"]
    trade.update(adjust_fee="-6.00", payment="630.00")
    assert taobao.parse_order(body, ref(TAOBAO_TID), "tmall").totals.adds_up()
    detail = load("douyin", "order_detail.json")
    shop_order = detail["data"]["shop_order_detail"]
    shop_order.update(packing_amount=500, pay_amount=56200)
    assert douyin.parse_order(detail, ref(DOUYIN_ID), "douyin").totals.adds_up()


# Totals ------------------------------------------------------------------------------------------


def test_totals_add_up_within_a_cent_and_tax_counts_only_when_not_in_the_prices() -> None:
    parts = {"subtotal": Decimal("100"), "shipping": Decimal("10"), "tax": Decimal("8"),
             "discounts": Decimal("5")}
    assert Totals(**parts, total=Decimal("113")).adds_up()
    assert Totals(**parts, total=Decimal("113.01")).adds_up()  # per-line rounding
    assert not Totals(**parts, total=Decimal("113.02")).adds_up()
    assert not Totals(**parts, total=Decimal("105")).adds_up()
    assert Totals(**parts, total=Decimal("105"), tax_included=True).adds_up()
    assert Totals(**parts, fees=Decimal("3"), total=Decimal("116")).adds_up()


def test_a_sample_that_does_not_add_up_is_an_event_on_the_order() -> None:
    order = shopify.normalise(raw("shopify", "orders_create_gift.json"), SHOPIFY_HEADERS,
                              "shopify")
    delivery = Delivery(source="shopify", delivery_id="d1", topic="orders/create",
                        received_at=NOW)
    created = decide(None, order, delivery, has_job=False, now=NOW)
    assert "order.totals_mismatch" not in [e.type for e in created.events]
    short = order.model_copy(update={"totals": order.totals.model_copy(
        update={"shipping": Decimal("0")})})
    first = decide(None, short, delivery, has_job=False, now=NOW)
    mismatch = [e for e in first.events if e.type == "order.totals_mismatch"]
    assert len(mismatch) == 1
    assert mismatch[0].data == {"expected": "598.00", "total": "618.00", "difference": "20.00"}
    assert "598.00 + 0 shipping − 0.00 = 598.00 ≠ 618.00" in mismatch[0].summary
    assert first.create_job  # the buyer paid the total: the order still ships
    # A later version with the same totals says nothing again; a corrected one says nothing.
    later = short.model_copy(update={"updated_at": datetime(2026, 12, 3, 13, 5, tzinfo=UTC),
                                     "buyer_note": "x"})
    again = decide(short, later, delivery, has_job=True, now=NOW)
    assert "order.totals_mismatch" not in [e.type for e in again.events]


# Notes and attributes -----------------------------------------------------------------------------


def test_note_fields_pick_gift_and_invoice_by_their_usual_names_and_keep_the_rest() -> None:
    fields = note_fields([("Gift Message", " 新婚快乐 "), ("发票抬头", "栖木"), ("_app", "x"),
                          ("requested_courier", "SF"), ("color", ""), ("Wrap", "red")],
                         consumed=("requested_courier",))
    assert fields == {"gift_message": "新婚快乐", "invoice_title": "栖木",
                      "attributes": {"Wrap": "red"}}


def test_orders_stored_before_the_new_fields_still_read() -> None:
    order = shopify.normalise(raw("shopify", "orders_paid.json"), SHOPIFY_HEADERS, "shopify")
    stored = order.model_dump(mode="json")
    for field in ("gift_message", "invoice_title", "attributes"):
        stored.pop(field)
    for field in ("fees", "tax_included"):
        stored["totals"].pop(field)
    old = Order.model_validate(stored)
    assert (old.gift_message, old.attributes, old.totals.fees) == ("", {}, Decimal("0"))


def test_each_platforms_gift_and_memo_fields_reach_the_order() -> None:
    trade = taobao.parse_order(load("taobao", "trade_fullinfo.json"), ref(TAOBAO_TID), "tmall")
    assert (trade.invoice_title, trade.attributes) == (
        "杭州栖木文化创意有限公司", {"seller_memo": "赠品：亚麻收纳袋 ×1"})
    order_get = load("lazada", "order_get.json")
    order_get["data"].update(gift_option=True, gift_message="Selamat hari jadi!")
    read = lazada.parse_order([order_get, load("lazada", "order_items.json")], ref(LAZADA_ID),
                              "lazada")
    assert read.gift_message == "Selamat hari jadi!"
    items = load("amazon", "get_order_items.json")
    items["payload"]["OrderItems"][0]["BuyerInfo"] = {"GiftMessageText": "Happy birthday!",
                                                     "GiftWrapLevel": "Classic"}
    assert amazon.parse_order([load("amazon", "get_order.json"), items], ref(AMAZON_ID),
                              "amazon-us").gift_message == "Happy birthday!"
    woo = load("woocommerce", "order_processing.json")
    woo["meta_data"].append({"id": 5540, "key": "gift_message", "value": "圣诞快乐"})
    assert woocommerce.parse_order(woo, ref("727"), "woocommerce").gift_message == "圣诞快乐"
    assert woocommerce.parse_order(load("woocommerce", "order_processing.json"), ref("727"),
                                   "woocommerce").attributes == {}  # bookkeeping is not kept


def test_a_long_attribute_list_is_one_note_cut_to_the_promise_limit() -> None:
    order = shopify.normalise(raw("shopify", "orders_paid.json"), SHOPIFY_HEADERS, "shopify")
    long = order.model_copy(update={"attributes": {f"k{i}": "v" * 40 for i in range(20)},
                                    "gift_message": ""})
    (note,) = jobs.promises_of(long)
    assert note.kind == "note" and len(note.text) == 500 and note.text.endswith("…")


def test_amazon_gift_wrap_is_a_fee_and_eu_prices_include_their_vat() -> None:
    order, items = load("amazon", "get_order.json"), load("amazon", "get_order_items.json")
    items["payload"]["OrderItems"][0]["BuyerInfo"] = {
        "GiftWrapPrice": {"CurrencyCode": "USD", "Amount": "3.99"},
        "GiftWrapTax": {"CurrencyCode": "USD", "Amount": "0.40"},
        "GiftMessageText": None, "GiftWrapLevel": "Classic"}
    order["payload"]["OrderTotal"]["Amount"] = "70.81"  # 66.42 + 3.99 + 0.40
    totals = amazon.parse_order([order, items], ref(AMAZON_ID), "amazon-us").totals
    assert (totals.fees, totals.tax, totals.tax_included) == (
        Decimal("3.99"), Decimal("6.85"), False)
    assert totals.adds_up()
    # amazon.de: the prices include the VAT, which ItemTax and GiftWrapTax only state.
    order["payload"].update(MarketplaceId="A1PA6795UKMFR9")
    order["payload"]["OrderTotal"]["Amount"] = "63.96"  # 62.97 + 2.00 + 3.99 − 5.00
    totals = amazon.parse_order([order, items], ref(AMAZON_ID), "amazon-de").totals
    assert totals.tax_included and totals.adds_up()
    order["payload"].update(MarketplaceId="ATVPDKIKX0DER")  # the same figures in the US
    assert not amazon.parse_order([order, items], ref(AMAZON_ID), "amazon-us").totals.adds_up()


def test_tiktok_us_tax_and_state_fees_are_added_to_the_sum() -> None:
    detail = load("tiktok_shop", "order_detail.json")
    payment = detail["data"]["orders"][0]["payment"]
    payment.update(currency="USD", tax="4.56", product_tax="4.32", shipping_fee_tax="0.24",
                   retail_delivery_fee="0.27", total_amount="60.79")
    totals = tiktok_shop.parse_order(detail, ref(TIKTOK_ID), "tiktok_shop").totals
    assert (totals.tax, totals.fees) == (Decimal("4.56"), Decimal("0.27"))
    assert totals.adds_up(), totals.summary()
