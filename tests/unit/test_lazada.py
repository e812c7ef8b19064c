from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.marketplaces import lazada
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
NOW_MS = "1795402800000"
MY = timezone(timedelta(hours=8))
APP_KEY = "111424"
APP_SECRET = "nDF06KuA5wpGuhTqHKePvOUjcVzEHuGa"
SECRET = f"{APP_KEY}:{APP_SECRET}"
TOKEN = "50000200819dSmgr8JAQvRpcb0HtgpR1f83448bgRvH6DEr7MxxjlDwL0vyiSz9D"
CREDENTIALS = {"app_key": APP_KEY, "app_secret": APP_SECRET, "access_token": TOKEN,
               "site": "com.my"}
SELLER = "200166741623"
ORDER_ID = "416557324702006"
REF = OrderRef(shop=SELLER, external_id=ORDER_ID)
BASE = "https://api.lazada.com.my/rest"
ITEM_IDS = ("416557324802006", "416557324902006", "416557325002006")


def raw(name: str) -> bytes:
    return (FIXTURES / "lazada" / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))


def push_sig(body: bytes, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> str:
    """The documented recipe, written out here independently of the module."""
    return hmac.new(app_secret.encode(), (app_key + body.decode()).encode(),
                    hashlib.sha256).hexdigest()


def api_sign(path: str, params: dict[str, str]) -> str:
    text = path + "".join(k + params[k] for k in sorted(params) if k != "sign")
    return hmac.new(APP_SECRET.encode(), text.encode(), hashlib.sha256).hexdigest().upper()


def system() -> dict[str, str]:
    return {"app_key": APP_KEY, "timestamp": NOW_MS, "sign_method": "sha256",
            "access_token": TOKEN}


def accept(body: bytes, signature: str | None = None, secrets: tuple[str, ...] = (SECRET,),
           now: datetime = NOW) -> Any:
    headers = {} if signature is None else {"authorization": signature}
    return lazada.accept(headers, body, secrets, now)


def push(**changes: Any) -> bytes:
    body = load("push_trade_order.json")
    body.update(changes)
    return json.dumps(body).encode()


# The push ---------------------------------------------------------------------------------------


def test_the_answer_is_a_bare_200() -> None:
    assert lazada.REPLY == (200, "text/plain", "")


@pytest.mark.parametrize(("name", "topic", "delivery_id", "actionable"), [
    ("push_trade_order.json", "trade_order", "416557324802006:pending:1795401000", True),
    ("push_reverse_order.json", "reverse_order",
     "reverse:663790000102006:CANCEL_SUCCESS:1795400400", True),
])
def test_a_correctly_signed_order_push_is_accepted(name: str, topic: str, delivery_id: str,
                                                   actionable: bool) -> None:
    body = raw(name)
    accepted = accept(body, push_sig(body))
    assert (accepted.delivery_id, accepted.topic, accepted.shop, accepted.actionable) == (
        delivery_id, topic, SELLER, actionable)
    assert accepted.headers == {"site": "lazada_my"}


def test_other_messages_are_accepted_but_not_actionable() -> None:
    body = raw("push_product_updated.json")
    accepted = accept(body, push_sig(body))
    assert (accepted.topic, accepted.actionable) == ("product_updated", False)
    assert accepted.delivery_id == f"4:sha256:{hashlib.sha256(body).hexdigest()}"


def test_retries_share_the_delivery_id_and_a_new_event_does_not() -> None:
    retry = push(timestamp=1795402801523)
    shipped = push(data={"order_status": "ready_to_ship", "trade_order_id": ORDER_ID,
                         "trade_order_line_id": "416557324802006",
                         "status_update_time": 1795402620})
    again_pending = push(data={"order_status": "pending", "trade_order_id": ORDER_ID,
                               "trade_order_line_id": "416557324802006",
                               "status_update_time": 1795402700})
    first = accept(raw("push_trade_order.json"), push_sig(raw("push_trade_order.json")))
    ids = [accept(b, push_sig(b)).delivery_id for b in (retry, shipped, again_pending)]
    assert ids[0] == first.delivery_id
    assert len({first.delivery_id, ids[1], ids[2]}) == 3


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b'"pending"', b'"canceled"', 1),
    lambda b: b.replace(b"200166741623", b"200166741624", 1),
    lambda b: b + b"\r\n",
])
def test_a_changed_body_is_rejected(mutate: Any) -> None:
    body = raw("push_trade_order.json")
    with pytest.raises(ApiError) as error:
        accept(mutate(body), push_sig(body))
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


@given(st.data())
def test_flipping_any_byte_breaks_the_signature(data: st.DataObject) -> None:
    body = raw("push_trade_order.json")
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    with pytest.raises(ApiError) as error:
        accept(changed, push_sig(body))
    assert error.value.reason == "invalid_signature"


@pytest.mark.parametrize(("app_key", "app_secret"), [
    (APP_KEY, APP_SECRET.lower()),  # wrong secret
    ("111425", APP_SECRET),  # another app
])
def test_a_signature_made_with_other_credentials_is_rejected(app_key: str,
                                                             app_secret: str) -> None:
    body = raw("push_trade_order.json")
    with pytest.raises(ApiError) as error:
        accept(body, push_sig(body, app_key, app_secret))
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


@pytest.mark.parametrize("signature", [None, "", "\t"])
def test_a_missing_signature_is_401(signature: str | None) -> None:
    with pytest.raises(ApiError) as error:
        accept(raw("push_trade_order.json"), signature)
    assert (error.value.status, error.value.reason) == (401, "missing_signature")


def test_rotation_case_garbage_and_configuration() -> None:
    body = raw("push_trade_order.json")
    assert accept(body, push_sig(body, APP_KEY, "old"), secrets=(SECRET, f"{APP_KEY}:old"))
    assert accept(body, push_sig(body).upper()).actionable
    with pytest.raises(ApiError):
        accept(body, "签名")
    with pytest.raises(ValueError, match="app_key:app_secret"):
        accept(body, push_sig(body), secrets=(APP_SECRET,))


@pytest.mark.parametrize(("stamp", "fresh"), [
    (1795401001523, True),  # milliseconds, as documented
    (1795401001, True),  # seconds, as also seen
    (int((NOW - timedelta(hours=23)).timestamp() * 1000), True),
    (int((NOW - timedelta(hours=25)).timestamp() * 1000), False),
    (int((NOW + timedelta(minutes=16)).timestamp()), False),
    (10**18, False),
])
def test_the_signed_timestamp_must_be_recent(stamp: int, fresh: bool) -> None:
    body = push(timestamp=stamp)
    if fresh:
        assert accept(body, push_sig(body)).actionable
        return
    with pytest.raises(ApiError) as error:
        accept(body, push_sig(body))
    assert (error.value.status, error.value.reason) == (401, "stale_or_invalid_timestamp")


def test_malformed_json_is_400() -> None:
    body = b'{"seller_id": "1", '
    with pytest.raises(ApiError) as error:
        accept(body, push_sig(body))
    assert (error.value.status, error.value.reason) == (400, "malformed_json")


@pytest.mark.parametrize(("body", "fields"), [
    ({"message_type": 0, "data": {}}, {"seller_id", "timestamp"}),
    ({"seller_id": SELLER, "message_type": 0, "timestamp": 1795401001,
      "data": {"order_status": "pending"}}, {"trade_order_id", "trade_order_line_id"}),
    ({"seller_id": SELLER, "message_type": 10, "timestamp": 1795401001,
      "data": {"trade_order_id": ORDER_ID}}, {"reverse_order_line_id", "reverse_status"}),
])
def test_an_invalid_push_is_422_with_the_fields(body: dict[str, Any], fields: set[str]) -> None:
    data = json.dumps(body).encode()
    with pytest.raises(ApiError) as error:
        accept(data, push_sig(data))
    assert (error.value.status, error.value.reason) == (422, "invalid_payload")
    assert fields <= {p["field"] for p in error.value.details["problems"]}


def test_ref_names_the_order_of_a_trade_or_reverse_message() -> None:
    assert lazada.ref(raw("push_trade_order.json"), {}) == OrderRef(
        shop=SELLER, external_id=ORDER_ID, status="pending",
        updated_at=datetime(2026, 11, 23, 2, 30, tzinfo=UTC))
    assert lazada.ref(raw("push_reverse_order.json"), {}) == OrderRef(
        shop=SELLER, external_id=ORDER_ID, updated_at=datetime(2026, 11, 23, 2, 20, tzinfo=UTC))
    with pytest.raises(InvalidOrder):
        lazada.ref(raw("push_product_updated.json"), {})


# Re-fetch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("function", "path"), [
    (lazada.fetch_call, "/order/get"),
    (lazada.items_call, "/order/items/get"),
])
def test_the_fetch_calls_are_signed_exactly(function: Any, path: str) -> None:
    params = {**system(), "order_id": ORDER_ID}
    params["sign"] = api_sign(path, params)
    assert function(REF, CREDENTIALS, NOW) == Request(method="GET", url=BASE + path,
                                                      params=params)
    assert params["sign"] == params["sign"].upper() and len(params["sign"]) == 64


def test_fetch_calls_are_the_order_then_its_items() -> None:
    assert lazada.fetch_calls(REF, CREDENTIALS, NOW) == [
        lazada.fetch_call(REF, CREDENTIALS, NOW), lazada.items_call(REF, CREDENTIALS, NOW)]


def test_the_documented_signature_example() -> None:
    # Lazada's guide: sort, concatenate, prefix the API name, HMAC-SHA256, upper-case hex.
    params = {"foo": "1", "bar": "2", "foo_bar": "3", "foobar": "4"}
    expected = hmac.new(APP_SECRET.encode(), b"/test/apibar2foo1foo_bar3foobar4",
                        hashlib.sha256).hexdigest().upper()
    assert lazada.sign("/test/api", params, APP_SECRET) == expected
    assert lazada.sign("/test/api", {**params, "sign": "X", "empty": ""}, APP_SECRET) == expected


@pytest.mark.parametrize(("credentials", "url"), [
    ({**CREDENTIALS, "site": "co.th"}, "https://api.lazada.co.th/rest/order/get"),
    ({**CREDENTIALS, "site": "", "api_base": "https://api.lazada.test/rest/"},
     "https://api.lazada.test/rest/order/get"),
])
def test_the_site_picks_the_gateway(credentials: dict[str, str], url: str) -> None:
    assert lazada.fetch_call(REF, credentials, NOW).url == url


@pytest.mark.parametrize("credentials", [
    {**CREDENTIALS, "site": "cn"},
    {**CREDENTIALS, "access_token": ""},
])
def test_fetch_call_refuses_bad_credentials(credentials: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        lazada.fetch_call(REF, credentials, NOW)


def answers(items: str = "order_items.json", **order_changes: Any) -> list[Any]:
    order = load("order_get.json")
    order["data"].update(order_changes)
    return [order, load(items)]


def expected_order(**changes: Any) -> Order:
    def line(item_id: str, sku: str, title: str, variant: str, price: str) -> OrderLine:
        return OrderLine(line_id=item_id, sku=sku, title=title, variant=variant, quantity=1,
                         unit_price=Decimal(price))

    order = Order(
        marketplace="lazada",
        shop=SELLER,
        external_id=ORDER_ID,
        name=ORDER_ID,
        status=OrderStatus.PAID,
        buyer=Buyer(external_id="300012893221", name="Tan Mei Ling"),
        shipping_address=Address(name="Tan Mei Ling", line1="12, Jalan SS 2/24",
                                 line2="Taman Sea", city="Petaling Jaya", province="Selangor",
                                 postal_code="47300", country_code="MY", phone="60123456789"),
        lines=(
            line(ITEM_IDS[0], "LS-WHT-M", "Linen Blend Shirt", "Colour:White, Size:M", "39.9"),
            line(ITEM_IDS[1], "LS-WHT-M", "Linen Blend Shirt", "Colour:White, Size:M", "39.9"),
            line(ITEM_IDS[2], "TOTE-NAT", "Canvas Tote Bag", "Colour:Natural", "29.9"),
        ),
        currency="MYR",
        # Paid: the items after vouchers (104.70) and their shipping shares (3 × 1.63).
        totals=Totals(subtotal=Decimal("109.70"), shipping=Decimal("4.90"), tax=Decimal("0.0"),
                      discounts=Decimal("5.00"), total=Decimal("109.59"), tax_included=True),
        placed_at=datetime(2026, 11, 23, 9, 0, tzinfo=MY),
        updated_at=datetime(2026, 11, 23, 10, 30, tzinfo=MY),
        buyer_note="Tolong bungkus dengan kotak, terima kasih",
    )
    return order.model_copy(update=changes)


def test_parse_order_maps_the_recorded_answers_exactly() -> None:
    order = lazada.parse_order(answers(), REF, "lazada")
    assert order == expected_order()
    assert order.updated_at == datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
    assert "TOTE-BLK" not in {line.sku for line in order.lines}  # the cancelled unit


def test_the_newest_item_change_dates_the_order() -> None:
    order = lazada.parse_order(answers("order_items_shipped.json"), REF, "lazada")
    assert order.updated_at == datetime(2026, 11, 23, 10, 57, tzinfo=MY)


def test_iso_times_amount_separators_and_text_nulls_are_read() -> None:
    order = lazada.parse_order(
        answers(created_at="2026-11-23T09:00:00+08:00", updated_at="2026-11-23T10:45:00+08:00",
                price="1,109.70", buyer_note="null", remarks="Call before delivery"),
        REF, "lazada")
    assert order.placed_at == datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert order.updated_at == datetime(2026, 11, 23, 2, 45, tzinfo=UTC)
    assert (order.totals.subtotal, order.totals.total) == (Decimal("1109.70"),
                                                           Decimal("109.59"))
    assert not order.totals.adds_up()  # a price the items do not make is seen
    assert order.buyer_note == "Call before delivery"


EVERY_STATUS: dict[str, OrderStatus | None] = {
    "unpaid": OrderStatus.PENDING_PAYMENT,
    "pending": OrderStatus.PAID,
    "topack": OrderStatus.PAID,
    "toship": OrderStatus.PAID,
    "packed": OrderStatus.PAID,
    "repacked": OrderStatus.PAID,
    "ready_to_ship": OrderStatus.PAID,
    "shipped": OrderStatus.PAID,
    "delivered": OrderStatus.PAID,
    "confirmed": OrderStatus.PAID,
    "failed_delivery": OrderStatus.PAID,
    "canceled": OrderStatus.CANCELLED,
    "returned": OrderStatus.REFUNDED,
    "lost_by_3pl": None,
    "damaged_by_3pl": None,
}


def test_the_status_table_covers_every_documented_status() -> None:
    assert lazada.STATUSES == EVERY_STATUS


def with_statuses(*statuses: str) -> list[Any]:
    order, items = answers()
    for item, status in zip(items["data"], statuses, strict=True):
        item["status"] = status
    return [order, items]


@pytest.mark.parametrize(("status", "expected"), sorted(EVERY_STATUS.items()))
def test_every_status_maps_through_parse_order(status: str,
                                               expected: OrderStatus | None) -> None:
    assert lazada.map_status(status) is expected
    pair = with_statuses(status, status, status, status)
    if expected is None:
        with pytest.raises(InvalidOrder) as error:
            lazada.parse_order(pair, REF, "lazada")
        assert error.value.reason == "ignored_status"
        return
    order = lazada.parse_order(pair, REF, "lazada")
    assert order.status is expected
    live = expected in (OrderStatus.PAID, OrderStatus.PENDING_PAYMENT)
    assert len(order.lines) == (4 if live else 0)
    assert (order.cancelled_at is None) is live


@pytest.mark.parametrize(("statuses", "expected", "lines"), [
    (("pending", "canceled", "canceled", "canceled"), OrderStatus.PAID, 1),
    (("unpaid", "unpaid", "canceled", "canceled"), OrderStatus.PENDING_PAYMENT, 2),
    (("shipped", "unpaid", "unpaid", "unpaid"), OrderStatus.PAID, 4),
    (("returned", "canceled", "canceled", "canceled"), OrderStatus.REFUNDED, 0),
    (("lost_by_3pl", "canceled", "canceled", "canceled"), OrderStatus.CANCELLED, 0),
    (("delivered", "returned", "delivered", "delivered"), OrderStatus.PAID, 3),
])
def test_the_order_status_comes_from_its_items(statuses: tuple[str, ...],
                                               expected: OrderStatus, lines: int) -> None:
    order = lazada.parse_order(with_statuses(*statuses), REF, "lazada")
    assert (order.status, len(order.lines)) == (expected, lines)


def test_an_order_fulfilled_by_lazada_is_not_ours() -> None:
    order, items = answers()
    for item in items["data"]:
        item["shipping_type"] = "Own Warehouse"
    with pytest.raises(InvalidOrder) as error:
        lazada.parse_order([order, items], REF, "lazada")
    assert error.value.reason == "not_seller_fulfilled"


def test_answers_for_another_order_are_refused() -> None:
    with pytest.raises(InvalidOrder) as error:
        lazada.parse_order(answers(), OrderRef(shop=SELLER, external_id="416557324702007"),
                           "lazada")
    assert error.value.reason == "order_mismatch"
    with pytest.raises(ValueError):
        lazada.parse_order([load("order_get.json")], REF, "lazada")


@pytest.mark.parametrize(("pair", "code", "retryable"), [
    ([load("error_token.json"), load("order_items.json")], "IllegalAccessToken", False),
    ([load("order_get.json"), load("error_limit.json")], "ApiCallLimit", True),
])
def test_an_error_answer_raises_with_its_class(pair: list[Any], code: str,
                                               retryable: bool) -> None:
    with pytest.raises(lazada.LazadaError) as error:
        lazada.parse_order(pair, REF, "lazada")
    assert (error.value.code, error.value.retryable) == (code, retryable)


# Writeback --------------------------------------------------------------------------------------


SHIPPED = Shipped(external_id=ORDER_ID, carrier_code="SF", tracking_number="SF1489327765012",
                  shipped_at=datetime(2026, 11, 23, 2, 57, tzinfo=UTC), package_id="pkg_01",
                  lines=tuple((item_id, 1) for item_id in ITEM_IDS))


def test_carriers_cover_our_codes() -> None:
    assert {"STO", "SF", "YTO", "ZTO", "YUNDA", "JD", "EMS"} <= set(lazada.CARRIERS)


def test_writeback_call_is_exact() -> None:
    business = {"delivery_type": "dropship",
                "order_item_ids": "[416557324802006,416557324902006,416557325002006]",
                "shipment_provider": "SF Express", "tracking_number": "SF1489327765012"}
    sign = api_sign("/order/rts", {**system(), **business})
    assert lazada.writeback_call(SHIPPED, CREDENTIALS, NOW) == Request(
        method="POST", url=f"{BASE}/order/rts", params={**system(), "sign": sign},
        form=business)


def test_a_shop_may_name_its_own_provider() -> None:
    call = lazada.writeback_call(SHIPPED, {**CREDENTIALS, "shipment_provider.SF": "SF Intl"},
                                 NOW)
    assert call.form is not None and call.form["shipment_provider"] == "SF Intl"


@pytest.mark.parametrize("shipped", [
    SHIPPED.model_copy(update={"lines": ()}),
    SHIPPED.model_copy(update={"lines": ((ITEM_IDS[0], 2),)}),
    SHIPPED.model_copy(update={"carrier_code": "DHL"}),
])
def test_writeback_call_refuses_what_lazada_cannot_take(shipped: Shipped) -> None:
    with pytest.raises(ValueError):
        lazada.writeback_call(shipped, CREDENTIALS, NOW)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, raw("rts_ok.json"), WritebackResult(ok=True)),
    # Shipped already, or cancelled: not read as done; the next attempt asks already_shipped.
    (200, raw("rts_already.json"),
     WritebackResult(ok=False, retryable=True, code="73",
                     detail="E073: All order items must have status Pending or Ready To Ship. "
                            "(416557324802006)")),
    (200, raw("rts_invalid_tracking.json"),
     WritebackResult(ok=False, code="63",
                     detail="E063: The tracking code SF1489327765012 has already been used")),
    (200, raw("error_limit.json"),
     WritebackResult(ok=False, retryable=True, code="ApiCallLimit",
                     detail="The request is too frequent, please try again later.")),
    (200, raw("error_token.json"),
     WritebackResult(ok=False, code="IllegalAccessToken",
                     detail="The specified access token is invalid or expired")),
    (429, b"", WritebackResult(ok=False, retryable=True, code="429")),
    (500, b"{}", WritebackResult(ok=False, retryable=True, code="500")),
    (200, b"\xff\xfe", WritebackResult(ok=False, code="200", detail="\ufffd\ufffd")),
])
def test_parse_writeback(status: int, body: bytes, expected: WritebackResult) -> None:
    assert lazada.parse_writeback(status, body) == expected


def test_existing_call_reads_the_items() -> None:
    assert lazada.existing_call(SHIPPED, CREDENTIALS, NOW) == lazada.items_call(
        REF, CREDENTIALS, NOW)


@pytest.mark.parametrize(("name", "changes", "expected"), [
    ("order_items_shipped.json", {}, True),
    ("order_items_shipped.json", {"lines": ((ITEM_IDS[2], 1),)}, True),
    ("order_items_shipped.json", {"tracking_number": "SF1489327765099"}, False),
    ("order_items_shipped.json", {"lines": (("416557325102006", 1),)}, False),  # cancelled one
    ("order_items_shipped.json", {"lines": (("416557399999999", 1),)}, False),
    ("order_items.json", {}, False),
    ("error_token.json", {}, False),
])
def test_already_shipped(name: str, changes: dict[str, Any], expected: bool) -> None:
    assert lazada.already_shipped(load(name), SHIPPED.model_copy(update=changes)) is expected


def test_a_repeated_writeback_is_confirmed_by_the_items_not_by_the_refusal() -> None:
    refusal = lazada.parse_writeback(200, raw("rts_already.json"))
    assert (refusal.ok, refusal.already_done, refusal.retryable) == (False, False, True)
    assert lazada.already_shipped(load("order_items_shipped.json"), SHIPPED)


# Reconciliation ---------------------------------------------------------------------------------


SINCE = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(("cursor", "after", "offset"), [
    (None, "2026-11-23T01:00:00+00:00", "0"),
    ("200", "2026-11-23T01:00:00+00:00", "200"),
    ("2026-11-23T02:10:00+00:00|100", "2026-11-23T02:10:00+00:00", "100"),
])
def test_list_call_is_exact(cursor: str | None, after: str, offset: str) -> None:
    business = {"update_after": after, "update_before": "2026-11-23T03:00:00+00:00",
                "sort_by": "updated_at", "sort_direction": "ASC", "offset": offset,
                "limit": "100"}
    params = {**system(), **business}
    params["sign"] = api_sign("/orders/get", params)
    assert lazada.list_call(SELLER, SINCE, NOW, cursor, CREDENTIALS, NOW) == Request(
        method="GET", url=f"{BASE}/orders/get", params=params)


@pytest.mark.parametrize(("since", "until", "cursor"), [
    (NOW, SINCE, None),
    (SINCE, NOW, "5100"),
    (SINCE, NOW, "abc"),
])
def test_list_call_refuses_a_bad_window_or_cursor(since: datetime, until: datetime,
                                                  cursor: str | None) -> None:
    with pytest.raises(ValueError):
        lazada.list_call(SELLER, since, until, cursor, CREDENTIALS, NOW)


def test_parse_list_reads_the_last_page() -> None:
    refs, cursor = lazada.parse_list(load("orders_get.json"), shop=SELLER)
    assert refs == [
        OrderRef(shop=SELLER, external_id=ORDER_ID, status="pending,canceled",
                 updated_at=datetime(2026, 11, 23, 2, 30, tzinfo=UTC)),
        OrderRef(shop=SELLER, external_id="416561190302006", status="unpaid",
                 updated_at=datetime(2026, 11, 23, 2, 41, 7, tzinfo=UTC)),
    ]
    assert cursor is None


def full_page(last: str = "2026-11-23T10:55:00+08:00") -> dict[str, Any]:
    orders = [{"order_id": 416557000000006 + n, "updated_at": "2026-11-23T10:00:00+08:00",
               "statuses": ["pending"]} for n in range(99)]
    orders.append({"order_id": 416557999900006, "updated_at": last, "statuses": ["pending"]})
    return {"code": "0", "data": {"count": 100, "countTotal": 9000, "orders": orders}}


@pytest.mark.parametrize(("cursor", "expected"), [
    (None, "100"),
    ("4900", "5000"),
    ("5000", "2026-11-23T02:54:59+00:00|0"),
    ("2026-11-23T01:30:00+00:00|300", "2026-11-23T01:30:00+00:00|400"),
    ("2026-11-23T01:30:00+00:00|5000", "2026-11-23T02:54:59+00:00|0"),
])
def test_parse_list_pages_and_restarts_past_the_largest_offset(cursor: str | None,
                                                               expected: str) -> None:
    refs, following = lazada.parse_list(full_page(), shop=SELLER, cursor=cursor)
    assert (len(refs), following) == (100, expected)


def test_parse_list_stops_when_a_restart_cannot_move_on() -> None:
    with pytest.raises(InvalidOrder) as error:
        lazada.parse_list(full_page(), shop=SELLER, cursor="2026-11-23T02:54:59+00:00|5000")
    assert error.value.reason == "too_many_orders"


def test_parse_list_raises_on_an_error_answer() -> None:
    with pytest.raises(lazada.LazadaError) as error:
        lazada.parse_list(load("error_limit.json"))
    assert error.value.retryable
