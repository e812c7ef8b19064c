"""The marketplace's after-sale state, as each adapter maps its platform's codes from the
recorded fixtures (tests/fixtures/<platform>/), and the CS supervisor's lists it puts an order
on (chalicelib/orders/lists.py). Each case changes one recorded field and expects the mapping
the adapter's comment documents."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.core.clock import iso
from chalicelib.marketplaces import (
    amazon,
    douyin,
    lazada,
    shopee,
    shopify,
    taobao,
    tiktok_shop,
    woocommerce,
)
from chalicelib.marketplaces.calls import OrderRef
from chalicelib.orders.lists import WorkList, entered_at, list_of
from chalicelib.orders.order import AfterSale, Order, OrderStatus, most_pressing
from tests.support import FIXTURES, dumps


def load(platform: str, name: str) -> Any:
    return json.loads((FIXTURES / platform / name).read_text(encoding="utf-8"))


# Taobao: each sub-order's refund_status; a trade closed after payment was refunded --------------

TAOBAO_REF = OrderRef(shop="栖木家居旗舰店", external_id="3912345678901234567")


def taobao_order(refund_statuses: list[str], status: str | None = None) -> Order:
    answer = load("taobao", "trade_fullinfo.json")
    trade = answer["trade_fullinfo_get_response"]["trade"]
    orders = trade["orders"]["order"]
    for sub, code in zip(orders, refund_statuses, strict=False):
        sub["refund_status"], sub["status"] = code, trade["status"]
    if status:
        trade["status"] = status
    return taobao.parse_order(answer, TAOBAO_REF, "tmall")


def test_taobao_as_recorded_one_sub_order_refunded_the_trade_shipping() -> None:
    recorded = load("taobao", "trade_fullinfo.json")["trade_fullinfo_get_response"]["trade"]
    codes = [sub["refund_status"] for sub in recorded["orders"]["order"]]
    assert "SUCCESS" in codes and recorded["status"] == "WAIT_SELLER_SEND_GOODS"
    order = taobao.parse_order(load("taobao", "trade_fullinfo.json"), TAOBAO_REF, "tmall")
    assert order.after_sale is AfterSale.REFUNDED
    assert list_of(order) is None


@pytest.mark.parametrize(("code", "expected"), [
    ("NO_REFUND", AfterSale.NONE),
    ("WAIT_SELLER_AGREE", AfterSale.REFUND_REQUESTED),
    ("SELLER_REFUSE_BUYER", AfterSale.REFUND_REQUESTED),
    ("WAIT_BUYER_RETURN_GOODS", AfterSale.REFUNDING),
    ("WAIT_SELLER_CONFIRM_GOODS", AfterSale.REFUNDING),
    ("CLOSED", AfterSale.NONE),
    ("SUCCESS", AfterSale.REFUNDED),
])
def test_taobao_refund_status_of_a_sub_order(code: str, expected: AfterSale) -> None:
    count = len(load("taobao", "trade_fullinfo.json")["trade_fullinfo_get_response"]["trade"][
        "orders"]["order"])
    codes = [code] + ["NO_REFUND"] * (count - 1)
    assert taobao_order(codes).after_sale is expected


def test_taobao_an_open_refund_outranks_a_finished_one_and_a_closed_trade_is_refunded() -> None:
    assert taobao_order(["SUCCESS", "WAIT_SELLER_AGREE", "NO_REFUND"]).after_sale is (
        AfterSale.REFUND_REQUESTED)
    closed = taobao_order(["NO_REFUND", "NO_REFUND", "NO_REFUND"], status="TRADE_CLOSED")
    assert (closed.status, closed.after_sale) == (OrderStatus.REFUNDED, AfterSale.REFUNDED)


# Douyin: the sku orders' after_sale_info; a refund ending in main_status ----------------------

DOUYIN_REF = OrderRef(shop="4463798", external_id="6934518220197312847")


def douyin_order(after_sale_status: int = 0, refund_status: int = 0,
                 main_status: int | None = None) -> Order:
    answer = load("douyin", "order_detail.json")
    detail = answer["data"]["shop_order_detail"]
    detail["sku_order_list"][0]["after_sale_info"] = {
        "after_sale_status": after_sale_status, "after_sale_type": 1,
        "refund_status": refund_status}
    if main_status is not None:
        detail["main_status"] = main_status
    return douyin.parse_order(answer, DOUYIN_REF, "douyin")


@pytest.mark.parametrize(("after_sale_status", "refund_status", "expected"), [
    (0, 0, AfterSale.NONE),  # as recorded
    (6, 0, AfterSale.REFUND_REQUESTED),
    (27, 0, AfterSale.REFUND_REQUESTED),
    (7, 0, AfterSale.REFUNDING),
    (0, 1, AfterSale.REFUNDING),
    (12, 3, AfterSale.REFUNDED),
    (28, 4, AfterSale.NONE),  # the after-sale failed: nothing goes back
])
def test_douyin_after_sale_info(after_sale_status: int, refund_status: int,
                                expected: AfterSale) -> None:
    assert douyin_order(after_sale_status, refund_status).after_sale is expected


def test_douyin_a_refund_ending_in_main_status_is_refunded() -> None:
    order = douyin_order(main_status=22)
    assert (order.status, order.after_sale) == (OrderStatus.REFUNDED, AfterSale.REFUNDED)


# Shopify: financial_status -----------------------------------------------------------------


@pytest.mark.parametrize(("financial_status", "expected", "work_list"), [
    ("paid", AfterSale.NONE, None),  # as recorded
    ("partially_refunded", AfterSale.REFUNDING, WorkList.REFUND),
    ("refunded", AfterSale.REFUNDED, None),
    ("pending", AfterSale.NONE, WorkList.UNPAID),
])
def test_shopify_financial_status(financial_status: str, expected: AfterSale,
                                  work_list: WorkList | None) -> None:
    payload = {**load("shopify", "orders_paid.json"), "financial_status": financial_status}
    order = shopify.normalise(dumps(payload), {"x-shopify-shop-domain": "s"}, "shopify")
    assert (order.after_sale, list_of(order)) == (expected, work_list)


# WooCommerce: refunded, or refunds on an order that stands -----------------------------------


@pytest.mark.parametrize(("status", "refunds", "expected"), [
    ("processing", [], AfterSale.NONE),  # as recorded
    ("processing", [{"id": 731, "reason": "one mug broken", "total": "-39.00"}],
     AfterSale.REFUNDING),
    ("refunded", [{"id": 732, "reason": "", "total": "-658.00"}], AfterSale.REFUNDED),
    ("cancelled", [{"id": 733, "reason": "", "total": "-10.00"}], AfterSale.NONE),
])
def test_woocommerce_refunds(status: str, refunds: list[dict[str, Any]],
                             expected: AfterSale) -> None:
    payload = {**load("woocommerce", "order_processing.json"), "status": status,
               "refunds": refunds}
    order = woocommerce.normalise(dumps(payload), {"x-wc-webhook-source": "https://s.example/"},
                                  "woocommerce")
    assert order.after_sale is expected


# Shopee: IN_CANCEL and TO_RETURN -----------------------------------------------------------

SHOPEE_REF = OrderRef(shop="1024685172", external_id="261123AB3K7Q2M")


@pytest.mark.parametrize(("status", "expected"), [
    ("READY_TO_SHIP", AfterSale.NONE),  # as recorded
    ("IN_CANCEL", AfterSale.REFUND_REQUESTED),
    ("TO_RETURN", AfterSale.REFUNDING),
    ("COMPLETED", AfterSale.NONE),
])
def test_shopee_order_status(status: str, expected: AfterSale) -> None:
    answer = load("shopee", "order_detail.json")
    answer["response"]["order_list"][0]["order_status"] = status
    order = shopee.parse_order(answer, SHOPEE_REF, "shopee")
    assert order.after_sale is expected
    assert list_of(order) is (WorkList.REFUND if expected is not AfterSale.NONE else None)


# Lazada: items returned, or in a reverse order ---------------------------------------------

LAZADA_REF = OrderRef(shop="200166741623", external_id="416557324702006")


def lazada_order(changes: list[dict[str, Any]]) -> Order:
    items = load("lazada", "order_items.json")
    for item, change in zip(items["data"], changes, strict=False):
        item.update(change)
    return lazada.parse_order([load("lazada", "order_get.json"), items], LAZADA_REF, "lazada")


def test_lazada_items() -> None:
    assert lazada_order([]).after_sale is AfterSale.NONE  # as recorded
    assert lazada_order([{"return_status": "requested"}]).after_sale is (
        AfterSale.REFUND_REQUESTED)
    returned = lazada_order([{"status": "returned"}])
    assert (returned.status, returned.after_sale) == (OrderStatus.PAID, AfterSale.REFUNDED)
    # A cancelled item with a reverse order left over is not a refund to chase.
    assert lazada_order([{"status": "canceled", "return_status": "x"}]).after_sale is (
        AfterSale.NONE)


# TikTok Shop and Amazon: their order carries no after-sale state -----------------------------


def test_tiktok_shop_and_amazon_give_none_and_their_unpaid_orders_are_listed() -> None:
    tts_ref = OrderRef(shop="7494105515082810525", external_id="576886453712341234")
    answer = load("tiktok_shop", "order_detail.json")
    recorded = tiktok_shop.parse_order(answer, tts_ref, "tiktok_shop")
    assert (recorded.after_sale, list_of(recorded)) == (AfterSale.NONE, None)
    unpaid = copy.deepcopy(answer)
    unpaid["data"]["orders"][0].update(status="UNPAID", paid_time=None)
    assert list_of(tiktok_shop.parse_order(unpaid, tts_ref, "tiktok_shop")) is WorkList.UNPAID
    # ON_HOLD: pending to the warehouse, but paid: nobody chases the buyer for money.
    held = copy.deepcopy(answer)
    held["data"]["orders"][0]["status"] = "ON_HOLD"
    on_hold = tiktok_shop.parse_order(held, tts_ref, "tiktok_shop")
    assert (on_hold.status, list_of(on_hold)) == (OrderStatus.PENDING_PAYMENT, None)

    amazon_ref = OrderRef(shop="A2Q3Y263D00KWC/ATVPDKIKX0DER", external_id="113-4857392-2093816")
    order_answer, items = load("amazon", "get_order.json"), load("amazon", "get_order_items.json")
    assert amazon.parse_order([order_answer, items], amazon_ref, "amazon-us").after_sale is (
        AfterSale.NONE)
    order_answer["payload"]["OrderStatus"] = "Pending"
    pending = amazon.parse_order([order_answer, items], amazon_ref, "amazon-us")
    assert list_of(pending) is WorkList.UNPAID


# The lists -----------------------------------------------------------------------------------


def test_most_pressing_state_wins() -> None:
    assert most_pressing([AfterSale.REFUNDED, AfterSale.DISPUTE_OPEN, None]) is (
        AfterSale.DISPUTE_OPEN)
    assert most_pressing([None, AfterSale.NONE]) is AfterSale.NONE


def test_an_order_enters_its_list_once_and_keeps_the_moment_while_it_stays() -> None:
    payload = load("shopify", "orders_paid.json")
    base = shopify.normalise(dumps(payload), {"x-shopify-shop-domain": "s"}, "shopify")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    asked = base.model_copy(update={"after_sale": AfterSale.REFUND_REQUESTED,
                                    "updated_at": base.updated_at + timedelta(hours=1)})
    since = entered_at(asked, base, None, now)
    assert since == iso(asked.updated_at)
    refunding = asked.model_copy(update={"after_sale": AfterSale.REFUNDING,
                                         "updated_at": asked.updated_at + timedelta(hours=5)})
    assert entered_at(refunding, asked, since, now) == since  # still the refund list
    disputed = refunding.model_copy(update={"after_sale": AfterSale.DISPUTE_OPEN})
    assert list_of(disputed) is WorkList.DISPUTE
    assert entered_at(disputed, refunding, since, now) == iso(disputed.updated_at)
    done = refunding.model_copy(update={"after_sale": AfterSale.REFUNDED})
    assert entered_at(done, refunding, since, now) is None
    # A marketplace clock ahead of ours never puts the moment in our future.
    ahead = asked.model_copy(update={"updated_at": now + timedelta(hours=2)})
    assert entered_at(ahead, None, None, now) == iso(now)
