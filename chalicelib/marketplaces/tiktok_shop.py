"""TikTok Shop (Partner API v2, version 202309). Pure: verify, validate, name the order a
notification concerns, build the signed API calls and read their answers.

Webhook (protocols.md, marked (3rd) there; the webhook overview page as quoted by a third-party
research note; Go and TypeScript integrations):
- POST, JSON body `{"type": 1, "tts_notification_id": "...", "shop_id": "...", "timestamp":
  <unix s>, "data": {"order_id", "order_status", "update_time", ...}}`: thin, "re-fetch this
  order".
- Header `Authorization` = lower-hex HMAC-SHA256(key=app_secret, app_key + raw body); no
  prefix. Compared in constant time, case-insensitively.
- Dedupe on `tts_notification_id`. `shop` is `shop_id`. Answer HTTP 200 quickly (the body is
  not prescribed: we send an empty one).
- The signed body carries `timestamp`: older than MAX_AGE or more than MAX_AHEAD in the future
  is 401 `stale_or_invalid_timestamp`. A replay of an old body could only cause a re-fetch, so
  the window is generous.

Secret format: `"app_key:app_secret"` (split at the first ":"); several may be listed.

Credentials (per shop): `app_key`, `app_secret`, `access_token`, `shop_cipher`; optionally
`api_base` (default https://open-api.tiktokglobalshop.com) and, for the writeback, the shop's
shipping provider ids (see CARRIERS); for access that renews itself `refresh_token` with
`access_token_expires_at`, and `auth_base` (default AUTH_BASE; the local simulator's address).

Token refresh (the token API as third-party clients and recorded answers show it; TikTok's
partner documentation is not mirrored here): `GET https://auth.tiktok-shops.com/api/v2/token/
refresh?app_key=&app_secret=&refresh_token=&grant_type=refresh_token` (no signature, no access
token) answers `{"code": 0, "message": "success", "data": {"access_token",
"access_token_expire_in", "refresh_token", "refresh_token_expire_in", "open_id", "seller_name",
"seller_base_region", "user_type", "granted_scopes"}, "request_id"}`, where both `*_expire_in`
are MOMENTS (unix seconds: e.g. 1722342011 for the access token, a week on; 4841467787 for the
refresh token), not lifetimes. The refresh token answered replaces the one sent.

API (202309; version in the path): query `app_key`, `timestamp` (unix s), `shop_cipher`, the
call's own parameters and `sign`; header `x-tts-access-token` = the access token. sign =
lower-hex HMAC-SHA256(key=app_secret, app_secret + path + (every query parameter but `sign` and
`access_token`, sorted by name, as name+value) + raw body + app_secret). A POST body is sent as
exactly the signed bytes (`Request.raw_body`).
- Re-fetch: `GET /order/202309/orders?ids=<order id>` -> data.orders[].
- Writeback ("Mark Package As Shipped", for orders the seller ships with its own carrier):
  `POST /fulfillment/202309/orders/{order_id}/packages` `{"tracking_number",
  "shipping_provider_id", "order_line_item_ids"}` (line ids only for a partial shipment). Not
  idempotent: `existing_call` (the order detail) + `already_shipped` before a retry. A refusal
  saying the package is already shipped is NOT read as done (it does not say with which
  number): it is retryable, so the next attempt asks `already_shipped` first and confirms, or
  after the last attempt gives up (a CS case).
- Reconciliation: `POST /order/202309/orders/search?page_size=&sort_field=update_time&
  sort_order=ASC&page_token=` with body `{"update_time_ge", "update_time_lt"}`; the cursor is
  `next_page_token`.
- Answers: `{"code": 0, "message": "Success", "request_id", "data"}`; another code raises
  TikTokShopError.

Statuses (Get Order Detail, `status`): UNPAID; ON_HOLD (paid, but the buyer may still cancel
and the seller may not ship: kept as pending_payment so no warehouse job starts);
AWAITING_SHIPMENT, PARTIALLY_SHIPPING, AWAITING_COLLECTION, IN_TRANSIT, DELIVERED, COMPLETED map
to `paid` (shipped/delivered/completed: the fulfilment is ours, the order is not cancelled or
refunded); CANCELLED is cancelled. Line items whose `display_status` is CANCELLED are not sent
to the warehouse. Orders fulfilled by TikTok (`fulfillment_type` FULFILLMENT_BY_TIKTOK) are not
ours: parse_order refuses them (InvalidOrder "not_seller_fulfilled").

Lines: TikTok returns one line item per unit (no quantity field), so each becomes an OrderLine
of quantity 1 whose line_id is the line item id (what the writeback names).

Sources: protocols.md section 1; the 202309 Get Order Detail and Mark Package As Shipped
definitions (a generated TypeScript SDK that copies the API reference: paths, fields, status
texts); third-party code for the signing recipe, `x-tts-access-token`, the order search
parameters (page_size/page_token in the query, time filters in the body) and the webhook body.

Guesses:
- Webhook `type` numbers (from a third-party PHP enum): 1 ORDER_STATUS_CHANGE, 2
  REVERSE_STATUS_UPDATE (legacy), 3 RECIPIENT_ADDRESS_UPDATE, 4 PACKAGE_UPDATE, 5
  PRODUCT_STATUS_CHANGE, 6 SELLER_DEAUTHORIZATION, 7 UPCOMING_AUTHORIZATION_EXPIRATION, 11
  CANCELLATION_STATUS_CHANGE, 12 RETURN_STATUS_CHANGE, 13 NEW_CONVERSATION, 14 NEW_MESSAGE, 15
  PRODUCT_INFORMATION_CHANGE, 16 PRODUCT_CREATION; 1, 2, 3, 11 and 12 are acted on.
- The retry policy is undocumented: MAX_AGE (72 h) is ours.
- Shipping provider ids are per region and delivery option (Get Shipping Providers): no static
  table can be right, so CARRIERS holds the provider names and the ids come from the shop's
  credentials as `shipping_provider_id.<OUR CODE>` (e.g. `shipping_provider_id.SF`).
- Error classes: 36009002 (rate limit, quoted from the rate-limit page third-hand) and 36009003
  (internal error) retryable, with HTTP 429/5xx; a writeback refused with a message saying the
  package or order is already shipped is retryable (see above). Other codes are permanent.
- `district_info` levels: the city is the level named city/town (else L3, else L2), the
  province the level named state/province/region (else L1).
- Token refresh errors: every code but the retryable ones (above) is a refusal for good (an
  expired or revoked refresh token, a seller who deauthorised the app).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BeforeValidator, Field, ValidationError

from chalicelib.core.clock import epoch_seconds
from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.core.signatures import (
    BoundedId,
    EpochSeconds,
    delivery_id,
    epoch_moment,
    key_hmac_hex,
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
    id_text,
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

NAME = "tiktok_shop"
REPLY: tuple[int, str, str] = (200, "text/plain", "")
API_BASE = "https://open-api.tiktokglobalshop.com"
ORDER_DETAIL_PATH = "/order/202309/orders"
ORDER_SEARCH_PATH = "/order/202309/orders/search"
AUTH_BASE = "https://auth.tiktok-shops.com"
REFRESH_PATH = "/api/v2/token/refresh"
REAUTHORISE = ("the seller authorises our app again (TikTok Shop Seller Center, through our "
               "app's authorisation link)")
PAGE_SIZE = 100
MAX_AGE = timedelta(hours=72)
MAX_AHEAD = timedelta(minutes=15)
SUCCESS = 0

TYPES: dict[int, str] = {
    1: "ORDER_STATUS_CHANGE",
    2: "REVERSE_STATUS_UPDATE",
    3: "RECIPIENT_ADDRESS_UPDATE",
    4: "PACKAGE_UPDATE",
    5: "PRODUCT_STATUS_CHANGE",
    6: "SELLER_DEAUTHORIZATION",
    7: "UPCOMING_AUTHORIZATION_EXPIRATION",
    11: "CANCELLATION_STATUS_CHANGE",
    12: "RETURN_STATUS_CHANGE",
    13: "NEW_CONVERSATION",
    14: "NEW_MESSAGE",
    15: "PRODUCT_INFORMATION_CHANGE",
    16: "PRODUCT_CREATION",
}
# Types that name an order whose re-fetch may change what we hold.
ORDER_TYPES = frozenset({1, 2, 3, 11, 12})

STATUSES: dict[str, OrderStatus | None] = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    "ON_HOLD": OrderStatus.PENDING_PAYMENT,  # paid, buyer may still cancel: may not ship yet
    "AWAITING_SHIPMENT": OrderStatus.PAID,
    "PARTIALLY_SHIPPING": OrderStatus.PAID,
    "AWAITING_COLLECTION": OrderStatus.PAID,
    "IN_TRANSIT": OrderStatus.PAID,
    "DELIVERED": OrderStatus.PAID,
    "COMPLETED": OrderStatus.PAID,
    "CANCELLED": OrderStatus.CANCELLED,
}

# Our carrier codes -> the provider names TikTok lists (Get Shipping Providers). The id sent is
# the shop's: credentials["shipping_provider_id.<code>"].
CARRIERS: dict[str, str] = {
    "STO": "STO Express",
    "SF": "SF Express",
    "YTO": "YTO Express",
    "ZTO": "ZTO Express",
    "YUNDA": "Yunda Express",
    "JD": "JD Logistics",
    "EMS": "China EMS",
}
PROVIDER_ID_KEY = "shipping_provider_id.{code}"

_RETRYABLE_CODES = frozenset({36009002, 36009003})
_ALREADY_SHIPPED = ("already shipped", "already been shipped", "has been shipped",
                 "already marked as shipped", "package already")


class TikTokShopError(PlatformError):
    """A TikTok Shop API answer with a code other than 0."""


def map_status(status: str) -> OrderStatus | None:
    return STATUSES.get(status)


# The notification -----------------------------------------------------------------------------


class Notification(PlatformModel):
    type: int
    tts_notification_id: IdText = Field(min_length=1)
    shop_id: IdText = Field(min_length=1)
    timestamp: int
    data: dict[str, Any] = Field(default_factory=dict)


class OrderData(PlatformModel):
    order_id: Annotated[BoundedId, BeforeValidator(id_text)]
    order_status: str = ""
    update_time: EpochSeconds | None = None


def parse_secret(secret: str) -> tuple[str, str]:
    """`"app_key:app_secret"` -> (app_key, app_secret)."""
    return split_secret(secret, ":", "app_key:app_secret")


webhook_signature = key_hmac_hex


def _verified(signature: str, raw: bytes, secrets: Sequence[str]) -> bool:
    return matches_hex(signature, raw, secrets,
                       lambda secret, body: webhook_signature(*parse_secret(secret), body))


def _fresh(timestamp: int, now: datetime) -> bool:
    return sent_in_time(timestamp, now, MAX_AGE, MAX_AHEAD)


def topic_of(type_: int) -> str:
    return TYPES.get(type_, f"type_{type_}")


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    """`headers` has lower-case names. 401 missing/invalid signature or stale timestamp, 400
    malformed JSON, 422 invalid payload; types we do not act on are accepted, not actionable."""
    signature = headers.get("authorization", "")
    if not signature.strip():
        raise ApiError(401, "missing_signature", "Authorization header is required")
    if not _verified(signature, raw, secrets):
        raise ApiError(401, "invalid_signature", "HMAC does not match the body")
    body = parse_json_object(raw)
    notification = validate_payload(Notification, body)
    if not _fresh(notification.timestamp, now):
        raise ApiError(401, "stale_or_invalid_timestamp",
                       "the notification timestamp is too old or in the future")
    actionable = notification.type in ORDER_TYPES
    if actionable:
        validate_payload(OrderData, notification.data)
    return Accepted(delivery_id=delivery_id(notification.tts_notification_id,
                                            "tts_notification_id"),
                    topic=topic_of(notification.type), shop=notification.shop_id,
                    actionable=actionable)


def ref(raw: bytes, headers: Mapping[str, str]) -> OrderRef:
    """The order a stored notification names, and how new the change is."""
    try:
        notification = Notification.model_validate_json(raw)
        data = OrderData.model_validate(notification.data)
        updated_at = epoch_moment(data.update_time or notification.timestamp)
    except ValueError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return OrderRef(shop=notification.shop_id, external_id=data.order_id,
                    status=data.order_status, updated_at=updated_at)


# Requests -------------------------------------------------------------------------------------


def sign(path: str, params: Mapping[str, str], body: bytes, app_secret: str) -> str:
    pieces = "".join(f"{name}{value}" for name, value in sorted(params.items())
                     if name not in ("sign", "access_token"))
    key = app_secret.encode("utf-8")
    text = key + path.encode("utf-8") + pieces.encode("utf-8") + body + key
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def unix(moment: datetime) -> int:
    return epoch_seconds(moment)


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def api_call(method: Literal["GET", "POST"], path: str, query: Mapping[str, str],
             body: Any, credentials: Credentials, now: datetime) -> Request:
    """One signed request: common parameters + `query`, and `body` (POST) as exact JSON bytes."""
    token = credentials.get("access_token", "")
    if not token:
        raise ValueError("a TikTok Shop call needs an access token")
    common = {
        "app_key": credentials["app_key"],
        "timestamp": str(unix(now)),
        "shop_cipher": credentials.get("shop_cipher", ""),
    }
    clash = set(query) & (set(common) | {"sign", "access_token"})
    if clash:
        raise ValueError(f"call parameters may not set {sorted(clash)}")
    params = {name: value for name, value in {**common, **query}.items() if value != ""}
    raw_body = compact_json(body) if body is not None else None
    params["sign"] = sign(path, params, raw_body or b"", credentials["app_secret"])
    headers = {"x-tts-access-token": token, "content-type": "application/json"}
    base = (credentials.get("api_base") or API_BASE).rstrip("/")
    return Request(method=method, url=base + path, params=params, headers=headers,
                   raw_body=raw_body)


def fetch_call(ref: OrderRef, credentials: Credentials, now: datetime) -> Request:
    """Get Order Detail for the one order."""
    return api_call("GET", ORDER_DETAIL_PATH, {"ids": ref.external_id}, None, credentials, now)


# Answers --------------------------------------------------------------------------------------


def error_of(answer: Mapping[str, Any]) -> TikTokShopError | None:
    code = answer.get("code")
    if code == SUCCESS or code == str(SUCCESS):
        return None
    try:
        number = int(code) if code is not None else -1
    except (TypeError, ValueError):
        number = -1
    return TikTokShopError(str(code), str(answer.get("message") or ""),
                           number in _RETRYABLE_CODES)


def _data(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    error = error_of(answer)
    if error is not None:
        raise error
    data = answer.get("data")
    if not isinstance(data, Mapping):
        raise TikTokShopError("unexpected_answer", "the answer has no data", False)
    return data


class Payment(PlatformModel):
    currency: str = ""
    sub_total: Money = Decimal("0")
    shipping_fee: Money = Decimal("0")
    seller_discount: Money = Decimal("0")
    platform_discount: Money = Decimal("0")
    total_amount: Money = Decimal("0")
    original_total_product_price: Money = Decimal("0")
    tax: Money = Decimal("0")
    # Charges besides items, shipping and tax (US state fees, small-order fee, insurance).
    small_order_fee: Money = Decimal("0")
    retail_delivery_fee: Money = Decimal("0")
    buyer_service_fee: Money = Decimal("0")
    handling_fee: Money = Decimal("0")
    shipping_insurance_fee: Money = Decimal("0")
    item_insurance_fee: Money = Decimal("0")

    @property
    def fees(self) -> Decimal:
        return (self.small_order_fee + self.retail_delivery_fee + self.buyer_service_fee
                + self.handling_fee + self.shipping_insurance_fee + self.item_insurance_fee)


class District(PlatformModel):
    address_level_name: str = ""
    address_name: str = ""
    address_level: str = ""


class RecipientAddress(PlatformModel):
    name: str = ""
    phone_number: str = ""
    postal_code: str = ""
    region_code: str = ""
    address_detail: str = ""
    address_line1: str = ""
    address_line2: str = ""
    address_line3: str = ""
    address_line4: str = ""
    full_address: str = ""
    district_info: list[District] = Field(default_factory=list)


class LineItem(PlatformModel):
    id: IdText
    sku_id: IdText = ""
    seller_sku: str = ""
    product_name: str = ""
    sku_name: str = ""
    sale_price: Money = Decimal("0")
    display_status: str = ""
    tracking_number: str = ""
    package_id: str = ""


class TikTokOrder(PlatformModel):
    id: IdText
    status: str
    user_id: IdText = ""
    buyer_email: str = ""
    buyer_message: str = ""
    seller_note: str = ""
    create_time: EpochSeconds
    update_time: EpochSeconds
    paid_time: EpochSeconds | None = None
    cancel_time: EpochSeconds | None = None
    fulfillment_type: str = ""
    tracking_number: str = ""
    payment: Payment = Payment()
    recipient_address: RecipientAddress | None = None
    line_items: list[LineItem] = Field(default_factory=list)


def _orders(answer: Mapping[str, Any]) -> list[Any]:
    orders = _data(answer).get("orders")
    return list(orders) if isinstance(orders, list) else []


def _find(answer: Mapping[str, Any], order_id: str) -> TikTokOrder | None:
    for raw in _orders(answer):
        if isinstance(raw, Mapping) and str(raw.get("id")) == order_id:
            try:
                return TikTokOrder.model_validate(raw)
            except ValidationError as exc:
                raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return None


def parse_order(answer: Mapping[str, Any], ref: OrderRef, source: str) -> Order:
    """The Get Order Detail answer for `ref`. An error answer raises TikTokShopError."""
    order = _find(answer, ref.external_id)
    if order is None:
        raise InvalidOrder("order_not_found", f"{ref.external_id} is not in the answer")
    if order.fulfillment_type == "FULFILLMENT_BY_TIKTOK":
        raise InvalidOrder("not_seller_fulfilled", f"{order.id} is fulfilled by TikTok")
    status = map_status(order.status)
    if status is None:
        raise InvalidOrder("unknown_status", f"{order.id} is {order.status}")
    updated_at = _ts(order.update_time)
    cancelled_at = None
    if status is OrderStatus.CANCELLED:
        cancelled_at = _ts(order.cancel_time) if order.cancel_time else updated_at
    payment = order.payment
    return Order(
        marketplace=NAME,
        shop=ref.shop,
        external_id=order.id,
        name=order.id,
        status=status,
        buyer=Buyer(external_id=order.user_id, email=order.buyer_email),
        shipping_address=_address(order.recipient_address),
        lines=tuple(_line(item) for item in order.line_items
                    if item.display_status != "CANCELLED"),
        currency=payment.currency,
        totals=totals_of(payment),
        placed_at=_ts(order.create_time),
        paid_at=_ts(order.paid_time) if order.paid_time else None,
        cancelled_at=cancelled_at,
        updated_at=updated_at,
        buyer_note=order.buyer_message,
        # Get Order Detail carries no after-sale state: cancellation requests, returns and
        # refunds are the Return and Refund API's (notifications 11 and 12 only make us re-read
        # the order), and TikTok Shop has no dispute for a seller: nothing to map.
        after_sale=AfterSale.NONE,
        **note_fields((("seller_memo", order.seller_note),)),
    )


def totals_of(payment: Payment) -> Totals:
    """`original_total_product_price` is the items at list price, `seller_discount` and
    `platform_discount` the items' discounts, `shipping_fee` the buyer's shipping after its
    discounts; `total_amount` adds `tax` (charged on top in the US; 0 where prices include
    VAT) and the other fees."""
    return Totals(
        subtotal=payment.original_total_product_price or (
            payment.sub_total + payment.seller_discount + payment.platform_discount),
        shipping=payment.shipping_fee,
        tax=payment.tax,
        discounts=payment.seller_discount + payment.platform_discount,
        fees=payment.fees,
        total=payment.total_amount,
    )


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _line(item: LineItem) -> OrderLine:
    return OrderLine(line_id=item.id, sku=item.seller_sku, title=item.product_name,
                     variant=item.sku_name, quantity=1, unit_price=item.sale_price)


def _level(address: RecipientAddress, names: tuple[str, ...], levels: tuple[str, ...]) -> str:
    for district in address.district_info:
        if district.address_level_name.strip().lower() in names and district.address_name:
            return district.address_name
    for level in levels:
        for district in address.district_info:
            if district.address_level == level and district.address_name:
                return district.address_name
    return ""


def _below_city(address: RecipientAddress, city: str) -> list[str]:
    """The names of the levels after the city's (L1 country/state ... L4), in order."""
    levels = sorted((d.address_level, d.address_name) for d in address.district_info
                    if d.address_level.startswith("L") and d.address_name)
    names = [name for _level_id, name in levels]
    return names[names.index(city) + 1:] if city in names else []


def _address(address: RecipientAddress | None) -> Address | None:
    if address is None:
        return None
    line1 = address.address_line1 or address.address_detail
    city = _level(address, ("city", "town", "post town"), ("L3", "L2"))
    parts = [p for p in (address.address_line2, address.address_line3, address.address_line4)
             if p]
    # Levels below the city (a district, a subdistrict) have no field of their own: keep them
    # on the label unless the address lines already say them.
    below = _below_city(address, city)
    parts += [name for name in below if name not in line1 and all(name not in p for p in parts)]
    return Address(
        name=address.name,
        line1=line1,
        line2=", ".join(parts),
        city=city,
        province=_level(address, ("state", "province", "region"), ("L1",)),
        postal_code=address.postal_code,
        country_code=address.region_code.upper(),
        phone=address.phone_number,
    )


# Writeback ------------------------------------------------------------------------------------


def provider_id(carrier_code: str, credentials: Credentials) -> str:
    code = carrier_code.upper()
    if code not in CARRIERS:
        raise ValueError(f"no TikTok Shop provider for carrier {carrier_code!r}")
    key = PROVIDER_ID_KEY.format(code=code)
    value = credentials.get(key, "")
    if not value:
        raise ValueError(f"the shop's credentials lack {key!r} (Get Shipping Providers id for "
                         f"{CARRIERS[code]})")
    return value


def writeback_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    """Mark Package As Shipped; with `lines`, only those line items (each line item is one
    unit, so every quantity must be 1)."""
    if any(quantity != 1 for _, quantity in shipped.lines):
        raise ValueError("TikTok line items are single units: every quantity must be 1")
    body: dict[str, Any] = {
        "tracking_number": shipped.tracking_number,
        "shipping_provider_id": provider_id(shipped.carrier_code, credentials),
    }
    if shipped.lines:
        body["order_line_item_ids"] = [line_id for line_id, _ in shipped.lines]
    path = f"/fulfillment/202309/orders/{quote(shipped.external_id, safe='')}/packages"
    return api_call("POST", path, {}, body, credentials, now)


def parse_writeback(status: int, body: bytes) -> WritebackResult:
    return read_writeback(status, body, error_of, lambda e: any(
        marker in e.message.lower() for marker in _ALREADY_SHIPPED))

def existing_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    """The order detail: which line items already carry a tracking number?"""
    return api_call("GET", ORDER_DETAIL_PATH, {"ids": shipped.external_id}, None, credentials,
                    now)


def already_shipped(answer: Mapping[str, Any], shipped: Shipped) -> bool:
    """True when every line item of this package (all live ones when `lines` is empty) already
    carries our tracking number. An error answer says nothing: False (the writeback is then
    tried again and fails on its own terms)."""
    try:
        order = _find(answer, shipped.external_id)
    except (TikTokShopError, InvalidOrder):
        return False
    if order is None:
        return False
    number = shipped.tracking_number.strip()
    wanted = {line_id for line_id, _ in shipped.lines}
    if not number:
        return False
    if wanted:
        items = [item for item in order.line_items if item.id in wanted]
        if {item.id for item in items} != wanted:
            return False
    else:
        items = [item for item in order.line_items if item.display_status != "CANCELLED"]
    if items and all(item.tracking_number.strip() == number for item in items):
        return True
    return not wanted and order.tracking_number.strip() == number


# Reconciliation -------------------------------------------------------------------------------


def list_call(shop: str, since: datetime, until: datetime, cursor: str | None,
              credentials: Credentials, now: datetime) -> Request:
    """Orders updated in [since, until), oldest change first; `cursor` = next_page_token."""
    if not since < until:
        raise ValueError("since must be before until")
    query = {"page_size": str(PAGE_SIZE), "sort_field": "update_time", "sort_order": "ASC"}
    if cursor:
        query["page_token"] = cursor
    body = {"update_time_ge": unix(since), "update_time_lt": unix(until)}
    return api_call("POST", ORDER_SEARCH_PATH, query, body, credentials, now)


def parse_list(answer: Mapping[str, Any], shop: str = "",
               cursor: str | None = None) -> tuple[list[OrderRef], str | None]:
    """Refs of one page and the next cursor. The answer does not say the shop: pass the
    `shop` (shop_id) the list was asked for (the answer carries the cursor)."""
    data = _data(answer)
    refs = []
    for listed in _orders(answer):
        try:
            when = listed.get("update_time")
            refs.append(OrderRef(shop=shop, external_id=str(listed["id"]),
                                 status=str(listed.get("status", "")),
                                 updated_at=_ts(int(when)) if when else None))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidOrder("invalid_payload", f"listed order unreadable: {exc}") from None
    token = data.get("next_page_token")
    return refs, token if isinstance(token, str) and token else None

# Token refresh --------------------------------------------------------------------------------


def refresh_call(credentials: Credentials, now: datetime) -> Request | None:
    """A new access token for the shop's refresh token (None without one)."""
    token = credentials.get("refresh_token", "")
    if not token:
        return None
    base = (credentials.get("auth_base") or AUTH_BASE).rstrip("/")
    return Request(method="GET", url=base + REFRESH_PATH, params={
        "app_key": credentials["app_key"], "app_secret": credentials["app_secret"],
        "refresh_token": token, "grant_type": "refresh_token"})


def parse_refresh(answer: Mapping[str, Any], now: datetime) -> Tokens:
    """The new tokens; RefreshRefused for a refusal for good, TikTokShopError (retryable) for
    a passing fault or an answer without them."""
    error = error_of(answer)
    if error is not None:
        if error.retryable:
            raise error
        raise RefreshRefused(error.code, error.message)
    data = answer.get("data")
    try:
        if not isinstance(data, Mapping):
            raise ValueError("no data")
        refresh_ends = data.get("refresh_token_expire_in")
        return Tokens(access_token=str(data.get("access_token") or ""),
                      access_expires_at=expires_at(data.get("access_token_expire_in"), now),
                      refresh_token=str(data.get("refresh_token") or ""),
                      refresh_expires_at=None if refresh_ends is None
                      else expires_at(refresh_ends, now))
    except ValueError:  # pydantic's ValidationError too
        raise TikTokShopError("unexpected_answer", "the refresh answer has no tokens",
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
