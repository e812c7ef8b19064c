"""Douyin shop (抖店, open platform op.jinritemai.com) message push. Pure: verify, validate, name
the orders a push concerns, and build the signed open-API calls (order detail, shipment,
reconciliation).

Push (protocols.md, confirmed by two SDKs: zsmhub/doudian-sdk `message/doudian_sign.go`,
minibear2021/doudian `callback`):
- POST, JSON body: an ARRAY of messages `{"tag": "100", "msg_id": "...", "data": "<JSON text>"}`;
  one push may carry several messages (also of several orders).
- Header `event-sign` = lower-hex MD5(app_key + raw body + app_secret); header `app-id` = the
  app_key. No timestamp is signed (staleness comes from the order's own update_time).
- Answer 200 `{"code":0,"msg":"success"}` (the SDKs' SuccessResponse).
- Dedupe: `msg_id` (per message). `delivery_id` of a push is its sorted msg_ids joined by ",";
  a push whose ids would exceed 512 characters is keyed `sha256:<hex of that joined string>`.
  `topic` names the message types (sorted, comma-joined), `shop` is the shop_id when the push
  concerns one shop (else ""), `actionable` when any message is an order change we act on.
  The worker must treat a push as "re-fetch each order it names": `refs()` lists them, one per
  order (see the report on multi-message pushes); `ref()` serves single-order pushes.

Secret format: `"app_key:app_secret"` (the app key is numeric, so the first ":" splits). Several
may be listed (rotation, or several apps on one endpoint: `app-id` picks the app).

Credentials (per shop): `app_key`, `app_secret`, `access_token`, `shop_id`; optionally
`api_base` (default API_BASE; the local simulator's address), and for access that renews
itself `refresh_token` with `access_token_expires_at` (see Token refresh).

Token refresh (the official SDK's `token.refresh`, zsmhub/doudian-sdk
`api/token_refresh/{request,response}`): the gateway call `token.refresh` (path /token/refresh)
with param_json `{"grant_type": "refresh_token", "refresh_token"}` and no access token; its data
`{"access_token", "expires_in", "refresh_token", "scope", "shop_id", "shop_name",
"authority_id", "auth_subject_type"}`. The refresh token "有效期：14 天" (14 days) and the
answer's refresh token replaces the one sent. `expires_in` is described both as the token's
validity and as a unix moment: both are read (a number past 10**9 is a moment).

Open API (official Go/PHP SDKs `core/doudian_op_api_client.go`, `utils/sign_util.go`):
`POST https://openapi-fxg.jinritemai.com/<method with "/" for ".">?app_key=&method=&
access_token=&timestamp=<unix seconds>&v=2&sign_method=hmac-sha256&sign=`, body = param_json
(keys sorted recursively, compact, non-ASCII unescaped). sign = lower-hex HMAC-SHA256(key=
app_secret, app_secret + "app_key"+app_key + "method"+method + "param_json"+param_json +
"timestamp"+timestamp + "v"+"2" + app_secret). The gateway accepts timestamps within ±300 s.
Answer `{"code": 10000, "msg": "success", "sub_code", "sub_msg", "log_id", "data"}`; the header
`x-open-no-old-err-code: 1` (sent by the SDKs) drops the deprecated `err_no`/`message` fields.
- Re-fetch: `order.orderDetail` `{"shop_order_id"}` -> data.shop_order_detail.
- Writeback: `order.logisticsAdd` `{"order_id", "company_code", "logistics_code"}` (whole-order
  shipment only); not idempotent: `existing_call` (the order detail) + `already_shipped` before
  a retry.
- Reconciliation: `order.searchList` `{"update_time_start", "update_time_end", "order_by":
  "update_time", "order_asc": true, "page" (from 0), "size" (<= 100)}`; the answer carries
  page, size and total, so the cursor is the next page number.

Statuses (order_status, documented in the order API; main_status adds 103 and the refund
endings): 1 待确认/待支付, 105 已支付, 2 备货中, 101 部分发货, 3 已发货, 4 已取消, 5 已完成;
main_status 103 部分支付, 21 发货前退款完结, 22 发货后退款完结, 39 收货后退款完结. Shipped (101,
3) and completed (5) map to `paid`: fulfilment is ours, the order is not cancelled or refunded.
A main_status of 21/22/39 makes the order `refunded` whatever order_status says.

Amounts are integers in fen (分), turned into yuan (CNY). Receiver name, phone and street are
encrypted by the platform (`encrypt_post_receiver`, `encrypt_post_tel`, `post_addr.
encrypt_detail`; the plain fields hold masked text): the address keeps the masked text (what CS
sees) and the ciphertexts exactly as given (`Address.encrypted`), which the platform's e-waybill
labels by; we never decrypt them (order.batchDecrypt is not called: README "Electronic
waybills"). Province, city, district and street names are
plain.

Guesses (not confirmed by documentation here):
- Message tag numbers and names come from a third-party SDK (zsmhub/doudian-sdk, which links the
  official message docs): 100 TradeCreate, 101 TradePaid, 102 TradeSellerShip, 103 TradeSuccess,
  104 TradeLogisticsChanged, 105 TradeAddressChanged, 106 TradeCanceled, 108 TradePartlySellerShip,
  109 TradeAmountChanged, 110 TradePending, 111 TradeAddressChangeApplied, 113 TradeMemoModify,
  126 TradeAppointment, 200-208 refund messages. Tag "0" with msg_id "0" is the test push sent
  when the URL is configured (seen in third-party tests only).
- Which tags are acted on (TAGS below); refund messages carry `update_time` in an unknown text
  form, so message times are read from numbers or ISO text and otherwise left out.
- Company codes in CARRIERS (order.logisticsCompanyList is the authority; these are the codes
  commonly seen: shentong, shunfeng, yuantong, zhongtong, yunda, jd, ems).
- Error classes: 10000 success; 20000 (isp.service-error) and orderDetail's "系统繁忙"
  (isv.business-failed:20004/20045/20055) retryable (from a third-party SDK's return-code
  table); access-token and rate-limit errors (codes 30001/30002/90000 or sub_codes naming
  access-token / limit) retryable after a token refresh or a pause; a logisticsAdd answer saying
  the order is already shipped ("已发货") counts as already done.
- `sku` is the merchant code `code` (商家编码), else `out_sku_id`; `presale_ship_date` is the
  China date of `exp_ship_time` for pre-sale lines (pre_sale_type 1 or 2); `total` is pay_amount.
- A push signed with the `sign-method: hmac-sha256` variant some integrations mention is not
  supported (only MD5 is documented to us).
- Token refresh errors: a passing fault (code 20000/20001/90000, an isp.* sub_code, "系统繁忙",
  "稍后重试", rate limits) is retried; every other refusal (an expired or spent refresh token, a
  cancelled authorisation) is for good. The refresh answer does not say when the new refresh
  token ends: 14 days from the refresh (REFRESH_TOKEN_LIFETIME) are kept as its end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from pydantic import Field, ValidationError, field_validator

from chalicelib.core.doudian import API_BASE as API_BASE
from chalicelib.core.doudian import API_VERSION as API_VERSION
from chalicelib.core.doudian import gateway_call
from chalicelib.core.doudian import param_json as param_json
from chalicelib.core.doudian import sign as sign
from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.core.signatures import (
    MAX_ID_BYTES,
    BoundedId,
    EpochSeconds,
    delivery_id,
    epoch_moment,
    loads_json,
    same_signature,
    sane_moment,
)
from chalicelib.marketplaces.calls import (
    Credentials,
    LenientModel,
    OrderRef,
    PlatformError,
    Shipped,
    WritebackResult,
    id_text,
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
    EncryptedReceiver,
    InvalidOrder,
    Order,
    OrderLine,
    OrderStatus,
    Totals,
    most_pressing,
    note_fields,
)
from chalicelib.warehouse.waybills.douyin_waybill import LOGISTICS_CODES

NAME = "douyin"
REPLY: tuple[int, str, str] = (200, "application/json", '{"code":0,"msg":"success"}')
SUCCESS = 10000
PAGE_SIZE = 100
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
_MAX_DELIVERY_ID = MAX_ID_BYTES  # in UTF-8 bytes

# tag -> (message name, acted on: re-fetch the order).
TAGS: dict[str, tuple[str, bool]] = {
    "0": ("push_test", False),
    "100": ("trade_TradeCreate", True),  # 订单创建
    "101": ("trade_TradePaid", True),  # 订单支付/确认
    "102": ("trade_TradeSellerShip", True),  # 卖家发货
    "103": ("trade_TradeSuccess", True),  # 交易完成
    "104": ("trade_TradeLogisticsChanged", False),  # 发货物流信息变更
    "105": ("trade_TradeAddressChanged", True),  # 买家收货信息变更
    "106": ("trade_TradeCanceled", True),  # 订单取消
    "108": ("trade_TradePartlySellerShip", True),  # 卖家部分发货
    "109": ("trade_TradeAmountChanged", True),  # 订单金额修改
    "110": ("trade_TradePending", True),  # 订单已支付待处理
    "111": ("trade_TradeAddressChangeApplied", False),  # 买家收货信息变更申请 (105 follows)
    "113": ("trade_TradeMemoModify", False),  # 卖家添加备注
    "126": ("trade_TradeAppointment", True),  # 订单发货时效变更
    "200": ("refund_RefundCreated", True),  # 买家发起售后申请
    "201": ("refund_RefundAgreed", True),  # 同意退款
    "202": ("refund_ReturnApplyAgreed", False),  # 同意退货申请
    "203": ("refund_BuyerReturnGoods", False),  # 买家退货给卖家
    "204": ("refund_RefundRefused", False),  # 拒绝退款
    "205": ("refund_ReturnApplyRefused", False),  # 拒绝退货申请
    "206": ("refund_RefundSuccess", True),  # 退款成功
    "207": ("refund_RefundClosed", True),  # 售后关闭
    "208": ("refund_RefundModified", False),  # 买家修改售后申请
}
_TIME_FIELDS = ("update_time", "modify_time", "cancel_time", "complete_time", "pay_time",
                "success_time", "close_time", "agree_time", "refuse_time", "apply_time",
                "create_time")

STATUSES: dict[str, OrderStatus | None] = {
    "1": OrderStatus.PENDING_PAYMENT,  # 待确认/待支付 (订单创建完毕)
    "103": OrderStatus.PENDING_PAYMENT,  # 部分支付 (main_status)
    "105": OrderStatus.PAID,  # 已支付
    "2": OrderStatus.PAID,  # 备货中
    "101": OrderStatus.PAID,  # 部分发货
    "3": OrderStatus.PAID,  # 已发货 (全部发货)
    "4": OrderStatus.CANCELLED,  # 已取消
    "5": OrderStatus.PAID,  # 已完成 (已收货)
    "21": OrderStatus.REFUNDED,  # 发货前退款完结 (main_status)
    "22": OrderStatus.REFUNDED,  # 发货后退款完结 (main_status)
    "39": OrderStatus.REFUNDED,  # 收货后退款完结 (main_status)
}
_REFUND_ENDINGS = frozenset({"21", "22", "39"})

# Our carrier codes -> Douyin company_code (order.logisticsCompanyList).
# One table with the e-waybill's logistics_code.
CARRIERS: dict[str, str] = LOGISTICS_CODES

_RETRYABLE_CODES = frozenset({20000, 20001, 30001, 30002, 90000})
_RETRYABLE_SUB_CODES = frozenset({"isv.business-failed:20004", "isv.business-failed:20045",
                                  "isv.business-failed:20055"})
_RETRY_WORDS = ("稍后重试", "系统繁忙", "系统异常", "access-token", "access_token", "limit", "限流",
                "频率")
_SHIPPED_WORDS = ("已发货",)


class DouyinError(PlatformError):
    """An error answer of the Douyin open API."""


class Message(LenientModel):
    tag: str
    msg_id: str
    data: str | dict[str, Any]

    _as_text = field_validator("tag", "msg_id", mode="before")(id_text)

    def fields(self) -> dict[str, Any]:
        if isinstance(self.data, dict):
            return self.data
        value = loads_json(self.data)
        if not isinstance(value, dict):
            raise ValueError("data is not a JSON object")
        return value


class OrderMessage(LenientModel):
    """The part of an order or refund message's `data` we rely on."""

    p_id: BoundedId
    shop_id: BoundedId
    order_status: int | None = None

    _as_text = field_validator("p_id", "shop_id", mode="before")(id_text)


class Region(LenientModel):
    id: str = ""
    name: str = ""


class PostAddr(LenientModel):
    province: Region | None = None
    city: Region | None = None
    town: Region | None = None
    street: Region | None = None
    detail: str = ""
    encrypt_detail: str = ""


class Spec(LenientModel):
    name: str = ""
    value: str = ""


class AfterSaleInfo(LenientModel):
    after_sale_status: int = 0
    after_sale_type: int = 0
    refund_status: int = 0


class SkuOrder(LenientModel):
    order_id: str
    after_sale_info: AfterSaleInfo | None = None
    item_num: int = Field(gt=0)
    origin_amount: int  # 商品现价, fen
    sum_amount: int | None = None  # 现价 x 件数, fen
    product_name: str = ""
    code: str = ""  # 商家编码
    out_sku_id: str = ""
    spec: list[Spec] | None = None
    goods_type: int = 0  # 0 实体, 1 虚拟
    pre_sale_type: int = 0  # 0 现货, 1 全款预售, 2 阶梯发货


class LogisticsInfo(LenientModel):
    tracking_no: str = ""
    company: str = ""
    company_name: str = ""


class ShopOrderDetail(LenientModel):
    order_id: str
    shop_id: str
    order_status: int
    main_status: int | None = None
    create_time: EpochSeconds
    update_time: EpochSeconds
    pay_time: EpochSeconds | None = None
    order_amount: int = 0
    pay_amount: int = 0
    post_amount: int = 0
    promotion_amount: int = 0
    tax_amount: int = 0
    modify_amount: int = 0  # 改价金额变化量: the seller's signed change of price, fen
    packing_amount: int = 0  # 包装费, fen
    buyer_words: str = ""  # 买家留言
    seller_words: str = ""  # 商家备注: the shop's own instruction
    post_receiver: str = ""
    encrypt_post_receiver: str = ""
    post_tel: str = ""
    encrypt_post_tel: str = ""
    post_addr: PostAddr | None = None
    doudian_open_id: str = ""
    exp_ship_time: EpochSeconds | None = None
    logistics_info: list[LogisticsInfo] | None = None
    sku_order_list: list[SkuOrder] = Field(min_length=1)

    _as_text = field_validator("shop_id", mode="before")(id_text)


# Push --------------------------------------------------------------------------------------------


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    signature = headers.get("event-sign", "").strip().lower()
    if not signature:
        raise ApiError(401, "missing_signature", "event-sign header is required")
    app_id = headers.get("app-id", "").strip()
    if not _verified(signature, raw, secrets, app_id):
        raise ApiError(401, "invalid_signature", "event-sign does not match the body")
    messages = _messages(raw)
    problems: list[dict[str, str]] = []
    shops: set[str] = set()
    for index, message in enumerate(messages):
        try:
            fields = message.fields()
            shop = str(fields.get("shop_id") or "")
            if _acted_on(message):
                shop = OrderMessage.model_validate(fields).shop_id
                _message_time(fields)  # the worker reads it: in range, or refused now
        except ValueError as exc:  # bad JSON text, a missing order/shop id, a time
            if _acted_on(message):  # messages we ignore need not be readable
                problems.append({"field": f"{index}.data", "problem": str(exc)[:200]})
            continue
        if shop:
            shops.add(shop)
    if problems:
        raise ApiError(422, "invalid_payload", "payload failed validation", problems=problems)
    ids = ",".join(sorted({message.msg_id for message in messages}))
    if len(ids.encode("utf-8", "surrogatepass")) > _MAX_DELIVERY_ID:
        ids = "sha256:" + hashlib.sha256(ids.encode("utf-8", "surrogatepass")).hexdigest()
    topic = ",".join(sorted({_name(message.tag) for message in messages}))
    return Accepted(
        delivery_id=delivery_id(ids),
        topic=topic,
        shop=shops.pop() if len(shops) == 1 else "",
        headers={"app-id": app_id} if app_id else {},
        actionable=any(_acted_on(message) for message in messages),
    )


def _verified(signature: str, raw: bytes, secrets: Sequence[str], app_id: str) -> bool:
    for secret in secrets:
        app_key, sep, app_secret = secret.partition(":")
        if not sep or (app_id and app_id != app_key):
            continue
        expected = hashlib.md5(app_key.encode() + raw + app_secret.encode()).hexdigest()
        if same_signature(expected, signature):
            return True
    return False


def _messages(raw: bytes) -> list[Message]:
    try:
        value = loads_json(raw)
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise ApiError(400, "malformed_json", "body must be a JSON array of messages")
    if not value:
        raise ApiError(422, "invalid_payload", "the push carries no message",
                       problems=[{"field": "", "problem": "empty list"}])
    messages: list[Message] = []
    problems: list[dict[str, str]] = []
    for index, item in enumerate(value):
        try:
            messages.append(Message.model_validate(item))
        except ValidationError as exc:
            problems.extend(
                {"field": ".".join([str(index), *(str(p) for p in err["loc"])]),
                 "problem": err["msg"]} for err in exc.errors()[:5])
    if problems:
        raise ApiError(422, "invalid_payload", "payload failed validation",
                       problems=problems[:20])
    return messages


def _name(tag: str) -> str:
    return TAGS.get(tag, (f"tag_{tag}", False))[0]


def _acted_on(message: Message) -> bool:
    return TAGS.get(message.tag, ("", False))[1]


def refs(raw: bytes, headers: Mapping[str, str]) -> list[OrderRef]:
    """Every order a push asks us to re-fetch, once each, with its newest status and time."""
    try:
        messages = [Message.model_validate(item) for item in loads_json(raw)]
        found: dict[tuple[str, str], OrderRef] = {}
        for message in messages:
            if not _acted_on(message):
                continue
            fields = message.fields()
            named = OrderMessage.model_validate(fields)
            found_ref = OrderRef(
                shop=named.shop_id, external_id=named.p_id,
                status="" if named.order_status is None else str(named.order_status),
                updated_at=_message_time(fields))
            key = (named.shop_id, named.p_id)
            if key not in found or _newer(found_ref, found[key]):
                found[key] = found_ref
    except (ValueError, TypeError) as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return list(found.values())


def ref(raw: bytes, headers: Mapping[str, str]) -> OrderRef:
    """The one order a push names; a push naming several orders must go through `refs`."""
    named = refs(raw, headers)
    if len(named) != 1:
        raise InvalidOrder("no_order" if not named else "several_orders",
                           ", ".join(r.external_id for r in named))
    return named[0]


def _newer(candidate: OrderRef, current: OrderRef) -> bool:
    if candidate.updated_at is None:
        return False
    return current.updated_at is None or candidate.updated_at > current.updated_at


def _message_time(fields: Mapping[str, Any]) -> datetime | None:
    for name in _TIME_FIELDS:
        moment = _moment(fields.get(name))
        if moment is not None:
            return moment
    return None


def _moment(value: Any) -> datetime | None:
    if isinstance(value, bool) or value in (None, "", 0):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        moment = epoch_moment(float(value) if isinstance(value, str) else value)  # in range
        return datetime.fromtimestamp(int(moment.timestamp()), UTC)  # whole seconds
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return sane_moment(moment if moment.tzinfo else moment.replace(tzinfo=CHINA))
    return None


# A sku order's after_sale_info (order.orderDetail). refund_status: 0 无需退款, 1 待退款,
# 2 退款中, 3 退款成功, 4 退款失败. after_sale_status (?: codes as the open platform's order
# docs list them): 6 售后申请, 7 售后退货中, 11 售后已发货, 27 拒绝售后申请, 29 退货后拒绝退款 are
# an after-sale under way; 12 售后成功 ended in a refund; 28 售后失败, 51 取消成功 ended without.
# Platform arbitration (平台介入) is on the after-sale order (afterSale.Detail), not on the
# order detail we fetch: Douyin gives us no dispute here.
REFUND_STATUSES: dict[int, AfterSale] = {1: AfterSale.REFUNDING, 2: AfterSale.REFUNDING,
                                         3: AfterSale.REFUNDED}
AFTER_SALE_STATUSES: dict[int, AfterSale] = {
    6: AfterSale.REFUND_REQUESTED, 27: AfterSale.REFUND_REQUESTED,
    7: AfterSale.REFUNDING, 11: AfterSale.REFUNDING, 29: AfterSale.REFUNDING,
    12: AfterSale.REFUNDED,
}


def after_sale_of(main_status: int | None, infos: Sequence[AfterSaleInfo | None]) -> AfterSale:
    """The order's after-sale state from its sku orders'; a refund ending in main_status
    (21/22/39) is refunded whatever they say."""
    states: list[AfterSale | None] = []
    for info in infos:
        if info is not None:
            states += [AFTER_SALE_STATUSES.get(info.after_sale_status),
                       REFUND_STATUSES.get(info.refund_status)]
    state = most_pressing(states)
    if state is AfterSale.NONE and str(main_status) in _REFUND_ENDINGS:
        return AfterSale.REFUNDED
    return state


def map_status(status: str | int) -> OrderStatus | None:
    return STATUSES.get(str(status))


def status_of(order_status: int | str, main_status: int | str | None = None) -> OrderStatus | None:
    if main_status is not None and str(main_status) in _REFUND_ENDINGS:
        return OrderStatus.REFUNDED
    mapped = map_status(order_status)
    if mapped is None and main_status is not None:
        return map_status(main_status)
    return mapped


# Open API ----------------------------------------------------------------------------------------


def api_call(method: str, params: Mapping[str, Any], credentials: Credentials,
             now: datetime) -> Request:
    return gateway_call(method, params, credentials, now, credentials["access_token"])


def _gateway_call(method: str, params: Mapping[str, Any], credentials: Credentials,
                  now: datetime, access_token: str | None) -> Request:
    return gateway_call(method, params, credentials, now, access_token)


def fetch_call(order: OrderRef, credentials: Credentials, now: datetime) -> Request:
    return api_call("order.orderDetail", {"shop_order_id": order.external_id}, credentials, now)


def parse_order(answer: Any, order: OrderRef, source: str) -> Order:
    data = _data(answer)
    try:
        detail = ShopOrderDetail.model_validate(data["shop_order_detail"])
    except (KeyError, TypeError, ValidationError) as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    status = status_of(detail.order_status, detail.main_status)
    if status is None:
        raise InvalidOrder("unknown_status", f"order_status {detail.order_status}")
    paid_at = _at(detail.pay_time) or _at(detail.update_time)
    return Order(
        marketplace=NAME,
        shop=detail.shop_id or order.shop,
        external_id=detail.order_id,
        name=detail.order_id,
        status=status,
        buyer=Buyer(external_id=detail.doudian_open_id),
        shipping_address=_address(detail),
        lines=tuple(_line(sku) for sku in detail.sku_order_list if sku.goods_type != 1),
        currency="CNY",
        totals=totals_of(detail),
        placed_at=_ts(detail.create_time),
        paid_at=paid_at if status is OrderStatus.PAID else None,
        # No cancellation time in the detail: the update that cancelled it.
        cancelled_at=_ts(detail.update_time) if status is OrderStatus.CANCELLED else None,
        updated_at=_ts(detail.update_time),
        buyer_note=detail.buyer_words,
        presale_ship_date=_presale_date(detail),
        after_sale=after_sale_of(detail.main_status,
                                 [sku.after_sale_info for sku in detail.sku_order_list]),
        **note_fields((("seller_memo", detail.seller_words),)),
    )


def totals_of(detail: ShopOrderDetail) -> Totals:
    """In fen: the lines at their current price (`sum_amount`), `post_amount` the postage,
    `promotion_amount` every promotion (shop, platform, talent, payment), `modify_amount` and
    `packing_amount` the seller's change of price and the packing charge; `pay_amount` includes
    postage and the cross-border `tax_amount` (0 for a domestic order, whose prices include
    VAT)."""
    return Totals(
        subtotal=_yuan(sum(_line_total(sku) for sku in detail.sku_order_list)),
        shipping=_yuan(detail.post_amount),
        tax=_yuan(detail.tax_amount),
        discounts=_yuan(detail.promotion_amount),
        fees=_yuan(detail.modify_amount + detail.packing_amount),
        total=_yuan(detail.pay_amount),
    )


def _address(detail: ShopOrderDetail) -> Address | None:
    addr = detail.post_addr
    if addr is None:
        return None
    district = " ".join(r.name for r in (addr.town, addr.street) if r is not None and r.name)
    cipher = EncryptedReceiver(name=detail.encrypt_post_receiver, phone=detail.encrypt_post_tel,
                               detail=addr.encrypt_detail)
    return Address(
        name=detail.post_receiver,  # masked when encrypted (王*): what CS sees
        line1=addr.detail,
        line2=district,
        city=addr.city.name if addr.city else "",
        province=addr.province.name if addr.province else "",
        country_code="CN",
        phone=detail.post_tel,
        encrypted=cipher if any((cipher.name, cipher.phone, cipher.detail)) else None,
    )


def _line(sku: SkuOrder) -> OrderLine:
    return OrderLine(
        line_id=sku.order_id,
        sku=sku.code or sku.out_sku_id,
        title=sku.product_name,
        variant=" / ".join(s.value for s in sku.spec or [] if s.value),
        quantity=sku.item_num,
        unit_price=_yuan(sku.origin_amount),
    )


def _line_total(sku: SkuOrder) -> int:
    return sku.sum_amount if sku.sum_amount is not None else sku.origin_amount * sku.item_num


def _presale_date(detail: ShopOrderDetail) -> date | None:
    presale = any(sku.pre_sale_type in (1, 2) for sku in detail.sku_order_list)
    if not presale or not detail.exp_ship_time:
        return None
    return datetime.fromtimestamp(detail.exp_ship_time, CHINA).date()


def _yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _at(seconds: int | None) -> datetime | None:
    return _ts(seconds) if seconds else None


def writeback_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    """Whole-order shipment. A partial shipment (`shipped.lines`) needs the split-package API
    (order.logisticsAddSinglePack), which this adapter does not build."""
    if shipped.lines:
        raise ValueError("order.logisticsAdd ships the whole order; partial shipments unsupported")
    try:
        company = CARRIERS[shipped.carrier_code]
    except KeyError:
        raise ValueError(f"no Douyin company code for carrier {shipped.carrier_code!r}") from None
    return api_call("order.logisticsAdd", {
        "order_id": shipped.external_id,
        "company_code": company,
        "logistics_code": shipped.tracking_number,
    }, credentials, now)


def parse_writeback(status: int, body: bytes) -> WritebackResult:
    if status in (408, 429) or status >= 500:
        return WritebackResult(ok=False, retryable=True, code=f"http_{status}",
                               detail=body[:200].decode(errors="replace"))
    if status != 200:
        return WritebackResult(ok=False, code=f"http_{status}",
                               detail=body[:200].decode(errors="replace"))
    try:
        answer = loads_json(body)
        _raise_for_error(answer)
    except DouyinError as error:
        if any(word in error.message for word in _SHIPPED_WORDS):
            return WritebackResult(ok=False, already_done=True, code=error.code,
                                   detail=error.message)
        return WritebackResult(ok=False, retryable=error.retryable, code=error.code,
                               detail=error.message)
    except ValueError:
        # Unreadable 200: the shipment may or may not exist; retry after `already_shipped`.
        return WritebackResult(ok=False, retryable=True, code="malformed_answer",
                               detail=body[:200].decode(errors="replace"))
    return WritebackResult(ok=True, code=str(SUCCESS))


def existing_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    return fetch_call(OrderRef(shop=credentials.get("shop_id", ""),
                               external_id=shipped.external_id), credentials, now)


def already_shipped(answer: Any, shipped: Shipped) -> bool:
    """True when the order detail already lists this tracking number."""
    data = _data(answer)
    detail = data.get("shop_order_detail") if isinstance(data, dict) else None
    packages = detail.get("logistics_info") if isinstance(detail, dict) else None
    wanted = "".join(shipped.tracking_number.split()).upper()
    return any(isinstance(p, dict) and "".join(str(p.get("tracking_no", "")).split()).upper()
               == wanted for p in packages or [])


def list_call(shop: str, since: datetime, until: datetime, cursor: str | None,
              credentials: Credentials, now: datetime) -> Request:
    """Orders updated in [since, until], oldest change first; `cursor` is the page (from 0)."""
    return api_call("order.searchList", {
        "update_time_start": int(since.timestamp()),
        "update_time_end": int(until.timestamp()),
        "order_by": "update_time",
        "order_asc": True,
        "page": int(cursor or 0),
        "size": PAGE_SIZE,
    }, credentials, now)


def parse_list(answer: Any, shop: str = "",
               cursor: str | None = None) -> tuple[list[OrderRef], str | None]:
    """Refs of one page and the next cursor (the answer names the shop and its page: `shop`
    and `cursor` are not needed)."""
    data = _data(answer)
    if not isinstance(data, dict):
        raise DouyinError("unexpected_answer", "data is not an object", False)
    found = []
    for item in data.get("shop_order_list") or []:
        found.append(OrderRef(
            shop=str(item.get("shop_id", "")), external_id=str(item["order_id"]),
            status=str(item.get("order_status", "")), updated_at=_moment(item.get("update_time"))))
    page, size, total = (int(data.get(k) or 0) for k in ("page", "size", "total"))
    size = size or PAGE_SIZE
    more = found and (page + 1) * size < total
    return found, str(page + 1) if more else None


def _data(answer: Any) -> Any:
    body = answer
    if isinstance(answer, bytes | bytearray | str):
        try:
            body = loads_json(answer)
        except ValueError as exc:
            raise DouyinError("malformed_answer", str(exc)[:200], True) from None
    if not isinstance(body, dict):
        raise DouyinError("malformed_answer", "the answer is not a JSON object", True)
    _raise_for_error(body)
    return body.get("data")


def _raise_for_error(body: Mapping[str, Any]) -> None:
    if "code" not in body and "err_no" in body:  # the deprecated answer format
        if body.get("err_no") in (0, "0"):
            return
        message = str(body.get("message", ""))
        raise DouyinError(str(body.get("err_no")), message, _retryable(0, "", message))
    try:
        code = int(body.get("code", -1))
    except (TypeError, ValueError):
        code = -1
    if code == SUCCESS:
        return
    sub_code = str(body.get("sub_code") or "")
    message = " ".join(str(body.get(k) or "") for k in ("msg", "sub_code", "sub_msg")).strip()
    raise DouyinError(str(code), message, _retryable(code, sub_code, message))


def _retryable(code: int, sub_code: str, message: str) -> bool:
    return (code in _RETRYABLE_CODES or sub_code.startswith("isp.")
            or sub_code in _RETRYABLE_SUB_CODES or any(w in message for w in _RETRY_WORDS))

# Token refresh --------------------------------------------------------------------------------

REFRESH_METHOD = "token.refresh"
REFRESH_TOKEN_LIFETIME = timedelta(days=14)
REAUTHORISE = ("the seller authorises our app again (抖店 merchant backend, 服务市场 / 我的应用, "
               "or our app's authorisation link)")
_REFRESH_RETRY_CODES = frozenset({20000, 20001, 90000})
_REFRESH_RETRY_WORDS = ("稍后重试", "系统繁忙", "系统异常", "limit", "限流", "频率")


def refresh_call(credentials: Credentials, now: datetime) -> Request | None:
    """token.refresh with the shop's refresh token (None without one)."""
    token = credentials.get("refresh_token", "")
    if not token:
        return None
    return _gateway_call(REFRESH_METHOD, {"grant_type": "refresh_token", "refresh_token": token},
                         credentials, now, None)


def parse_refresh(answer: Any, now: datetime) -> Tokens:
    """The new tokens; RefreshRefused for a refusal for good, DouyinError (retryable) for a
    passing fault or an answer without them."""
    try:
        data = _data(answer)
    except DouyinError as exc:
        try:
            code = int(exc.code)
        except ValueError:
            code = -1
        if (exc.code == "malformed_answer" or code in _REFRESH_RETRY_CODES
                or "isp." in exc.message or any(w in exc.message for w in _REFRESH_RETRY_WORDS)):
            raise DouyinError(exc.code, exc.message, True) from None
        raise RefreshRefused(exc.code, exc.message) from None
    try:
        if not isinstance(data, Mapping):
            raise ValueError("no data")
        return Tokens(access_token=str(data.get("access_token") or ""),
                      access_expires_at=expires_at(data.get("expires_in"), now),
                      refresh_token=str(data.get("refresh_token") or ""),
                      refresh_expires_at=now + REFRESH_TOKEN_LIFETIME)
    except ValueError:  # pydantic's ValidationError too
        raise DouyinError("unexpected_answer", "the refresh answer has no tokens",
                          True) from None


# The contract (chalicelib/marketplaces/contract.py) ----------------------------------------------

INBOUND = Inbound(accept=accept, reply=REPLY, ref=ref, refs=refs)
MARKETPLACE = Marketplace(
    name=NAME,
    inbound=INBOUND,
    fetch=Fetch.one_call(fetch_call, parse_order),
    writeback=ShipmentWrite.direct(writeback_call, parse_writeback,
                                   existing=PackageCheck(existing_call, already_shipped)),
    listing=Listing(list_call, parse_list),
    refresh=TokenRefresh(refresh_call, parse_refresh, REAUTHORISE),
)
