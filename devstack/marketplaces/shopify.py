"""A simulated Shopify shop: order webhooks and the Admin API calls our adapter makes.

Webhooks: POST, the REST order (the shape of tests/fixtures/shopify/orders_paid.json) with the
headers devstack/demo.py sends (X-Shopify-Topic, -Hmac-Sha256 = base64 HMAC-SHA256(client
secret, body), -Shop-Domain, -Webhook-Id (kept by a retry), -Event-Id, -Triggered-At,
-API-Version). Topics: created orders/create, paid orders/paid, cancelled orders/cancelled, a
fulfillment orders/updated. (Shopify also sends orders/create for an order paid at checkout;
here each change sends one webhook.)

Admin API (every call needs X-Shopify-Access-Token; a wrong one is HTTP 401 `{"errors": "[API]
Invalid API key or access token (...)"}`), under `/admin/api/<YYYY-MM>/`:
- `GET orders/<id>.json` -> `{"order": {...}}` (404 `{"errors": "Not Found"}`);
- `POST graphql.json` `{"query", "variables"}`, read by a small GraphQL reader (fields, aliases,
  arguments, variables; answers hold exactly the fields asked for, an unknown field is an
  error as Shopify's is). Root fields: `order(id:)` (with `fulfillmentOrders(first:)` {nodes
  {id status assignedLocation {name location {id}} lineItems(first:) {nodes {id
  remainingQuantity totalQuantity lineItem {id}}}}} and `fulfillments(first:)` {id status
  trackingInfo {company number url}}), `orders(first:, after:, query:, sortKey:, reverse:)`
  (search terms `updated_at:` / `created_at:` with >=, <=, >, <; keyset cursors), and the
  mutation `fulfillmentCreate(fulfillment:)` (recorded; refusals are `userErrors`).

Each order has one fulfillment order at one location, OPEN (CLOSED once nothing remains or the
order is cancelled, IN_PROGRESS after a partial fulfillment).

Expiring offline tokens (`expiring_tokens=True`, what `make run` builds; otherwise one
non-expiring token, as a custom app holds): the access token ends after 60 minutes (or
`token_life`; then 401 as a wrong one) and `POST /admin/oauth/access_token` `{"client_id",
"client_secret", "grant_type": "refresh_token", "refresh_token"}` answers `{"access_token",
"expires_in", "refresh_token", "refresh_token_expires_in", "scope"}`; the refresh token sent is
refused from then on (400 `{"error": "invalid_grant", ...}`). The credentials then carry the
app's `client_id` and `client_secret` and the refresh token.

Guesses: the userError texts other than the recorded quantity one; the fulfillment order status
after a partial fulfillment (IN_PROGRESS) and after a cancellation (CLOSED); the tracking url
Shopify makes for "SF Express" (as recorded) and none for other companies without a url; the
cursor's form (as recorded: base64 JSON of the last id and value); query cost figures; the
refresh token's life (90 days) and Shopify keeping a spent refresh token usable until its
replacement is used (changelog of 2026-08-28) left out: here a spent one is refused at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from chalicelib.marketplaces import shopify_admin
from devstack.marketplaces.base import (
    NO_FAULTS,
    Faults,
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimOrder,
    SimShipment,
    TokenBook,
)

SHOP_TIME = timezone(timedelta(hours=8))  # the shop's time zone: REST times are shown in it
MAX_PAGE = 250
LOCATION = ("Hangzhou factory", "gid://shopify/Location/71234567890")
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
_TOPICS = {"created": "orders/create", "paid": "orders/paid", "cancelled": "orders/cancelled",
           "shipped": "orders/updated"}
_PROVINCES = {"浙江省": ("Zhejiang", "ZJ"), "广东省": ("Guangdong", "GD"),
              "上海市": ("Shanghai", "SH"), "北京市": ("Beijing", "BJ"),
              "四川省": ("Sichuan", "SC"), "江苏省": ("Jiangsu", "JS")}
_SF_LINK = "https://www.sf-express.com/chn/en/dynamic_function/waybill/#search/bill-number/{}"
_REST_ORDER = re.compile(r"^/admin/api/(\d{4}-\d{2}|unstable)/orders/(\d+)\.json$")
_GRAPHQL = re.compile(r"^/admin/api/(\d{4}-\d{2}|unstable)/graphql\.json$")
_FULFILLABLE = ("OPEN", "IN_PROGRESS")
ACCESS_LIFE = timedelta(hours=1)
REFRESH_LIFE = timedelta(days=90)


@dataclass
class _Fulfillment:
    id: str  # numeric
    company: str
    number: str
    url: str | None
    lines: dict[str, int]  # REST line item id -> quantity
    at: datetime
    status: str = "SUCCESS"


@dataclass
class _Fulfilling:
    """An order's fulfillment order and fulfillments, as the simulator keeps them."""

    fo_id: str  # numeric
    fo_lines: dict[str, str]  # REST line item id -> fulfillment order line item id (numeric)
    fulfillments: list[_Fulfillment] = field(default_factory=list)

    def done(self, line_id: str) -> int:
        return sum(f.lines.get(line_id, 0) for f in self.fulfillments)


class GraphQLError(Exception):
    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message, self.code = message, code


class ShopifySimulator(MarketplaceSimulator):
    """A Shopify shop: orders, webhooks, REST order reads and the GraphQL Admin API calls of
    the writeback and reconciliation."""

    name = "shopify"

    def __init__(self, *, shop: str, webhook_url: str, faults: Faults = NO_FAULTS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 client_secret: str | None = None, access_token: str | None = None,
                 api_version: str = shopify_admin.API_VERSION, expiring_tokens: bool = False,
                 refresh_token: str | None = None, token_life: timedelta | None = None) -> None:
        super().__init__(shop=shop, webhook_url=webhook_url, faults=faults, clock=clock,
                         token_life=token_life)
        self.client_id = secrets.token_hex(16)
        self.client_secret = client_secret or secrets.token_hex(16)
        self.expiring_tokens = expiring_tokens
        # A non-expiring token is one that outlives every test (a century).
        self.tokens = TokenBook(
            platform=self.name, shop=self.shop, clock=self.clock,
            access_token=access_token or "shpat_" + secrets.token_hex(16),
            refresh_token=refresh_token or "shprt_" + secrets.token_hex(16),
            access_life=(self.token_life or ACCESS_LIFE) if expiring_tokens
            else timedelta(days=36500), refresh_life=REFRESH_LIFE,
            make_access=lambda: "shpat_" + secrets.token_hex(16),
            make_refresh=lambda: "shprt_" + secrets.token_hex(16))
        self.api_version = api_version
        self._fulfilling: dict[str, _Fulfilling] = {}

    # Configuration ------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    def credentials(self) -> dict[str, str]:
        found = {"shop_domain": self.shop, "access_token": self.access_token,
                 "api_version": self.api_version, "api_base": self.url}
        if self.expiring_tokens:
            found.update(client_id=self.client_id, client_secret=self.client_secret,
                         **self.tokens.credentials())
        return found

    def source(self) -> dict[str, Any]:
        return {"scheme": "shopify", "secrets": [self.client_secret]}

    # Fulfillment state --------------------------------------------------------------------

    def fulfilling(self, order: SimOrder) -> _Fulfilling:
        with self.lock:
            found = self._fulfilling.get(order.external_id)
            if found is None:
                found = _Fulfilling(fo_id=self._new_number(),
                                    fo_lines={line.line_id: self._new_number()
                                              for line in order.lines})
                self._fulfilling[order.external_id] = found
            return found

    def _new_number(self) -> str:
        return str(self.rng.randrange(10**13, 10**14))

    def _fo_status(self, order: SimOrder, state: _Fulfilling) -> str:
        remaining = sum(line.quantity - state.done(line.line_id) for line in order.lines)
        if order.status == "cancelled" or remaining == 0:
            return "CLOSED"
        return "IN_PROGRESS" if state.fulfillments else "OPEN"

    # Webhooks -----------------------------------------------------------------------------

    def render(self, order: SimOrder) -> dict[str, Any]:
        """The REST order (webhook body and `orders/<id>.json`)."""
        with self.lock:
            state = self.fulfilling(order)
            fulfillments = list(state.fulfillments)
        family, given = order.buyer_name[:1], order.buyer_name[1:]
        province, code = _PROVINCES.get(order.province, (order.province, ""))
        phone = f"+86 {order.phone[:3]} {order.phone[3:7]} {order.phone[7:]}"
        email = f"buyer.{order.phone[-4:]}@example.com"
        address = {"first_name": given, "last_name": family, "name": order.buyer_name,
                   "company": None, "address1": order.street, "address2": order.district,
                   "city": order.city, "province": province, "province_code": code,
                   "zip": order.postcode, "country": "China", "country_code": "CN",
                   "phone": phone, "latitude": None, "longitude": None}
        items = []
        for line in order.lines:
            done = state.done(line.line_id)
            items.append({
                "id": int(line.line_id), "admin_graphql_api_id": _gid("LineItem", line.line_id),
                "fulfillable_quantity": 0 if order.status == "cancelled"
                else line.quantity - done,
                "fulfillment_service": "manual",
                "fulfillment_status": None if done == 0 else "fulfilled"
                if done == line.quantity else "partial",
                "gift_card": False, "grams": 250, "name": line.title,
                "price": _money(line.price), "product_exists": True,
                "product_id": int(_digits(line.sku, 13)), "quantity": line.quantity,
                "requires_shipping": True, "sku": line.sku, "taxable": True, "title": line.title,
                "total_discount": "0.00", "variant_id": int(_digits(line.sku + "v", 14)),
                "variant_title": None, "vendor": "Demo Brand", "tax_lines": [],
                "discount_allocations": []})
        shipped_units = sum(state.done(line.line_id) for line in order.lines)
        units = sum(line.quantity for line in order.lines)
        subtotal = sum((line.price * line.quantity for line in order.lines), Decimal("0"))
        financial = ("pending" if order.paid_at is None else "paid") \
            if order.status != "cancelled" else ("refunded" if order.paid_at else "voided")
        shipping = {"amount": _money(order.shipping_fee), "currency_code": order.currency}
        return {
            "id": int(order.external_id), "admin_graphql_api_id": _gid("Order", order.external_id),
            "name": f"#{order.number}", "number": int(order.number) - 1000,
            "order_number": int(order.number), "email": email, "contact_email": email,
            "phone": None, "created_at": _shop_time(order.created_at),
            "updated_at": _shop_time(order.updated_at),
            "processed_at": _shop_time(order.paid_at or order.created_at),
            "cancelled_at": _shop_time(order.cancelled_at) if order.cancelled_at else None,
            "cancel_reason": "customer" if order.cancelled_at else None,
            "closed_at": None, "confirmed": True, "currency": order.currency,
            "presentment_currency": order.currency, "financial_status": financial,
            "fulfillment_status": None if shipped_units == 0 else "fulfilled"
            if shipped_units == units else "partial",
            "subtotal_price": _money(subtotal), "total_line_items_price": _money(subtotal),
            "total_discounts": "0.00", "total_tax": "0.00", "taxes_included": True,
            "total_price": _money(order.total), "total_outstanding": "0.00"
            if order.paid_at else _money(order.total),
            "total_shipping_price_set": {"shop_money": shipping, "presentment_money": shipping},
            "note": None, "note_attributes": [], "tags": "", "test": False,
            "source_name": "web", "customer_locale": "zh-CN",
            "customer": {"id": int(_digits(order.phone, 13)), "email": email,
                         "first_name": given, "last_name": family, "phone": f"+86{order.phone}",
                         "state": "enabled", "currency": order.currency},
            "billing_address": address, "shipping_address": address,
            "line_items": items,
            "shipping_lines": [{"id": int(_digits(order.external_id + "s", 13)),
                                "code": "Standard", "price": _money(order.shipping_fee),
                                "source": "shopify", "title": "Standard",
                                "discounted_price": _money(order.shipping_fee)}],
            "fulfillments": [{
                "id": int(f.id), "admin_graphql_api_id": _gid("Fulfillment", f.id),
                "order_id": int(order.external_id), "name": f"#{order.number}.{n}",
                "status": "success", "created_at": _shop_time(f.at),
                "updated_at": _shop_time(f.at), "service": "manual",
                "tracking_company": f.company, "tracking_number": f.number,
                "tracking_numbers": [f.number], "tracking_url": f.url,
                "tracking_urls": [f.url] if f.url else [],
                "line_items": [{"id": int(line_id), "quantity": quantity}
                               for line_id, quantity in f.lines.items()],
            } for n, f in enumerate(fulfillments, start=1)],
            "refunds": [],
        }

    def notification(self, order: SimOrder, topic: str) -> Notification:
        body = json.dumps(self.render(order), ensure_ascii=False).encode()
        digest = hmac.new(self.client_secret.encode(), body, hashlib.sha256).digest()
        return Notification(body, {
            "Content-Type": "application/json",
            "X-Shopify-Topic": _TOPICS[topic],
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Shop-Domain": self.shop,
            "X-Shopify-Webhook-Id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "X-Shopify-Event-Id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "X-Shopify-Triggered-At": self.clock().isoformat(),
            "X-Shopify-API-Version": self.api_version,
        })

    # The Admin API ------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if request.path == shopify_admin.REFRESH_PATH and request.method == "POST":
            return self._refresh(request)
        rest, graphql = _REST_ORDER.match(request.path), _GRAPHQL.match(request.path)
        if not (rest or graphql):
            return Reply.json({"errors": "Not Found"}, 404)
        if self.tokens.check(request.headers.get("x-shopify-access-token", "")) != "ok":
            return Reply.json({"errors": UNAUTHORIZED}, 401)
        if rest and request.method == "GET":
            with self.lock:
                order = self.orders.get(rest.group(2))
                if order is None:
                    return Reply.json({"errors": "Not Found"}, 404)
                return Reply.json({"order": self.render(order)})
        if graphql and request.method == "POST":
            return self._graphql(request)
        return Reply.json({"errors": "Not Found"}, 404)

    def _refresh(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("grant_type") != "refresh_token":
            return Reply.json({"error": "invalid_request",
                               "error_description": "grant_type must be refresh_token"}, 400)
        if not (self.expiring_tokens and body.get("client_id") == self.client_id
                and hmac.compare_digest(str(body.get("client_secret", "")).encode(),
                                        self.client_secret.encode())):
            return Reply.json({"error": "invalid_client",
                               "error_description": "Client authentication failed"}, 401)
        if not self.tokens.refresh(str(body.get("refresh_token") or "")):
            return Reply.json({"error": "invalid_grant",
                               "error_description": "Token has been expired or revoked."}, 400)
        now = self.clock()
        return Reply.json({
            "access_token": self.tokens.access_token,
            "scope": "read_orders,write_merchant_managed_fulfillment_orders",
            "expires_in": int((self.tokens.access_ends - now).total_seconds()),
            "refresh_token": self.tokens.refresh_token,
            "refresh_token_expires_in": int((self.tokens.refresh_ends - now).total_seconds())})

    def _graphql(self, request: Request) -> Reply:
        try:
            body = request.json()
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                raise GraphQLError("Parameter Missing or Invalid: query", "BAD_REQUEST")
            variables = body.get("variables") or {}
            operation, selection = _parse(body["query"])
            with self.lock:
                roots: dict[str, Any] = (
                    {"fulfillmentCreate": _Args(self._fulfillment_create)}
                    if operation == "mutation" else
                    {"order": _Args(self._order_root), "orders": _Args(self._orders_root)})
                data = _project({"__typename": "Mutation" if operation == "mutation"
                                 else "QueryRoot", **roots}, selection, variables)
        except GraphQLError as error:
            return Reply.json({"errors": [{"message": error.message, "locations": [],
                                           "extensions": {"code": error.code or
                                                          "GRAPHQL_VALIDATION_FAILED"}}]})
        except ValueError as error:
            return Reply.json({"errors": [{"message": f"syntax error: {error}",
                                           "extensions": {"code": "PARSE_ERROR"}}]})
        return Reply.json({"data": data, "extensions": {"cost": {
            "requestedQueryCost": 10, "actualQueryCost": 10, "throttleStatus": {
                "maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}}})

    # GraphQL objects ----------------------------------------------------------------------

    def _order_root(self, args: dict[str, Any]) -> dict[str, Any] | None:
        given = str(args.get("id") or "")
        kind, _, number = given.removeprefix("gid://shopify/").partition("/")
        if kind != "Order":
            raise GraphQLError(f"Invalid global id '{given}'", "argumentLiteralsIncompatible")
        order = self.orders.get(number)
        return None if order is None else self._order_object(order)

    def _order_object(self, order: SimOrder) -> dict[str, Any]:
        state = self.fulfilling(order)
        status = self._fo_status(order, state)
        rendered = self.render(order)
        location = {"__typename": "FulfillmentOrderAssignedLocation", "name": LOCATION[0],
                    "location": {"__typename": "Location", "id": LOCATION[1]}}
        fo_items = [{"__typename": "FulfillmentOrderLineItem",
                     "id": _gid("FulfillmentOrderLineItem", state.fo_lines[line.line_id]),
                     "remainingQuantity": 0 if order.status == "cancelled"
                     else line.quantity - state.done(line.line_id),
                     "totalQuantity": line.quantity,
                     "lineItem": {"__typename": "LineItem", "id": _gid("LineItem", line.line_id),
                                  "sku": line.sku, "name": line.title,
                                  "quantity": line.quantity}}
                    for line in order.lines]
        fulfillment_order = {"__typename": "FulfillmentOrder",
                             "id": _gid("FulfillmentOrder", state.fo_id), "status": status,
                             "assignedLocation": location,
                             "lineItems": _Args(lambda a: _connection(fo_items, a))}
        fulfillments = [self._fulfillment_object(f) for f in state.fulfillments]
        return {
            "__typename": "Order", "id": _gid("Order", order.external_id),
            "legacyResourceId": order.external_id, "name": rendered["name"],
            "createdAt": _utc(order.created_at), "updatedAt": _utc(order.updated_at),
            "cancelledAt": _utc(order.cancelled_at) if order.cancelled_at else None,
            "displayFinancialStatus": str(rendered["financial_status"]).upper(),
            "displayFulfillmentStatus": str(rendered["fulfillment_status"] or
                                            "unfulfilled").upper(),
            "fulfillmentOrders": _Args(lambda a: _connection([fulfillment_order], a)),
            "fulfillments": _Args(lambda a: fulfillments[:int(a.get("first") or MAX_PAGE)]),
        }

    @staticmethod
    def _fulfillment_object(f: _Fulfillment) -> dict[str, Any]:
        info = [{"__typename": "FulfillmentTrackingInfo", "company": f.company,
                 "number": f.number, "url": f.url}]
        return {"__typename": "Fulfillment", "id": _gid("Fulfillment", f.id), "status": f.status,
                "createdAt": _utc(f.at), "trackingInfo": _Args(lambda a: info)}

    def _orders_root(self, args: dict[str, Any]) -> dict[str, Any]:
        bounds = _search(str(args.get("query") or ""))
        sort = str(args.get("sortKey") or "ID")
        if sort not in ("ID", "UPDATED_AT", "CREATED_AT"):
            raise GraphQLError(f"Argument 'sortKey' has an invalid value ({sort}).",
                               "argumentLiteralsIncompatible")

        def value(order: SimOrder) -> str:
            moment = order.updated_at if sort == "UPDATED_AT" else order.created_at
            return order.external_id if sort == "ID" else _utc(moment)

        found = [o for o in self.orders.values()
                 if all(_compare(int((o.updated_at if name == "updated_at"
                                      else o.created_at).timestamp()), op, limit)
                        for name, op, limit in bounds)]
        found.sort(key=lambda o: (value(o), int(o.external_id)), reverse=bool(args.get("reverse")))
        nodes = [(self._order_object(o), (value(o), o.external_id)) for o in found]
        return _connection([n for n, _ in nodes], args, keys=[k for _, k in nodes])

    def _fulfillment_create(self, args: dict[str, Any]) -> dict[str, Any]:
        given = args.get("fulfillment")
        if not isinstance(given, dict) or not given.get("lineItemsByFulfillmentOrder"):
            raise GraphQLError("Variable $fulfillment of type FulfillmentInput! was provided "
                               "invalid value", "INVALID_VARIABLE")
        groups = given["lineItemsByFulfillmentOrder"]
        errors: list[dict[str, Any]] = []
        owner: SimOrder | None = None
        lines: dict[str, int] = {}
        for i, group in enumerate(groups):
            where = ["fulfillment", "lineItemsByFulfillmentOrder", str(i)]
            fo_id = str(group.get("fulfillmentOrderId", ""))
            found = next(((o, s) for o, s in ((self.orders[k], v) for k, v in
                                              self._fulfilling.items())
                          if _gid("FulfillmentOrder", s.fo_id) == fo_id), None)
            if found is None:
                errors.append({"field": [*where, "fulfillmentOrderId"],
                               "message": "Fulfillment order does not exist."})
                continue
            order, state = found
            if owner is not None and owner is not order:
                errors.append({"field": [*where, "fulfillmentOrderId"],
                               "message": "All fulfillment orders must belong to the same "
                                          "order."})
                continue
            owner = order
            if self._fo_status(order, state) not in _FULFILLABLE:
                errors.append({"field": [*where, "fulfillmentOrderId"], "message":
                               f"Fulfillment order {fo_id} has an unfulfillable status= "
                               f"{self._fo_status(order, state).lower()}."})
                continue
            by_item = {_gid("FulfillmentOrderLineItem", v): k for k, v in state.fo_lines.items()}
            asked = group.get("fulfillmentOrderLineItems")
            if not asked:  # the whole fulfillment order
                asked = [{"id": _gid("FulfillmentOrderLineItem", state.fo_lines[line.line_id]),
                          "quantity": line.quantity - state.done(line.line_id)}
                         for line in order.lines if line.quantity > state.done(line.line_id)]
            for j, item in enumerate(asked):
                line_id = by_item.get(str(item.get("id", "")))
                line = next((x for x in order.lines if x.line_id == line_id), None)
                quantity = item.get("quantity")
                left = 0 if line is None else line.quantity - state.done(line.line_id) \
                    - lines.get(line.line_id, 0)
                if line is None or not isinstance(quantity, int) or not 0 < quantity <= left:
                    errors.append({"field": [*where, "fulfillmentOrderLineItems", str(j),
                                             "quantity"],
                                   "message": "Invalid fulfillment order line item quantity "
                                              "requested."})
                    continue
                lines[line.line_id] = lines.get(line.line_id, 0) + quantity
        if errors or owner is None or not lines:
            return {"__typename": "FulfillmentCreatePayload", "fulfillment": None,
                    "userErrors": [{"__typename": "FieldsUserError", **e} for e in errors]
                    or [{"__typename": "FieldsUserError", "field": ["fulfillment"],
                         "message": "Nothing to fulfill."}]}
        tracking = given.get("trackingInfo") or {}
        number = str(tracking.get("number") or "")
        company = str(tracking.get("company") or "")
        url = tracking.get("url") or (_SF_LINK.format(number) if company == "SF Express"
                                      and number else None)
        fulfillment = _Fulfillment(id=self._new_number(), company=company, number=number,
                                   url=url, lines=lines, at=self.clock())
        self.fulfilling(owner).fulfillments.append(fulfillment)
        self.record(owner.external_id, {"mutation": "fulfillmentCreate", "fulfillment": given},
                    SimShipment(carrier=company, tracking_number=number, at=fulfillment.at,
                                line_ids=tuple(lines)))
        self.notify(owner, "shipped")
        return {"__typename": "FulfillmentCreatePayload",
                "fulfillment": self._fulfillment_object(fulfillment), "userErrors": []}


# A small GraphQL reader: enough of the language for the operations our adapter sends. ------


@dataclass
class _Field:
    name: str
    alias: str
    args: dict[str, Any]
    selection: list[_Field] | None


@dataclass(frozen=True)
class _Var:
    name: str


class _Args:
    """A field whose value depends on its arguments."""

    def __init__(self, resolve: Callable[[dict[str, Any]], Any]) -> None:
        self.resolve = resolve


_TOKEN = re.compile(r'\s*(?:(\.\.\.)|(\$?[A-Za-z_][A-Za-z0-9_]*)|("(?:[^"\\]|\\.)*")|'
                    r'(-?\d+(?:\.\d+)?)|([{}()\[\]:!=@]))')


def _tokens(text: str) -> list[str]:
    found, at = [], 0
    text = re.sub(r"#[^\n]*", "", text).replace(",", " ")
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None:
            raise ValueError(f"unexpected {text[at:at + 20]!r}")
        found.append(match.group(match.lastindex or 0))
        at = match.end()
    return found


def _parse(text: str) -> tuple[str, list[_Field]]:
    """(operation type, root selection) of a single-operation document."""
    tokens = _tokens(text)
    operation = "query"
    at = 0
    if tokens and tokens[0] in ("query", "mutation", "subscription"):
        operation, at = tokens[0], 1
        if at < len(tokens) and tokens[at] not in ("(", "{"):
            at += 1  # its name
        if at < len(tokens) and tokens[at] == "(":  # variable definitions
            depth = 0
            while at < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[at], 0)
                at += 1
                if depth == 0:
                    break
    selection, at = _selection(tokens, at)
    if at != len(tokens):
        raise ValueError("one operation per document")
    return operation, selection


def _selection(tokens: list[str], at: int) -> tuple[list[_Field], int]:
    if at >= len(tokens) or tokens[at] != "{":
        raise ValueError("expected {")
    at += 1
    fields: list[_Field] = []
    while at < len(tokens) and tokens[at] != "}":
        name = tokens[at]
        alias = name
        at += 1
        if at < len(tokens) and tokens[at] == ":":
            name, at = tokens[at + 1], at + 2
        args: dict[str, Any] = {}
        if at < len(tokens) and tokens[at] == "(":
            at += 1
            while tokens[at] != ")":
                arg, colon = tokens[at], tokens[at + 1]
                if colon != ":":
                    raise ValueError(f"expected : after {arg}")
                args[arg], at = _value(tokens, at + 2)
            at += 1
        sub = None
        if at < len(tokens) and tokens[at] == "{":
            sub, at = _selection(tokens, at)
        fields.append(_Field(name, alias, args, sub))
    if at >= len(tokens):
        raise ValueError("expected }")
    return fields, at + 1


def _value(tokens: list[str], at: int) -> tuple[Any, int]:
    token = tokens[at]
    if token.startswith("$"):
        return _Var(token[1:]), at + 1
    if token.startswith('"'):
        return json.loads(token), at + 1
    if re.fullmatch(r"-?\d+", token):
        return int(token), at + 1
    if re.fullmatch(r"-?\d+\.\d+", token):
        return float(token), at + 1
    if token == "[":
        items, at = [], at + 1
        while tokens[at] != "]":
            item, at = _value(tokens, at)
            items.append(item)
        return items, at + 1
    if token == "{":
        fields, at = {}, at + 1
        while tokens[at] != "}":
            name = tokens[at]
            fields[name], at = _value(tokens, at + 2)
        return fields, at + 1
    return {"true": True, "false": False, "null": None}.get(token, token), at + 1


def _resolve_args(args: dict[str, Any], variables: dict[str, Any]) -> Any:
    def resolve(value: Any) -> Any:
        if isinstance(value, _Var):
            return variables.get(value.name)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value
    return {name: resolve(value) for name, value in args.items()}


def _project(value: Any, selection: list[_Field], variables: dict[str, Any]) -> Any:
    """`value` shaped by the selection: exactly the fields asked for, by their aliases."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_project(item, selection, variables) for item in value]
    out: dict[str, Any] = {}
    for asked in selection:
        if asked.name == "__typename":
            out[asked.alias] = value.get("__typename")
            continue
        if asked.name not in value:
            raise GraphQLError(f"Field '{asked.name}' doesn't exist on type "
                               f"'{value.get('__typename', '?')}'", "undefinedField")
        found = value[asked.name]
        if isinstance(found, _Args):
            found = found.resolve(_resolve_args(asked.args, variables))
        elif asked.args:
            raise GraphQLError(f"Field '{asked.name}' doesn't accept argument "
                               f"'{next(iter(asked.args))}'", "argumentNotAccepted")
        if asked.selection is None:
            if isinstance(found, dict | list) and found and isinstance(
                    found[0] if isinstance(found, list) else found, dict):
                raise GraphQLError(f"Field must have selections (field '{asked.name}' returns "
                                   "an object)", "selectionMismatch")
            out[asked.alias] = found
        else:
            out[asked.alias] = _project(found, asked.selection, variables)
    return out


def _connection(items: list[Any], args: dict[str, Any],
                keys: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A connection of `items` in their order; `keys` (sort value, id) make keyset cursors,
    else positions do."""
    first = args.get("first")
    if not isinstance(first, int):
        raise GraphQLError("you must provide one of first or last", "BAD_REQUEST")
    if not 0 < first <= MAX_PAGE:
        raise GraphQLError(f"The 'first' argument must be between 1 and {MAX_PAGE}.",
                           "BAD_REQUEST")
    order = keys or [("", str(i)) for i in range(len(items))]
    cursors = [_cursor(*key) for key in order]
    start = 0
    after = args.get("after")
    if after:
        try:
            last = json.loads(base64.b64decode(str(after)))
            key = (str(last["last_value"]), str(last["last_id"]))
        except (ValueError, KeyError, TypeError):
            raise GraphQLError("Invalid cursor for current pagination sort.",
                               "BAD_REQUEST") from None
        backwards = bool(args.get("reverse"))
        start = next((i for i, k in enumerate(order)
                      if (_after(key, k) if backwards else _after(k, key))), len(items))
    page = items[start:start + first]
    page_cursors = cursors[start:start + first]
    return {"__typename": "Connection", "nodes": page,
            "edges": [{"__typename": "Edge", "node": n, "cursor": c}
                      for n, c in zip(page, page_cursors, strict=True)],
            "pageInfo": {"__typename": "PageInfo",
                         "hasNextPage": start + first < len(items),
                         "hasPreviousPage": start > 0,
                         "startCursor": page_cursors[0] if page_cursors else None,
                         "endCursor": page_cursors[-1] if page_cursors else None}}


def _after(key: tuple[str, str], last: tuple[str, str]) -> bool:
    value, ident = key
    last_value, last_id = last
    if ident.isdigit() and last_id.isdigit():
        return (value, int(ident)) > (last_value, int(last_id))
    return key > last


def _cursor(value: str, ident: str) -> str:
    text = json.dumps({"last_id": int(ident) if ident.isdigit() else ident,
                       "last_value": value}, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode()


_TERM = re.compile(r"(updated_at|created_at):(>=|<=|>|<)?'?([0-9T:\-+.Z]+)'?")


def _search(query: str) -> list[tuple[str, str, int]]:
    """The time terms of a search query: (field, operator, unix seconds)."""
    terms = []
    for name, op, text in _TERM.findall(query):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise GraphQLError(f"Invalid search value {text!r}", "BAD_REQUEST") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=SHOP_TIME)
        terms.append((name, op or "=", int(moment.timestamp())))
    return terms


def _compare(value: int, op: str, limit: int) -> bool:
    return {">=": value >= limit, "<=": value <= limit, ">": value > limit, "<": value < limit,
            "=": value == limit}[op]


def _gid(kind: str, number: str) -> str:
    return f"gid://shopify/{kind}/{number}"


def _money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01")))


def _shop_time(moment: datetime) -> str:
    return moment.astimezone(SHOP_TIME).isoformat(timespec="seconds")


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digits(text: str, digits: int) -> str:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return str(10 ** (digits - 1) + value % (9 * 10 ** (digits - 1)))
