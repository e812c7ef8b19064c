"""Shopify order webhooks (REST payload shape). Pure: verify, validate, normalise.

Signature: X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(app client secret, raw body)); no timestamp
is signed, so staleness is judged by the order's own `updated_at`. Dedupe on X-Shopify-Webhook-Id
(one per delivery; retries of one delivery keep it). The shop is X-Shopify-Shop-Domain (the
`xxx.myshopify.com` domain): every order's identity is (shop domain, REST order id).

The Admin API half (re-fetch, shipment writeback, reconciliation) is `shopify_admin.py`, which
imports this module (never the other way): the registry loads it only for a platform call, so a
webhook's cold start does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

from pydantic import Field

from chalicelib.core.errors import ApiError
from chalicelib.core.signatures import (
    delivery_id,
    matches_base64_hmac,
    parse_json_object,
    validate_payload,
)
from chalicelib.marketplaces.calls import LenientModel
from chalicelib.marketplaces.contract import Inbound
from chalicelib.orders.deliveries import Accepted
from chalicelib.orders.order import (
    Address,
    AfterSale,
    Buyer,
    InvalidOrder,
    Moment,
    Order,
    OrderLine,
    OrderStatus,
    Totals,
    note_fields,
)

NAME = "shopify"

# Topics whose body is a full order. Others (orders/delete, orders/edited) carry other shapes.
ORDER_TOPICS = frozenset({
    "orders/create", "orders/updated", "orders/paid", "orders/cancelled",
    "orders/fulfilled", "orders/partially_fulfilled",
})
_KEPT_HEADERS = ("x-shopify-topic", "x-shopify-shop-domain", "x-shopify-triggered-at",
                 "x-shopify-event-id", "x-shopify-api-version")


class ShopifyAddress(LenientModel):
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country_code: str | None = None
    phone: str | None = None


class ShopifyCustomer(LenientModel):
    id: int | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None


class ShopifyLineItem(LenientModel):
    id: int
    sku: str | None = None
    title: str = ""
    variant_title: str | None = None
    quantity: int = Field(gt=0)
    price: Decimal
    requires_shipping: bool = True


class ShopifyNoteAttribute(LenientModel):
    name: str
    value: str | None = None


class ShopifyShippingLine(LenientModel):
    price: Decimal = Decimal("0")


class ShopifyOrder(LenientModel):
    id: int
    name: str = ""
    email: str | None = None
    phone: str | None = None
    created_at: Moment
    updated_at: Moment
    processed_at: Moment | None = None
    cancelled_at: Moment | None = None
    financial_status: str | None = None
    currency: str
    subtotal_price: Decimal = Decimal("0")  # after discounts
    total_line_items_price: Decimal | None = None  # before discounts
    total_tax: Decimal = Decimal("0")
    taxes_included: bool = False
    total_discounts: Decimal = Decimal("0")
    total_price: Decimal
    total_shipping_price_set: dict[str, dict[str, str | Decimal]] | None = None
    shipping_lines: list[ShopifyShippingLine] = Field(default_factory=list)
    note: str | None = None
    note_attributes: list[ShopifyNoteAttribute] = Field(default_factory=list)
    customer: ShopifyCustomer | None = None
    shipping_address: ShopifyAddress | None = None
    line_items: list[ShopifyLineItem] = Field(min_length=1)


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    signature = headers.get("x-shopify-hmac-sha256")
    if not signature:
        raise ApiError(401, "missing_signature", "X-Shopify-Hmac-Sha256 header is required")
    if not matches_base64_hmac(signature, raw, secrets):
        raise ApiError(401, "invalid_signature", "HMAC does not match the body")
    webhook_id = headers.get("x-shopify-webhook-id")
    if not webhook_id:
        raise ApiError(400, "missing_delivery_id", "X-Shopify-Webhook-Id header is required")
    webhook_id = delivery_id(webhook_id, "X-Shopify-Webhook-Id")
    topic = headers.get("x-shopify-topic", "")
    shop = headers.get("x-shopify-shop-domain", "")
    kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
    body = parse_json_object(raw)
    if topic not in ORDER_TOPICS:
        return Accepted(delivery_id=webhook_id, topic=topic, shop=shop, headers=kept,
                        actionable=False)
    if not shop:
        raise ApiError(400, "missing_shop", "X-Shopify-Shop-Domain header is required")
    validate_payload(ShopifyOrder, body)
    return Accepted(delivery_id=webhook_id, topic=topic, shop=shop, headers=kept)


def status_of(order: ShopifyOrder) -> OrderStatus:
    if order.cancelled_at is not None or order.financial_status == "voided":
        return OrderStatus.CANCELLED
    return _FINANCIAL_STATUS.get(order.financial_status or "", OrderStatus.PENDING_PAYMENT)


_FINANCIAL_STATUS = {
    "pending": OrderStatus.PENDING_PAYMENT,
    "authorized": OrderStatus.PENDING_PAYMENT,
    "partially_paid": OrderStatus.PENDING_PAYMENT,
    "paid": OrderStatus.PAID,
    "partially_refunded": OrderStatus.PAID,
    "refunded": OrderStatus.REFUNDED,
}


# financial_status as after-sale: partially_refunded is money gone back while the order stands
# (the rest may follow, or the goods still ship): CS checks it, so it is on the refund list
# until Shopify says refunded. An order's payload names no dispute: Shopify sends chargebacks
# and inquiries as their own `disputes/create` and `disputes/update` webhooks (a dispute
# object with `order_id`), which this app does not subscribe to; and no refund request
# (returns are the Returns API's).
_AFTER_SALE = {"partially_refunded": AfterSale.REFUNDING, "refunded": AfterSale.REFUNDED}


def after_sale_of(order: ShopifyOrder) -> AfterSale:
    return _AFTER_SALE.get(order.financial_status or "", AfterSale.NONE)


def normalise(raw: bytes, headers: Mapping[str, str], source: str) -> Order:
    try:
        payload = ShopifyOrder.model_validate_json(raw)
    except ValueError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    status = status_of(payload)
    return Order(
        marketplace=NAME,
        shop=headers.get("x-shopify-shop-domain", ""),
        external_id=str(payload.id),
        name=payload.name,
        status=status,
        buyer=_buyer(payload),
        shipping_address=_address(payload.shipping_address),
        lines=tuple(_line(item) for item in payload.line_items if item.requires_shipping),
        currency=payload.currency,
        totals=totals_of(payload),
        placed_at=payload.created_at,
        paid_at=_paid_at(payload) if status is OrderStatus.PAID else None,
        cancelled_at=payload.cancelled_at,
        updated_at=payload.updated_at,
        buyer_note=payload.note or "",
        # Checkout apps put these in note attributes; Shopify has no field of its own for them.
        requested_courier=_attribute(payload, "requested_courier") or "",
        presale_ship_date=_date(_attribute(payload, "presale_ship_date")),
        after_sale=after_sale_of(payload),
        **note_fields(((a.name, a.value) for a in payload.note_attributes),
                      consumed=_CONSUMED_ATTRIBUTES),
    )


_CONSUMED_ATTRIBUTES = ("requested_courier", "presale_ship_date")


def totals_of(payload: ShopifyOrder) -> Totals:
    """Shopify's `subtotal_price` is after discounts, so the items before them are
    `total_line_items_price`; `total_discounts` covers items and shipping; the tax is inside
    the prices when `taxes_included` (most shops outside North America)."""
    subtotal = payload.total_line_items_price
    if subtotal is None:  # an older or trimmed body: undo the discounts
        subtotal = payload.subtotal_price + payload.total_discounts
    return Totals(subtotal=subtotal, shipping=_shipping_total(payload), tax=payload.total_tax,
                  discounts=payload.total_discounts, total=payload.total_price,
                  tax_included=payload.taxes_included)


def _attribute(payload: ShopifyOrder, name: str) -> str | None:
    return next((a.value for a in payload.note_attributes if a.name == name), None)


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text else None
    except ValueError:
        return None


def _paid_at(payload: ShopifyOrder) -> datetime:
    # Shopify has no paid-at field; processed_at is when payment was processed.
    return payload.processed_at or payload.created_at


def _buyer(payload: ShopifyOrder) -> Buyer:
    customer = payload.customer or ShopifyCustomer()
    name = _full_name(customer.first_name or "", customer.last_name or "")
    return Buyer(
        external_id=str(customer.id or ""),
        name=name,
        email=payload.email or customer.email or "",
        phone=payload.phone or customer.phone or "",
    )


def _full_name(first: str, last: str) -> str:
    """Chinese names are written family name first, with no space (林 + 伟 = 林伟)."""
    if any("\u4e00" <= ch <= "\u9fff" for ch in first + last):
        return last + first
    return " ".join(p for p in (first, last) if p)


def _address(address: ShopifyAddress | None) -> Address | None:
    if address is None:
        return None
    name = address.name or " ".join(p for p in (address.first_name, address.last_name) if p)
    return Address(
        name=name,
        company=address.company or "",
        line1=address.address1 or "",
        line2=address.address2 or "",
        city=address.city or "",
        province=address.province or "",
        province_code=address.province_code or "",
        postal_code=address.zip or "",
        country_code=address.country_code or "",
        phone=address.phone or "",
    )


def _line(item: ShopifyLineItem) -> OrderLine:
    return OrderLine(
        line_id=str(item.id),
        sku=item.sku or "",
        title=item.title,
        variant=item.variant_title or "",
        quantity=item.quantity,
        unit_price=item.price,
    )


def _shipping_total(payload: ShopifyOrder) -> Decimal:
    """The shipping charged before discounts, in the shop's currency (the one `total_price`
    is in): `total_shipping_price_set`, else the sum of the shipping lines (bodies of older
    API versions and orders made by apps carry only those)."""
    amount = (payload.total_shipping_price_set or {}).get("shop_money", {}).get("amount")
    if amount is not None:
        return Decimal(str(amount))
    return sum((line.price for line in payload.shipping_lines), Decimal("0"))


# No prescribed answer (a 2xx is enough).
REPLY: tuple[int, str, str] | None = None

# The notifications half of the contract (chalicelib/marketplaces/contract.py). The whole
# platform, `MARKETPLACE`, is declared by the Admin API half, shopify_admin.py.
INBOUND = Inbound(accept=accept, reply=REPLY, normalise=normalise)
