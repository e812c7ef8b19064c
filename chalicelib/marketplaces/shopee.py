"""Shopee Open Platform (API v2) orders. Pure: verify, validate, name the order a push concerns,
build the signed API calls and read their answers.

Live push (protocols.md; third-party receivers in PHP, TypeScript and Python agree):
- POST, JSON body `{"msg_id": "...", "code": 3, "shop_id": 123, "timestamp": <unix s>,
  "data": {"ordersn": "...", "status": "READY_TO_SHIP", "update_time": <unix s>, ...}}`: thin.
- Header `Authorization` = lower-hex HMAC-SHA256(key=partner key, callback URL + "|" + raw body).
  The callback URL is the one registered in the console, byte for byte (our public URL, which a
  Lambda behind API Gateway cannot reconstruct), so it is part of the secret.
- Answer 200 with an EMPTY body, quickly: Shopee disables a callback whose success rate falls
  below 30 %; missed pushes are not resent (get them with the lost-push API or reconciliation).
- Dedupe: code 3 (order status) on ordersn + status + update_time (the event's time, which every
  retry of the event shares; the push `timestamp` when update_time is absent); code 4 (tracking
  number) on ordersn + package_number + tracking_no; others on `msg_id` (else a hash of the
  body). `shop` is `shop_id`.
- Only code 3 is acted on (re-fetch the order). Code 4 tells that a logistics tracking number was
  assigned, which changes nothing in the order we hold (we ship, we know our numbers).
- The signed body carries `timestamp`: older than MAX_AGE or more than MAX_AHEAD in the future
  is 401 `stale_or_invalid_timestamp`.

Secret format: `"partner_key|callback_url"`, e.g.
`"4f41...6666|https://orders.example.com/webhooks/shopee"` (split at the first "|"; partner keys
are hex). Several may be listed (rotation).

Credentials (per shop): `partner_id`, `partner_key`, `access_token`, `shop_id`; optionally
`api_base` (default https://partner.shopeemobile.com; Shopee China uses another host), and for
access that renews itself `refresh_token` with `access_token_expires_at` (see Token refresh).

Token refresh (v2.public.refresh_access_token, Shopee's API reference as mirrored in
lazykern/ecommerce-api-docs): the access token lives 4 hours (`expire_in` 14400), the refresh
token 30 days and "can be used once only": each refresh answers a new one. `POST
/api/v2/auth/access_token/get?partner_id=&timestamp=&sign=` (a public call: sign = lower-hex
HMAC-SHA256(partner_key, partner_id + path + timestamp), no token or shop in it) with the body
`{"refresh_token", "partner_id": <int>, "shop_id": <int>}`; the answer `{"refresh_token",
"access_token", "expire_in", "partner_id", "shop_id", "request_id", "error": "", "message"}`.
Errors (`refresh_token_expired`, `error_auth` "Invalid refresh_token.", `shop_access_expired`,
`error_shop_refresh_token`, `shop_banned`, `shop_no_linked`, ...) refuse for good but the
retryable ones (below): the seller authorises the app again.

API v2: every call carries `partner_id`, `timestamp` (unix s; valid 5 minutes), `access_token`,
`shop_id` and `sign` = lower-hex HMAC-SHA256(key=partner_key, partner_id + path + timestamp +
access_token + shop_id) in the query; the body (POST) is not signed. Answers: `{"error": "",
"message": "", "request_id", "response": {...}}`; a non-empty `error` raises ShopeeError.
- Re-fetch: `GET /api/v2/order/get_order_detail?order_sn_list=&response_optional_fields=`.
- Writeback (non-integrated channel, i.e. the seller's own courier): `POST
  /api/v2/logistics/ship_order` `{"order_sn", "package_number"?, "non_integrated":
  {"tracking_number"}}`. The carrier is the shop's channel, not sent: CARRIERS only documents
  the names. Not idempotent: a repeat fails with `logistics.ship_order_not_ready_to_ship`,
  which a cancelled order also gets, so it is NOT read as done: it is retryable, and the next
  attempt asks `existing_call` (`GET /api/v2/logistics/get_tracking_number`) +
  `already_shipped` first (confirmed if our number is there; else, after the last attempt, a
  CS case).
- Reconciliation: `GET /api/v2/order/get_order_list?time_range_field=update_time&time_from=&
  time_to=&page_size=&cursor=&response_optional_fields=order_status` over at most 15 days; the
  cursor is `next_cursor` while `more` is true.

Statuses (order_status): UNPAID is pending_payment; READY_TO_SHIP, PROCESSED, RETRY_SHIP,
SHIPPED, TO_CONFIRM_RECEIVE, COMPLETED are paid (shipped/delivered/completed map to paid: the
fulfilment is ours, the order is not cancelled or refunded); IN_CANCEL (the buyer asked to
cancel, the seller has not answered) and TO_RETURN (a return requested, nothing refunded yet)
stay paid; CANCELLED is cancelled; INVOICE_PENDING (Brazil: an invoice must be issued before
shipping) and PENDING are ignored. Orders fulfilled by Shopee (`fulfillment_flag`
fulfilled_by_shopee) are refused (InvalidOrder "not_seller_fulfilled").

Amounts are JSON numbers in the order's currency; they are read through their text, so 12.9
stays 12.9.

Sources: protocols.md section 1; Shopee's API reference as mirrored in lazykern/ecommerce-api-
docs (get_order_list: parameters, 15-day window, cursor/more/next_cursor, error names;
batch_ship_order: non_integrated.tracking_number, error names incl.
logistics.ship_order_not_ready_to_ship); a recorded get_order_detail answer in third-party code
(field names and number types); third-party push receivers for the body, the codes and the
signing string.

Guesses:
- Push codes beyond 3 and 4 (from a third-party copy of the console list): 1
  shop_authorization_push, 2 shop_authorization_canceled_push, 5 shopee_updates, 7
  item_promotion_push, 8 reserved_stock_change_push, 9 promotion_update_push, 10 webchat_push,
  12 open_api_authorization_expiry, 15 shipping_document_status_push, 23 booking_status_push,
  29 return_updates_push, 30 package_fulfillment_status_push.
- The key signing pushes is the app's partner key (the console may show a separate "live push
  partner key": put that one in the secret then). MAX_AGE (24 h) is ours.
- Retryable errors: error_server, error_network, error_inner, error_busy and anything naming
  too many requests / system busy, with HTTP 429/5xx. Others are permanent.
- PENDING (returned only with request_order_status_pending) is ignored.
- The refresh answer does not say how long the new refresh token lives: the documented 30 days
  from the refresh (REFRESH_TOKEN_LIFETIME) are kept as its end.
- Totals: get_order_detail does not say what the buyer paid for shipping (the escrow API
  does), so `shipping` is 0; `subtotal` = sum of model_original_price x quantity, `discounts` =
  sum of (original - discounted) x quantity, `total` = total_amount.
- line_id is "item_id:model_id" (":promotion_group_id" added when non-zero), unique within an
  order.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, ValidationError

from chalicelib.core.clock import epoch_seconds
from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.core.signatures import (
    EpochSeconds,
    delivery_id,
    epoch_moment,
    matches_hex,
    parse_json_object,
    sent_in_time,
    split_secret,
    validate_payload,
)
from chalicelib.marketplaces.calls import (
    Credentials,
    IdText,
    Money,
    OrderRef,
    PlatformError,
    PlatformModel,
    Shipped,
    WritebackResult,
    read_writeback,
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
    note_fields,
)

NAME = "shopee"
REPLY: tuple[int, str, str] = (200, "text/plain", "")  # Shopee requires an EMPTY body
API_BASE = "https://partner.shopeemobile.com"
ORDER_DETAIL_PATH = "/api/v2/order/get_order_detail"
ORDER_LIST_PATH = "/api/v2/order/get_order_list"
SHIP_ORDER_PATH = "/api/v2/logistics/ship_order"
TRACKING_NUMBER_PATH = "/api/v2/logistics/get_tracking_number"
REFRESH_PATH = "/api/v2/auth/access_token/get"
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
REAUTHORISE = ("the seller authorises our app for the shop again (Shopee Seller Centre, through "
               "our Open Platform authorisation link)")
PAGE_SIZE = 100
LIST_WINDOW = timedelta(days=15)
MAX_AGE = timedelta(hours=24)
MAX_AHEAD = timedelta(minutes=15)

ORDER_STATUS_PUSH = 3
TRACKING_NO_PUSH = 4
CODES: dict[int, str] = {
    1: "shop_authorization_push",
    2: "shop_authorization_canceled_push",
    3: "order_status_push",
    4: "order_trackingno_push",
    5: "shopee_updates",
    7: "item_promotion_push",
    8: "reserved_stock_change_push",
    9: "promotion_update_push",
    10: "webchat_push",
    12: "open_api_authorization_expiry",
    15: "shipping_document_status_push",
    23: "booking_status_push",
    29: "return_updates_push",
    30: "package_fulfillment_status_push",
}

STATUSES: dict[str, OrderStatus | None] = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    "READY_TO_SHIP": OrderStatus.PAID,
    "PROCESSED": OrderStatus.PAID,
    "RETRY_SHIP": OrderStatus.PAID,
    "SHIPPED": OrderStatus.PAID,
    "TO_CONFIRM_RECEIVE": OrderStatus.PAID,
    "IN_CANCEL": OrderStatus.PAID,  # cancellation requested, not granted
    "CANCELLED": OrderStatus.CANCELLED,
    "TO_RETURN": OrderStatus.PAID,  # return requested, nothing refunded yet
    "COMPLETED": OrderStatus.PAID,
    "INVOICE_PENDING": None,  # Brazil: may not ship before the invoice is issued
    "PENDING": None,
}

# Our carrier codes -> the names a seller's non-integrated channel would show. Not sent:
# ship_order takes only the tracking number; the channel is the shop's.
CARRIERS: dict[str, str] = {
    "STO": "STO Express",
    "SF": "SF Express",
    "YTO": "YTO Express",
    "ZTO": "ZTO Express",
    "YUNDA": "Yunda Express",
    "JD": "JD Logistics",
    "EMS": "China EMS",
}

DETAIL_FIELDS = ",".join((
    "buyer_user_id", "buyer_username", "recipient_address", "note", "item_list", "pay_time",
    "cancel_by", "cancel_reason", "fulfillment_flag", "package_list", "shipping_carrier",
    "payment_method", "total_amount", "estimated_shipping_fee",
))
NOT_READY_TO_SHIP = "logistics.ship_order_not_ready_to_ship"
_RETRYABLE_ERRORS = frozenset({"error_server", "error_network", "error_inner", "error_busy"})
_RETRYABLE_MARKERS = ("too_many_request", "system_busy")


class ShopeeError(PlatformError):
    """A Shopee API answer with a non-empty `error`."""


def map_status(status: str) -> OrderStatus | None:
    return STATUSES.get(status)


# The push -------------------------------------------------------------------------------------


class Push(PlatformModel):
    code: int
    shop_id: IdText = ""
    timestamp: int
    data: dict[str, Any] = Field(default_factory=dict)
    msg_id: IdText = ""


class OrderStatusData(PlatformModel):
    ordersn: str = Field(min_length=1)
    status: str = Field(min_length=1)
    update_time: EpochSeconds | None = None


class TrackingData(PlatformModel):
    ordersn: str = Field(min_length=1)
    package_number: str = ""
    tracking_no: str = ""


class OrderPush(Push):
    shop_id: IdText = Field(min_length=1)
    data: OrderStatusData  # type: ignore[assignment]


def parse_secret(secret: str) -> tuple[str, str]:
    """`"partner_key|callback_url"` -> (partner_key, callback_url)."""
    return split_secret(secret, "|", "partner_key|callback_url")


def push_signature(partner_key: str, callback_url: str, raw: bytes) -> str:
    message = callback_url.encode("utf-8") + b"|" + raw
    return hmac.new(partner_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _verified(signature: str, raw: bytes, secrets: Sequence[str]) -> bool:
    return matches_hex(signature, raw, secrets,
                       lambda secret, body: push_signature(*parse_secret(secret), body))


def _fresh(timestamp: int, now: datetime) -> bool:
    return sent_in_time(timestamp, now, MAX_AGE, MAX_AHEAD)


def topic_of(code: int) -> str:
    return CODES.get(code, f"code_{code}")


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    """`headers` has lower-case names. 401 missing/invalid signature or stale timestamp, 400
    malformed JSON, 422 invalid payload; codes other than 3 are accepted, not actionable."""
    signature = headers.get("authorization", "")
    if not signature.strip():
        raise ApiError(401, "missing_signature", "Authorization header is required")
    if not _verified(signature, raw, secrets):
        raise ApiError(401, "invalid_signature", "HMAC does not match the callback URL and body")
    body = parse_json_object(raw)
    push = validate_payload(Push, body)
    if not _fresh(push.timestamp, now):
        raise ApiError(401, "stale_or_invalid_timestamp",
                       "the push timestamp is too old or in the future")
    topic = topic_of(push.code)
    if push.code == ORDER_STATUS_PUSH:
        order = validate_payload(OrderPush, body)
        when = order.data.update_time or order.timestamp
        return Accepted(delivery_id=delivery_id(f"{order.data.ordersn}:{order.data.status}:"
                                                f"{when}"),
                        topic=topic, shop=order.shop_id)
    if push.code == TRACKING_NO_PUSH:
        tracking = validate_payload(TrackingData, push.data)
        key = (f"{tracking.ordersn}:tracking:{tracking.package_number}:"
               f"{tracking.tracking_no}")
    else:
        key = push.msg_id or f"sha256:{hashlib.sha256(raw).hexdigest()}"
    return Accepted(delivery_id=delivery_id(key), topic=topic, shop=push.shop_id,
                    actionable=False)


def ref(raw: bytes, headers: Mapping[str, str]) -> OrderRef:
    """The order a stored order_status_push names, and how new the change is."""
    try:
        push = OrderPush.model_validate_json(raw)
        updated_at = epoch_moment(push.data.update_time or push.timestamp)
    except ValueError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return OrderRef(shop=push.shop_id, external_id=push.data.ordersn, status=push.data.status,
                    updated_at=updated_at)


# Requests -------------------------------------------------------------------------------------


def unix(moment: datetime) -> int:
    return epoch_seconds(moment)


def sign(partner_id: str, path: str, timestamp: str, access_token: str, shop_id: str,
         partner_key: str) -> str:
    base = f"{partner_id}{path}{timestamp}{access_token}{shop_id}".encode()
    return hmac.new(partner_key.encode("utf-8"), base, hashlib.sha256).hexdigest()


def shop_call(method: Literal["GET", "POST"], path: str, query: Mapping[str, str],
              body: Any, credentials: Credentials, now: datetime) -> Request:
    """One signed shop-level request: the common parameters first, then `query`."""
    partner_id = credentials["partner_id"]
    token = credentials.get("access_token", "")
    shop_id = credentials.get("shop_id", "")
    if not (token and shop_id):
        raise ValueError("a Shopee shop call needs access_token and shop_id")
    timestamp = str(unix(now))
    common = {
        "partner_id": partner_id,
        "timestamp": timestamp,
        "access_token": token,
        "shop_id": shop_id,
        "sign": sign(partner_id, path, timestamp, token, shop_id, credentials["partner_key"]),
    }
    clash = set(query) & set(common)
    if clash:
        raise ValueError(f"call parameters may not set {sorted(clash)}")
    base = (credentials.get("api_base") or API_BASE).rstrip("/")
    return Request(method=method, url=base + path, params={**common, **query},
                   json_body=body)


def fetch_call(ref: OrderRef, credentials: Credentials, now: datetime) -> Request:
    return shop_call("GET", ORDER_DETAIL_PATH,
                     {"order_sn_list": ref.external_id,
                      "response_optional_fields": DETAIL_FIELDS}, None, credentials, now)


# Answers --------------------------------------------------------------------------------------


def error_of(answer: Mapping[str, Any]) -> ShopeeError | None:
    code = str(answer.get("error") or "")
    if not code:
        return None
    retryable = code in _RETRYABLE_ERRORS or any(m in code for m in _RETRYABLE_MARKERS)
    return ShopeeError(code, str(answer.get("message") or ""), retryable)


def _response(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    error = error_of(answer)
    if error is not None:
        raise error
    response = answer.get("response")
    if not isinstance(response, Mapping):
        raise ShopeeError("unexpected_answer", "the answer has neither response nor error",
                          False)
    return response


class RecipientAddress(PlatformModel):
    name: str = ""
    phone: str = ""
    town: str = ""
    district: str = ""
    city: str = ""
    state: str = ""
    region: str = ""
    zipcode: str = ""
    full_address: str = ""


class Item(PlatformModel):
    item_id: IdText
    item_name: str = ""
    item_sku: str = ""
    model_id: IdText = "0"
    model_name: str = ""
    model_sku: str = ""
    model_quantity_purchased: int = Field(ge=0)
    model_original_price: Money = Decimal("0")
    model_discounted_price: Money = Decimal("0")
    promotion_group_id: IdText = "0"

    @property
    def line_id(self) -> str:
        line_id = f"{self.item_id}:{self.model_id}"
        return line_id if self.promotion_group_id in ("", "0") else (
            f"{line_id}:{self.promotion_group_id}")


class ShopeeOrder(PlatformModel):
    order_sn: str
    region: str = ""
    currency: str = ""
    order_status: str
    create_time: EpochSeconds
    update_time: EpochSeconds
    pay_time: EpochSeconds | None = None
    message_to_seller: str = ""
    buyer_user_id: IdText = ""
    buyer_username: str = ""
    fulfillment_flag: str = ""
    total_amount: Money = Decimal("0")
    # Shopee's estimate of the shipping fee: the buyer's share and vouchers are only in the
    # escrow detail (v2.payment.get_escrow_detail), which is not read.
    estimated_shipping_fee: Money = Decimal("0")
    note: str = ""  # the seller's own note on the order
    recipient_address: RecipientAddress | None = None
    item_list: list[Item] = Field(default_factory=list)


def _find(answer: Mapping[str, Any], order_sn: str) -> ShopeeOrder | None:
    orders = _response(answer).get("order_list")
    for raw in orders if isinstance(orders, list) else []:
        if isinstance(raw, Mapping) and raw.get("order_sn") == order_sn:
            try:
                return ShopeeOrder.model_validate(raw)
            except ValidationError as exc:
                raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return None


# order_status as after-sale: IN_CANCEL is the buyer asking for the paid order to be
# cancelled (its money back) while the seller has not answered; TO_RETURN a return or refund
# the buyer started (the goods may be on their way back). A dispute (the buyer contesting the
# seller's answer to a return) lives on the return (v2.returns.get_return_detail), not on the
# order detail we fetch: Shopee gives us no dispute here; a refund done shows as CANCELLED or
# COMPLETED with nothing to tell it apart.
AFTER_SALE: dict[str, AfterSale] = {"IN_CANCEL": AfterSale.REFUND_REQUESTED,
                                    "TO_RETURN": AfterSale.REFUNDING}


def parse_order(answer: Mapping[str, Any], ref: OrderRef, source: str) -> Order:
    """The get_order_detail answer for `ref`. An error answer raises ShopeeError."""
    order = _find(answer, ref.external_id)
    if order is None:
        raise InvalidOrder("order_not_found", f"{ref.external_id} is not in the answer")
    if order.fulfillment_flag == "fulfilled_by_shopee":
        raise InvalidOrder("not_seller_fulfilled", f"{order.order_sn} is fulfilled by Shopee")
    status = map_status(order.order_status)
    if status is None:
        raise InvalidOrder("ignored_status", f"{order.order_sn} is {order.order_status}")
    items = [item for item in order.item_list if item.model_quantity_purchased > 0]
    subtotal = sum((i.model_original_price * i.model_quantity_purchased for i in items),
                   Decimal("0"))
    paid_for_items = sum((i.model_discounted_price * i.model_quantity_purchased for i in items),
                         Decimal("0"))
    updated_at = _ts(order.update_time)
    return Order(
        marketplace=NAME,
        shop=ref.shop,
        external_id=order.order_sn,
        name=order.order_sn,
        status=status,
        buyer=Buyer(external_id=order.buyer_user_id, name=order.buyer_username),
        shipping_address=_address(order.recipient_address, order.region),
        lines=tuple(_line(item) for item in items),
        currency=order.currency,
        # Listing prices include GST/VAT; the items' discounts are the gap between the
        # original and the discounted model prices.
        totals=Totals(subtotal=subtotal, discounts=subtotal - paid_for_items,
                      shipping=order.estimated_shipping_fee, total=order.total_amount,
                      tax_included=True),
        placed_at=_ts(order.create_time),
        paid_at=_ts(order.pay_time) if order.pay_time else None,
        cancelled_at=updated_at if status is OrderStatus.CANCELLED else None,
        updated_at=updated_at,
        buyer_note=order.message_to_seller,
        after_sale=AFTER_SALE.get(order.order_status, AfterSale.NONE),
        **note_fields((("seller_memo", order.note),)),
    )


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _line(item: Item) -> OrderLine:
    return OrderLine(line_id=item.line_id, sku=item.model_sku or item.item_sku,
                     title=item.item_name, variant=item.model_name,
                     quantity=item.model_quantity_purchased,
                     unit_price=item.model_discounted_price or item.model_original_price)


def _address(address: RecipientAddress | None, region: str) -> Address | None:
    if address is None:
        return None
    return Address(
        name=address.name,
        line1=address.full_address,
        # full_address usually names the town and district already: not twice on the label.
        line2=", ".join(p for p in (address.town, address.district)
                        if p and p not in address.full_address),
        city=address.city,
        province=address.state,
        postal_code=address.zipcode,
        country_code=(address.region or region).upper(),
        phone=address.phone,
    )


# Writeback ------------------------------------------------------------------------------------


def writeback_call(shipped: Shipped, credentials: Credentials, now: datetime, *,
                   package_number: str = "") -> Request:
    """ship_order through the shop's non-integrated channel with our tracking number. Shopee
    ships whole orders or whole Shopee packages (`package_number`, after split_order): it has
    no per-line shipment, so `shipped.lines` is not sent."""
    if shipped.carrier_code.upper() not in CARRIERS:
        raise ValueError(f"no Shopee carrier for {shipped.carrier_code!r}")
    body: dict[str, Any] = {"order_sn": shipped.external_id}
    if package_number:
        body["package_number"] = package_number
    body["non_integrated"] = {"tracking_number": shipped.tracking_number}
    return shop_call("POST", SHIP_ORDER_PATH, {}, body, credentials, now)


def parse_writeback(status: int, body: bytes) -> WritebackResult:
    # NOT_READY_TO_SHIP: past READY_TO_SHIP, i.e. shipped already or cancelled.
    return read_writeback(status, body, error_of, lambda e: e.code == NOT_READY_TO_SHIP)

def existing_call(shipped: Shipped, credentials: Credentials, now: datetime, *,
                  package_number: str = "") -> Request:
    """get_tracking_number: the number the order (package) carries now."""
    query = {"order_sn": shipped.external_id}
    if package_number:
        query["package_number"] = package_number
    return shop_call("GET", TRACKING_NUMBER_PATH, query, None, credentials, now)


def already_shipped(answer: Mapping[str, Any], shipped: Shipped) -> bool:
    try:
        number = str(_response(answer).get("tracking_number") or "").strip()
    except ShopeeError:
        return False
    return bool(number) and number == shipped.tracking_number.strip()


# Reconciliation -------------------------------------------------------------------------------


def list_call(shop: str, since: datetime, until: datetime, cursor: str | None,
              credentials: Credentials, now: datetime) -> Request:
    """Orders updated in [since, until] (at most 15 days); `cursor` = next_cursor."""
    if not since < until:
        raise ValueError("since must be before until")
    if until - since > LIST_WINDOW:
        raise ValueError("get_order_list covers at most 15 days")
    query = {
        "time_range_field": "update_time",
        "time_from": str(unix(since)),
        "time_to": str(unix(until)),
        "page_size": str(PAGE_SIZE),
        "response_optional_fields": "order_status",
    }
    if cursor:
        query["cursor"] = cursor
    return shop_call("GET", ORDER_LIST_PATH, query, None, credentials, now)


def parse_list(answer: Mapping[str, Any], shop: str = "",
               cursor: str | None = None) -> tuple[list[OrderRef], str | None]:
    """Refs of one page and the next cursor. The answer names neither the shop nor the update
    times: pass the `shop` (shop_id) the list was asked for (the answer carries the cursor)."""
    response = _response(answer)
    listed = response.get("order_list")
    refs = []
    for entry in listed if isinstance(listed, list) else []:
        try:
            refs.append(OrderRef(shop=shop, external_id=str(entry["order_sn"]),
                                 status=str(entry.get("order_status", ""))))
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidOrder("invalid_payload", f"listed order unreadable: {exc}") from None
    following = response.get("next_cursor")
    more = response.get("more") is True
    return refs, str(following) if more and following not in (None, "") else None

# Token refresh --------------------------------------------------------------------------------


def public_sign(partner_id: str, path: str, timestamp: str, partner_key: str) -> str:
    """The signature of a public (not shop-level) call: partner_id + path + timestamp."""
    base = f"{partner_id}{path}{timestamp}".encode()
    return hmac.new(partner_key.encode("utf-8"), base, hashlib.sha256).hexdigest()


def _number(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def refresh_call(credentials: Credentials, now: datetime) -> Request | None:
    """RefreshAccessToken with the shop's refresh token (None without one)."""
    token = credentials.get("refresh_token", "")
    if not token:
        return None
    partner_id, shop_id = credentials["partner_id"], credentials.get("shop_id", "")
    if not shop_id:
        raise ValueError("a Shopee token refresh needs shop_id")
    timestamp = str(unix(now))
    base = (credentials.get("api_base") or API_BASE).rstrip("/")
    return Request(method="POST", url=base + REFRESH_PATH, params={
        "partner_id": partner_id, "timestamp": timestamp,
        "sign": public_sign(partner_id, REFRESH_PATH, timestamp, credentials["partner_key"]),
    }, json_body={"refresh_token": token, "partner_id": _number(partner_id),
                  "shop_id": _number(shop_id)})


def parse_refresh(answer: Mapping[str, Any], now: datetime) -> Tokens:
    """The new tokens; RefreshRefused for a refusal for good, ShopeeError (retryable) for a
    passing fault or an answer without them."""
    error = error_of(answer)
    if error is not None:
        if error.retryable:
            raise error
        raise RefreshRefused(error.code, error.message)
    try:
        return Tokens(access_token=str(answer.get("access_token") or ""),
                      access_expires_at=expires_at(answer.get("expire_in"), now),
                      refresh_token=str(answer.get("refresh_token") or ""),
                      refresh_expires_at=now + REFRESH_TOKEN_LIFETIME)
    except ValueError:  # pydantic's ValidationError too: no tokens in a success answer
        raise ShopeeError("unexpected_answer", "the refresh answer has no tokens",
                          True) from None


# The contract (chalicelib/marketplaces/contract.py) ----------------------------------------------

INBOUND = Inbound(accept=accept, reply=REPLY, ref=ref)
MARKETPLACE = Marketplace(
    name=NAME,
    inbound=INBOUND,
    fetch=Fetch.one_call(fetch_call, parse_order),
    writeback=ShipmentWrite.direct(writeback_call, parse_writeback,
                                   existing=PackageCheck(existing_call, already_shipped)),
    listing=Listing(list_call, parse_list),
    refresh=TokenRefresh(refresh_call, parse_refresh, REAUTHORISE),
)
