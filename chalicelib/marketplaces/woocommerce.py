"""WooCommerce order webhooks (WP REST API v3 order shape). Pure: verify, validate, normalise,
and build the calls for re-fetch, Shipment Tracking writeback and reconciliation.

Inbound (WooCommerce core `WC_Webhook::deliver`, read in the WooCommerce source):
- POST, body `trim(wp_json_encode(payload))`, headers X-WC-Webhook-Source (`home_url('/')`),
  X-WC-Webhook-Topic (`order.created`, `order.updated`, `order.deleted`, `order.restored`, ...),
  X-WC-Webhook-Resource, X-WC-Webhook-Event, X-WC-Webhook-Signature, X-WC-Webhook-ID,
  X-WC-Webhook-Delivery-ID.
- X-WC-Webhook-Signature = base64(HMAC-SHA256(key=webhook secret, raw body)) (protocols.md and
  `WC_Webhook::generate_signature`). No timestamp is signed, so staleness is judged by the order's
  own `date_modified_gmt`.
- A 2xx, 301 or 302 answer is success; the sender waits up to 60 s and never retries; more than
  5 consecutive failures disable the webhook.
- Ping (`WC_Webhook::deliver_ping`): when a webhook is created WooCommerce POSTs the form body
  `webhook_id=N` with NO signature and no topic headers and demands exactly 200. It is accepted
  as a non-actionable delivery (`topic="ping"`, `delivery_id="ping:N"`), never as an order,
  and not stored (`record=False`): anyone can send it, and nothing would read it.
- Dedupe: X-WC-Webhook-Delivery-ID is new for every delivery (a hash of webhook id and time), so
  the key is `{shop}:{order id}:{date_modified_gmt}` (protocols.md: order id + date_modified_gmt;
  the shop is added because order ids are only unique within one store). `order.deleted` carries
  only `{"id": N}`: its key is `{shop}:{id}:deleted:{X-WC-Webhook-Delivery-ID}`.
- Body: the full order, built when sent, so an `order.created` may already be paid. Paid is
  derived from the status (processing, completed) or, for pending / on-hold, from `date_paid_gmt`.

Secret: the webhook secret exactly as WooCommerce uses it (WooCommerce HTML-decodes the stored
secret with `wp_specialchars_decode` before signing: store the decoded form). Several secrets may
be listed (rotation).

Credentials (writeback, re-fetch, reconciliation): `store_url` (https://..., the site root),
`consumer_key`, `consumer_secret` (a REST API key with read/write access); sent as HTTP Basic, so
the store must be reached over HTTPS (plain http is refused here, except on this machine's loopback
address: 127.0.0.1, ::1 or localhost, where the local store simulator answers).

Statuses (WooCommerce core `wc_get_order_statuses` plus `checkout-draft` and `trash`): pending,
processing, on-hold, completed, cancelled, refunded, failed, checkout-draft, trash. Shipped or
completed orders map to `paid`: fulfilment is ours; the order is simply not cancelled or refunded.
`failed` (payment declined) stays `pending_payment` because the buyer may pay again;
`checkout-draft` (a Blocks checkout in progress) is ignored; `trash` is `cancelled`.

Writeback: Shipment Tracking extension, `POST {store}/wp-json/wc-shipment-tracking/v3/orders/{id}/
shipment-trackings` with `custom_tracking_provider`, `custom_tracking_link`, `tracking_number`,
`date_shipped` (YYYY-MM-DD); 201 Created on success (woocommerce.com Shipment Tracking REST API
docs). None of our carriers (Chinese couriers) is among the extension's predefined providers, so
every carrier is sent as a custom provider. The call is NOT idempotent: before a retry, send
`existing_call` (GET the same path) and ask `already_shipped`.

Reconciliation: `GET {store}/wp-json/wc/v3/orders?modified_after=&modified_before=&dates_are_gmt=
true&orderby=modified&order=asc&per_page=100&page=1`. The page count (X-WP-TotalPages) is a
header that `parse_list` never sees, so the cursor is a keyset, not a page: the
`modified_after` bound for the next request (see `parse_list`).

Guesses (not confirmed by documentation here):
- The customer-facing provider names in CARRIERS and the tracking link (Kuaidi100's public query
  page `https://www.kuaidi100.com/chaxun?com=<code>&nu=<number>`).
- `date_shipped` is the shipping date in China time (UTC+8); the store's own timezone is unknown.
- Meta keys `requested_courier` and `presale_ship_date` (order meta_data) written by a checkout
  plugin, as Shopify note attributes are; otherwise the first shipping line's method title is
  offered as the requested courier (routing ignores names it does not know).
- A list page of 100 orders modified within one single second: the next bound skips the rest of
  that second (see `parse_list`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from chalicelib.core.errors import ApiError
from chalicelib.core.http import Request
from chalicelib.core.signatures import (
    delivery_id,
    loads_json,
    matches_base64_hmac,
    parse_json_object,
    sane_moment,
    validate_payload,
)
from chalicelib.marketplaces.calls import (
    Credentials,
    LenientModel,
    OrderRef,
    PlatformError,
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
)
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

NAME = "woocommerce"
# Any 2xx (or 301/302) is success; the ping demands exactly 200.
REPLY: tuple[int, str, str] = (200, "text/plain", "")

ORDER_TOPICS = frozenset({"order.created", "order.updated", "order.restored"})
DELETED_TOPIC = "order.deleted"
PER_PAGE = 100
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")

_KEPT_HEADERS = ("x-wc-webhook-topic", "x-wc-webhook-source", "x-wc-webhook-resource",
                 "x-wc-webhook-event", "x-wc-webhook-id", "x-wc-webhook-delivery-id")
_PING = re.compile(rb"\s*webhook_id=(\d+)\s*")

STATUSES: dict[str, OrderStatus | None] = {
    "pending": OrderStatus.PENDING_PAYMENT,  # awaiting payment
    "processing": OrderStatus.PAID,  # paid, to be fulfilled
    "on-hold": OrderStatus.PENDING_PAYMENT,  # awaiting payment confirmation (e.g. bank transfer)
    "completed": OrderStatus.PAID,  # fulfilled: still a paid order for us
    "cancelled": OrderStatus.CANCELLED,
    "refunded": OrderStatus.REFUNDED,
    "failed": OrderStatus.PENDING_PAYMENT,  # payment declined; the buyer may pay again
    "checkout-draft": None,  # Blocks checkout not yet placed
    "trash": OrderStatus.CANCELLED,  # deleted by the merchant
}
# Statuses where a set `date_paid_gmt` means the order is in fact paid.
_PAID_IF_DATED = frozenset({"pending", "on-hold"})

# Our carrier codes -> the provider name shown to the buyer (custom provider).
CARRIERS: dict[str, str] = {
    "STO": "申通快递 STO Express",
    "SF": "顺丰速运 SF Express",
    "YTO": "圆通速递 YTO Express",
    "ZTO": "中通快递 ZTO Express",
    "YUNDA": "韵达快递 Yunda Express",
    "JD": "京东物流 JD Logistics",
    "EMS": "中国邮政 EMS",
}
# Kuaidi100 company codes, for the tracking link (same as chalicelib.tracking.couriers.kuaidi100).
_KUAIDI100 = {"STO": "shentong", "SF": "shunfeng", "YTO": "yuantong", "ZTO": "zhongtong",
              "YUNDA": "yunda", "JD": "jd", "EMS": "ems"}
_TRACKING_LINK = "https://www.kuaidi100.com/chaxun?com={com}&nu={number}"

# WooCommerce i18n/states.php, CN: state code -> Chinese name (CN21 "广西壮族" shortened).
CN_STATES: dict[str, str] = {
    "CN1": "云南", "CN2": "北京", "CN3": "天津", "CN4": "河北", "CN5": "山西", "CN6": "内蒙古",
    "CN7": "辽宁", "CN8": "吉林", "CN9": "黑龙江", "CN10": "上海", "CN11": "江苏", "CN12": "浙江",
    "CN13": "安徽", "CN14": "福建", "CN15": "江西", "CN16": "山东", "CN17": "河南", "CN18": "湖北",
    "CN19": "湖南", "CN20": "广东", "CN21": "广西", "CN22": "海南", "CN23": "重庆", "CN24": "四川",
    "CN25": "贵州", "CN26": "陕西", "CN27": "甘肃", "CN28": "青海", "CN29": "宁夏", "CN30": "澳门",
    "CN31": "西藏", "CN32": "新疆",
}


class WooCommerceError(PlatformError):
    """An error answer of the WooCommerce REST API (`{"code", "message", "data": {"status"}}`)."""


def _as_utc(value: datetime) -> datetime:
    """WooCommerce `*_gmt` fields carry no offset: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


GmtDatetime = Annotated[datetime, AfterValidator(_as_utc), AfterValidator(sane_moment)]


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


Text = Annotated[str, BeforeValidator(_none_as_empty)]  # some plugins write null for ""


class WooAddress(LenientModel):
    first_name: Text = ""
    last_name: Text = ""
    company: Text = ""
    address_1: Text = ""
    address_2: Text = ""
    city: Text = ""
    state: Text = ""
    postcode: Text = ""
    country: Text = ""
    email: str | None = None
    phone: str | None = None


class WooMeta(LenientModel):
    key: str
    value: Any = None
    display_key: str | None = None
    display_value: Any = None


class WooLineItem(LenientModel):
    id: int
    name: Text = ""
    sku: str | None = None
    quantity: int = Field(gt=0)
    subtotal: Decimal  # before discounts, excluding tax
    total: Decimal
    meta_data: list[WooMeta] = Field(default_factory=list)


class WooFeeLine(LenientModel):
    total: Decimal = Decimal("0")  # excluding tax; negative for a discount added as a fee


class WooShippingLine(LenientModel):
    method_title: Text = ""
    method_id: Text = ""


class WooOrderHead(LenientModel):
    """What every order topic needs before the full order is validated."""

    id: int
    status: str
    date_modified_gmt: GmtDatetime


class WooRefund(LenientModel):
    id: int = 0  # its `reason` and `total` (negative, as text) are not needed here


class WooOrder(WooOrderHead):
    number: Text = ""
    refunds: list[WooRefund] = Field(default_factory=list)
    currency: str
    date_created_gmt: GmtDatetime
    date_paid_gmt: GmtDatetime | None = None
    date_completed_gmt: GmtDatetime | None = None
    discount_total: Decimal = Decimal("0")
    shipping_total: Decimal = Decimal("0")
    total_tax: Decimal = Decimal("0")
    total: Decimal
    customer_id: int = 0
    customer_note: Text = ""
    billing: WooAddress = WooAddress()
    shipping: WooAddress = WooAddress()
    line_items: list[WooLineItem] = Field(min_length=1)
    shipping_lines: list[WooShippingLine] = Field(default_factory=list)
    fee_lines: list[WooFeeLine] = Field(default_factory=list)
    meta_data: list[WooMeta] = Field(default_factory=list)


class WooDeleted(LenientModel):
    id: int


class WooRef(LenientModel):
    id: int
    status: str = ""
    date_modified_gmt: GmtDatetime | None = None


# Inbound -----------------------------------------------------------------------------------------


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    signature = headers.get("x-wc-webhook-signature")
    if not signature:
        ping = _PING.fullmatch(raw)
        if ping and not headers.get("x-wc-webhook-topic"):
            # Sent unsigned when the webhook is created; WooCommerce needs a 200 to activate it.
            webhook_id = ping.group(1).decode()
            return Accepted(delivery_id=delivery_id(f"ping:{webhook_id}", "webhook_id"),
                            topic="ping", shop=shop_of(headers.get("x-wc-webhook-source", "")),
                            actionable=False, record=False)
        raise ApiError(401, "missing_signature", "X-WC-Webhook-Signature header is required")
    if not matches_base64_hmac(signature, raw, secrets):
        raise ApiError(401, "invalid_signature", "HMAC does not match the body")
    topic = headers.get("x-wc-webhook-topic", "")
    shop = shop_of(headers.get("x-wc-webhook-source", ""))
    kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
    body = parse_json_object(raw)
    delivery_header = headers.get("x-wc-webhook-delivery-id", "")
    if topic not in ORDER_TOPICS and topic != DELETED_TOPIC:
        if not delivery_header:
            raise ApiError(400, "missing_delivery_id", "X-WC-Webhook-Delivery-ID is required")
        return Accepted(delivery_id=delivery_id(delivery_header, "X-WC-Webhook-Delivery-ID"),
                        topic=topic, shop=shop, headers=kept, actionable=False)
    if not shop:
        raise ApiError(400, "missing_shop", "X-WC-Webhook-Source header is required")
    if topic == DELETED_TOPIC:
        # Only {"id": N}: nothing to normalise. See the report: re-fetch (GET /orders/{id} shows
        # status "trash", or 404 once deleted for good) to learn that the order is gone.
        deleted = validate_payload(WooDeleted, body)
        key = delivery_id(f"{shop}:{deleted.id}:deleted:{delivery_header}".rstrip(":"))
        return Accepted(delivery_id=key, topic=topic, shop=shop, headers=kept, actionable=False)
    head = validate_payload(WooOrderHead, body)
    key = delivery_id(f"{shop}:{head.id}:{_wc_time(head.date_modified_gmt)}")
    if map_status(head.status) is None:
        return Accepted(delivery_id=key, topic=topic, shop=shop, headers=kept,
                        actionable=False)
    validate_payload(WooOrder, body)
    return Accepted(delivery_id=key, topic=topic, shop=shop, headers=kept)


def shop_of(source: str) -> str:
    """The shop's identity from X-WC-Webhook-Source (`https://shop.example.cn/` ->
    `shop.example.cn`; a site in a folder keeps its path: `example.com/store`)."""
    text = source.strip()
    if not text:
        return ""
    parts = urlsplit(text if "//" in text else f"//{text}")
    return (parts.netloc.lower() + parts.path).rstrip("/")


def map_status(status: str) -> OrderStatus | None:
    return STATUSES.get(status)


def status_of(status: str, date_paid: datetime | None) -> OrderStatus | None:
    """The status word, corrected by the payment date: an order can be paid before its status
    moves (and an `order.created` may already be paid)."""
    if date_paid is not None and status in _PAID_IF_DATED:
        return OrderStatus.PAID
    return map_status(status)


def normalise(raw: bytes, headers: Mapping[str, str], source: str) -> Order:
    try:
        payload = WooOrder.model_validate_json(raw)
    except ValueError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return _order(payload, shop_of(headers.get("x-wc-webhook-source", "")))


def ref(raw: bytes, headers: Mapping[str, str]) -> OrderRef:
    """The order a delivery names (also `order.deleted`, which carries only the id)."""
    try:
        head = WooRef.model_validate_json(raw)
    except ValueError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return OrderRef(shop=shop_of(headers.get("x-wc-webhook-source", "")),
                    external_id=str(head.id), status=head.status,
                    updated_at=head.date_modified_gmt)


def after_sale_of(payload: WooOrder) -> AfterSale:
    """`refunded` (the whole order) is refunded; refunds on an order that stands (a partial
    refund, listed in `refunds`) are money gone back with the rest to decide: on the refund
    list until the order is refunded. WooCommerce has no refund request (a plugin's) and no
    dispute (a payment gateway's: WooCommerce Payments or Stripe move a disputed order to
    on-hold, which reads as awaiting payment): nothing here for those."""
    if payload.status == "refunded":
        return AfterSale.REFUNDED
    if payload.refunds and payload.status not in ("cancelled", "trash"):
        return AfterSale.REFUNDING
    return AfterSale.NONE


def _order(payload: WooOrder, shop: str) -> Order:
    status = status_of(payload.status, payload.date_paid_gmt)
    if status is None:
        raise InvalidOrder("ignored_status", payload.status)
    lines = tuple(_line(item) for item in payload.line_items)
    return Order(
        marketplace=NAME,
        shop=shop,
        external_id=str(payload.id),
        name=f"#{payload.number or payload.id}",
        status=status,
        buyer=Buyer(
            external_id=str(payload.customer_id) if payload.customer_id else "",
            name=_person(payload.billing),
            email=payload.billing.email or "",
            phone=payload.billing.phone or "",
        ),
        shipping_address=_address(payload.shipping, payload.billing.phone or ""),
        lines=lines,
        currency=payload.currency,
        totals=totals_of(payload),
        placed_at=payload.date_created_gmt,
        paid_at=(payload.date_paid_gmt or payload.date_modified_gmt)
        if status is OrderStatus.PAID else None,
        # WooCommerce keeps no cancellation date: the modification that cancelled it.
        cancelled_at=payload.date_modified_gmt if status is OrderStatus.CANCELLED else None,
        updated_at=payload.date_modified_gmt,
        buyer_note=payload.customer_note,
        requested_courier=_meta(payload.meta_data, "requested_courier")
        or (payload.shipping_lines[0].method_title if payload.shipping_lines else ""),
        presale_ship_date=_date(_meta(payload.meta_data, "presale_ship_date")),
        after_sale=after_sale_of(payload),
        **note_fields(((m.key, m.value) for m in payload.meta_data
                       if isinstance(m.value, str)), consumed=_CONSUMED_META),
    )


# Meta read elsewhere, or WooCommerce's own bookkeeping kept public.
_CONSUMED_META = ("requested_courier", "presale_ship_date", "is_vat_exempt")


def totals_of(payload: WooOrder) -> Totals:
    """WooCommerce keeps every amount but `total` excluding tax, whether or not the shop
    shows prices with tax (`prices_include_tax`): the tax (`total_tax`, items and shipping)
    is always added. Line `subtotal`s are before coupons; fee lines are charges of their own."""
    return Totals(
        subtotal=sum((item.subtotal for item in payload.line_items), Decimal("0")),
        shipping=payload.shipping_total,
        tax=payload.total_tax,
        discounts=payload.discount_total,
        fees=sum((fee.total for fee in payload.fee_lines), Decimal("0")),
        total=payload.total,
    )


def _meta(meta: list[WooMeta], key: str) -> str:
    value = next((m.value for m in meta if m.key == key), None)
    return value.strip() if isinstance(value, str) else ""


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _is_cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


def _person(address: WooAddress) -> str:
    first, last = address.first_name.strip(), address.last_name.strip()
    if _is_cjk(first + last):
        return f"{last}{first}"  # 林 + 伟 -> 林伟
    return " ".join(p for p in (first, last) if p)


def _address(address: WooAddress, fallback_phone: str) -> Address | None:
    if not (address.address_1 or address.city or address.country):
        return None  # nothing to ship to (virtual order, or shipping not collected)
    state = address.state.strip()
    province = CN_STATES.get(state, state) if address.country == "CN" else state
    return Address(
        name=_person(address),
        company=address.company,
        line1=address.address_1,
        line2=address.address_2,
        city=address.city,
        province=province,
        province_code=state,
        postal_code=address.postcode,
        country_code=address.country,
        phone=address.phone or fallback_phone,
    )


def _line(item: WooLineItem) -> OrderLine:
    variant = " / ".join(
        str(m.display_value if m.display_value not in (None, "") else m.value)
        for m in item.meta_data
        if not m.key.startswith("_") and isinstance(m.value, str | int | float)
    )
    unit = (item.subtotal / item.quantity).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return OrderLine(line_id=str(item.id), sku=item.sku or "", title=item.name, variant=variant,
                     quantity=item.quantity, unit_price=unit)


def _wc_time(value: datetime) -> str:
    """A UTC time as WooCommerce writes `*_gmt` fields (no offset)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


# Calls -------------------------------------------------------------------------------------------


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _store(credentials: Credentials) -> str:
    store = credentials["store_url"].strip().rstrip("/")
    if store.startswith("https://"):
        return store
    if store.startswith("http://") and urlsplit(store).hostname in _LOOPBACK:
        return store  # never leaves this machine (the local simulator)
    raise ValueError("store_url must be https:// (the API keys travel as HTTP Basic)")


def _auth(credentials: Credentials) -> dict[str, str]:
    pair = f"{credentials['consumer_key']}:{credentials['consumer_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def fetch_call(order: OrderRef, credentials: Credentials, now: datetime) -> Request:
    """Re-read one order (after `order.deleted`, or for reconciliation)."""
    url = f"{_store(credentials)}/wp-json/wc/v3/orders/{order.external_id}"
    return Request(method="GET", url=url, headers=_auth(credentials))


def parse_order(answer: Any, order: OrderRef, source: str) -> Order:
    body = _json(answer)
    if not isinstance(body, dict):
        raise InvalidOrder("invalid_payload", "the answer is not an order object")
    _raise_for_error(body)
    try:
        payload = WooOrder.model_validate(body)
    except ValidationError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    return _order(payload, order.shop or _shop_from_links(body))


def _tracking_path(credentials: Credentials, order_id: str) -> str:
    return (f"{_store(credentials)}/wp-json/wc-shipment-tracking/v3/orders/{order_id}"
            "/shipment-trackings")


def writeback_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    """Add one tracking item. Partial shipments simply add another item (the extension has no
    line items), so `shipped.lines` is not sent."""
    try:
        provider = CARRIERS[shipped.carrier_code]
    except KeyError:
        raise ValueError(f"no WooCommerce provider for carrier {shipped.carrier_code!r}") from None
    link = _TRACKING_LINK.format(com=_KUAIDI100[shipped.carrier_code],
                                 number=shipped.tracking_number)
    return Request(
        method="POST",
        url=_tracking_path(credentials, shipped.external_id),
        headers={**_auth(credentials), "Content-Type": "application/json"},
        json_body={
            "custom_tracking_provider": provider,
            "custom_tracking_link": link,
            "tracking_number": shipped.tracking_number,
            "date_shipped": shipped.shipped_at.astimezone(CHINA).date().isoformat(),
        },
    )


def parse_writeback(status: int, body: bytes) -> WritebackResult:
    """201 Created (200 tolerated) is success. WooCommerce reports no duplicates: a retry after a
    lost answer adds a second item, so use `existing_call`/`already_shipped` before retrying."""
    if status in (200, 201):
        answer = _json_or_none(body)
        tracking_id = str(answer.get("tracking_id", "")) if isinstance(answer, dict) else ""
        return WritebackResult(ok=True, code=tracking_id)
    answer = _json_or_none(body)
    code = str(answer.get("code", "")) if isinstance(answer, dict) else ""
    message = str(answer.get("message", "")) if isinstance(answer, dict) else ""
    if status in (408, 429) or status >= 500:
        return WritebackResult(ok=False, retryable=True, code=code or f"http_{status}",
                               detail=message or body[:200].decode(errors="replace"))
    # 400 bad input, 401/403 keys, 404 no such order (or the extension is not installed).
    return WritebackResult(ok=False, code=code or f"http_{status}", detail=message)


def existing_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    return Request(method="GET", url=_tracking_path(credentials, shipped.external_id),
                   headers=_auth(credentials))


def already_shipped(answer: Any, shipped: Shipped) -> bool:
    """True when the order's tracking items already hold this tracking number."""
    items = _json(answer)
    if isinstance(items, dict):
        _raise_for_error(items)
        items = [items]
    wanted = _tracking_key(shipped.tracking_number)
    return any(isinstance(item, dict) and _tracking_key(str(item.get("tracking_number", "")))
               == wanted for item in items or [])


def _tracking_key(number: str) -> str:
    return re.sub(r"\s+", "", number).upper()


def list_call(shop: str, since: datetime, until: datetime, cursor: str | None,
              credentials: Credentials, now: datetime) -> Request:
    """Orders modified in (since, until), oldest change first. `cursor` is the `modified_after`
    bound `parse_list` returned (UTC, WooCommerce's format); None starts at `since`."""
    return Request(
        method="GET",
        url=f"{_store(credentials)}/wp-json/wc/v3/orders",
        params={
            "modified_after": cursor or _wc_time(since),
            "modified_before": _wc_time(until),
            "dates_are_gmt": "true",
            "orderby": "modified",
            "order": "asc",
            "per_page": str(PER_PAGE),
            "page": "1",
        },
        headers=_auth(credentials),
    )


def parse_list(answer: Any, shop: str = "",
               cursor: str | None = None) -> tuple[list[OrderRef], str | None]:
    """The listed orders and the next cursor, None after a short page (the orders' links name
    the shop and the page its own bound: `shop` and `cursor` are not needed).

    A full page continues from one second before its last order's modification (the bound is
    exclusive, so orders sharing that second are read again rather than skipped; the worker's
    newer-than check drops the repeats). If the whole page shares one second the next bound is
    that second itself: more than 100 orders changed in one second lose the rest of that second.
    """
    body = _json(answer)
    if isinstance(body, dict):
        _raise_for_error(body)
        raise WooCommerceError("unexpected_answer", "an order list was expected", False)
    if not isinstance(body, list):
        raise WooCommerceError("unexpected_answer", "an order list was expected", False)
    refs: list[OrderRef] = []
    for item in body:
        head = WooOrderHead.model_validate(item)
        refs.append(OrderRef(shop=_shop_from_links(item), external_id=str(head.id),
                             status=head.status, updated_at=head.date_modified_gmt))
    if len(refs) < PER_PAGE:
        return refs, None
    first, last = refs[0].updated_at, refs[-1].updated_at
    assert first is not None and last is not None
    bound = last if first == last else last - timedelta(seconds=1)
    return refs, _wc_time(bound)


def _shop_from_links(order: Any) -> str:
    """The store from the order's own `_links.self` href (the list answer names no store)."""
    try:
        href = str(order["_links"]["self"][0]["href"])
    except (KeyError, IndexError, TypeError):
        return ""
    return shop_of(href.split("/wp-json/", 1)[0]) if "/wp-json/" in href else ""


def _raise_for_error(body: Mapping[str, Any]) -> None:
    if "code" in body and "message" in body and "id" not in body:
        data = body.get("data")
        status = data.get("status") if isinstance(data, dict) else None
        retryable = isinstance(status, int) and (status >= 500 or status in (408, 429))
        raise WooCommerceError(str(body["code"]), str(body["message"]), retryable)


def _json(answer: Any) -> Any:
    if isinstance(answer, bytes | bytearray | str):
        try:
            return loads_json(answer)
        except ValueError as exc:
            raise WooCommerceError("malformed_answer", str(exc)[:200], True) from None
    return answer


def _json_or_none(body: bytes) -> Any:
    try:
        return loads_json(body)
    except ValueError:
        return None

# The contract (chalicelib/marketplaces/contract.py) ----------------------------------------------

# Webhooks carry the whole order; `fetch` re-reads one a reconciliation listing names.
INBOUND = Inbound(accept=accept, reply=REPLY, normalise=normalise)
MARKETPLACE = Marketplace(
    name=NAME,
    inbound=INBOUND,
    fetch=Fetch.one_call(fetch_call, parse_order),
    writeback=ShipmentWrite.direct(writeback_call, parse_writeback,
                                   existing=PackageCheck(existing_call, already_shipped)),
    listing=Listing(list_call, parse_list),
)
