"""Amazon Selling Partner API (SP-API) orders. Pure: validate, build requests, read answers.

Inbound: no webhook. `ORDER_CHANGE` notifications arrive on an SQS standard queue we own (its
queue policy admits Amazon's principal), so there is no signature to verify: the queue is the
trust boundary. The SQS consumer (the I/O part) hands each message body to `accept_message`;
success is deleting the message (`ACK`), there is no HTTP answer, so `REPLY` is None. SQS is
at least once: dedupe on `NotificationMetadata.NotificationId`. `accept` (the HTTP entry point)
answers 404 `unknown_source`, so nothing can post notifications to us by mistake.

The notification is an order summary, not the order: `ref` names the order, `fetch_calls` builds
`getOrder` + `getOrderItems` and `parse_order` reads both answers (the order first, then every
page of items; follow `items_next_token`); `read`, the declared fetch, does all of it. `shop` is
"SellerId/MarketplaceId". Orders fulfilled by Amazon (AFN/FBA) are not ours to ship: their
notifications are not actionable and `parse_order` refuses them (InvalidOrder
"not_seller_fulfilled").

Requests: `x-amz-access-token` = an LWA access token the I/O part obtained (no AWS SigV4 since
2023), `x-amz-date` = now as YYYYMMDDTHHMMSSZ. Buyer PII (shipping address name/lines/phone,
buyer name and email) comes only when getOrder is called with a Restricted Data Token: build it
with `rdt_call` + `parse_rdt` and pass it to `fetch_calls`. Without one the address holds city,
region, postal and country code only, and the order is "incomplete_shipping_address".

Credentials (per shop): `refresh_token`, `client_id`, `client_secret` (Login with Amazon: the I/O
part exchanges them for an access token, cached for its lifetime; `lwa_url` overrides the token
endpoint) or a ready `access_token`; `region` ("na", "eu", "fe") or `endpoint` (a base URL,
e.g. the sandbox), `marketplace_id` (used for writeback and reconciliation).

Statuses (ordersV0 model): PendingAvailability and Pending are awaiting payment; Unshipped,
PartiallyShipped, Shipped and InvoiceUnconfirmed are paid (shipped/delivered map to paid: the
fulfilment is ours, the order is neither cancelled nor refunded); Canceled is cancelled;
Unfulfillable (multi-channel, Amazon-fulfilled orders only) is ignored. Amazon orders carry no
refund status: refunds live in the Finances API.

Writeback: `POST /orders/v0/orders/{orderId}/shipmentConfirmation` (2 requests/s, burst 10)
with `packageReferenceId` = our package id as a positive number, so a retry edits the same
package (the natural idempotency key): the writeback declares no `existing` read. Carriers
without an Amazon code go as `carrierCode` "Other" with our `carrierName` (`OTHER_CARRIERS`).
`orderItems` is required, so `Shipped.lines` must name the items.

Reconciliation: `GET /orders/v0/orders` by LastUpdatedAfter/LastUpdatedBefore (at least 2 minutes
before now) for seller-fulfilled orders, paged by NextToken (0.0167 requests/s, burst 20).

Sources: notification schema `schemas/notifications/OrderChangeNotification.json` and the Orders
API model `models/orders-api-model/ordersV0.json` (amzn/selling-partner-api-models): fields,
status list, paths, rate limits, "packageReferenceId: positive numeric", 204 on success, the
`{"errors": [{code, message, details}]}` shape; Tokens API 2021-03-01 for the RDT call.
protocols.md section 1 for the SQS delivery and the writeback idempotency.

Guesses:
- The text Amazon answers when a package already exists (400): matched loosely in
  `_ALREADY_DONE` ("already exist", "already been confirmed", "duplicate package"...); with the
  same packageReferenceId Amazon is documented (protocols.md) to edit, i.e. answer 204.
- Carrier codes: "SF Express" and "China Post" (for EMS) come from third-party copies of
  Amazon's CarrierCode list; STO, YTO, ZTO, Yunda and JD go as "Other". The model text says
  carrierName is required when carrierCode is "Others" while the code list has "Other".
- packageReferenceId for a non-numeric package id: a stable number from its SHA-256, at most
  2147483647 (the accepted maximum is not documented).
- Which error codes are temporary: QuotaExceeded, InternalFailure, ServiceUnavailable,
  RequestThrottled (and HTTP 429/5xx for the writeback).
- `paid_at` = PurchaseDate for paid orders (Amazon has no payment time); `presale_ship_date` =
  EarliestShipDate of a Preorder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, ValidationError

from chalicelib.core.clock import in_utc
from chalicelib.core.errors import ApiError
from chalicelib.core.http import Pace, Request
from chalicelib.core.signatures import (
    delivery_id,
    loads_json,
    parse_json_object,
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
    ShipmentWrite,
    TokenExchange,
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
)

NAME = "amazon"
# No HTTP answer: an SQS message is acknowledged by deleting it.
REPLY: tuple[int, str, str] | None = None
ACK = "delete_message"
NOTIFICATION_TYPE = "ORDER_CHANGE"

ENDPOINTS = {
    "na": "https://sellingpartnerapi-na.amazon.com",
    "eu": "https://sellingpartnerapi-eu.amazon.com",
    "fe": "https://sellingpartnerapi-fe.amazon.com",
}
WRITEBACK_RATE = (2.0, 10)  # requests per second, burst (confirmShipment usage plan)
LIST_RATE = (0.0167, 20)  # getOrders
SAFE_LAG = timedelta(minutes=2)  # LastUpdatedBefore must be at least this far before now
PII_ELEMENTS = ("buyerInfo", "shippingAddress")

STATUSES: dict[str, OrderStatus | None] = {
    "PendingAvailability": OrderStatus.PENDING_PAYMENT,  # pre-order, payment not authorised
    "Pending": OrderStatus.PENDING_PAYMENT,
    "Unshipped": OrderStatus.PAID,
    "PartiallyShipped": OrderStatus.PAID,
    "Shipped": OrderStatus.PAID,
    "InvoiceUnconfirmed": OrderStatus.PAID,  # shipped, invoice not yet confirmed
    "Canceled": OrderStatus.CANCELLED,
    "Unfulfillable": None,  # multi-channel orders fulfilled by Amazon only: not ours
}

# Our carrier codes -> Amazon carrierCode; carrierName is always sent (required with "Other").
CARRIERS: dict[str, str] = {
    "SF": "SF Express",
    "EMS": "China Post",
    "STO": "Other",
    "YTO": "Other",
    "ZTO": "Other",
    "YUNDA": "Other",
    "JD": "Other",
}
CARRIER_NAMES: dict[str, str] = {
    "SF": "SF Express",
    "EMS": "China EMS",
    "STO": "STO Express",
    "YTO": "YTO Express",
    "ZTO": "ZTO Express",
    "YUNDA": "Yunda Express",
    "JD": "JD Logistics",
}
OTHER_CARRIERS = frozenset(code for code, amazon in CARRIERS.items() if amazon == "Other")

_RETRYABLE_CODES = frozenset({
    "QuotaExceeded", "InternalFailure", "ServiceUnavailable", "RequestThrottled",
})
_ALREADY_DONE = ("already exist", "already been confirmed", "already confirmed",
                 "duplicate package", "package already")
_MAX_REFERENCE = 2_147_483_647


class AmazonError(PlatformError):
    """An SP-API error answer (`{"errors": [...]}`); retryable for throttling and server faults."""


def map_status(status: str) -> OrderStatus | None:
    return STATUSES.get(status)


# The notification -----------------------------------------------------------------------------


class Metadata(LenientModel):
    ApplicationId: str
    SubscriptionId: str
    PublishTime: datetime
    NotificationId: str = Field(min_length=1)


class _EnvelopeBase(LenientModel):
    NotificationVersion: str
    NotificationType: str
    PayloadVersion: str
    EventTime: datetime
    NotificationMetadata: Metadata


class Envelope(_EnvelopeBase):
    """What every SP-API notification has, whatever its type."""

    Payload: dict[str, Any]


class ChangeTrigger(LenientModel):
    TimeOfOrderChange: datetime | None
    ChangeReason: str


class SummaryItem(LenientModel):
    OrderItemId: str
    SellerSKU: str = ""
    Quantity: int = 0
    QuantityShipped: int | None = None
    IsBuyerRequestedCancel: bool | None = None


class OrderSummary(LenientModel):
    MarketplaceId: str = Field(min_length=1)
    OrderStatus: Literal["PendingAvailability", "Pending", "Unshipped", "PartiallyShipped",
                         "Shipped", "InvoiceUnconfirmed", "Canceled", "Unfulfillable"]
    PurchaseDate: datetime | None
    FulfillmentType: Literal["AFN", "MFN"]
    OrderType: str
    DestinationPostalCode: str | None = None
    OrderItems: list[SummaryItem] = Field(default_factory=list)


class OrderChange(LenientModel):
    NotificationLevel: str | None = None
    SellerId: str = Field(min_length=1)
    AmazonOrderId: str = Field(min_length=1)
    OrderChangeType: Literal["OrderStatusChange", "BuyerRequestedChange"]
    OrderChangeTrigger: ChangeTrigger
    Summary: OrderSummary


class ChangePayload(LenientModel):
    OrderChangeNotification: OrderChange


class OrderChangeNotification(_EnvelopeBase):
    Payload: ChangePayload


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    """Amazon never posts notifications over HTTP: whatever arrives here is not from Amazon."""
    raise ApiError(404, "unknown_source",
                   "Amazon SP-API notifications arrive on an SQS queue, not over HTTP")


def accept_message(body: bytes, now: datetime) -> Accepted:
    """Validate one SQS message body. 400 `malformed_json`, 422 `invalid_payload`.

    Another notification type on the same queue is accepted but not actionable, and so is an
    order fulfilled by Amazon (AFN).
    """
    value = parse_json_object(body)
    envelope = validate_payload(Envelope, value)
    key = delivery_id(envelope.NotificationMetadata.NotificationId, "NotificationId")
    if envelope.NotificationType != NOTIFICATION_TYPE:
        return Accepted(delivery_id=key, topic=envelope.NotificationType, actionable=False)
    notification = validate_payload(OrderChangeNotification, value)
    change = notification.Payload.OrderChangeNotification
    return Accepted(
        delivery_id=key,
        topic=f"{NOTIFICATION_TYPE}/{change.OrderChangeType}",
        shop=f"{change.SellerId}/{change.Summary.MarketplaceId}",
        headers={
            "order-change-type": change.OrderChangeType,
            "change-reason": change.OrderChangeTrigger.ChangeReason,
            "fulfillment-type": change.Summary.FulfillmentType,
            "order-status": change.Summary.OrderStatus,
        },
        actionable=change.Summary.FulfillmentType == "MFN",
    )


def ref(raw: bytes, headers: Mapping[str, str]) -> OrderRef:
    """The order a stored ORDER_CHANGE message names, and how new the change is."""
    try:
        notification = OrderChangeNotification.model_validate_json(raw)
    except ValueError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    change = notification.Payload.OrderChangeNotification
    return OrderRef(
        shop=f"{change.SellerId}/{change.Summary.MarketplaceId}",
        external_id=change.AmazonOrderId,
        status=change.Summary.OrderStatus,
        updated_at=change.OrderChangeTrigger.TimeOfOrderChange or notification.EventTime,
    )


# Requests -------------------------------------------------------------------------------------


def base_url(credentials: Credentials) -> str:
    if credentials.get("endpoint"):
        return credentials["endpoint"].rstrip("/")
    region = credentials.get("region", "")
    try:
        return ENDPOINTS[region]
    except KeyError:
        raise ValueError(f"unknown SP-API region {region!r}; expected one of "
                         f"{sorted(ENDPOINTS)} or an endpoint") from None


# Usage plans (rate per second, burst) of the operations we call; the I/O part waits to keep
# within them (per process), and a 429 still backs off.
PACES = {name: Pace(key=f"amazon.{name}", rate=rate, burst=burst) for name, rate, burst in (
    ("getOrder", 0.5, 30), ("getOrderItems", 0.5, 30), ("getOrders", 0.0167, 20),
    ("createRestrictedDataToken", 1.0, 10), ("confirmShipment", 2.0, 10))}


def amz_date(now: datetime) -> str:
    return in_utc(now).strftime("%Y%m%dT%H%M%SZ")


def _headers(token: str, now: datetime) -> dict[str, str]:
    if not token:
        raise ValueError("an SP-API call needs an access token")
    return {"x-amz-access-token": token, "x-amz-date": amz_date(now)}


def _order_path(order_id: str) -> str:
    return f"/orders/v0/orders/{quote(order_id, safe='')}"


def fetch_call(ref: OrderRef, credentials: Credentials, now: datetime, *,
               restricted_data_token: str = "") -> Request:
    """getOrder; with a Restricted Data Token the answer carries the buyer's PII."""
    token = restricted_data_token or credentials.get("access_token", "")
    return Request(method="GET", url=base_url(credentials) + _order_path(ref.external_id),
                   headers=_headers(token, now), pace=PACES["getOrder"])


def items_call(ref: OrderRef, credentials: Credentials, now: datetime,
               next_token: str = "") -> Request:
    """getOrderItems, one page; pass the previous page's NextToken for the next one."""
    params = {"NextToken": next_token} if next_token else {}
    return Request(method="GET",
                   url=base_url(credentials) + _order_path(ref.external_id) + "/orderItems",
                   params=params, headers=_headers(credentials.get("access_token", ""), now),
                   pace=PACES["getOrderItems"])


def fetch_calls(ref: OrderRef, credentials: Credentials, now: datetime, *,
                restricted_data_token: str = "") -> list[Request]:
    """The two calls that make an order: getOrder, then the first page of getOrderItems."""
    return [
        fetch_call(ref, credentials, now, restricted_data_token=restricted_data_token),
        items_call(ref, credentials, now),
    ]


def rdt_call(ref: OrderRef, credentials: Credentials, now: datetime) -> Request:
    """Tokens API createRestrictedDataToken for this order's getOrder with buyer PII."""
    body = {"restrictedResources": [{
        "method": "GET",
        "path": _order_path(ref.external_id),
        "dataElements": list(PII_ELEMENTS),
    }]}
    return Request(method="POST",
                   url=base_url(credentials) + "/tokens/2021-03-01/restrictedDataToken",
                   headers=_headers(credentials.get("access_token", ""), now), json_body=body,
                   pace=PACES["createRestrictedDataToken"])


def parse_rdt(answer: Mapping[str, Any]) -> str:
    _raise_errors(answer)
    token = answer.get("restrictedDataToken")
    if not isinstance(token, str) or not token:
        raise AmazonError("no_token", "createRestrictedDataToken answered without a token", False)
    return token


def items_next_token(answer: Mapping[str, Any]) -> str | None:
    """The NextToken of a getOrderItems page, or None on the last page."""
    payload = _payload(answer)
    token = payload.get("NextToken") if isinstance(payload, Mapping) else None
    return token if isinstance(token, str) and token else None


MAX_ITEM_PAGES = 20


def read(ref: OrderRef, credentials: Credentials, now: datetime,
         send: Callable[[Request], Mapping[str, Any]], source: str) -> Order:
    """The whole order: a Restricted Data Token (so getOrder carries the buyer's address), the
    order, then every page of its items. `send` is the I/O part's: call in, JSON out."""
    token = parse_rdt(send(rdt_call(ref, credentials, now)))
    answers = [send(call) for call in
               fetch_calls(ref, credentials, now, restricted_data_token=token)]
    for _page in range(MAX_ITEM_PAGES):
        following = items_next_token(answers[-1])
        if following is None:
            return parse_order(answers, ref, source)
        answers.append(send(items_call(ref, credentials, now, following)))
    # Never an order with lines missing: CS hears of it instead.
    raise AmazonError("too_many_items", f"more than {MAX_ITEM_PAGES} pages of items", False)


# Login with Amazon: a short-lived access token from the shop's long-lived refresh token.
LWA_URL = "https://api.amazon.com/auth/o2/token"


def token_call(credentials: Credentials) -> Request | None:
    """The LWA token exchange, or None when the credentials carry a ready access token."""
    if not credentials.get("refresh_token"):
        return None
    return Request(method="POST", url=credentials.get("lwa_url") or LWA_URL, form={
        "grant_type": "refresh_token", "refresh_token": credentials["refresh_token"],
        "client_id": credentials.get("client_id", ""),
        "client_secret": credentials.get("client_secret", "")})


def parse_token(answer: Mapping[str, Any]) -> tuple[str, int]:
    """(access token, seconds it lives) from LWA's answer; an error answer is not retryable
    (a revoked or wrong refresh token needs a person)."""
    token, lifetime = answer.get("access_token"), answer.get("expires_in", 3600)
    if not isinstance(token, str) or not token:
        raise AmazonError(str(answer.get("error") or "no_token"),
                          str(answer.get("error_description") or "LWA gave no access token"),
                          False)
    return token, int(lifetime) if isinstance(lifetime, int | str) else 3600


# Reading orders -------------------------------------------------------------------------------


class Money(LenientModel):
    CurrencyCode: str = ""
    Amount: Decimal = Decimal("0")


class AmazonAddress(LenientModel):
    Name: str = ""
    CompanyName: str = ""
    AddressLine1: str = ""
    AddressLine2: str = ""
    AddressLine3: str = ""
    City: str = ""
    County: str = ""
    District: str = ""
    StateOrRegion: str = ""
    Municipality: str = ""
    PostalCode: str = ""
    CountryCode: str = ""
    Phone: str = ""


class AmazonBuyerInfo(LenientModel):
    BuyerEmail: str = ""
    BuyerName: str = ""


class AmazonOrder(LenientModel):
    AmazonOrderId: str
    PurchaseDate: datetime
    LastUpdateDate: datetime
    OrderStatus: str
    FulfillmentChannel: str = ""
    OrderTotal: Money | None = None
    MarketplaceId: str = ""
    OrderType: str = ""
    EarliestShipDate: datetime | None = None
    ShippingAddress: AmazonAddress | None = None
    BuyerInfo: AmazonBuyerInfo | None = None


class AmazonItemBuyerInfo(LenientModel):
    """An item's gift options (ItemBuyerInfo, a restricted element: with a data token only)."""

    GiftMessageText: str | None = None
    GiftWrapLevel: str | None = None
    GiftWrapPrice: Money | None = None
    GiftWrapTax: Money | None = None


class AmazonItem(LenientModel):
    ASIN: str
    OrderItemId: str
    SellerSKU: str = ""
    Title: str = ""
    QuantityOrdered: int = Field(ge=0)
    ItemPrice: Money | None = None
    ShippingPrice: Money | None = None
    ItemTax: Money | None = None
    ShippingTax: Money | None = None
    ShippingDiscount: Money | None = None
    PromotionDiscount: Money | None = None
    CODFee: Money | None = None
    CODFeeDiscount: Money | None = None
    BuyerInfo: AmazonItemBuyerInfo | None = None


class ItemsPage(LenientModel):
    AmazonOrderId: str
    OrderItems: list[AmazonItem]
    NextToken: str | None = None


def parse_order(answers: Sequence[Mapping[str, Any]], ref: OrderRef, source: str) -> Order:
    """`answers` = the getOrder answer, then every getOrderItems page (at least one).

    An error answer raises AmazonError; an unreadable or foreign order raises InvalidOrder.
    """
    if len(answers) < 2:
        raise ValueError("parse_order needs the getOrder answer and the getOrderItems pages")
    order_payload = _payload(answers[0])
    pages = [_payload(answer) for answer in answers[1:]]
    try:
        order = AmazonOrder.model_validate(order_payload)
        items = [item for page in pages for item in ItemsPage.model_validate(page).OrderItems]
        page_ids = {ItemsPage.model_validate(page).AmazonOrderId for page in pages}
    except ValidationError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    if order.AmazonOrderId != ref.external_id or page_ids != {ref.external_id}:
        raise InvalidOrder("order_mismatch",
                           f"asked for {ref.external_id}, got {order.AmazonOrderId} {page_ids}")
    if order.FulfillmentChannel == "AFN":
        raise InvalidOrder("not_seller_fulfilled", f"{order.AmazonOrderId} is fulfilled by Amazon")
    status = map_status(order.OrderStatus)
    if status is None:
        raise InvalidOrder("ignored_status", f"{order.AmazonOrderId} is {order.OrderStatus}")
    totals = _totals(order, items)
    return Order(
        marketplace=NAME,
        shop=ref.shop,
        external_id=order.AmazonOrderId,
        name=order.AmazonOrderId,
        status=status,
        buyer=_buyer(order.BuyerInfo),
        shipping_address=_address(order.ShippingAddress),
        lines=tuple(_line(item) for item in items if item.QuantityOrdered > 0),
        currency=_currency(order, items),
        totals=totals,
        placed_at=order.PurchaseDate,
        paid_at=order.PurchaseDate if status is OrderStatus.PAID else None,
        cancelled_at=order.LastUpdateDate if status is OrderStatus.CANCELLED else None,
        updated_at=order.LastUpdateDate,
        presale_ship_date=_presale_date(order),
        gift_message=_gift_message(items),
        # The Orders API carries no after-sale state: refunds are in the Finances API, returns
        # in the returns reports, A-to-z claims and chargebacks in neither: nothing to map.
        after_sale=AfterSale.NONE,
    )


def _raise_errors(answer: Mapping[str, Any]) -> None:
    errors = answer.get("errors")
    if errors:
        first = errors[0] if isinstance(errors, list) and isinstance(errors[0], Mapping) else {}
        code = str(first.get("code", "unknown"))
        message = str(first.get("message", ""))
        details = str(first.get("details", "") or "")
        raise AmazonError(code, f"{message} {details}".strip(), code in _RETRYABLE_CODES)


def _payload(answer: Mapping[str, Any]) -> Any:
    _raise_errors(answer)
    if "payload" not in answer:
        raise AmazonError("no_payload", "the answer has neither payload nor errors", False)
    return answer["payload"]


def _sum(items: Sequence[AmazonItem | AmazonItemBuyerInfo], *fields: str) -> Decimal:
    total = Decimal("0")
    for item in items:
        for field in fields:
            money = getattr(item, field)
            if money is not None:
                total += money.Amount
    return total


# Marketplaces whose prices exclude the sales tax (United States, Canada): elsewhere the
# item and shipping prices include VAT/GST and ItemTax is the part of them that is tax.
TAX_ADDED_MARKETPLACES = frozenset({"ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"})


def _totals(order: AmazonOrder, items: Sequence[AmazonItem]) -> Totals:
    """ItemPrice is the line (unit price × quantity); gift wrap (in the item's BuyerInfo) and
    cash-on-delivery fees are charges of their own. A pending order has no OrderTotal yet: its
    parts make it."""
    wraps = [item.BuyerInfo for item in items if item.BuyerInfo is not None]
    parts = Totals(
        subtotal=_sum(items, "ItemPrice"),
        shipping=_sum(items, "ShippingPrice"),
        tax=_sum(items, "ItemTax", "ShippingTax") + _sum(wraps, "GiftWrapTax"),
        discounts=_sum(items, "PromotionDiscount", "ShippingDiscount", "CODFeeDiscount"),
        fees=_sum(items, "CODFee") + _sum(wraps, "GiftWrapPrice"),
        tax_included=bool(order.MarketplaceId)
        and order.MarketplaceId not in TAX_ADDED_MARKETPLACES,
    )
    total = (order.OrderTotal.Amount if order.OrderTotal is not None
             else parts.expected_total())
    return parts.model_copy(update={"total": total})


def _gift_message(items: Sequence[AmazonItem]) -> str:
    texts = ((item.BuyerInfo.GiftMessageText or "").strip() for item in items
             if item.BuyerInfo is not None)
    return next((text for text in texts if text), "")


def _currency(order: AmazonOrder, items: Sequence[AmazonItem]) -> str:
    if order.OrderTotal is not None and order.OrderTotal.CurrencyCode:
        return order.OrderTotal.CurrencyCode
    # Pending orders come without a total; an item's price may still say the currency.
    return next((item.ItemPrice.CurrencyCode for item in items
                 if item.ItemPrice is not None and item.ItemPrice.CurrencyCode), "")


def _line(item: AmazonItem) -> OrderLine:
    # ItemPrice is the price of the whole quantity.
    price = item.ItemPrice.Amount if item.ItemPrice is not None else Decimal("0")
    unit = (price / item.QuantityOrdered).quantize(price) if price else Decimal("0")
    return OrderLine(line_id=item.OrderItemId, sku=item.SellerSKU, title=item.Title,
                     quantity=item.QuantityOrdered, unit_price=unit)


def _buyer(info: AmazonBuyerInfo | None) -> Buyer:
    if info is None:
        return Buyer()
    return Buyer(name=info.BuyerName, email=info.BuyerEmail)


def _address(address: AmazonAddress | None) -> Address | None:
    if address is None:
        return None
    return Address(
        name=address.Name,
        company=address.CompanyName,
        line1=address.AddressLine1,
        line2=" ".join(p for p in (address.AddressLine2, address.AddressLine3) if p),
        city=address.City or address.Municipality or address.District,
        province=address.StateOrRegion,
        province_code=address.StateOrRegion if len(address.StateOrRegion) <= 3 else "",
        postal_code=address.PostalCode,
        country_code=address.CountryCode,
        phone=address.Phone,
    )


def _presale_date(order: AmazonOrder) -> date | None:
    if order.OrderType == "Preorder" and order.EarliestShipDate is not None:
        return order.EarliestShipDate.astimezone(UTC).date()
    return None


# Writeback ------------------------------------------------------------------------------------


def package_reference_id(package_id: str) -> str:
    """Amazon takes only a positive number: our id if it is one, else a stable number from it."""
    if package_id.isascii() and package_id.isdigit() and 0 < int(package_id) <= _MAX_REFERENCE:
        return str(int(package_id))
    digest = hashlib.sha256(package_id.encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % _MAX_REFERENCE + 1)


def iso_z(moment: datetime) -> str:
    return in_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def writeback_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    if not shipped.items:
        raise ValueError("Amazon confirmShipment needs the order items of this package, and "
                         "the warehouse did not say which went in it")
    marketplace_id = credentials.get("marketplace_id", "")
    if not marketplace_id:
        raise ValueError("Amazon credentials need marketplace_id for the writeback")
    carrier = shipped.carrier_code.upper()
    body = {
        "marketplaceId": marketplace_id,
        "packageDetail": {
            "packageReferenceId": package_reference_id(shipped.package_id),
            "carrierCode": CARRIERS.get(carrier, "Other"),
            "carrierName": CARRIER_NAMES.get(carrier, shipped.carrier_code),
            "trackingNumber": shipped.tracking_number,
            "shipDate": iso_z(shipped.shipped_at),
            "orderItems": [{"orderItemId": item_id, "quantity": quantity}
                           for item_id, quantity in shipped.items],
        },
    }
    return Request(method="POST",
                   url=base_url(credentials) + _order_path(shipped.external_id)
                   + "/shipmentConfirmation",
                   headers=_headers(credentials.get("access_token", ""), now), json_body=body,
                   pace=PACES["confirmShipment"])


def parse_writeback(status: int, body: bytes) -> WritebackResult:
    if status in (200, 204):
        return WritebackResult(ok=True)
    code, detail = _first_error(body)
    if status == 429 or status >= 500:
        return WritebackResult(ok=False, retryable=True, code=code or str(status), detail=detail)
    if status == 400 and any(marker in detail.lower() for marker in _ALREADY_DONE):
        return WritebackResult(ok=True, already_done=True, code=code, detail=detail)
    return WritebackResult(ok=False, code=code or str(status), detail=detail)


def _first_error(body: bytes) -> tuple[str, str]:
    try:
        value = loads_json(body) if body else {}
    except ValueError:
        return "", body[:500].decode("utf-8", "replace")
    errors = value.get("errors") if isinstance(value, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "", ""
    first = errors[0]
    detail = " ".join(str(first.get(k) or "") for k in ("message", "details")).strip()
    return str(first.get("code", "")), detail[:500]


# Reconciliation -------------------------------------------------------------------------------


def list_call(shop: str, since: datetime, until: datetime, cursor: str | None,
              credentials: Credentials, now: datetime) -> Request:
    """getOrders for seller-fulfilled orders updated in [since, until]; `cursor` = NextToken.

    `until` is pulled back to 2 minutes before now, as Amazon requires.
    """
    marketplace_id = shop.partition("/")[2] or credentials.get("marketplace_id", "")
    if not marketplace_id:
        raise ValueError("no marketplace id in the shop or the credentials")
    if cursor:
        # With a NextToken Amazon ignores the other criteria.
        params = {"MarketplaceIds": marketplace_id, "NextToken": cursor}
    else:
        until = min(until, now - SAFE_LAG)
        if since >= until:
            raise ValueError("nothing to list: since is not before until (2 minutes before now)")
        params = {
            "MarketplaceIds": marketplace_id,
            "LastUpdatedAfter": iso_z(since),
            "LastUpdatedBefore": iso_z(until),
            "FulfillmentChannels": "MFN",
            "MaxResultsPerPage": "100",
        }
    return Request(method="GET", url=base_url(credentials) + "/orders/v0/orders", params=params,
                   headers=_headers(credentials.get("access_token", ""), now),
                   pace=PACES["getOrders"])


class _ListedOrder(LenientModel):
    AmazonOrderId: str
    LastUpdateDate: datetime
    OrderStatus: str
    MarketplaceId: str = ""
    FulfillmentChannel: str = ""


class _OrdersPage(LenientModel):
    Orders: list[_ListedOrder]
    NextToken: str | None = None


def parse_list(answer: Mapping[str, Any], shop: str = "",
               cursor: str | None = None) -> tuple[list[OrderRef], str | None]:
    """Refs of one getOrders page and the next cursor. The answer does not say the seller:
    pass the `shop` ("SellerId/MarketplaceId") the list was asked for."""
    try:
        page = _OrdersPage.model_validate(_payload(answer))
    except ValidationError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None
    seller = shop.partition("/")[0]
    refs = [
        OrderRef(shop=f"{seller}/{listed.MarketplaceId}" if listed.MarketplaceId else shop,
                 external_id=listed.AmazonOrderId, status=listed.OrderStatus,
                 updated_at=listed.LastUpdateDate)
        for listed in page.Orders
        if listed.FulfillmentChannel != "AFN"
    ]
    return refs, page.NextToken or None

# The contract (chalicelib/marketplaces/contract.py) ----------------------------------------------

INBOUND = Inbound(accept=accept, reply=REPLY, ref=ref)
MARKETPLACE = Marketplace(
    name=NAME,
    inbound=INBOUND,
    fetch=Fetch(read),  # a data token, the order, then every page of its items
    # packageReferenceId makes a retry edit the same package: nothing to ask first.
    writeback=ShipmentWrite.direct(writeback_call, parse_writeback),
    listing=Listing(list_call, parse_list),
    token=TokenExchange(token_call, parse_token),
)
