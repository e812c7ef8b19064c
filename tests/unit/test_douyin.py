from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.errors import ApiError
from chalicelib.marketplaces import douyin
from chalicelib.marketplaces.calls import OrderRef, Shipped
from chalicelib.orders.order import Address, EncryptedReceiver, InvalidOrder, OrderStatus
from tests.support import FIXTURES

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
APP_KEY = "7012345678901234567"
APP_SECRET = "a3f1c9e2-5b7d-4e8a-9c0f-1d2e3f4a5b6c"
SECRET = f"{APP_KEY}:{APP_SECRET}"
CREDENTIALS = {"app_key": APP_KEY, "app_secret": APP_SECRET,
               "access_token": "c1d2e3f4-0a1b-2c3d-4e5f-60718293a4b5", "shop_id": "4463798"}
ORDER_A = "6934518220197312847"
ORDER_B = "6934518220197399012"


def raw(name: str) -> bytes:
    return (FIXTURES / "douyin" / name).read_bytes()


def fixture(name: str) -> Any:
    return json.loads(raw(name))


def event_sign(body: bytes, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> str:
    return hashlib.md5(app_key.encode() + body + app_secret.encode()).hexdigest()


def headers(body: bytes, **kwargs: str) -> dict[str, str]:
    return {"content-type": "application/json", "app-id": kwargs.get("app_key", APP_KEY),
            "event-sign": event_sign(body, **kwargs)}


def accept(body: bytes, hdrs: dict[str, str], secrets: tuple[str, ...] = (SECRET,)):
    return douyin.accept(hdrs, body, secrets, NOW)


def reason(excinfo: pytest.ExceptionInfo[ApiError]) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.reason


# Push signature -----------------------------------------------------------------------------------


def test_a_signed_push_is_accepted_and_keyed_by_its_msg_id() -> None:
    body = raw("push_trade_create.json")
    accepted = accept(body, headers(body))
    assert accepted.delivery_id == f"{ORDER_A}:0:100:7310027519480201001"
    assert accepted.topic == "trade_TradeCreate"
    assert accepted.shop == "4463798"
    assert accepted.actionable
    assert accepted.headers == {"app-id": APP_KEY}


def test_the_answer_is_the_documented_success_json() -> None:
    status, content_type, text = douyin.REPLY
    assert (status, content_type) == (200, "application/json")
    assert json.loads(text) == {"code": 0, "msg": "success"}


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b'"order_status\\":1', b'"order_status\\":2', 1),  # one byte
    lambda b: b + b"\n",
    lambda b: json.dumps(json.loads(b), ensure_ascii=False).encode(),  # re-serialised
])
def test_a_changed_body_is_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    body = raw("push_trade_create.json")
    changed = mutate(body)
    assert changed != body
    with pytest.raises(ApiError) as error:
        accept(changed, headers(body))
    assert reason(error) == (401, "invalid_signature")


def test_a_wrong_secret_a_wrong_app_and_a_missing_signature_are_401() -> None:
    body = raw("push_trade_create.json")
    with pytest.raises(ApiError) as wrong:
        accept(body, headers(body, app_secret="another-secret"))
    assert reason(wrong) == (401, "invalid_signature")
    other_app = headers(body) | {"app-id": "7999999999999999999"}
    with pytest.raises(ApiError) as app:
        accept(body, other_app)
    assert reason(app) == (401, "invalid_signature")
    with pytest.raises(ApiError) as missing:
        accept(body, {"app-id": APP_KEY})
    assert reason(missing) == (401, "missing_signature")


def test_rotation_and_several_apps_on_one_endpoint() -> None:
    body = raw("push_trade_create.json")
    other = "7111111111111111111:0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff"
    assert accept(body, headers(body), secrets=(other, SECRET)).actionable
    old = f"{APP_KEY}:old-secret"
    assert accept(body, headers(body, app_secret="old-secret"), secrets=(SECRET, old)).actionable
    # Without app-id every listed app is tried; an upper-case hex signature is the same digest.
    bare = {"event-sign": event_sign(body).upper()}
    assert accept(body, bare, secrets=(other, SECRET)).actionable


@given(body=st.binary(max_size=300), app_secret=st.text(min_size=1, max_size=30),
       index=st.integers(min_value=0))
def test_any_signed_body_passes_the_signature_and_any_flipped_byte_fails(
        body: bytes, app_secret: str, index: int) -> None:
    secrets = (f"{APP_KEY}:{app_secret}",)
    hdrs = headers(body, app_secret=app_secret)
    try:
        douyin.accept(hdrs, body, secrets, NOW)
    except ApiError as error:
        assert error.reason not in ("invalid_signature", "missing_signature")
    if body:
        i = index % len(body)
        flipped = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        with pytest.raises(ApiError) as rejected:
            douyin.accept(hdrs, flipped, secrets, NOW)
        assert rejected.value.reason == "invalid_signature"


# Push content -------------------------------------------------------------------------------------


def test_a_multi_message_push_is_keyed_by_all_its_msg_ids_and_names_each_order_once() -> None:
    body = raw("push_multi.json")
    accepted = accept(body, headers(body))
    ids = sorted(m["msg_id"] for m in fixture("push_multi.json"))
    assert accepted.delivery_id == ",".join(ids)
    assert accepted.topic == "trade_TradeAddressChanged,trade_TradeCanceled,trade_TradePaid"
    assert accepted.shop == "4463798"
    assert accepted.actionable
    assert douyin.refs(body, headers(body)) == [
        OrderRef(shop="4463798", external_id=ORDER_A, status="2",
                 updated_at=datetime(2026, 11, 23, 2, 20, tzinfo=UTC)),  # the newer of two
        OrderRef(shop="4463798", external_id=ORDER_B, status="4",
                 updated_at=datetime(2026, 11, 23, 3, 2, 31, tzinfo=UTC)),
    ]
    with pytest.raises(InvalidOrder) as several:
        douyin.ref(body, headers(body))
    assert several.value.reason == "several_orders"


def test_the_same_messages_in_another_order_make_the_same_key() -> None:
    messages = fixture("push_multi.json")
    body = json.dumps(list(reversed(messages)), ensure_ascii=False).encode()
    original = raw("push_multi.json")
    assert accept(body, headers(body)).delivery_id == accept(
        original, headers(original)).delivery_id


def test_a_very_large_push_is_keyed_by_a_digest() -> None:
    message = fixture("push_trade_create.json")[0]
    messages = [message | {"msg_id": f"{ORDER_A}:0:100:{7310027519480201001 + i}"}
                for i in range(40)]
    body = json.dumps(messages).encode()
    joined = ",".join(sorted(m["msg_id"] for m in messages))
    assert accept(body, headers(body)).delivery_id == (
        "sha256:" + hashlib.sha256(joined.encode()).hexdigest())


def test_ref_of_a_single_order_push() -> None:
    body = raw("push_trade_create.json")
    assert douyin.ref(body, headers(body)) == OrderRef(
        shop="4463798", external_id=ORDER_A, status="1",
        updated_at=datetime(2026, 11, 23, 2, 5, 12, tzinfo=UTC))


def test_a_refund_message_with_a_text_update_time_names_its_order() -> None:
    body = raw("push_refund_success.json")
    accepted = accept(body, headers(body))
    assert (accepted.topic, accepted.actionable) == ("refund_RefundSuccess", True)
    assert douyin.ref(body, headers(body)) == OrderRef(
        shop="4463798", external_id=ORDER_B, status="",
        updated_at=datetime(2026, 11, 23, 3, 2, 31, tzinfo=UTC))


def test_the_test_push_from_the_console_is_answered_but_not_acted_on() -> None:
    body = raw("push_test.json")
    accepted = accept(body, headers(body))
    assert (accepted.delivery_id, accepted.topic, accepted.actionable) == ("0", "push_test", False)
    with pytest.raises(InvalidOrder) as none:
        douyin.ref(body, headers(body))
    assert none.value.reason == "no_order"


@pytest.mark.parametrize(("tag", "actionable"), [
    ("104", False), ("111", False), ("113", False), ("204", False), ("999", False),
    ("102", True), ("109", True), ("200", True), ("207", True),
])
def test_which_message_types_are_acted_on(tag: str, actionable: bool) -> None:
    message = fixture("push_trade_create.json")[0] | {"tag": tag}
    body = json.dumps([message]).encode()
    accepted = accept(body, headers(body))
    assert accepted.actionable is actionable
    assert accepted.topic == douyin.TAGS.get(tag, (f"tag_{tag}", False))[0]


@pytest.mark.parametrize(("body", "expected"), [
    (b'[{"tag":"100","msg_id":"1","data":"{}"', (400, "malformed_json")),
    (b'{"tag":"100","msg_id":"1","data":"{}"}', (400, "malformed_json")),  # not an array
    (b"[]", (422, "invalid_payload")),
    (b'[{"tag":"100","data":"{}"}]', (422, "invalid_payload")),  # no msg_id
    (b'[{"tag":"100","msg_id":"1","data":"{\\"shop_id\\":1}"}]', (422, "invalid_payload")),
    (b'[{"tag":"100","msg_id":"1","data":"not json"}]', (422, "invalid_payload")),
    ('[{"tag":"100","msg_id":"1","data":"{}"}]'.encode("utf-16"), (400, "malformed_json")),
])
def test_malformed_and_invalid_pushes(body: bytes, expected: tuple[int, str]) -> None:
    with pytest.raises(ApiError) as error:
        accept(body, headers(body))
    assert reason(error) == expected


def test_an_invalid_push_names_the_bad_message_and_ignored_messages_need_not_be_readable() -> None:
    body = b'[{"tag":"104","msg_id":"1","data":"x"},{"tag":"106","msg_id":"2","data":"{}"}]'
    with pytest.raises(ApiError) as error:
        accept(body, headers(body))
    assert [p["field"] for p in error.value.details["problems"]] == ["1.data"]
    ignored = b'[{"tag":"104","msg_id":"1","data":"x"}]'
    assert not accept(ignored, headers(ignored)).actionable


# Open API signing ---------------------------------------------------------------------------------


def expected_sign(method: str, param_json: str, timestamp: str) -> str:
    text = (f"{APP_SECRET}app_key{APP_KEY}method{method}param_json{param_json}"
            f"timestamp{timestamp}v2{APP_SECRET}")
    return hmac.new(APP_SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_fetch_call_is_the_signed_order_detail_request() -> None:
    call = douyin.fetch_call(OrderRef(shop="4463798", external_id=ORDER_A), CREDENTIALS, NOW)
    param_json = '{"shop_order_id":"6934518220197312847"}'
    assert call.method == "POST"
    assert call.url == "https://openapi-fxg.jinritemai.com/order/orderDetail"
    assert call.params == {
        "app_key": APP_KEY, "method": "order.orderDetail",
        "access_token": CREDENTIALS["access_token"], "timestamp": "1795489200", "v": "2",
        "sign_method": "hmac-sha256",
        "sign": expected_sign("order.orderDetail", param_json, "1795489200")}
    assert call.headers == {"Content-Type": "application/json", "x-open-no-old-err-code": "1"}
    assert call.raw_body == param_json.encode()
    assert call.json_body is None and call.form is None


def test_param_json_sorts_keys_recursively_and_keeps_chinese_unescaped() -> None:
    assert douyin.param_json({"b": 1, "a": {"z": "顺丰", "c": [2, 1]}, "t": True}) == (
        '{"a":{"c":[2,1],"z":"顺丰"},"b":1,"t":true}')


# Order detail -------------------------------------------------------------------------------------


def test_parse_order_maps_the_order_detail_exactly() -> None:
    ref = OrderRef(shop="4463798", external_id=ORDER_A)
    order = douyin.parse_order(raw("order_detail.json"), ref, "douyin")
    assert (order.marketplace, order.shop, order.external_id, order.name) == (
        "douyin", "4463798", ORDER_A, ORDER_A)
    assert order.status is OrderStatus.PAID
    assert order.buyer.external_id == "1@#Ym9iLnVzZXIuaWQ="
    # The masked text is the address (what CS sees); the encrypted receiver fields are kept
    # beside it exactly as the platform gives them.
    assert order.shipping_address == Address(
        name="王*", line1="文三路***",
        line2="西湖区 西溪街道", city="杭州市", province="浙江省", country_code="CN",
        phone="1**********", encrypted=EncryptedReceiver(
            name="#Vm9uZw==#q1Xf0aN3==*CgkIARCtHCABKAESPgo8Zm9vYmFyYmF6=#1##",
            detail="#4cGvZ1o8tHqN9c0n7sQyBQ==#J7m0cV5y2h1Xq8pL3rT6wA==*CgkIARCtHCABKAESPgo8kP4y"
                   "M2xW1qZr9sE7dN5tB8vF0hJ6aC3uY1oL4iK2gS9eR7wX5mQ0pD3nT8bV6cZ1yH4jU2fA0GgA=#1##",
            phone="$Qm9vT3Jk$u8Yk2L0d==*CgkIARCtHCABKAESPgo8YmFyYmF6Zm9v=$1$$"))
    assert [(line.line_id, line.sku, line.title, line.variant, line.quantity, line.unit_price)
            for line in order.lines] == [
        ("6934518220197312848", "LS-WHT-M", "亚麻衬衫", "白色 / M", 1, Decimal("299.00")),
        ("6934518220197312849", "TOTE-NAT", "帆布托特包", "原色", 2, Decimal("149.00")),
    ]
    assert order.currency == "CNY"
    assert order.totals.model_dump() == {
        "subtotal": Decimal("597.00"), "shipping": Decimal("0.00"), "tax": Decimal("0.00"),
        "discounts": Decimal("40.00"), "total": Decimal("557.00"), "fees": Decimal("0.00"),
        "tax_included": False}
    assert order.totals.adds_up()
    assert order.placed_at == datetime(2026, 11, 23, 2, 5, 12, tzinfo=UTC)
    assert order.paid_at == datetime(2026, 11, 23, 2, 6, 40, tzinfo=UTC)
    assert order.updated_at == datetime(2026, 11, 23, 2, 20, tzinfo=UTC)
    assert order.cancelled_at is None
    assert order.buyer_note == "请用纸箱包装"
    assert order.presale_ship_date is None
    assert order.requested_courier == ""


def detail(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = copy.deepcopy(fixture("order_detail.json"))
    answer["data"]["shop_order_detail"].update(changes)
    return answer


def test_presale_lines_give_the_ship_date_and_virtual_lines_are_not_shipped() -> None:
    answer = detail()
    skus = answer["data"]["shop_order_detail"]["sku_order_list"]
    skus[0]["pre_sale_type"] = 1
    skus[1]["goods_type"] = 1
    order = douyin.parse_order(answer, OrderRef(shop="4463798", external_id=ORDER_A), "douyin")
    assert order.presale_ship_date == date(2026, 11, 25)
    assert [line.sku for line in order.lines] == ["LS-WHT-M"]


DOCUMENTED = {"1", "105", "2", "101", "3", "4", "5", "103", "21", "22", "39"}


def test_the_status_table_covers_exactly_the_documented_statuses() -> None:
    assert set(douyin.STATUSES) == DOCUMENTED


@pytest.mark.parametrize(("order_status", "main_status", "expected"), [
    (1, 1, OrderStatus.PENDING_PAYMENT),
    (1, 103, OrderStatus.PENDING_PAYMENT),
    (105, 105, OrderStatus.PAID),
    (2, 2, OrderStatus.PAID),
    (101, 101, OrderStatus.PAID),
    (3, 3, OrderStatus.PAID),
    (5, 5, OrderStatus.PAID),
    (4, 4, OrderStatus.CANCELLED),
    (4, 21, OrderStatus.REFUNDED),
    (3, 22, OrderStatus.REFUNDED),
    (5, 39, OrderStatus.REFUNDED),
    (2, None, OrderStatus.PAID),
])
def test_status_mapping_over_every_documented_status(order_status: int, main_status: int | None,
                                                     expected: OrderStatus) -> None:
    answer = detail(order_status=order_status, main_status=main_status)
    order = douyin.parse_order(answer, OrderRef(shop="4463798", external_id=ORDER_A), "douyin")
    assert order.status is expected
    assert (order.paid_at is not None) is (expected is OrderStatus.PAID)
    assert (order.cancelled_at is not None) is (expected is OrderStatus.CANCELLED)
    assert douyin.map_status(str(order_status)) is not None


def test_an_unknown_status_is_an_invalid_order() -> None:
    with pytest.raises(InvalidOrder) as error:
        douyin.parse_order(detail(order_status=77, main_status=77),
                           OrderRef(shop="4463798", external_id=ORDER_A), "douyin")
    assert error.value.reason == "unknown_status"
    assert douyin.map_status(77) is None


@pytest.mark.parametrize(("name", "code", "retryable"), [
    ("order_detail_not_found.json", "40004", False),
    ("order_detail_busy.json", "50002", True),
])
def test_an_error_answer_raises_douyin_error(name: str, code: str, retryable: bool) -> None:
    with pytest.raises(douyin.DouyinError) as error:
        douyin.parse_order(raw(name), OrderRef(shop="4463798", external_id=ORDER_A), "douyin")
    assert (error.value.code, error.value.retryable) == (code, retryable)


def test_the_deprecated_answer_format_is_still_understood() -> None:
    old = {"err_no": 30002, "message": "access_token已过期", "data": None}
    with pytest.raises(douyin.DouyinError) as error:
        douyin.parse_order(old, OrderRef(shop="4463798", external_id=ORDER_A), "douyin")
    assert (error.value.code, error.value.retryable) == ("30002", True)


def test_a_detail_without_lines_is_an_invalid_order() -> None:
    with pytest.raises(InvalidOrder):
        douyin.parse_order(detail(sku_order_list=[]), OrderRef(shop="1", external_id="1"), "douyin")


# Writeback ----------------------------------------------------------------------------------------

SHIPPED = Shipped(external_id=ORDER_A, carrier_code="SF", tracking_number="SF1428819366352",
                  shipped_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC), package_id="pkg_01")


def test_writeback_call_is_the_signed_logistics_add() -> None:
    call = douyin.writeback_call(SHIPPED, CREDENTIALS, NOW)
    param_json = ('{"company_code":"shunfeng","logistics_code":"SF1428819366352",'
                  '"order_id":"6934518220197312847"}')
    assert call.url == "https://openapi-fxg.jinritemai.com/order/logisticsAdd"
    assert call.method == "POST"
    assert call.raw_body == param_json.encode()
    assert call.params["method"] == "order.logisticsAdd"
    assert call.params["sign"] == expected_sign("order.logisticsAdd", param_json, "1795489200")


@pytest.mark.parametrize(("ours", "theirs"), [
    ("STO", "shentong"), ("SF", "shunfeng"), ("YTO", "yuantong"), ("ZTO", "zhongtong"),
    ("YUNDA", "yunda"), ("JD", "jd"), ("EMS", "ems"),
])
def test_carriers_map_to_douyin_company_codes(ours: str, theirs: str) -> None:
    shipped = SHIPPED.model_copy(update={"carrier_code": ours})
    body = json.loads(douyin.writeback_call(shipped, CREDENTIALS, NOW).raw_body or b"")
    assert body["company_code"] == theirs


def test_unknown_carriers_and_partial_shipments_are_refused() -> None:
    with pytest.raises(ValueError):
        douyin.writeback_call(SHIPPED.model_copy(update={"carrier_code": "DHL"}), CREDENTIALS, NOW)
    with pytest.raises(ValueError):
        douyin.writeback_call(SHIPPED.model_copy(update={"lines": (("6934518220197312848", 1),)}),
                              CREDENTIALS, NOW)


@pytest.mark.parametrize(("status", "body", "ok", "retryable", "done", "code"), [
    (200, raw("logistics_add_ok.json"), True, False, False, "10000"),
    (200, raw("logistics_add_failed.json"), False, False, False, "40004"),
    (200, raw("logistics_add_duplicate.json"), False, False, True, "50002"),
    (200, raw("logistics_add_system_error.json"), False, True, False, "20000"),
    (200, b"<html>", False, True, False, "malformed_answer"),
    (502, b"Bad Gateway", False, True, False, "http_502"),
    (429, b"", False, True, False, "http_429"),
    (403, b"Forbidden", False, False, False, "http_403"),
])
def test_parse_writeback(status: int, body: bytes, ok: bool, retryable: bool, done: bool,
                         code: str) -> None:
    result = douyin.parse_writeback(status, body)
    assert (result.ok, result.retryable, result.already_done, result.code) == (
        ok, retryable, done, code)


def test_before_a_retry_the_order_detail_tells_whether_it_already_shipped() -> None:
    call = douyin.existing_call(SHIPPED, CREDENTIALS, NOW)
    assert call.url == "https://openapi-fxg.jinritemai.com/order/orderDetail"
    assert call.raw_body == b'{"shop_order_id":"6934518220197312847"}'
    assert douyin.already_shipped(raw("order_detail_shipped.json"), SHIPPED)
    assert douyin.already_shipped(fixture("order_detail_shipped.json"),
                                  SHIPPED.model_copy(update={"tracking_number": "sf1428819366352"}))
    assert not douyin.already_shipped(raw("order_detail.json"), SHIPPED)
    assert not douyin.already_shipped(raw("order_detail_shipped.json"),
                                      SHIPPED.model_copy(update={"tracking_number": "SF999"}))
    with pytest.raises(douyin.DouyinError):
        douyin.already_shipped(raw("order_detail_busy.json"), SHIPPED)


# Reconciliation -----------------------------------------------------------------------------------

SINCE = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_list_call_is_the_signed_search_list() -> None:
    call = douyin.list_call("4463798", SINCE, UNTIL, None, CREDENTIALS, NOW)
    param_json = ('{"order_asc":true,"order_by":"update_time","page":0,"size":100,'
                  '"update_time_end":1795435200,"update_time_start":1795392000}')
    assert call.url == "https://openapi-fxg.jinritemai.com/order/searchList"
    assert call.raw_body == param_json.encode()
    assert call.params["sign"] == expected_sign("order.searchList", param_json, "1795489200")
    later = douyin.list_call("4463798", SINCE, UNTIL, "1", CREDENTIALS, NOW)
    assert json.loads(later.raw_body or b"")["page"] == 1


def test_parse_list_pages_until_the_total_is_read() -> None:
    refs, cursor = douyin.parse_list(raw("search_list_page0.json"))
    assert len(refs) == 100 and cursor == "1"
    assert refs[0] == OrderRef(shop="4463798", external_id="6934518220100000000", status="2",
                               updated_at=datetime(2026, 11, 23, 2, 5, 12, tzinfo=UTC))
    last, end = douyin.parse_list(fixture("search_list_page1.json"))
    assert [r.external_id for r in last] == ["6934518220100000100", "6934518220100000101"]
    assert end is None


def test_an_empty_page_ends_and_an_error_raises() -> None:
    empty = {"code": 10000, "msg": "success", "data": {"page": 3, "size": 100, "total": 500,
                                                     "shop_order_list": []}}
    assert douyin.parse_list(empty) == ([], None)
    with pytest.raises(douyin.DouyinError):
        douyin.parse_list(raw("order_detail_not_found.json"))
