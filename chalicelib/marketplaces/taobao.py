"""Taobao / Tmall (TOP, the Taobao Open Platform) orders. Pure: sign, build requests, read answers.

Inbound: no webhook. Trade events come from the TMC message service, which we poll:
`consume_call` (`taobao.tmc.messages.consume`) returns up to 200 messages, `parse_messages` reads
them, `accept_message` turns each into an Accepted (dedupe on the message id), and
`confirm_call` (`taobao.tmc.messages.confirm`) acknowledges the stored ones; an unconfirmed
message is delivered again. There is no HTTP answer, so `REPLY` is None; `accept` (the HTTP
entry point) answers 404 `unknown_source`. The stored raw body of a TMC delivery is
`message_bytes(message)` (the message as JSON); `ref` reads it back.

Messages are thin (`content` is a JSON string with tid, oid, seller_nick, buyer_nick, payment,
status, ...): `fetch_call` builds `taobao.trade.fullinfo.get` and `parse_order` reads it. `shop`
is the seller's nick. Since the 2021 privacy rules the receiver_* fields come masked (with an
`oaid`) unless the app may decrypt them (`taobao.top.oaid.decrypt` or the Cainiao waybill
flow); whatever is there is mapped.

Signing (every TOP call; chalicelib/core/top.py, one copy shared with the Cainiao waybills):
all parameters but `sign` (common and business, empty ones left out)
sorted by name, concatenated as name+value; sign_method "md5": upper-hex MD5(secret + s +
secret); "hmac": upper-hex HMAC-MD5(key=secret, s); "hmac-sha256": upper-hex HMAC-SHA256(key=
secret, s). Common parameters: method, app_key, session (the seller's access token), timestamp
"YYYY-MM-DD HH:MM:SS" in GMT+8 (the gateway refuses more than 10 minutes of skew), format=json,
v=2.0, sign_method. Sent as a form POST to https://eco.taobao.com/router/rest.

Credentials (per shop): `app_key`, `app_secret`, `session` (access token), `sign_method` (md5 |
hmac | hmac-sha256; md5 when absent), optionally `gateway`, and for a session that renews itself
`refresh_token` with `access_token_expires_at` (see Token refresh).

Token refresh (`taobao.top.auth.token.refresh`, as the TOP SDKs declare it: bububa/opentaobao,
the official Java and PHP SDKs): "根据refresh_token重新生成token，目前只有服务市场订购类应用可以
刷新token，其他类型应用（如商家后台）使用固定时长token，不提供刷新功能" — only an app sold on the
service market (服务市场) can refresh; other apps hold a session of fixed length, kept without a
refresh token (and so used as it is). A TOP call with `refresh_token` and no session; the answer
`{"top_auth_token_refresh_response": {"token_result": "<JSON text>"}}`, whose JSON holds
`access_token` (the new session), `expires_in` (s), `refresh_token` (the one sent is spent),
`re_expires_in` (s), and in recorded answers `expire_time` and `refresh_token_valid_time` (unix
ms), `r1/r2/w1/w2_expires_in`, `taobao_user_nick`, `taobao_user_id`.

Errors: `{"error_response": {code, msg, sub_code, sub_msg}}` raises TaobaoError; retryable for
rate limits (code 7, sub_code accesscontrol.limited-by-*), platform faults (isp.*, code 10) and
the writeback's "retry later" (isv.logistics-offline-service-error:B150).

Statuses (Trade.status): TRADE_NO_CREATE_PAY, WAIT_BUYER_PAY, PAY_PENDING, WAIT_PRE_AUTH_CONFIRM
and PAID_FORBID_CONSIGN (paid, but Taobao forbids shipping yet: group buy) await payment;
WAIT_SELLER_SEND_GOODS, SELLER_CONSIGNED_PART, WAIT_BUYER_CONFIRM_GOODS, TRADE_BUYER_SIGNED and
TRADE_FINISHED are paid (shipped/delivered/completed map to paid: the fulfilment is ours, the
order is neither cancelled nor refunded); TRADE_CLOSED (closed after payment: refunded) is
refunded; TRADE_CLOSED_BY_TAOBAO (closed before payment) is cancelled. Closed sub-orders
(refunded in full) are not sent to the warehouse.

Writeback: `taobao.logistics.offline.send(tid, out_sid, company_code)` (with is_split=1 and
sub_tid for a partial shipment). Not idempotent: a second send fails with sub_code
`isv.logistics-offline-service-error:B04` ("already shipped or closed, cannot ship again"),
read as already_done; `existing_call` + `already_shipped` confirm our tracking number is there.

Reconciliation: `taobao.trades.sold.increment.get` over at most one day of modification time,
page_size 100, use_has_next; the cursor is the next page number.

Sources: protocols.md section 1 (TMC, confirm, signing, timestamp); the TOP protocol page (as
mirrored on the 1688 open platform) for the common parameters, the gateways and the three sign
methods; bububa/opentaobao (a generated SDK) for the signing code, the TmcMessage, Trade and
Order fields, the consume/confirm parameters and the status lists (including
PAID_FORBID_CONSIGN); third-party ERP code for the B04/B60/B150 sub_codes, code 7
accesscontrol.limited-by-app-access-count and the offline.send answer
`{"logistics_offline_send_response": {"shipping": {"is_success": true}}}`.

Guesses:
- Company codes SF, JD and EMS (STO, YTO, ZTO, YUNDA seen in third-party code lists).
- TOP lists in JSON wrapped as {"tmc_message": [...]}, {"order": [...]}, {"trade": [...]}.
- Code 10 ("service currently unavailable") retryable; every other isv.* permanent.
- `presale_ship_date` from est_con_time when it is a date; `updated_at` of a TMC ref is the
  content's `modified` or else the message's pub_time.
- Token refresh: the moments (`expire_time`, `refresh_token_valid_time`) win over the lifetimes
  where both come; `re_expires_in` 0 without a valid time is taken as "not said"; every error
  but the retryable classes is a refusal for good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import Field, ValidationError, field_validator

from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.core.signatures import delivery_id, loads_json, sane_moment, validate_payload
from chalicelib.core.top import CHINA as CHINA
from chalicelib.core.top import GATEWAY as GATEWAY
from chalicelib.core.top import SIGN_METHODS as SIGN_METHODS
from chalicelib.core.top import TIME_FORMAT as TIME_FORMAT
from chalicelib.core.top import sign as sign
from chalicelib.core.top import top_call as top_call
from chalicelib.core.top import top_time as top_time
from chalicelib.marketplaces.calls import (
    Credentials,
    IdText,
    LenientModel,
    Money,
    OrderRef,
    Shipped,
    WritebackResult,
)
from chalicelib.marketplaces.contract import (
    Fetch,
    Inbound,
    Listing,
    Marketplace,
    PackageCheck,
    ShipmentWrite,
    TokenRefresh,
)
from chalicelib.marketplaces.tokens import RefreshRefused, Tokens, expires_at
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
    most_pressing,
    note_fields,
)

NAME = "taobao"
# No HTTP answer: a TMC message is acknowledged with confirm_call.
REPLY: tuple[int, str, str] | None = None
MAX_SKEW = timedelta(minutes=10)  # the gateway's tolerance for `timestamp`
CONSUME_LIMITS = (10, 200)  # quantity per consume call
CONFIRM_LIMIT = 200  # message ids per confirm call
LIST_WINDOW = timedelta(days=1)  # start_modified..end_modified
PAGE_SIZE = 100

STATUSES: dict[str, OrderStatus | None] = {
    "TRADE_NO_CREATE_PAY": OrderStatus.PENDING_PAYMENT,  # no Alipay trade created yet
    "WAIT_BUYER_PAY": OrderStatus.PENDING_PAYMENT,
    "PAY_PENDING": OrderStatus.PENDING_PAYMENT,  # international card payment being confirmed
    "WAIT_PRE_AUTH_CONFIRM": OrderStatus.PENDING_PAYMENT,  # zero-price contract purchase
    "PAID_FORBID_CONSIGN": OrderStatus.PENDING_PAYMENT,  # paid, shipping forbidden for now
    "WAIT_SELLER_SEND_GOODS": OrderStatus.PAID,
    "SELLER_CONSIGNED_PART": OrderStatus.PAID,
    "WAIT_BUYER_CONFIRM_GOODS": OrderStatus.PAID,
    "TRADE_BUYER_SIGNED": OrderStatus.PAID,  # cash on delivery, signed for
    "TRADE_FINISHED": OrderStatus.PAID,
    "TRADE_CLOSED": OrderStatus.REFUNDED,  # closed after payment: refunded
    "TRADE_CLOSED_BY_TAOBAO": OrderStatus.CANCELLED,  # closed before payment
}
_CLOSED = frozenset({"TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"})

# A sub-order's refund_status (Order.refund_status in taobao.trade.fullinfo.get). A dispute
# (客服介入, the refund's cs_status) is on the refund itself (taobao.refund.get), not on the
# trade we fetch: Taobao gives us no dispute here.
REFUND_STATUSES: dict[str, AfterSale] = {
    "NO_REFUND": AfterSale.NONE,
    "WAIT_SELLER_AGREE": AfterSale.REFUND_REQUESTED,  # 买家已经申请退款，等待卖家同意
    "SELLER_REFUSE_BUYER": AfterSale.REFUND_REQUESTED,  # 卖家拒绝退款: the buyer may insist
    "WAIT_BUYER_RETURN_GOODS": AfterSale.REFUNDING,  # 卖家已经同意退款，等待买家退货
    "WAIT_SELLER_CONFIRM_GOODS": AfterSale.REFUNDING,  # 买家已经退货，等待卖家确认收货
    "CLOSED": AfterSale.NONE,  # 退款关闭: the buyer withdrew it
    "SUCCESS": AfterSale.REFUNDED,  # 退款成功
}


def after_sale_of(trade_status: str, refund_statuses: Sequence[str]) -> AfterSale:
    """The trade's after-sale state from its sub-orders' refund_status; a trade closed after
    payment (TRADE_CLOSED) was refunded whatever the sub-orders say."""
    state = most_pressing(REFUND_STATUSES.get(code) for code in refund_statuses)
    if state is AfterSale.NONE and trade_status == "TRADE_CLOSED":
        return AfterSale.REFUNDED
    return state

# Topics that name a trade whose re-fetch may change the order we hold.
ORDER_TOPICS = frozenset({
    "taobao_trade_TradeCreate",
    "taobao_trade_TradeAlipayCreate",
    "taobao_trade_TradeBuyerPay",
    "taobao_trade_TradeBuyerStepPay",
    "taobao_trade_TradeClose",
    "taobao_trade_TradeCloseAndModifyDetailOrder",
    "taobao_trade_TradeChanged",
    "taobao_trade_TradeLogisticsAddressChanged",
    "taobao_trade_TradeModifyFee",
    "taobao_trade_TradeSellerShip",
    "taobao_trade_TradePartlySellerShip",
    "taobao_trade_TradePartlyRefund",
    "taobao_trade_TradeDelayConfirmPay",
    "taobao_trade_TradeSuccess",
    "taobao_refund_RefundCreated",
    "taobao_refund_RefundSuccess",
    "taobao_refund_RefundClosed",
})

# Our carrier codes -> TOP logistics company codes (taobao.logistics.companies.get).
CARRIERS: dict[str, str] = {
    "STO": "STO",
    "SF": "SF",
    "YTO": "YTO",
    "ZTO": "ZTO",
    "YUNDA": "YUNDA",
    "JD": "JD",
    "EMS": "EMS",
}

ALREADY_SHIPPED = "isv.logistics-offline-service-error:B04"
_RETRY_LATER = frozenset({"isv.logistics-offline-service-error:B150"})

TRADE_FIELDS = ",".join((
    "tid", "tid_str", "status", "type", "seller_nick", "buyer_nick", "buyer_open_uid",
    "created", "modified", "pay_time", "end_time", "consign_time", "est_con_time",
    "step_trade_status", "total_fee", "post_fee", "discount_fee", "adjust_fee", "payment",
    "order_tax_fee", "buyer_message", "seller_memo", "invoice_name", "receiver_name",
    "receiver_state", "receiver_city",
    "receiver_district", "receiver_town", "receiver_address", "receiver_zip", "receiver_mobile",
    "receiver_phone", "receiver_country", "oaid", "orders",
))
EXISTING_FIELDS = "tid,status,orders.oid,orders.invoice_no,orders.logistics_company"
LIST_FIELDS = "tid,status,modified,seller_nick"


class TaobaoError(Exception):
    """A TOP `error_response`."""

    def __init__(self, code: str, message: str, retryable: bool, sub_code: str = "") -> None:
        super().__init__(f"{code} {sub_code}: {message}".replace("  ", " "))
        self.code = code
        self.message = message
        self.retryable = retryable
        self.sub_code = sub_code


def map_status(status: str) -> OrderStatus | None:
    return STATUSES.get(status)


# Signing --------------------------------------------------------------------------------------


def parse_top_time(text: str) -> datetime:
    """TOP times are "YYYY-MM-DD HH:MM:SS" in GMT+8."""
    return sane_moment(datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=CHINA))


# Answers --------------------------------------------------------------------------------------


def error_of(answer: Mapping[str, Any]) -> TaobaoError | None:
    error = answer.get("error_response")
    if not isinstance(error, Mapping):
        return None
    code = str(error.get("code", ""))
    sub_code = str(error.get("sub_code", "") or "")
    message = str(error.get("sub_msg") or error.get("msg") or "")
    retryable = (
        code in ("7", "10")
        or sub_code.startswith(("isp.", "accesscontrol.limited-by"))
        or sub_code in _RETRY_LATER
    )
    return TaobaoError(code, message, retryable, sub_code)


def _response(answer: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    error = error_of(answer)
    if error is not None:
        raise error
    body = answer.get(key)
    if not isinstance(body, Mapping):
        raise TaobaoError("unexpected_answer", f"the answer has neither {key} nor an error",
                          False)
    return body


def _listed(value: Any, key: str) -> list[Any]:
    """TOP wraps a JSON list in an object named after its element: {"order": [...]}."""
    if isinstance(value, Mapping):
        value = value.get(key, [])
    return list(value) if isinstance(value, list) else []


# TMC ------------------------------------------------------------------------------------------


class TmcMessage(LenientModel):
    id: IdText = Field(min_length=1)
    topic: str
    content: str = ""
    pub_time: str = ""
    pub_app_key: IdText = ""
    user_id: IdText = ""
    user_nick: str = ""


class MessageContent(LenientModel):
    tid: IdText = Field(min_length=1)
    oid: IdText = ""
    seller_nick: str = ""
    buyer_nick: str = ""
    status: str = ""
    modified: str = ""


def consume_call(group: str, quantity: int, credentials: Credentials,
                 now: datetime) -> Request:
    """Fetch up to `quantity` (10-200) messages of a user group ("" = the default group)."""
    low, high = CONSUME_LIMITS
    if not low <= quantity <= high:
        raise ValueError(f"quantity must be {low}-{high}")
    return top_call("taobao.tmc.messages.consume",
                    {"group_name": group, "quantity": str(quantity)}, credentials, now)


def parse_messages(answer: Mapping[str, Any]) -> list[TmcMessage]:
    body = _response(answer, "tmc_messages_consume_response")
    try:
        return [TmcMessage.model_validate(item)
                for item in _listed(body.get("messages"), "tmc_message")]
    except ValidationError as exc:
        raise TaobaoError("unexpected_answer", str(exc)[:500], False) from None


def confirm_call(message_ids: Sequence[str], credentials: Credentials, now: datetime, *,
                 group: str = "") -> Request:
    """Acknowledge processed (stored) messages, at most 200 per call."""
    if not message_ids or len(message_ids) > CONFIRM_LIMIT:
        raise ValueError(f"confirm 1-{CONFIRM_LIMIT} message ids per call")
    return top_call("taobao.tmc.messages.confirm",
                    {"group_name": group, "s_message_ids": ",".join(message_ids)},
                    credentials, now)


def parse_confirm(answer: Mapping[str, Any]) -> bool:
    return bool(_response(answer, "tmc_messages_confirm_response").get("is_success"))


def message_bytes(message: TmcMessage) -> bytes:
    """The raw body we store for a TMC delivery (no signature covers it)."""
    return message.model_dump_json().encode("utf-8")


def _content(message: TmcMessage) -> MessageContent:
    try:
        value = loads_json(message.content)
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"message content is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "malformed_json", "message content must be a JSON object")
    return validate_payload(MessageContent, value)


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    """Taobao does not post notifications over HTTP (TMC is polled)."""
    raise ApiError(404, "unknown_source", "Taobao TMC messages are polled, not posted")


def accept_message(message: TmcMessage, now: datetime) -> Accepted:
    """One consumed TMC message. 400 `malformed_json` / 422 `invalid_payload` for the content
    of an order topic; other topics are accepted but not actionable."""
    kept = {"pub-time": message.pub_time} if message.pub_time else {}
    key = delivery_id(message.id, "message id")
    if message.topic not in ORDER_TOPICS:
        return Accepted(delivery_id=key, topic=message.topic, shop=message.user_nick,
                        headers=kept, actionable=False)
    content = _content(message)
    shop = content.seller_nick or message.user_nick
    if not shop:
        raise ApiError(422, "invalid_payload", "message names no seller",
                       problems=[{"field": "seller_nick", "problem": "Field required"}])
    return Accepted(delivery_id=key, topic=message.topic, shop=shop, headers=kept)


def ref(raw: bytes, headers: Mapping[str, str]) -> OrderRef:
    """The trade a stored TMC message (`message_bytes`) names."""
    try:
        message = TmcMessage.model_validate_json(raw)
        content = MessageContent.model_validate_json(message.content)
        when = content.modified or message.pub_time
        updated_at = parse_top_time(when) if when else None
    except ValueError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return OrderRef(shop=content.seller_nick or message.user_nick, external_id=content.tid,
                    status=content.status, updated_at=updated_at)


# Reading trades -------------------------------------------------------------------------------


class TaobaoOrder(LenientModel):
    oid: IdText
    title: str = ""
    outer_sku_id: str = ""
    outer_iid: str = ""
    sku_properties_name: str = ""
    price: Money = Decimal("0")
    num: int = Field(ge=0)
    status: str = ""
    refund_status: str = ""


class Trade(LenientModel):
    tid: IdText
    status: str
    seller_nick: str = ""
    buyer_nick: str = ""
    buyer_open_uid: str = ""
    created: str
    modified: str
    pay_time: str = ""
    end_time: str = ""
    est_con_time: str = ""
    total_fee: Money = Decimal("0")
    post_fee: Money = Decimal("0")
    discount_fee: Money = Decimal("0")
    payment: Money = Decimal("0")
    adjust_fee: Money = Decimal("0")
    order_tax_fee: Money = Decimal("0")
    buyer_message: str = ""  # 买家留言
    seller_memo: str = ""  # 卖家备注: the shop's own instruction
    invoice_name: str = ""  # 发票抬头
    receiver_name: str = ""
    receiver_state: str = ""
    receiver_city: str = ""
    receiver_district: str = ""
    receiver_town: str = ""
    receiver_address: str = ""
    receiver_zip: str = ""
    receiver_mobile: str = ""
    oaid: str = ""  # the Open Addressee ID of a masked receiver
    receiver_phone: str = ""
    orders: list[TaobaoOrder] = Field(default_factory=list)

    @field_validator("orders", mode="before")
    @classmethod
    def _unwrap_orders(cls, value: Any) -> Any:
        return _listed(value, "order")


def fetch_call(ref: OrderRef, credentials: Credentials, now: datetime) -> Request:
    return top_call("taobao.trade.fullinfo.get",
                    {"fields": TRADE_FIELDS, "tid": ref.external_id}, credentials, now)


def parse_order(answer: Mapping[str, Any], ref: OrderRef, source: str) -> Order:
    body = _response(answer, "trade_fullinfo_get_response")
    raw_trade = body.get("trade")
    if isinstance(raw_trade, Mapping) and raw_trade.get("tid_str"):
        raw_trade = {**raw_trade, "tid": raw_trade["tid_str"]}
    try:
        trade = Trade.model_validate(raw_trade)
        placed_at = parse_top_time(trade.created)
        updated_at = parse_top_time(trade.modified)
        paid_at = parse_top_time(trade.pay_time) if trade.pay_time else None
        ended_at = parse_top_time(trade.end_time) if trade.end_time else None
    except (ValidationError, ValueError) as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    if trade.tid != ref.external_id:
        raise InvalidOrder("order_mismatch", f"asked for {ref.external_id}, got {trade.tid}")
    status = map_status(trade.status)
    if status is None:
        raise InvalidOrder("unknown_status", f"{trade.tid} is {trade.status}")
    closed = trade.status in _CLOSED
    return Order(
        marketplace=NAME,
        shop=trade.seller_nick or ref.shop,
        external_id=trade.tid,
        name=trade.tid,
        status=status,
        buyer=Buyer(external_id=trade.buyer_open_uid, name=trade.buyer_nick),
        shipping_address=_address(trade),
        lines=tuple(_line(order) for order in trade.orders if _shippable(order)),
        currency="CNY",
        totals=totals_of(trade),
        placed_at=placed_at,
        paid_at=paid_at,
        cancelled_at=(ended_at or updated_at) if closed else None,
        updated_at=updated_at,
        buyer_note=trade.buyer_message,
        presale_ship_date=_date(trade.est_con_time),
        after_sale=after_sale_of(trade.status, [order.refund_status for order in trade.orders]),
        **note_fields((("invoice_title", trade.invoice_name),
                       ("seller_memo", trade.seller_memo))),
    )


def totals_of(trade: Trade) -> Totals:
    """`total_fee` is the goods at list price (price × num), `discount_fee` the platform's
    and shop's promotions, `adjust_fee` the seller's manual change of price (signed), `post_fee`
    the postage, `payment` what the buyer paid. Prices include VAT; `order_tax_fee`
    (cross-border import tax) is inside `payment` too."""
    return Totals(subtotal=trade.total_fee, shipping=trade.post_fee, tax=trade.order_tax_fee,
                  discounts=trade.discount_fee, fees=trade.adjust_fee, total=trade.payment,
                  tax_included=True)


def _shippable(order: TaobaoOrder) -> bool:
    # A sub-order refunded in full is closed; a partial (money only) refund leaves it open and
    # it still ships, so the status decides, not refund_status.
    return order.num > 0 and order.status not in _CLOSED


def _line(order: TaobaoOrder) -> OrderLine:
    return OrderLine(line_id=order.oid, sku=order.outer_sku_id or order.outer_iid,
                     title=order.title, variant=order.sku_properties_name,
                     quantity=order.num, unit_price=order.price)


def _address(trade: Trade) -> Address | None:
    if not (trade.receiver_name or trade.receiver_address or trade.receiver_city):
        return None
    # Province-administered counties have a district but no city: the district is the city.
    city = trade.receiver_city or trade.receiver_district
    district = trade.receiver_district if trade.receiver_city else ""
    return Address(
        name=trade.receiver_name,
        line1=trade.receiver_address,
        line2=" ".join(p for p in (district, trade.receiver_town) if p),
        city=city,
        province=trade.receiver_state,
        postal_code=trade.receiver_zip,
        country_code="CN",
        phone=trade.receiver_mobile or trade.receiver_phone,
        oaid=trade.oaid,  # masked receivers: what the Cainiao waybill is issued against
    )


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()[:10]) if text else None
    except ValueError:
        return None  # e.g. "付款后15天内": a promise, not a date


# Writeback ------------------------------------------------------------------------------------


def writeback_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    """offline.send; with `lines` only those sub-orders (is_split=1, sub_tid)."""
    carrier = shipped.carrier_code.upper()
    try:
        company = CARRIERS[carrier]
    except KeyError:
        raise ValueError(f"no Taobao company code for carrier {shipped.carrier_code!r}") from None
    params = {"tid": shipped.external_id, "out_sid": shipped.tracking_number,
              "company_code": company}
    if shipped.lines:
        params |= {"is_split": "1", "sub_tid": ",".join(oid for oid, _ in shipped.lines)}
    return top_call("taobao.logistics.offline.send", params, credentials, now)


def parse_writeback(status: int, body: bytes) -> WritebackResult:
    """TOP answers HTTP 200 for errors too: the body decides."""
    if status >= 500 or status == 429:
        return WritebackResult(ok=False, retryable=True, code=str(status))
    try:
        answer = loads_json(body)
    except ValueError:
        return WritebackResult(ok=False, code=str(status),
                               detail=body[:500].decode("utf-8", "replace"))
    if not isinstance(answer, dict):
        return WritebackResult(ok=False, code="unexpected_answer")
    error = error_of(answer)
    if error is not None:
        if error.sub_code == ALREADY_SHIPPED:
            # "already shipped or closed": confirm with existing_call + already_shipped.
            return WritebackResult(ok=True, already_done=True, code=error.sub_code,
                                   detail=error.message)
        return WritebackResult(ok=False, retryable=error.retryable,
                               code=error.sub_code or error.code, detail=error.message)
    shipping = answer.get("logistics_offline_send_response", {}).get("shipping", {})
    if isinstance(shipping, dict) and shipping.get("is_success") is True:
        return WritebackResult(ok=True)
    return WritebackResult(ok=False, code="unexpected_answer", detail=str(answer)[:500])


def existing_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    """The trade's sub-orders with their waybill numbers: was this package already sent?"""
    return top_call("taobao.trade.fullinfo.get",
                    {"fields": EXISTING_FIELDS, "tid": shipped.external_id}, credentials, now)


def already_shipped(answer: Mapping[str, Any], shipped: Shipped) -> bool:
    trade = _response(answer, "trade_fullinfo_get_response").get("trade")
    if not isinstance(trade, Mapping):
        return False
    wanted = {oid for oid, _ in shipped.lines}
    for order in _listed(trade.get("orders"), "order"):
        if not isinstance(order, Mapping):
            continue
        if wanted and str(order.get("oid")) not in wanted:
            continue
        if str(order.get("invoice_no") or "").strip() == shipped.tracking_number:
            return True
    return False


# Reconciliation -------------------------------------------------------------------------------


def list_call(shop: str, since: datetime, until: datetime, cursor: str | None,
              credentials: Credentials, now: datetime) -> Request:
    """Trades modified in [since, until] (at most one day); `cursor` is the page number."""
    if not since < until:
        raise ValueError("since must be before until")
    if until - since > LIST_WINDOW:
        raise ValueError("taobao.trades.sold.increment.get covers at most one day")
    params = {
        "fields": LIST_FIELDS,
        "start_modified": top_time(since),
        "end_modified": top_time(until),
        "page_no": cursor or "1",
        "page_size": str(PAGE_SIZE),
        "use_has_next": "true",
    }
    return top_call("taobao.trades.sold.increment.get", params, credentials, now)


def parse_list(answer: Mapping[str, Any], shop: str = "",
               cursor: str | None = None) -> tuple[list[OrderRef], str | None]:
    """Refs of one page and the next cursor; pass the `cursor` (page) the call was made with."""
    body = _response(answer, "trades_sold_increment_get_response")
    refs = []
    for trade in _listed(body.get("trades"), "trade"):
        try:
            tid = str(trade.get("tid_str") or trade["tid"])
            modified = trade.get("modified")
            refs.append(OrderRef(shop=str(trade.get("seller_nick") or shop), external_id=tid,
                                 status=str(trade.get("status", "")),
                                 updated_at=parse_top_time(modified) if modified else None))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidOrder("invalid_payload", f"listed trade unreadable: {exc}") from None
    page = int(cursor or "1")
    return refs, str(page + 1) if body.get("has_next") is True else None

# Token refresh --------------------------------------------------------------------------------

REFRESH_METHOD = "taobao.top.auth.token.refresh"
REAUTHORISE = ("the seller renews its subscription to our app on the Taobao service market "
               "(服务市场) and authorises it again (千牛 / 卖家中心)")


def refresh_call(credentials: Credentials, now: datetime) -> Request | None:
    """taobao.top.auth.token.refresh with the shop's refresh token (None without one); a
    call without a session."""
    token = credentials.get("refresh_token", "")
    if not token:
        return None
    return top_call(REFRESH_METHOD, {"refresh_token": token}, {**credentials, "session": ""}, now)


def parse_refresh(answer: Mapping[str, Any], now: datetime) -> Tokens:
    """The new session and refresh token; RefreshRefused for a refusal for good, TaobaoError
    (retryable) for a passing fault or an answer without them."""
    error = error_of(answer)
    if error is not None:
        if error.retryable:
            raise error
        raise RefreshRefused(error.sub_code or error.code, error.message)
    try:
        body = _response(answer, "top_auth_token_refresh_response")
        result = body.get("token_result")
        found = loads_json(result) if isinstance(result, str) else result
        if not isinstance(found, Mapping):
            raise ValueError("no token_result")
        access_ends = expires_at(found["expire_time"] if found.get("expire_time")
                                 else found.get("expires_in"), now)
        refresh_ends = (expires_at(found["refresh_token_valid_time"], now)
                        if found.get("refresh_token_valid_time")
                        else expires_at(found["re_expires_in"], now)
                        if found.get("re_expires_in") else None)
        return Tokens(access_token=str(found.get("access_token") or ""),
                      access_expires_at=access_ends,
                      refresh_token=str(found.get("refresh_token") or ""),
                      refresh_expires_at=refresh_ends)
    except (ValueError, TaobaoError):  # pydantic's ValidationError too
        raise TaobaoError("unexpected_answer", "the refresh answer has no tokens",
                          True) from None


# The contract (chalicelib/marketplaces/contract.py) ----------------------------------------------

INBOUND = Inbound(accept=accept, reply=REPLY, ref=ref)
MARKETPLACE = Marketplace(
    name=NAME,
    inbound=INBOUND,
    fetch=Fetch.one_call(fetch_call, parse_order),
    # B04 "already shipped" may also mean closed: only our waybill on the trade counts.
    writeback=ShipmentWrite.direct(writeback_call, parse_writeback,
                                   existing=PackageCheck(existing_call, already_shipped)),
    listing=Listing(list_call, parse_list),
    refresh=TokenRefresh(refresh_call, parse_refresh, REAUTHORISE, access_key="session"),
)
