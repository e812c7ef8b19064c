from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.marketplaces import taobao
from chalicelib.marketplaces.calls import OrderRef, Shipped, WritebackResult
from chalicelib.orders.deliveries import Accepted
from chalicelib.orders.order import (
    Address,
    AfterSale,
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
NOW_CN = "2026-11-23 11:00:00"  # the same moment in GMT+8
CN = timezone(timedelta(hours=8))
APP_KEY = "34567812"
SECRET = "9f3c2a7be8d14c6fa0b5e1d2c3f4a5b6"
SESSION = "6100e21a8b7c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7a2201234567"
CREDENTIALS = {"app_key": APP_KEY, "app_secret": SECRET, "session": SESSION,
               "sign_method": "md5"}
GATEWAY = "https://eco.taobao.com/router/rest"
SHOP = "栖木家居旗舰店"
TID = "3912345678901234567"
REF = OrderRef(shop=SHOP, external_id=TID)


def load(name: str) -> Any:
    return json.loads((FIXTURES / "taobao" / name).read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    return (FIXTURES / "taobao" / name).read_bytes()


def expected_sign(params: dict[str, str], secret: str, method: str) -> str:
    """TOP signing, written out here independently of the module."""
    pieces = ""
    for name in sorted(params):
        if name != "sign" and params[name] != "":
            pieces += name + params[name]
    data, key = pieces.encode(), secret.encode()
    if method == "md5":
        return hashlib.md5(key + data + key).hexdigest().upper()
    digest = hashlib.md5 if method == "hmac" else hashlib.sha256
    return hmac.new(key, data, digest).hexdigest().upper()


def common(method: str, sign_method: str = "md5") -> dict[str, str]:
    return {"method": method, "app_key": APP_KEY, "session": SESSION, "timestamp": NOW_CN,
            "format": "json", "v": "2.0", "sign_method": sign_method}


def signed(params: dict[str, str], sign_method: str = "md5") -> dict[str, str]:
    form = dict(sorted(params.items()))
    form["sign"] = expected_sign(form, SECRET, sign_method)
    return form


# Signing ----------------------------------------------------------------------------------


def test_there_is_no_http_answer_and_no_http_entry_point() -> None:
    assert taobao.REPLY is None
    with pytest.raises(ApiError) as error:
        taobao.accept({}, b"{}", (SECRET,), NOW)
    assert (error.value.status, error.value.reason) == (404, "unknown_source")


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_top_call_is_signed_exactly(sign_method: str) -> None:
    credentials = {**CREDENTIALS, "sign_method": sign_method}
    call = taobao.top_call("taobao.trade.fullinfo.get", {"fields": "tid,status", "tid": TID},
                           credentials, NOW)
    params = {**common("taobao.trade.fullinfo.get", sign_method),
              "fields": "tid,status", "tid": TID}
    assert call == Request(method="POST", url=GATEWAY, form=signed(params, sign_method))
    assert call.form is not None and len(call.form["sign"]) == (
        64 if sign_method == "hmac-sha256" else 32)


def test_md5_is_the_default_and_the_timestamp_is_china_time() -> None:
    call = taobao.top_call("taobao.time.get", {}, {"app_key": APP_KEY, "app_secret": SECRET},
                           NOW)
    assert call.form is not None
    assert call.form["timestamp"] == NOW_CN
    assert call.form["sign_method"] == "md5"
    assert "session" not in call.form  # an empty parameter is neither sent nor signed
    assert call.form["sign"] == expected_sign(
        {"method": "taobao.time.get", "app_key": APP_KEY, "timestamp": NOW_CN,
         "format": "json", "v": "2.0", "sign_method": "md5"}, SECRET, "md5")


def test_the_signature_depends_on_every_byte_the_secret_and_the_time() -> None:
    def sign_of(params: dict[str, str], credentials: dict[str, str], now: datetime) -> str:
        form = taobao.top_call("taobao.trade.fullinfo.get", params, credentials, now).form
        assert form is not None
        return form["sign"]

    base = sign_of({"tid": TID}, CREDENTIALS, NOW)
    assert sign_of({"tid": TID[:-1] + "8"}, CREDENTIALS, NOW) != base
    assert sign_of({"tid": TID}, {**CREDENTIALS, "app_secret": SECRET[:-1] + "7"}, NOW) != base
    assert sign_of({"tid": TID}, CREDENTIALS, NOW + timedelta(seconds=1)) != base
    assert sign_of({"tid": TID}, CREDENTIALS, NOW) == base


@given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
                       st.text(max_size=20), max_size=6),
       st.sampled_from(["md5", "hmac", "hmac-sha256"]))
def test_sign_matches_the_independent_computation_in_any_order(params: dict[str, str],
                                                               method: str) -> None:
    reordered = dict(reversed(list(params.items())))
    assert taobao.sign(params, SECRET, method) == expected_sign(params, SECRET, method)
    assert taobao.sign(reordered, SECRET, method) == taobao.sign(params, SECRET, method)


def test_misuse_of_top_call_is_refused() -> None:
    with pytest.raises(ValueError, match="sign_method"):
        taobao.top_call("taobao.time.get", {}, {**CREDENTIALS, "sign_method": "sha1"}, NOW)
    with pytest.raises(ValueError, match="timestamp"):
        taobao.top_call("taobao.time.get", {"timestamp": NOW_CN}, CREDENTIALS, NOW)
    with pytest.raises(ValueError, match="naive"):
        taobao.top_call("taobao.time.get", {}, CREDENTIALS, datetime(2026, 11, 23, 11))


# TMC --------------------------------------------------------------------------------------


def test_consume_call() -> None:
    assert taobao.consume_call("orders", 100, CREDENTIALS, NOW) == Request(
        method="POST", url=GATEWAY,
        form=signed({**common("taobao.tmc.messages.consume"), "group_name": "orders",
                     "quantity": "100"}))
    default_group = taobao.consume_call("", 200, CREDENTIALS, NOW).form
    assert default_group is not None and "group_name" not in default_group
    for quantity in (9, 201):
        with pytest.raises(ValueError):
            taobao.consume_call("", quantity, CREDENTIALS, NOW)


def test_parse_messages_keeps_ids_exact() -> None:
    messages = taobao.parse_messages(load("tmc_consume.json"))
    assert [m.id for m in messages] == [f"840205055100234500{n}" for n in range(1, 6)]
    first = messages[0]
    assert (first.topic, first.pub_time, first.user_nick, first.pub_app_key) == (
        "taobao_trade_TradeBuyerPay", "2026-11-23 10:03:41", SHOP, "12497914")
    assert json.loads(first.content)["tid"] == int(TID)
    assert taobao.parse_messages(load("tmc_consume_empty.json")) == []


@pytest.mark.parametrize(("fixture", "code", "sub_code", "retryable"), [
    ("error_session.json", "27", "invalid-sessionkey", False),
    ("error_limit.json", "7", "accesscontrol.limited-by-app-access-count", True),
    ("error_isp.json", "15", "isp.top-remote-connection-timeout", True),
])
def test_error_answers_raise_taobao_error(fixture: str, code: str, sub_code: str,
                                          retryable: bool) -> None:
    for parse in (taobao.parse_messages, taobao.parse_confirm,
                  lambda answer: taobao.parse_order(answer, REF, "tmall")):
        with pytest.raises(taobao.TaobaoError) as error:
            parse(load(fixture))
        assert (error.value.code, error.value.sub_code, error.value.retryable) == (
            code, sub_code, retryable)


def test_an_api_level_rate_limit_is_retryable_too() -> None:
    answer = {"error_response": {"code": 7, "msg": "App Call Limited",
                                 "sub_code": "accesscontrol.limited-by-api-access-count"}}
    error = taobao.error_of(answer)
    assert error is not None and error.retryable
    for code, retryable in ((7, True), (10, True), (15, False), (41, False)):
        bare = taobao.error_of({"error_response": {"code": code, "msg": "x"}})
        assert bare is not None and bare.retryable is retryable, code
    assert taobao.error_of(load("offline_send_ok.json")) is None


EXPECTED_ACCEPTED = [
    Accepted(delivery_id="8402050551002345001", topic="taobao_trade_TradeBuyerPay", shop=SHOP,
             headers={"pub-time": "2026-11-23 10:03:41"}),
    Accepted(delivery_id="8402050551002345002",
             topic="taobao_trade_TradeLogisticsAddressChanged", shop=SHOP,
             headers={"pub-time": "2026-11-23 10:20:09"}),
    Accepted(delivery_id="8402050551002345003", topic="taobao_trade_TradeClose", shop=SHOP,
             headers={"pub-time": "2026-11-23 10:31:57"}),
    Accepted(delivery_id="8402050551002345004", topic="taobao_refund_RefundCreated", shop=SHOP,
             headers={"pub-time": "2026-11-23 11:20:06"}),
    Accepted(delivery_id="8402050551002345005", topic="taobao_trade_TradeRated", shop=SHOP,
             headers={"pub-time": "2026-11-23 11:45:00"}, actionable=False),
]


def test_each_message_is_accepted_with_its_id() -> None:
    messages = taobao.parse_messages(load("tmc_consume.json"))
    assert [taobao.accept_message(m, NOW) for m in messages] == EXPECTED_ACCEPTED


@pytest.mark.parametrize("topic", [
    "taobao_trade_TradeCreate", "taobao_trade_TradeBuyerPay", "taobao_trade_TradeClose",
    "taobao_trade_TradeChanged", "taobao_trade_TradeLogisticsAddressChanged",
    "taobao_trade_TradeSuccess", "taobao_refund_RefundCreated",
])
def test_order_topics_are_actionable(topic: str) -> None:
    message = taobao.parse_messages(load("tmc_consume.json"))[0].model_copy(
        update={"topic": topic})
    assert taobao.accept_message(message, NOW).actionable


def test_unreadable_content_of_an_order_topic_is_refused() -> None:
    message = taobao.parse_messages(load("tmc_consume.json"))[0]
    with pytest.raises(ApiError) as malformed:
        taobao.accept_message(message.model_copy(update={"content": '{"tid": 1'}), NOW)
    assert (malformed.value.status, malformed.value.reason) == (400, "malformed_json")
    with pytest.raises(ApiError) as invalid:
        taobao.accept_message(message.model_copy(update={"content": '{"oid": 5}'}), NOW)
    assert (invalid.value.status, invalid.value.reason) == (422, "invalid_payload")
    assert "tid" in {p["field"] for p in invalid.value.details["problems"]}
    nobody = message.model_copy(update={"content": '{"tid": 5}', "user_nick": ""})
    with pytest.raises(ApiError) as no_shop:
        taobao.accept_message(nobody, NOW)
    assert no_shop.value.status == 422


def test_confirm_call() -> None:
    ids = ["8402050551002345001", "8402050551002345002"]
    assert taobao.confirm_call(ids, CREDENTIALS, NOW) == Request(
        method="POST", url=GATEWAY,
        form=signed({**common("taobao.tmc.messages.confirm"),
                     "s_message_ids": "8402050551002345001,8402050551002345002"}))
    grouped = taobao.confirm_call(ids, CREDENTIALS, NOW, group="orders").form
    assert grouped is not None and grouped["group_name"] == "orders"
    with pytest.raises(ValueError):
        taobao.confirm_call([], CREDENTIALS, NOW)
    with pytest.raises(ValueError):
        taobao.confirm_call([str(n) for n in range(201)], CREDENTIALS, NOW)
    assert taobao.parse_confirm(load("tmc_confirm.json")) is True


def test_ref_reads_the_stored_message() -> None:
    messages = taobao.parse_messages(load("tmc_consume.json"))
    stored = taobao.message_bytes(messages[0])
    assert taobao.ref(stored, {}) == OrderRef(
        shop=SHOP, external_id=TID, status="WAIT_SELLER_SEND_GOODS",
        updated_at=datetime(2026, 11, 23, 10, 3, 41, tzinfo=CN))
    refund = taobao.ref(taobao.message_bytes(messages[3]), {})
    assert refund.external_id == TID
    assert refund.updated_at == datetime(2026, 11, 23, 11, 20, 5, tzinfo=CN)  # its `modified`
    with pytest.raises(InvalidOrder):
        taobao.ref(b'{"id": "1", "topic": "taobao_trade_TradeCreate", "content": "{}"}', {})


# Statuses ---------------------------------------------------------------------------------


DOCUMENTED = {
    "TRADE_NO_CREATE_PAY": OrderStatus.PENDING_PAYMENT,
    "WAIT_BUYER_PAY": OrderStatus.PENDING_PAYMENT,
    "PAY_PENDING": OrderStatus.PENDING_PAYMENT,
    "WAIT_PRE_AUTH_CONFIRM": OrderStatus.PENDING_PAYMENT,
    "PAID_FORBID_CONSIGN": OrderStatus.PENDING_PAYMENT,
    "WAIT_SELLER_SEND_GOODS": OrderStatus.PAID,
    "SELLER_CONSIGNED_PART": OrderStatus.PAID,
    "WAIT_BUYER_CONFIRM_GOODS": OrderStatus.PAID,
    "TRADE_BUYER_SIGNED": OrderStatus.PAID,
    "TRADE_FINISHED": OrderStatus.PAID,
    "TRADE_CLOSED": OrderStatus.REFUNDED,
    "TRADE_CLOSED_BY_TAOBAO": OrderStatus.CANCELLED,
}


@pytest.mark.parametrize(("status", "expected"), DOCUMENTED.items())
def test_status_mapping_covers_every_documented_status(status: str,
                                                       expected: OrderStatus) -> None:
    assert taobao.map_status(status) is expected
    trade = load("trade_fullinfo.json")
    trade["trade_fullinfo_get_response"]["trade"]["status"] = status
    assert taobao.parse_order(trade, REF, "tmall").status is expected


def test_the_status_table_is_exactly_the_documented_list() -> None:
    assert set(taobao.STATUSES) == set(DOCUMENTED)
    assert taobao.map_status("TRADE_UNKNOWN") is None


# Re-fetch ---------------------------------------------------------------------------------


def test_fetch_call_is_trade_fullinfo_get() -> None:
    assert taobao.fetch_call(REF, CREDENTIALS, NOW) == Request(
        method="POST", url=GATEWAY,
        form=signed({**common("taobao.trade.fullinfo.get"), "fields": taobao.TRADE_FIELDS,
                     "tid": TID}))
    fields = taobao.TRADE_FIELDS.split(",")
    for needed in ("tid", "status", "orders", "receiver_address", "receiver_mobile",
                   "payment", "modified", "pay_time", "buyer_message"):
        assert needed in fields


EXPECTED = Order(
    marketplace="taobao",
    shop=SHOP,
    external_id=TID,
    name=TID,
    status=OrderStatus.PAID,
    buyer=Buyer(external_id="AAHk5d-EAAeGwJedwSHpFbCM", name="t**1"),
    shipping_address=Address(
        name="王芳", line1="文一西路588号西溪首座3幢1201室", line2="西湖区 文新街道",
        city="杭州市", province="浙江省", postal_code="310012", country_code="CN",
        phone="13912345678"),
    lines=(
        OrderLine(line_id="3912345678901234568", sku="LS-WHT-M", title="栖木 亚麻衬衫 宽松长袖",
                  variant="颜色分类:白色;尺码:M", quantity=2, unit_price=Decimal("199.00")),
        OrderLine(line_id="3912345678901234569", sku="TOTE-NAT", title="栖木 帆布托特包",
                  variant="颜色分类:原色", quantity=1, unit_price=Decimal("59.00")),
        # the third sub-order was refunded and closed: not shipped
    ),
    currency="CNY",
    totals=Totals(subtotal=Decimal("656.00"), shipping=Decimal("0.00"), tax=Decimal("0"),
                  discounts=Decimal("20.00"), fees=Decimal("0.00"), total=Decimal("636.00"),
                  tax_included=True),
    placed_at=datetime(2026, 11, 23, 10, 2, 11, tzinfo=CN),
    paid_at=datetime(2026, 11, 23, 10, 3, 40, tzinfo=CN),
    updated_at=datetime(2026, 11, 23, 11, 20, 5, tzinfo=CN),
    buyer_note="请用纸箱包装，谢谢",
    invoice_title="杭州栖木文化创意有限公司",
    attributes={"seller_memo": "赠品：亚麻收纳袋 ×1"},
    after_sale=AfterSale.REFUNDED,  # the third sub-order's refund_status is SUCCESS
)


def test_parse_order_maps_the_trade_exactly() -> None:
    order = taobao.parse_order(load("trade_fullinfo.json"), REF, "tmall")
    assert order == EXPECTED
    assert fulfilment_problems(order) == []


def _trade(**changes: Any) -> dict[str, Any]:
    answer = load("trade_fullinfo.json")
    answer["trade_fullinfo_get_response"]["trade"].update(changes)
    return answer


def test_a_trade_closed_after_payment_is_refunded_when_it_ended() -> None:
    order = taobao.parse_order(_trade(status="TRADE_CLOSED", end_time="2026-11-24 09:12:00"),
                               REF, "tmall")
    assert order.status is OrderStatus.REFUNDED
    assert order.cancelled_at == datetime(2026, 11, 24, 9, 12, tzinfo=CN)
    unpaid = taobao.parse_order(_trade(status="TRADE_CLOSED_BY_TAOBAO", pay_time=""), REF, "t")
    assert unpaid.status is OrderStatus.CANCELLED
    assert unpaid.cancelled_at == datetime(2026, 11, 23, 11, 20, 5, tzinfo=CN)  # modified
    assert unpaid.paid_at is None


def test_only_closed_sub_orders_are_left_out() -> None:
    answer = load("trade_fullinfo.json")
    orders = answer["trade_fullinfo_get_response"]["trade"]["orders"]["order"]
    orders[1]["refund_status"] = "SUCCESS"  # a partial, money-only refund: still ships
    orders[2]["status"] = "WAIT_SELLER_SEND_GOODS"  # the refund was reversed
    orders[2]["refund_status"] = "CLOSED"
    order = taobao.parse_order(answer, REF, "tmall")
    assert [line.sku for line in order.lines] == ["LS-WHT-M", "TOTE-NAT", "LS-BLK-L"]
    orders[0]["status"] = "TRADE_CLOSED_BY_TAOBAO"
    order = taobao.parse_order(answer, REF, "tmall")
    assert [line.sku for line in order.lines] == ["TOTE-NAT", "LS-BLK-L"]


def test_a_county_under_the_province_is_the_city() -> None:
    order = taobao.parse_order(_trade(receiver_state="河南省", receiver_city="",
                                      receiver_district="济源市", receiver_town="沁园街道"),
                               REF, "tmall")
    assert order.shipping_address is not None
    assert (order.shipping_address.city, order.shipping_address.line2) == ("济源市", "沁园街道")


def test_no_receiver_means_no_address() -> None:
    answer = load("trade_fullinfo.json")
    trade = answer["trade_fullinfo_get_response"]["trade"]
    for key in [k for k in trade if k.startswith("receiver_")]:
        del trade[key]
    order = taobao.parse_order(answer, REF, "tmall")
    assert order.shipping_address is None
    assert fulfilment_problems(order) == ["no_shipping_address"]


def test_a_presale_date_is_taken_only_when_it_is_a_date() -> None:
    def presale(text: str) -> date | None:
        return taobao.parse_order(_trade(est_con_time=text), REF, "tmall").presale_ship_date

    assert presale("2026-12-05") == date(2026, 12, 5)
    assert presale("付款后15天内") is None


def test_the_tid_is_read_exactly_even_without_tid_str() -> None:
    answer = load("trade_fullinfo.json")
    del answer["trade_fullinfo_get_response"]["trade"]["tid_str"]
    assert taobao.parse_order(answer, REF, "tmall").external_id == TID


@pytest.mark.parametrize(("changes", "reason"), [
    ({"tid": 3912345678901234999, "tid_str": "3912345678901234999"}, "order_mismatch"),
    ({"status": "TRADE_SOMETHING_NEW"}, "unknown_status"),
    ({"created": "23/11/2026"}, "invalid_payload"),
    ({"payment": "十元"}, "invalid_payload"),
])
def test_a_wrong_or_unreadable_trade_is_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidOrder) as error:
        taobao.parse_order(_trade(**changes), REF, "tmall")
    assert error.value.reason == reason


# Writeback --------------------------------------------------------------------------------


SHIPPED = Shipped(external_id=TID, carrier_code="STO", tracking_number="773012345678901",
                  shipped_at=datetime(2026, 11, 24, 9, 30, tzinfo=UTC), package_id="pkg_1")


def test_writeback_call_is_the_exact_offline_send() -> None:
    assert taobao.writeback_call(SHIPPED, CREDENTIALS, NOW) == Request(
        method="POST", url=GATEWAY,
        form=signed({**common("taobao.logistics.offline.send"), "tid": TID,
                     "out_sid": "773012345678901", "company_code": "STO"}))


def test_a_partial_shipment_names_its_sub_orders() -> None:
    partial = SHIPPED.model_copy(update={"lines": (("3912345678901234568", 2),)})
    assert taobao.writeback_call(partial, CREDENTIALS, NOW) == Request(
        method="POST", url=GATEWAY,
        form=signed({**common("taobao.logistics.offline.send"), "tid": TID,
                     "out_sid": "773012345678901", "company_code": "STO",
                     "is_split": "1", "sub_tid": "3912345678901234568"}))


@pytest.mark.parametrize(("ours", "code"), [
    ("STO", "STO"), ("SF", "SF"), ("YTO", "YTO"), ("ZTO", "ZTO"), ("YUNDA", "YUNDA"),
    ("JD", "JD"), ("EMS", "EMS"), ("yunda", "YUNDA"),
])
def test_carriers_map_to_taobao_company_codes(ours: str, code: str) -> None:
    call = taobao.writeback_call(SHIPPED.model_copy(update={"carrier_code": ours}),
                                 CREDENTIALS, NOW)
    assert call.form is not None and call.form["company_code"] == code


def test_an_unknown_carrier_is_refused() -> None:
    with pytest.raises(ValueError, match="DHL"):
        taobao.writeback_call(SHIPPED.model_copy(update={"carrier_code": "DHL"}), CREDENTIALS,
                              NOW)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, raw("offline_send_ok.json"), WritebackResult(ok=True)),
    (200, raw("offline_send_already.json"), WritebackResult(
        ok=True, already_done=True, code="isv.logistics-offline-service-error:B04",
        detail="订单状态不对该物流订单已经发货或者已关闭，不能重复发货")),
    (200, raw("offline_send_bad_waybill.json"), WritebackResult(
        ok=False, code="isv.logistics-offline-service-error:B60",
        detail="运单号不符合规则或已经被使用")),
    (200, raw("offline_send_retry_later.json"), WritebackResult(
        ok=False, retryable=True, code="isv.logistics-offline-service-error:B150",
        detail="发货异常，请稍等后重试")),
    (200, raw("error_limit.json"), WritebackResult(
        ok=False, retryable=True, code="accesscontrol.limited-by-app-access-count",
        detail="This ban will last for 71 more seconds")),
    (200, raw("error_isp.json"), WritebackResult(
        ok=False, retryable=True, code="isp.top-remote-connection-timeout",
        detail="连接远程服务超时")),
    (200, raw("error_session.json"), WritebackResult(
        ok=False, code="invalid-sessionkey", detail="SessionKey非法")),
    (502, b"<html>Bad Gateway</html>", WritebackResult(ok=False, retryable=True, code="502")),
    (200, b'{"logistics_offline_send_response": {"shipping": {"is_success": false}}}',
     WritebackResult(ok=False, code="unexpected_answer",
                     detail="{'logistics_offline_send_response': {'shipping': "
                            "{'is_success': False}}}")),
])
def test_parse_writeback(status: int, body: bytes, expected: WritebackResult) -> None:
    assert taobao.parse_writeback(status, body) == expected


def test_existing_call_and_already_shipped_confirm_a_previous_send() -> None:
    assert taobao.existing_call(SHIPPED, CREDENTIALS, NOW) == Request(
        method="POST", url=GATEWAY,
        form=signed({**common("taobao.trade.fullinfo.get"),
                     "fields": "tid,status,orders.oid,orders.invoice_no,"
                               "orders.logistics_company",
                     "tid": TID}))
    shipped = load("trade_shipped.json")
    assert taobao.already_shipped(shipped, SHIPPED)
    assert not taobao.already_shipped(shipped, SHIPPED.model_copy(
        update={"tracking_number": "773099999999999"}))
    # Only the named sub-orders count: the third one has no waybill.
    assert not taobao.already_shipped(shipped, SHIPPED.model_copy(
        update={"lines": (("3912345678901234570", 1),)}))
    assert taobao.already_shipped(shipped, SHIPPED.model_copy(
        update={"lines": (("3912345678901234569", 1),)}))
    assert not taobao.already_shipped(load("trade_fullinfo.json"), SHIPPED)
    with pytest.raises(taobao.TaobaoError):
        taobao.already_shipped(load("error_limit.json"), SHIPPED)


# Reconciliation ---------------------------------------------------------------------------


def test_list_call_is_the_increment_of_one_day_at_most() -> None:
    since = NOW - timedelta(hours=6)
    assert taobao.list_call(SHOP, since, NOW, None, CREDENTIALS, NOW) == Request(
        method="POST", url=GATEWAY,
        form=signed({**common("taobao.trades.sold.increment.get"),
                     "fields": "tid,status,modified,seller_nick",
                     "start_modified": "2026-11-23 05:00:00",
                     "end_modified": NOW_CN,
                     "page_no": "1", "page_size": "100", "use_has_next": "true"}))
    page = taobao.list_call(SHOP, since, NOW, "3", CREDENTIALS, NOW).form
    assert page is not None and page["page_no"] == "3"
    with pytest.raises(ValueError, match="one day"):
        taobao.list_call(SHOP, NOW - timedelta(days=1, seconds=1), NOW, None, CREDENTIALS, NOW)
    with pytest.raises(ValueError):
        taobao.list_call(SHOP, NOW, NOW, None, CREDENTIALS, NOW)


def test_parse_list_returns_refs_and_the_next_page() -> None:
    refs, cursor = taobao.parse_list(load("trades_increment.json"), shop=SHOP, cursor="2")
    assert refs == [
        OrderRef(shop=SHOP, external_id=TID, status="WAIT_SELLER_SEND_GOODS",
                 updated_at=datetime(2026, 11, 23, 11, 20, 5, tzinfo=CN)),
        OrderRef(shop=SHOP, external_id="3912345678901299001", status="TRADE_CLOSED_BY_TAOBAO",
                 updated_at=datetime(2026, 11, 23, 10, 31, 57, tzinfo=CN)),
    ]
    assert cursor == "3"
    assert taobao.parse_list(load("trades_increment.json"))[1] == "2"
    last = load("trades_increment.json")
    last["trades_sold_increment_get_response"]["has_next"] = False
    assert taobao.parse_list(last)[1] is None
    empty = {"trades_sold_increment_get_response": {"has_next": False}}
    assert taobao.parse_list(empty) == ([], None)
    with pytest.raises(taobao.TaobaoError):
        taobao.parse_list(load("error_limit.json"))
