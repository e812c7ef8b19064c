"""A simulated Amazon seller account (Selling Partner API): the calls our adapter
(`chalicelib.marketplaces.amazon`) makes, and ORDER_CHANGE notifications on an SQS queue.

Serves, under `url` (what `credentials()["endpoint"]` names; `lwa_url` points here too):
- `POST /auth/o2/token` (Login with Amazon), form `grant_type=refresh_token`, `refresh_token`,
  `client_id`, `client_secret` -> `{"access_token": "Atza|...", "refresh_token", "token_type":
  "bearer", "expires_in": 3600}`; a wrong refresh token is 400 `{"error": "invalid_grant",
  "error_description"}`, a wrong client 401 `invalid_client`, another grant 400
  `unsupported_grant_type`, a missing parameter 400 `invalid_request`;
- `POST /tokens/2021-03-01/restrictedDataToken` `{"restrictedResources": [{"method", "path",
  "dataElements"}]}` -> `{"restrictedDataToken": "Atz.sprdt|...", "expiresIn": 3600}`; paths
  under `/orders/v0/orders` only, a path segment may be the `{orderId}` placeholder; dataElements
  from buyerInfo, shippingAddress, buyerTaxInformation and required for getOrder / getOrders;
- `GET /orders/v0/orders/{orderId}` (getOrder) -> `{"payload": <order>}`. With a Restricted Data
  Token naming the order (or `{orderId}`) and shippingAddress, the ShippingAddress is complete
  (Name, AddressLine1/2, City, StateOrRegion, PostalCode, CountryCode, Phone, AddressType); with
  buyerInfo, BuyerInfo {BuyerEmail, BuyerName}. With a plain access token the address holds only
  City, StateOrRegion, PostalCode and CountryCode, and there is no BuyerInfo;
- `GET /orders/v0/orders/{orderId}/orderItems` (getOrderItems) -> `{"payload": {"AmazonOrderId",
  "OrderItems", "NextToken"?}}`, `items_page_size` items a page (default 100), `NextToken` for
  the next page;
- `GET /orders/v0/orders` (getOrders): `MarketplaceIds` (must name the shop's), either
  `LastUpdatedAfter` (+ `LastUpdatedBefore`) or `CreatedAfter` (+ `CreatedBefore`), both bounds
  inclusive, the "before" no later than 2 minutes before now and after the "after"
  (`LastUpdatedBefore` defaults to now - 2 min), `FulfillmentChannels` (AFN, MFN: every order
  here is MFN), `OrderStatuses`, `MaxResultsPerPage` 1-100 (default 100; pages are at most
  `list_page_size`), or `NextToken` (with MarketplaceIds; the other criteria are those of the
  first page) -> `{"payload": {"Orders", "NextToken"?, "LastUpdatedBefore" | "CreatedBefore"}}`,
  oldest change first, each order as getOrder shows it without a data token;
- `POST /orders/v0/orders/{orderId}/shipmentConfirmation` (confirmShipment) `{"marketplaceId",
  "packageDetail": {"packageReferenceId", "carrierCode", "carrierName", "shippingMethod"?,
  "trackingNumber", "shipDate", "orderItems": [{"orderItemId", "quantity"}]}}` -> 204 and an
  empty body. Checked: the marketplace is the order's; the order is not Pending or Canceled;
  packageReferenceId a positive number; carrierCode, trackingNumber present,
  carrierName present when carrierCode is "Other"; shipDate ISO 8601, not before the purchase
  nor more than a day after now; orderItems not empty, each id an item of the order named once,
  each quantity from 1 to what is left unshipped. A new packageReferenceId is a new package
  (recorded with `record`); the same one again edits that package (its carrier, number, date and
  items; 204, nothing recorded twice; `packages` counts the confirmations). When the order's
  status changes (PartiallyShipped, Shipped) an ORDER_CHANGE notification goes out.
Every SP-API call needs `x-amz-access-token` (an access token issued here and not expired, or a
Restricted Data Token for a resource it names): otherwise 403 `{"errors": [{"code":
"Unauthorized", "message": "Access to requested resource is denied.", "details"}]}`; and an
`x-amz-date` of the form YYYYMMDDTHHMMSSZ: otherwise 400 InvalidInput. Errors are always
`{"errors": [{"code", "message", "details"}]}`: 400 InvalidInput, 404 NotFound.

Notifications: Amazon posts nothing to us. Each change of an order is an ORDER_CHANGE
notification (shaped as tests/fixtures/amazon/order_change_unshipped.json: NotificationVersion,
NotificationType, PayloadVersion, EventTime, Payload.OrderChangeNotification {NotificationLevel,
SellerId, AmazonOrderId, OrderChangeType, OrderChangeTrigger, Summary}, NotificationMetadata with
a fresh NotificationId) sent to the SQS queue whose URL is `webhook_url`, with
`boto3.client("sqs").send_message` (the endpoint and region from the environment, as everywhere
in this system). The base's faults apply: a duplicate is the same message body (same
NotificationId) sent twice, as SQS's at-least-once delivery does; a dropped one is never sent.
Topics: created (Pending), paid (Unshipped), cancelled (Canceled), partially_shipped, shipped
(OrderStatusChange, ChangeReason "Order status changed to <status>"), and cancel_requested
(`request_cancel`: BuyerRequestedChange, "Buyer Requested Cancel", the items'
IsBuyerRequestedCancel true, the status unchanged). `source()` is None: no webhook source.

The shop is "SellerId/MarketplaceId" (e.g. "A2Q3Y263D00KWC/ATVPDKIKX0DER"), as our adapter names
an Amazon shop, so `order_id_for("amazon", shop, id)` agrees with what our system stores.

Buyers: an Amazon.com (US marketplace) order ships to the US, so the base's Chinese buyers and
CNY prices are replaced, when an order is placed, by US buyers (fictional 555-01xx phones) and
the same goods with English titles and USD prices (the SimOrder then holds them: street =
AddressLine1, district = AddressLine2, province = the state's code). A complete US address passes
our fulfilment checks (line 1, city, country) and routes as international (EMS, written back as
carrierCode "China Post"): the cross-border seller shipping from China that our system serves.

Guesses (what the recorded fixtures and the Orders/Tokens API models do not say):
- Every error text and status except the fixtures' ("Order ... was not found.", "PackageReferenceId:
  is invalid, must be a positive numeric value."): the 403 details for a bad or expired token,
  400 InvalidInput for x-amz-date, for getOrders' parameters and for confirmShipment's
  refusals (a canceled or pending order, unknown or over-shipped items, another marketplace),
  404 NotFound for an unknown path. LWA's error_description texts.
- That a Restricted Data Token authorises only the resources it names (getOrderItems and
  confirmShipment need the access token) and that a data token cannot ask for another one.
- Pending and Canceled orders carry no OrderTotal (the recorded getOrders shows none for a
  Canceled one); a Pending order has no ShippingAddress or BuyerInfo even with a data token.
  Items keep their QuantityOrdered and ItemPrice (the whole line's price) whatever the status.
- Page sizes: getOrderItems' is not documented (100 here); NextTokens are opaque strings held by
  the simulator, valid for its lifetime; an unknown one is 400 InvalidInput.
- ORDER_CHANGE for a new Pending order, LastUpdateDate in whole seconds, TimeOfOrderChange and
  EventTime in milliseconds; carrier codes are not checked against Amazon's list.
- No tax, no promotions, free shipping (ItemTax, ShippingPrice ... all 0.00), SalesChannel
  "Amazon.com", ship-by and delivery windows of 1-3 and 8-16 days after the purchase.
- A notification goes out only when a confirmation changes the order's status. A new package
  moves LastUpdateDate; an edit moves it only when it changes the status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import boto3

from chalicelib.marketplaces import amazon
from devstack.marketplaces.base import (
    NO_FAULTS,
    SEND_ATTEMPTS,
    Fate,
    Faults,
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimOrder,
    SimShipment,
)

log = logging.getLogger("devstack.marketplaces")

TOKEN_SECONDS = 3600
SAFE_LAG = timedelta(minutes=2)
MAX_LIST_PAGE = 100
CANCEL_REQUESTED = "cancel_requested"
DATA_ELEMENTS = frozenset({"buyerInfo", "shippingAddress", "buyerTaxInformation"})
_ORDERS_PATH = "/orders/v0/orders"
_ORDER = re.compile(r"^/orders/v0/orders/([^/]+)$")
_ITEMS = re.compile(r"^/orders/v0/orders/([^/]+)/orderItems$")
_CONFIRM = re.compile(r"^/orders/v0/orders/([^/]+)/shipmentConfirmation$")
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_MAX_TOKENS = 1000  # page tokens kept (oldest forgotten first)

# US buyers (555-01xx numbers are reserved for fiction): name, phone, state, city, address
# line 2, address line 1, ZIP+4.
_US_BUYERS = (
    ("Jordan Ellis", "+1 206-555-0142", "WA", "Seattle", "Apt 504", "1200 Westlake Ave N",
     "98109-3528"),
    ("Maria Gonzalez", "+1 512-555-0187", "TX", "Austin", "", "4501 Duval St", "78751-2219"),
    ("Ethan Brooks", "+1 617-555-0119", "MA", "Boston", "Unit 3", "27 Commonwealth Ave",
     "02116-2107"),
    ("Priya Natarajan", "+1 408-555-0163", "CA", "San Jose", "", "1640 Hamilton Ave",
     "95125-5402"),
    ("Samuel Okafor", "+1 312-555-0104", "IL", "Chicago", "Apt 12B", "880 N Lake Shore Dr",
     "60611-1406"),
    ("Grace Whitfield", "+1 303-555-0171", "CO", "Denver", "", "2150 Grove St", "80211-4610"),
)
# The base's goods as the Amazon.com listing sells them: SKU -> (title, USD price).
_LISTINGS = {
    "TEA-LJ-250": ("West Lake Longjing Green Tea, 250 g", Decimal("24.99")),
    "MUG-CER-01": ("Ceramic Coffee Mug, White, 12 oz", Decimal("8.99")),
    "TOTE-CNV-02": ("Canvas Tote Bag, Beige", Decimal("12.99")),
    "SCARF-SLK-07": ("Silk Square Scarf, Teal", Decimal("32.00")),
}
_CNY_PER_USD = Decimal("7.2")
# Where the seller ships from (getOrder's DefaultShipFromLocationAddress).
_SHIP_FROM = {"Name": "Qimu Home Goods Co., Ltd.", "AddressLine1": "88 Jiangnan Avenue",
              "City": "Hangzhou", "StateOrRegion": "Zhejiang", "PostalCode": "310051",
              "CountryCode": "CN", "AddressType": "Commercial"}
_DENIED = "Access to requested resource is denied."


@dataclass
class DataToken:
    """A Restricted Data Token: what it may read, until when."""

    expires: datetime
    resources: tuple[tuple[str, str, frozenset[str]], ...]  # (method, path, dataElements)

    def elements_for(self, method: str, path: str) -> frozenset[str] | None:
        """The data elements it grants for this request, None when it names no such resource."""
        granted: frozenset[str] | None = None
        for allowed_method, pattern, elements in self.resources:
            if allowed_method == method and _path_matches(pattern, path):
                granted = (granted or frozenset()) | elements
        return granted


@dataclass(frozen=True)
class Criteria:
    """What a getOrders listing asked for (its NextToken pages keep them)."""

    by: str  # "LastUpdated" or "Created"
    after: datetime
    before: datetime
    channels: frozenset[str]
    statuses: frozenset[str]
    size: int


@dataclass
class Package:
    """One confirmed package: its shipment (as the order shows it) and items."""

    reference: str
    shipment: SimShipment
    items: dict[str, int]
    confirmations: int = 1
    bodies: list[dict[str, Any]] = field(default_factory=list)


class AmazonSimulator(MarketplaceSimulator):
    """An Amazon seller account on one marketplace: orders, the SP-API and LWA on a local
    port, ORDER_CHANGE notifications on an SQS queue (`webhook_url` is the queue's URL)."""

    name = "amazon"

    def __init__(self, *, shop: str, webhook_url: str, faults: Faults = NO_FAULTS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 refresh_token: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, items_page_size: int = 100,
                 list_page_size: int = MAX_LIST_PAGE) -> None:
        seller_id, _, marketplace_id = shop.partition("/")
        if not seller_id or not marketplace_id or "/" in marketplace_id:
            raise ValueError(f"an Amazon shop is 'SellerId/MarketplaceId', not {shop!r}")
        if items_page_size < 1 or not 1 <= list_page_size <= MAX_LIST_PAGE:
            raise ValueError("page sizes: items >= 1, list 1-100")
        super().__init__(shop=shop, webhook_url=webhook_url, faults=faults, clock=clock)
        self.seller_id = seller_id
        self.marketplace_id = marketplace_id
        self.refresh_token = refresh_token or "Atzr|" + secrets.token_urlsafe(48)
        self.client_id = client_id or "amzn1.application-oa2-client." + secrets.token_hex(16)
        self.client_secret = client_secret or "amzn1.oa2-cs.v1." + secrets.token_hex(32)
        self.items_page_size = items_page_size
        self.list_page_size = list_page_size
        self.application_id = f"amzn1.sellerapps.app.{uuid.uuid4()}"
        self.subscription_id = str(uuid.uuid4())
        self.packages: dict[str, dict[str, Package]] = {}  # order -> packageReferenceId -> it
        self._access_tokens: dict[str, datetime] = {}  # token -> expiry
        self._data_tokens: dict[str, DataToken] = {}
        # NextToken -> what the next page is: (order id, offset) of items, or (criteria, offset)
        self._page_tokens: dict[str, tuple[str, int] | tuple[Criteria, int]] = {}
        self._cancel_requested: set[str] = set()
        self._sqs: Any = None

    # Ids and the order ----------------------------------------------------------------------

    def new_id(self) -> str:
        return (f"{self.rng.choice(('111', '112', '113', '114'))}-"
                f"{self.rng.randrange(10**7):07d}-{self.rng.randrange(10**7):07d}")

    def new_line_id(self, external_id: str, n: int) -> str:
        return f"{self.rng.randrange(10**11, 10**12)}{n:02d}"  # 14 digits, as recorded

    def _new_order(self, paid: bool) -> SimOrder:
        # The base makes the order; an Amazon.com order is a US buyer's, priced in USD.
        with self.lock:
            order = super()._new_order(paid)
            buyer = self.rng.choice(_US_BUYERS)
            (order.buyer_name, order.phone, order.province, order.city, order.district,
             order.street, order.postcode) = buyer
            order.number = order.external_id
            order.currency = "USD"
            for line in order.lines:
                line.title, line.price = _LISTINGS.get(line.sku, (
                    line.title, (line.price / _CNY_PER_USD).quantize(Decimal("0.01"))))
            return order

    def request_cancel(self, external_id: str, drop: bool | None = None) -> SimOrder:
        """The buyer asks to cancel: the order stays as it is, a BuyerRequestedChange goes out."""
        with self.lock:
            self._cancel_requested.add(external_id)
        return self._change(external_id, CANCEL_REQUESTED, drop)

    def shipped_quantities(self, order: SimOrder) -> dict[str, int]:
        with self.lock:
            shipped = dict.fromkeys((line.line_id for line in order.lines), 0)
            for package in self.packages.get(order.external_id, {}).values():
                for item_id, quantity in package.items.items():
                    shipped[item_id] = shipped.get(item_id, 0) + quantity
            return shipped

    def status(self, order: SimOrder) -> str:
        """The order's OrderStatus."""
        if order.status == "unpaid":
            return "Pending"
        if order.status == "cancelled":
            return "Canceled"
        shipped = self.shipped_quantities(order)
        if not any(shipped.values()):
            return "Unshipped"
        if all(shipped[line.line_id] >= line.quantity for line in order.lines):
            return "Shipped"
        return "PartiallyShipped"

    # Configuration ----------------------------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        return {"refresh_token": self.refresh_token, "client_id": self.client_id,
                "client_secret": self.client_secret, "lwa_url": self.url + "/auth/o2/token",
                "endpoint": self.url, "marketplace_id": self.marketplace_id}

    def source(self) -> dict[str, Any] | None:
        return None  # notifications go to an SQS queue we read: no webhook source

    # Wire shapes ------------------------------------------------------------------------------

    def render(self, order: SimOrder, elements: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The getOrder payload; `elements` = the data elements a Restricted Data Token grants."""
        with self.lock:
            status = self.status(order)
            shipped = self.shipped_quantities(order)
        units = sum(line.quantity for line in order.lines)
        units_shipped = sum(min(shipped[line.line_id], line.quantity) for line in order.lines)
        created = order.created_at
        rendered: dict[str, Any] = {
            "AmazonOrderId": order.external_id,
            "PurchaseDate": _iso(created),
            "LastUpdateDate": _iso(order.updated_at),
            "OrderStatus": status,
            "FulfillmentChannel": "MFN",
            "SalesChannel": "Amazon.com",
            "ShipServiceLevel": "Std US D2D Dom",
        }
        if status not in ("Pending", "Canceled"):
            rendered["OrderTotal"] = _money(order.total, order.currency)
        rendered.update({
            "NumberOfItemsShipped": units_shipped,
            "NumberOfItemsUnshipped": units - units_shipped,
            "PaymentMethod": "Other",
            "PaymentMethodDetails": ["Standard"],
            "IsReplacementOrder": False,
            "MarketplaceId": self.marketplace_id,
            "ShipmentServiceLevelCategory": "Standard",
            "OrderType": "StandardOrder",
            "EarliestShipDate": _iso(created + timedelta(days=1)),
            "LatestShipDate": _iso(created + timedelta(days=3)),
            "EarliestDeliveryDate": _iso(created + timedelta(days=8)),
            "LatestDeliveryDate": _iso(created + timedelta(days=16)),
            "IsBusinessOrder": False,
            "IsPrime": False,
            "IsGlobalExpressEnabled": False,
            "IsPremiumOrder": False,
            "IsSoldByAB": False,
            "IsIBA": False,
            "IsISPU": False,
            "IsAccessPointOrder": False,
            "DefaultShipFromLocationAddress": dict(_SHIP_FROM),
        })
        if status != "Pending":
            address: dict[str, Any] = {"City": order.city, "StateOrRegion": order.province,
                                       "PostalCode": order.postcode, "CountryCode": "US"}
            if "shippingAddress" in elements:
                address = {"Name": order.buyer_name, "AddressLine1": order.street,
                           **({"AddressLine2": order.district} if order.district else {}),
                           **address, "Phone": order.phone, "AddressType": "Residential"}
            rendered["ShippingAddress"] = address
            if "buyerInfo" in elements:
                rendered["BuyerInfo"] = {"BuyerEmail": self.buyer_email(order),
                                         "BuyerName": order.buyer_name}
        rendered.update({"AutomatedShippingSettings": {"HasAutomatedShippingSettings": False},
                         "HasRegulatedItems": False, "ElectronicInvoiceStatus": "NotRequired"})
        return rendered

    def buyer_email(self, order: SimOrder) -> str:
        """Amazon's anonymised relay address, stable per order."""
        digest = hashlib.sha256(f"{self.seller_id}:{order.external_id}".encode()).hexdigest()
        return f"{digest[:15]}@marketplace.amazon.com"

    def render_items(self, order: SimOrder) -> list[dict[str, Any]]:
        with self.lock:
            shipped = self.shipped_quantities(order)
            cancel_requested = order.external_id in self._cancel_requested
        zero = _money(Decimal("0"), order.currency)
        return [{
            "ASIN": _asin(line.sku),
            "SellerSKU": line.sku,
            "OrderItemId": line.line_id,
            "Title": line.title,
            "QuantityOrdered": line.quantity,
            "QuantityShipped": min(shipped[line.line_id], line.quantity),
            "ProductInfo": {"NumberOfItems": "1"},
            "ItemPrice": _money(line.price * line.quantity, order.currency),
            "ShippingPrice": zero, "ItemTax": zero, "ShippingTax": zero,
            "ShippingDiscount": zero, "ShippingDiscountTax": zero,
            "PromotionDiscount": zero, "PromotionDiscountTax": zero,
            "PromotionIds": [],
            "IsGift": "false",
            "ConditionId": "New",
            "ConditionSubtypeId": "New",
            "IsTransparency": False,
            "SerialNumberRequired": False,
            "BuyerRequestedCancel": {
                "IsBuyerRequestedCancel": "true" if cancel_requested else "false",
                "BuyerCancelReason": "Order no longer needed" if cancel_requested else ""},
        } for line in order.lines]

    def notification(self, order: SimOrder, topic: str) -> Notification:
        now = self.clock()
        with self.lock:
            status = self.status(order)
            shipped = self.shipped_quantities(order)
            cancel_requested = order.external_id in self._cancel_requested
        asked = topic == CANCEL_REQUESTED
        units = sum(line.quantity for line in order.lines)
        units_shipped = sum(min(shipped[line.line_id], line.quantity) for line in order.lines)
        created = order.created_at
        items = [{
            "OrderItemId": line.line_id,
            "SellerSKU": line.sku,
            "SupplySourceId": None,
            "OrderItemStatus": ("Shipped" if shipped[line.line_id] >= line.quantity
                                else "Canceled" if status == "Canceled" else
                                "Pending" if status == "Pending" else "Unshipped"),
            "Quantity": line.quantity,
            "QuantityShipped": min(shipped[line.line_id], line.quantity),
            "IsBuyerRequestedCancel": cancel_requested,
        } for line in order.lines]
        body = {
            "NotificationVersion": "1.0",
            "NotificationType": amazon.NOTIFICATION_TYPE,
            "PayloadVersion": "1.0",
            "EventTime": _iso_ms(now),
            "Payload": {"OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": self.seller_id,
                "AmazonOrderId": order.external_id,
                "OrderChangeType": "BuyerRequestedChange" if asked else "OrderStatusChange",
                "OrderChangeTrigger": {
                    "TimeOfOrderChange": _iso_ms(order.updated_at),
                    "ChangeReason": ("Buyer Requested Cancel" if asked
                                     else f"Order status changed to {status}")},
                "Summary": {
                    "MarketplaceId": self.marketplace_id,
                    "OrderStatus": status,
                    "PurchaseDate": _iso_ms(created),
                    "DestinationPostalCode": order.postcode[:5],
                    "FulfillmentType": "MFN",
                    "OrderType": "StandardOrder",
                    "NumberOfItemsShipped": units_shipped,
                    "NumberOfItemsUnshipped": units - units_shipped,
                    "EarliestDeliveryDate": _iso_ms(created + timedelta(days=8)),
                    "LatestDeliveryDate": _iso_ms(created + timedelta(days=16)),
                    "EarliestShipDate": _iso_ms(created + timedelta(days=1)),
                    "LatestShipDate": _iso_ms(created + timedelta(days=3)),
                    "OrderPrograms": [],
                    "ShippingPrograms": [],
                    "OrderItems": items,
                },
            }},
            "NotificationMetadata": {
                "ApplicationId": self.application_id,
                "SubscriptionId": self.subscription_id,
                "PublishTime": _iso_ms(now),
                "NotificationId": str(uuid.uuid4()),
            },
        }
        return Notification(json.dumps(body).encode("utf-8"), {})

    # Delivery: the SQS queue ------------------------------------------------------------------

    def _deliver(self, note: Notification, fate: Fate) -> None:
        queue_url = note.url or self.webhook_url
        for _attempt in range(SEND_ATTEMPTS):
            try:
                if self._sqs is None:  # made here: only the delivery thread uses it
                    self._sqs = boto3.client("sqs")
                answer = self._sqs.send_message(QueueUrl=queue_url,
                                                MessageBody=note.body.decode("utf-8"))
            except Exception as exc:  # the delivery thread must live on: log, try again
                log.warning("%s %s: SQS send failed: %s: %s", self.name, fate.external_id,
                            type(exc).__name__, exc)
                response = getattr(exc, "response", None)
                status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) \
                    if isinstance(response, dict) else 0
                fate.answers.append(int(status))
                continue
            fate.answers.append(int(answer.get("ResponseMetadata", {}).get("HTTPStatusCode",
                                                                             200)))
            return
        log.warning("%s %s %s: undelivered after %d attempts", self.name, fate.external_id,
                    fate.topic, SEND_ATTEMPTS)

    # The API ----------------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if request.path == "/auth/o2/token":
            if request.method != "POST":
                return _lwa_error("invalid_request", "The token endpoint takes POST", 400)
            return self._lwa(request)
        grant = self._authorise(request)
        if isinstance(grant, Reply):
            return grant
        kind, elements = grant
        if not _AMZ_DATE.match(request.headers.get("x-amz-date", "")):
            return _error(400, "InvalidInput", "Missing or invalid x-amz-date header.",
                          "x-amz-date must be YYYYMMDDTHHMMSSZ")
        path = request.path
        if request.method == "POST" and path == "/tokens/2021-03-01/restrictedDataToken":
            if kind != "access":
                return _error(403, "Unauthorized", _DENIED,
                              "A Restricted Data Token cannot create another one.")
            return self._create_data_token(request)
        if request.method == "GET" and path == _ORDERS_PATH:
            return self._list(request, elements)
        found = _ORDER.match(path)
        if request.method == "GET" and found:
            return self._get_order(unquote(found.group(1)), elements)
        found = _ITEMS.match(path)
        if request.method == "GET" and found:
            return self._get_items(unquote(found.group(1)), request)
        found = _CONFIRM.match(path)
        if request.method == "POST" and found:
            return self._confirm(unquote(found.group(1)), request)
        return _error(404, "NotFound", f"Resource not found: {request.method} {path}")

    def _lwa(self, request: Request) -> Reply:
        form = request.form()
        grant_type = form.get("grant_type", "")
        missing = [name for name in ("grant_type", "refresh_token", "client_id",
                                     "client_secret") if not form.get(name)]
        if grant_type and grant_type != "refresh_token":
            return _lwa_error("unsupported_grant_type",
                              f"The authorization grant type is not supported: {grant_type}",
                              400)
        if missing:
            return _lwa_error("invalid_request",
                              "The request is missing a required parameter : " + missing[0], 400)
        if not (hmac.compare_digest(form["client_id"], self.client_id)
                and hmac.compare_digest(form["client_secret"], self.client_secret)):
            return _lwa_error("invalid_client", "Client authentication failed", 401)
        if not hmac.compare_digest(form["refresh_token"], self.refresh_token):
            return _lwa_error("invalid_grant",
                              "The request has an invalid grant parameter : refresh_token", 400)
        token = "Atza|" + secrets.token_urlsafe(64)
        with self.lock:
            self._access_tokens[token] = self.clock() + timedelta(seconds=TOKEN_SECONDS)
        return Reply.json({"access_token": token, "refresh_token": self.refresh_token,
                           "token_type": "bearer", "expires_in": TOKEN_SECONDS})

    def _authorise(self, request: Request) -> tuple[str, frozenset[str]] | Reply:
        """("access", none) or ("data", the elements granted); a 403 otherwise."""
        token = request.headers.get("x-amz-access-token", "")
        now = self.clock()
        with self.lock:
            expires = self._access_tokens.get(token)
            data = self._data_tokens.get(token)
        if data is not None:
            expires = data.expires
        if expires is None:
            return _error(403, "Unauthorized", _DENIED,
                          "The access token you provided is revoked, malformed or invalid.")
        if expires <= now:
            return _error(403, "Unauthorized", _DENIED,
                          "The access token you provided has expired.")
        if data is None:
            return "access", frozenset()
        elements = data.elements_for(request.method, unquote(request.path))
        if elements is None:
            return _error(403, "Unauthorized", _DENIED,
                          "The Restricted Data Token does not grant access to this resource.")
        return "data", elements

    def _create_data_token(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            body = None
        wanted = body.get("restrictedResources") if isinstance(body, dict) else None
        if not isinstance(wanted, list) or not wanted:
            return _error(400, "InvalidInput", "restrictedResources is required.")
        resources = []
        for resource in wanted:
            if not isinstance(resource, dict):
                return _error(400, "InvalidInput", "Invalid restrictedResources entry.")
            method, path = resource.get("method"), resource.get("path")
            elements = resource.get("dataElements") or []
            if method not in ("GET", "PUT", "POST", "DELETE") or not isinstance(path, str):
                return _error(400, "InvalidInput", "Invalid method or path in "
                              "restrictedResources.")
            if path != _ORDERS_PATH and not path.startswith(_ORDERS_PATH + "/"):
                return _error(400, "InvalidInput",
                              f"Application does not have access to the resource {path}.")
            if not isinstance(elements, list) or not set(elements) <= DATA_ELEMENTS:
                return _error(400, "InvalidInput", "Invalid dataElements: "
                              f"{elements!r}; allowed: {sorted(DATA_ELEMENTS)}.")
            if not elements and (path == _ORDERS_PATH or _ORDER.match(path)):
                return _error(400, "InvalidInput",
                              "dataElements is required for getOrder and getOrders.")
            resources.append((method, path, frozenset(elements)))
        token = "Atz.sprdt|" + secrets.token_urlsafe(64)
        with self.lock:
            self._data_tokens[token] = DataToken(
                self.clock() + timedelta(seconds=TOKEN_SECONDS), tuple(resources))
        return Reply.json({"restrictedDataToken": token, "expiresIn": TOKEN_SECONDS})

    def _get_order(self, order_id: str, elements: frozenset[str]) -> Reply:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return _not_found(order_id)
            return Reply.json({"payload": self.render(order, elements)})

    def _get_items(self, order_id: str, request: Request) -> Reply:
        next_token = request.query.get("NextToken", "")
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return _not_found(order_id)
            offset = 0
            if next_token:
                state = self._page_tokens.get(next_token)
                if state is None or state[0] != order_id:
                    return _error(400, "InvalidInput", "Invalid NextToken.")
                offset = state[1]
            items = self.render_items(order)
            page: dict[str, Any] = {
                "AmazonOrderId": order_id,
                "OrderItems": items[offset:offset + self.items_page_size]}
            if offset + self.items_page_size < len(items):
                page["NextToken"] = self._page_token((order_id, offset + self.items_page_size))
            return Reply.json({"payload": page})

    def _list(self, request: Request, elements: frozenset[str]) -> Reply:
        query = request.query
        marketplaces = [m for m in query.get("MarketplaceIds", "").split(",") if m]
        if not marketplaces:
            return _error(400, "InvalidInput", "MarketplaceIds is required.")
        if self.marketplace_id not in marketplaces:
            return _error(400, "InvalidInput", f"Invalid MarketplaceIds: {marketplaces}; the "
                          f"seller sells on {self.marketplace_id}.")
        with self.lock:
            if query.get("NextToken"):
                state = self._page_tokens.get(query["NextToken"])
                if state is None or not isinstance(state[0], Criteria):
                    return _error(400, "InvalidInput", "Invalid NextToken.")
                criteria, offset = state[0], state[1]
            else:
                parsed = self._criteria(query)
                if isinstance(parsed, Reply):
                    return parsed
                criteria, offset = parsed, 0
            found = []
            for order in self.orders.values():
                moment = _second(order.created_at if criteria.by == "Created"
                                 else order.updated_at)
                if criteria.after <= moment <= criteria.before and "MFN" in criteria.channels \
                        and (not criteria.statuses or self.status(order) in criteria.statuses):
                    found.append((moment, order.external_id, order))
            found.sort(key=lambda entry: (entry[0], entry[1]))
            size = criteria.size
            page = [self.render(order, elements) for _, _, order in found[offset:offset + size]]
            answer: dict[str, Any] = {"Orders": page}
            if offset + size < len(found):
                answer["NextToken"] = self._page_token((criteria, offset + size))
            answer[f"{criteria.by}Before"] = _iso(criteria.before)
            return Reply.json({"payload": answer})

    def _criteria(self, query: dict[str, str]) -> Criteria | Reply:
        """getOrders' criteria from the first page's query, or the 400 answer."""
        latest = _second(self.clock() - SAFE_LAG)
        created, updated = query.get("CreatedAfter"), query.get("LastUpdatedAfter")
        if bool(created) == bool(updated):
            return _error(400, "InvalidInput", "Exactly one of CreatedAfter and "
                          "LastUpdatedAfter is required.")
        field_name = "Created" if created else "LastUpdated"
        try:
            after = _parse_time(query[f"{field_name}After"])
            given_before = query.get(f"{field_name}Before")
            before = _parse_time(given_before) if given_before else latest
            size = int(query.get("MaxResultsPerPage", MAX_LIST_PAGE))
        except ValueError as exc:
            return _error(400, "InvalidInput", f"Invalid date or number: {exc}")
        if before > latest:
            return _error(400, "InvalidInput", f"{field_name}Before must be no later than two "
                          "minutes before the time the request was submitted.")
        if after >= before:
            return _error(400, "InvalidInput", f"{field_name}After must be before "
                          f"{field_name}Before.")
        if not 1 <= size <= MAX_LIST_PAGE:
            return _error(400, "InvalidInput", "MaxResultsPerPage must be from 1 to 100.")
        channels = [c for c in query.get("FulfillmentChannels", "AFN,MFN").split(",") if c]
        if not set(channels) <= {"AFN", "MFN"}:
            return _error(400, "InvalidInput", f"Invalid FulfillmentChannels: {channels}.")
        statuses = frozenset(s for s in query.get("OrderStatuses", "").split(",") if s)
        return Criteria(field_name, after, before, frozenset(channels), statuses,
                        min(size, self.list_page_size))

    def _page_token(self, state: tuple[str, int] | tuple[Criteria, int]) -> str:
        token = secrets.token_urlsafe(36)
        self._page_tokens[token] = state
        while len(self._page_tokens) > _MAX_TOKENS:
            del self._page_tokens[next(iter(self._page_tokens))]
        return token

    def _confirm(self, order_id: str, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("packageDetail"), dict):
            return _error(400, "InvalidInput", "The request body must be a JSON object with "
                          "marketplaceId and packageDetail.")
        detail: dict[str, Any] = body["packageDetail"]
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return _not_found(order_id)
            refused = self._refusal(order, body, detail)
            if refused is not None:
                return refused
            reference = _reference(detail.get("packageReferenceId"))
            if reference is None:
                return _error(400, "InvalidInput", "PackageReferenceId: is invalid, must be a "
                              "positive numeric value.")
            packages = self.packages.setdefault(order_id, {})
            items = _items(detail.get("orderItems"))
            if items is None:
                return _error(400, "InvalidInput", "orderItems must be a non-empty list of "
                              "{orderItemId, quantity >= 1}, each item named once.")
            ordered = {line.line_id: line.quantity for line in order.lines}
            unknown = sorted(set(items) - set(ordered))
            if unknown:
                return _error(400, "InvalidInput", f"Invalid orderItemId: {', '.join(unknown)} "
                              f"is not an item of order {order_id}.")
            earlier = packages.get(reference)
            shipped = self.shipped_quantities(order)
            for item_id, quantity in items.items():
                left = ordered[item_id] - shipped[item_id] \
                    + (earlier.items.get(item_id, 0) if earlier else 0)
                if quantity > left:
                    return _error(400, "InvalidInput", f"The quantity {quantity} of order item "
                                  f"{item_id} is more than its unshipped quantity {left}.")
            before = self.status(order)
            carrier = str(detail.get("carrierName") or detail["carrierCode"]) \
                if detail["carrierCode"] == "Other" else str(detail["carrierCode"])
            ship_date = _parse_time(str(detail["shipDate"]))
            if earlier is not None:  # the same package again: an edit
                earlier.shipment.carrier = carrier
                earlier.shipment.tracking_number = str(detail["trackingNumber"])
                earlier.shipment.at = ship_date
                earlier.shipment.line_ids = tuple(items)
                earlier.items = items
                earlier.confirmations += 1
                earlier.bodies.append(body)
                log.info("%s %s: package %s edited", self.name, order_id, reference)
            else:
                shipment = SimShipment(carrier=carrier,
                                       tracking_number=str(detail["trackingNumber"]),
                                       at=ship_date, line_ids=tuple(items))
                packages[reference] = Package(reference, shipment, items, bodies=[body])
                self.record(order_id, {"path": request.path, "body": body,
                                       "package_reference_id": reference}, shipment)
            after = self.status(order)
            if after != before:
                order.updated_at = max(self.clock(), order.updated_at)
        if after != before:
            self.notify(order, "shipped" if after == "Shipped" else "partially_shipped")
        return Reply(204)

    def _refusal(self, order: SimOrder, body: dict[str, Any], detail: dict[str, Any]
                 ) -> Reply | None:
        """What confirmShipment refuses before looking at the items."""
        if body.get("marketplaceId") != self.marketplace_id:
            return _error(400, "InvalidInput", f"Invalid marketplaceId "
                          f"{body.get('marketplaceId')!r} for order {order.external_id}.")
        status = self.status(order)
        if status not in ("Unshipped", "PartiallyShipped", "Shipped"):
            return _error(400, "InvalidInput", f"Order {order.external_id} is {status}: "
                          "it cannot be confirmed as shipped.")
        for name in ("carrierCode", "trackingNumber", "shipDate"):
            if not isinstance(detail.get(name), str) or not detail[name].strip():
                return _error(400, "InvalidInput", f"packageDetail.{name} is required.")
        if detail["carrierCode"] == "Other" and not str(detail.get("carrierName") or "").strip():
            return _error(400, "InvalidInput", "carrierName is required when carrierCode is "
                          "Other.")
        try:
            ship_date = _parse_time(detail["shipDate"])
        except ValueError:
            return _error(400, "InvalidInput", "shipDate must be an ISO 8601 date-time.")
        if ship_date < _second(order.created_at) \
                or ship_date > self.clock() + timedelta(days=1):
            return _error(400, "InvalidInput", "shipDate must be after the purchase date and "
                          "not in the future.")
        return None


def _path_matches(pattern: str, path: str) -> bool:
    wanted, given = pattern.split("/"), path.split("/")
    return len(wanted) == len(given) and all(
        w == g or (w.startswith("{") and w.endswith("}") and g)
        for w, g in zip(wanted, given, strict=True))


def _reference(value: Any) -> str | None:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text.isascii() or not text.isdigit() or int(text) <= 0:
        return None
    return str(int(text))


def _items(value: Any) -> dict[str, int] | None:
    if not isinstance(value, list) or not value:
        return None
    items: dict[str, int] = {}
    for entry in value:
        if not isinstance(entry, dict):
            return None
        item_id, quantity = entry.get("orderItemId"), entry.get("quantity")
        if not isinstance(item_id, str) or not item_id or item_id in items \
                or not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            return None
        items[item_id] = quantity
    return items


def _asin(sku: str) -> str:
    digest = int.from_bytes(hashlib.sha256(sku.encode()).digest()[:8], "big")
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = ""
    for _ in range(8):
        digest, rest = divmod(digest, 36)
        text += alphabet[rest]
    return "B0" + text


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"CurrencyCode": currency, "Amount": str(amount.quantize(Decimal("0.01")))}


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return _second(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ms(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)


def _error(status: int, code: str, message: str, details: str = "") -> Reply:
    return Reply.json({"errors": [{"code": code, "message": message, "details": details}]},
                      status)


def _not_found(order_id: str) -> Reply:
    return _error(404, "NotFound", f"Order {order_id} was not found.")


def _lwa_error(error: str, description: str, status: int) -> Reply:
    return Reply.json({"error": error, "error_description": description}, status)
