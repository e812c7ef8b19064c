"""Shopify Admin API: the re-fetch, shipment writeback and reconciliation calls, built purely,
and their answers read. The webhook half is shopify.py, whose `INBOUND` this module's
`MARKETPLACE` (the whole platform, at the end) includes.

Credentials (writeback, reconciliation), per shop: `shop_domain` (`xxx.myshopify.com`),
`access_token` (an Admin API token, sent as header X-Shopify-Access-Token; scopes read_orders and
write_merchant_managed_fulfillment_orders); optional `api_version` (default API_VERSION),
`api_base` (replaces `https://<shop_domain>`, e.g. the local simulator's `http://127.0.0.1:port`;
plain http only to this machine, since the token travels in a header) and `notify_customer`
("false" stops Shopify's shipping confirmation to the buyer; default "true").
GraphQL endpoint: `<base>/admin/api/<version>/graphql.json`, POST `{"query", "variables"}`.

Expiring offline tokens (shopify.dev: "Offline access tokens now support expiry and refresh",
2025-12-10; "About offline access tokens"; "Migrate to expiring offline access tokens";
"More resilient refreshes for expiring offline access tokens", 2026-08-28). Whether an offline
token expires does not depend on the API version: the app asks for it when the token is issued
(`expiring=1`). A non-expiring token (what a custom or merchant-created app holds, and what
this adapter was built on) lasts until the app is uninstalled; an expiring one lasts 60 minutes
(`expires_in` 3600) and comes with a refresh token that Shopify replaces on every use. Public
apps must use expiring tokens: those created from 2026-04-01 at once, all from 2027-01-01, when
Shopify rejects non-expiring ones. So a shop whose credentials carry `refresh_token` (with
`client_id` and `client_secret`, the app's) is refreshed: `POST <base>/admin/oauth/access_token`
`{"client_id", "client_secret", "grant_type": "refresh_token", "refresh_token"}` answers
`{"access_token", "expires_in", "refresh_token", "refresh_token_expires_in"?, "scope"}`; a
refused one 400 `{"error": "invalid_grant", "error_description"}` (the merchant opens the app,
or reinstalls it, to authorise it again). A shop without a refresh token is used as before.

Writeback (shopify.dev GraphQL Admin reference: fulfillmentCreate, FulfillmentInput,
FulfillmentOrderLineItemsInput, FulfillmentOrderLineItemInput, FulfillmentTrackingInput): a
fulfillment is made from fulfillment orders, so it takes two calls.
1. `prepare_call`: the order's fulfillment orders (id, status, assigned location, line items with
   `remainingQuantity` and the order `lineItem { id }`) and its fulfillments' trackingInfo: the
   writeback's `prepare` read, sent on every attempt; its answer is `prepared`.
2. `already_shipped(prepared, shipped)`: fulfillmentCreate is NOT idempotent (protocols.md), so
   a fulfillment (not cancelled, errored or failed) already carrying this tracking number means
   an earlier attempt, or a person, did it: do not write again.
3. `writeback_call(shipped, credentials, now, prepared)`: `fulfillmentCreate(fulfillment:
   {lineItemsByFulfillmentOrder: [{fulfillmentOrderId, fulfillmentOrderLineItems?: [{id,
   quantity}]}], notifyCustomer, trackingInfo: {company, number, url}})`. Without `shipped.lines`
   every fulfillment order still fulfillable (OPEN, IN_PROGRESS) with something remaining is sent
   whole (no line items: Shopify fulfils all of it); with lines, each (REST line item id,
   quantity) is spread over the fulfillable fulfillment order line items of that line item,
   clamped to what remains (a line fulfilled meanwhile, e.g. by hand, is skipped). ValueError (a
   give-up and a CS case) when nothing is left to fulfil (cancelled, closed, on hold, scheduled),
   when a line id is in no fulfillment order, or when the fulfillment orders to fulfil are
   assigned to several locations: fulfillmentCreate takes fulfillment orders of one order and
   one location per call.
4. `parse_writeback`: HTTP 429/5xx and top-level errors THROTTLED / INTERNAL_SERVER_ERROR are
   retryable; `data.fulfillmentCreate.userErrors` (each `{field, message}`, no code) refuse.
Carriers (CARRIERS): Shopify builds the tracking link itself for the companies in its supported
list (FulfillmentTrackingInfo.company, "send the name exactly as written"); of ours only "SF
Express" and "China Post" are in it. The others go under their usual English names with a
Kuaidi100 query link as `url` (a given url takes priority over Shopify's own link).

Reconciliation: GraphQL `orders(first: 100, after: <cursor>, sortKey: UPDATED_AT, query:
"updated_at:>='<since>' AND updated_at:<='<until>'")` with `pageInfo {hasNextPage endCursor}`;
the cursor is `endCursor`. Each order is named by `legacyResourceId`, the REST id the webhooks
carry, so `order_id_for` matches. Re-fetch: REST `GET <base>/admin/api/<version>/orders/<id>.json`
(REST is legacy since 2024-10 but the Order resource is still served, 2026-10 reference): its
`{"order": {...}}` is exactly the webhook's shape, so `parse_order` is `normalise` with the
shop taken from the reference. Error answers raise ShopifyError (a PlatformError).

Sources: shopify.dev GraphQL Admin reference pages (FulfillmentInput,
FulfillmentOrderLineItemsInput, FulfillmentOrderLineItemInput, FulfillmentOrderLineItem,
FulfillmentOrderStatus, FulfillmentOrderAssignedLocation, FulfillmentStatus,
FulfillmentCreatePayload, REST Order resource); the FulfillmentTrackingInfo.company description
(supported companies, url priority) as copied into ShopifySharp; the THROTTLED error body as
posted on the Shopify community forum; third-party code for `fulfillments(first:) {status
trackingInfo {company number url}}` and the `updated_at:>='...'` search with sortKey UPDATED_AT.

Guesses (not confirmed by documentation here):
- Shopify's China Post link may not follow domestic EMS numbers, so EMS goes as "China Post"
  with the Kuaidi100 link; SF goes as "SF Express" without a url (Shopify links it).
- Query cost: fulfillment orders (first 5) x line items (first 50) plus fulfillments (first 20)
  stays under the 1000-point single-query limit; more fulfillment orders than 5 is refused
  (ValueError), more than 20 fulfillments may hide an earlier one from `already_shipped`.
- A throttled GraphQL call answers 200 (or 429) with `errors[].extensions.code` THROTTLED;
  INTERNAL_SERVER_ERROR is worth retrying; other codes (ACCESS_DENIED, ...) are not.
- Error bodies of REST and of a refused token: `{"errors": "Not Found"}`, `{"errors": "[API]
  Invalid API key or access token (...)"}`.
- The GraphQL `orders` connection lists every order (open, closed, cancelled) unless filtered;
  without read_all_orders only the last 60 days are visible (fine for a two-hour window).
- API_VERSION 2026-10 is the newest stable version as of this writing (the version our demo
  webhooks carry); Shopify falls forward when a version is retired.
- The refresh answer's `refresh_token_expires_in` (seconds) is read when present; OAuth errors
  other than `temporarily_unavailable` and `server_error` are refusals for good.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib.core.http import Request
from chalicelib.core.signatures import loads_json
from chalicelib.marketplaces.calls import (
    Credentials,
    OrderRef,
    PlatformError,
    Shipped,
    WritebackResult,
)
from chalicelib.marketplaces.contract import (
    Fetch,
    Listing,
    Marketplace,
    PackageCheck,
    ShipmentWrite,
    TokenRefresh,
)
from chalicelib.marketplaces.shopify import INBOUND, NAME, normalise
from chalicelib.marketplaces.tokens import RefreshRefused, Tokens, expires_at
from chalicelib.orders.order import InvalidOrder, Order

# Calls -------------------------------------------------------------------------------------------

API_VERSION = "2026-10"
PER_PAGE = 100
MAX_FULFILLMENT_ORDERS = 5  # `first` of PREPARE_QUERY's fulfillmentOrders; see Guesses (cost)
FULFILLABLE = frozenset({"OPEN", "IN_PROGRESS"})  # FulfillmentOrderStatus values we may fulfil
# FulfillmentStatus values of a fulfillment that did not (or no longer) ship.
_NOT_SHIPPED = frozenset({"CANCELLED", "ERROR", "FAILURE"})
_RETRYABLE_CODES = frozenset({"THROTTLED", "INTERNAL_SERVER_ERROR"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
_VERSION = re.compile(r"\d{4}-\d{2}|unstable")

# Our carrier code -> (Shopify tracking company, Kuaidi100 company code for our link, or None
# where Shopify builds the link itself).
CARRIERS: dict[str, tuple[str, str | None]] = {
    "SF": ("SF Express", None),  # in Shopify's supported list
    "EMS": ("China Post", "ems"),  # EMS is China Post's; see Guesses for the link
    "STO": ("STO Express", "shentong"),
    "YTO": ("YTO Express", "yuantong"),
    "ZTO": ("ZTO Express", "zhongtong"),
    "YUNDA": ("Yunda Express", "yunda"),
    "JD": ("JD Logistics", "jd"),
}
_TRACKING_LINK = "https://www.kuaidi100.com/chaxun?com={com}&nu={number}"

PREPARE_QUERY = """query WritebackPrepare($id: ID!) {
  order(id: $id) {
    id
    legacyResourceId
    fulfillmentOrders(first: 5) {
      nodes {
        id
        status
        assignedLocation { name location { id } }
        lineItems(first: 50) {
          nodes { id remainingQuantity totalQuantity lineItem { id } }
          pageInfo { hasNextPage }
        }
      }
      pageInfo { hasNextPage }
    }
    fulfillments(first: 20) { id status trackingInfo { company number url } }
  }
}"""

FULFILLMENT_CREATE = """mutation FulfillmentCreate($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status trackingInfo { company number url } }
    userErrors { field message }
  }
}"""

ORDERS_QUERY = """query ReconcileOrders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes { id legacyResourceId updatedAt displayFinancialStatus }
    pageInfo { hasNextPage endCursor }
  }
}"""


class ShopifyError(PlatformError):
    """An error answer of the Admin API: GraphQL top-level `errors`, or a REST `{"errors": ...}`."""


class _Gql(BaseModel):
    # Field names are GraphQL's own (camelCase), so answers validate without aliases.
    model_config = ConfigDict(extra="ignore")


class _PageInfo(_Gql):
    hasNextPage: bool = False
    endCursor: str | None = None


class _Id(_Gql):
    id: str


class _AssignedLocation(_Gql):
    name: str = ""
    location: _Id | None = None


class _FoLineItem(_Gql):
    id: str
    remainingQuantity: int
    lineItem: _Id


class _FoLineItems(_Gql):
    nodes: list[_FoLineItem] = []
    pageInfo: _PageInfo = _PageInfo()


class _FulfillmentOrder(_Gql):
    id: str
    status: str
    assignedLocation: _AssignedLocation | None = None
    lineItems: _FoLineItems = _FoLineItems()

    def location_key(self) -> str:
        located = self.assignedLocation
        if located is None:
            return ""
        return located.location.id if located.location else located.name

    def remaining(self) -> int:
        return sum(item.remainingQuantity for item in self.lineItems.nodes)


class _FulfillmentOrders(_Gql):
    nodes: list[_FulfillmentOrder] = []
    pageInfo: _PageInfo = _PageInfo()


class _TrackingInfo(_Gql):
    number: str | None = None
    company: str | None = None
    url: str | None = None


class _Fulfillment(_Gql):
    id: str = ""
    status: str = ""
    trackingInfo: list[_TrackingInfo] = []


class _PreparedOrder(_Gql):
    id: str
    fulfillmentOrders: _FulfillmentOrders = _FulfillmentOrders()
    fulfillments: list[_Fulfillment] = []


class _ListedOrder(_Gql):
    legacyResourceId: str | int
    updatedAt: datetime
    displayFinancialStatus: str | None = None


class _OrderPage(_Gql):
    nodes: list[_ListedOrder] = []
    pageInfo: _PageInfo = _PageInfo()


def _base(credentials: Credentials, shop: str = "") -> str:
    override = credentials.get("api_base", "").strip().rstrip("/")
    if override:
        parts = urlsplit(override)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
            return override
        raise ValueError("api_base must be https:// (plain http only to this machine)")
    domain = (credentials.get("shop_domain") or shop).strip().lower()
    domain = domain.removeprefix("https://").rstrip("/")
    if not _HOST.fullmatch(domain):
        raise ValueError(f"shop_domain {domain!r} is not a host name (xxx.myshopify.com)")
    return f"https://{domain}"


def _version(credentials: Credentials) -> str:
    version = credentials.get("api_version", "").strip() or API_VERSION
    if not _VERSION.fullmatch(version):
        raise ValueError(f"api_version {version!r} is not YYYY-MM")
    return version


def _token(credentials: Credentials) -> dict[str, str]:
    token = credentials.get("access_token", "")
    if not token:
        raise ValueError("the shop's credentials have no access_token")
    return {"X-Shopify-Access-Token": token}


def _graphql(credentials: Credentials, query: str, variables: dict[str, Any],
             shop: str = "") -> Request:
    url = f"{_base(credentials, shop)}/admin/api/{_version(credentials)}/graphql.json"
    return Request(method="POST", url=url,
                   headers={**_token(credentials), "Content-Type": "application/json"},
                   json_body={"query": query, "variables": variables})


def _numeric_id(external_id: str, kind: str) -> str:
    """The numeric id of a REST id or a GraphQL gid (`gid://shopify/Order/123`)."""
    text = external_id.strip()
    tail = text.rsplit("/", 1)[-1] if text.startswith("gid://shopify/") else text
    if not tail.isdigit():
        raise ValueError(f"{external_id!r} is not a Shopify {kind} id")
    return tail


def _gid(kind: str, external_id: str) -> str:
    return f"gid://shopify/{kind}/{_numeric_id(external_id, kind)}"


# Writeback ---------------------------------------------------------------------------------------


def prepare_call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
    """Read the order's fulfillment orders and existing fulfillments (before every attempt)."""
    return _graphql(credentials, PREPARE_QUERY, {"id": _gid("Order", shipped.external_id)})


def already_shipped(prepared: Any, shipped: Shipped) -> bool:
    """True when a fulfillment that shipped (not cancelled, errored or failed) already carries
    this tracking number. A missing order says nothing: False (writeback_call then refuses)."""
    order = _prepared_order(prepared)
    if order is None:
        return False
    wanted = _tracking_key(shipped.tracking_number)
    return any(_tracking_key(info.number or "") == wanted
               for fulfillment in order.fulfillments if fulfillment.status not in _NOT_SHIPPED
               for info in fulfillment.trackingInfo)


def writeback_call(shipped: Shipped, credentials: Credentials, now: datetime,
                   prepared: Any) -> Request:
    """fulfillmentCreate for this package (see the module docstring). ValueError when Shopify
    cannot take it; ShopifyError when `prepared` is an error answer."""
    tracking = tracking_info(shipped)
    order = _prepared_order(prepared)
    if order is None:
        raise ValueError(f"Shopify has no order {shipped.external_id} (or it is not visible to "
                         "this app)")
    if order.fulfillmentOrders.pageInfo.hasNextPage:
        raise ValueError(f"Shopify order {shipped.external_id} has more than "
                         f"{MAX_FULFILLMENT_ORDERS} fulfillment orders: fulfil it by hand")
    groups = _by_lines(order, shipped) if shipped.lines else _whole(order)
    if not groups:
        statuses = ", ".join(f"{_tail(fo.id)} {fo.status}"
                             for fo in order.fulfillmentOrders.nodes) or "none"
        raise ValueError(f"nothing of Shopify order {shipped.external_id} is left to fulfil "
                         f"(fulfillment orders: {statuses})")
    locations = {fo.location_key() for fo, _ in groups}
    if len(locations) > 1:
        names = ", ".join(sorted(_location_name(fo) for fo, _ in groups))
        raise ValueError(f"Shopify order {shipped.external_id}: the items to fulfil are assigned "
                         f"to several locations ({names}); one fulfillment takes one location")
    by_fulfillment_order: list[dict[str, Any]] = []
    for fo, items in groups:
        entry: dict[str, Any] = {"fulfillmentOrderId": fo.id}
        if items is not None:
            entry["fulfillmentOrderLineItems"] = [{"id": i, "quantity": q} for i, q in items]
        by_fulfillment_order.append(entry)
    notify = credentials.get("notify_customer", "true").strip().lower() not in ("false", "0", "no")
    return _graphql(credentials, FULFILLMENT_CREATE, {"fulfillment": {
        "lineItemsByFulfillmentOrder": by_fulfillment_order,
        "notifyCustomer": notify,
        "trackingInfo": tracking,
    }})


def tracking_info(shipped: Shipped) -> dict[str, str]:
    """FulfillmentTrackingInput for our carrier; ValueError for a carrier we have no name for."""
    try:
        company, com = CARRIERS[shipped.carrier_code.upper()]
    except KeyError:
        raise ValueError(f"no Shopify tracking company for carrier {shipped.carrier_code!r}"
                         ) from None
    number = shipped.tracking_number.strip()
    if not number:
        raise ValueError("the package has no tracking number")
    info = {"company": company, "number": number}
    if com is not None:
        info["url"] = _TRACKING_LINK.format(com=com, number=number)
    return info


_Group = tuple[_FulfillmentOrder, list[tuple[str, int]] | None]  # None: the whole of it


def _whole(order: _PreparedOrder) -> list[_Group]:
    return [(fo, None) for fo in order.fulfillmentOrders.nodes
            if fo.status in FULFILLABLE and fo.remaining() > 0]


def _by_lines(order: _PreparedOrder, shipped: Shipped) -> list[_Group]:
    wanted: dict[str, int] = {}
    for line_id, quantity in shipped.lines:
        key = _numeric_id(line_id, "LineItem")
        wanted[key] = wanted.get(key, 0) + quantity
    known = {_tail(item.lineItem.id) for fo in order.fulfillmentOrders.nodes
             for item in fo.lineItems.nodes}
    unknown = sorted(set(wanted) - known)
    if unknown:
        truncated = any(fo.lineItems.pageInfo.hasNextPage for fo in order.fulfillmentOrders.nodes)
        raise ValueError(f"Shopify order {shipped.external_id} has no line item "
                         f"{', '.join(unknown)} in its fulfillment orders"
                         + (" (only the first 50 line items were read)" if truncated else ""))
    groups: list[_Group] = []
    for fo in order.fulfillmentOrders.nodes:
        if fo.status not in FULFILLABLE:
            continue
        items: list[tuple[str, int]] = []
        for item in fo.lineItems.nodes:
            key = _tail(item.lineItem.id)
            take = min(wanted.get(key, 0), item.remainingQuantity)
            if take > 0:
                items.append((item.id, take))
                wanted[key] -= take
        if items:
            groups.append((fo, items))
    return groups


def _location_name(fo: _FulfillmentOrder) -> str:
    located = fo.assignedLocation
    return (located.name or fo.location_key()) if located else "no location"


def _tail(gid: str) -> str:
    return gid.rsplit("/", 1)[-1]


def _tracking_key(number: str) -> str:
    return re.sub(r"\s+", "", number).upper()


def _prepared_order(prepared: Any) -> _PreparedOrder | None:
    data = _data(prepared)
    order = data.get("order")
    if order is None:
        return None
    try:
        return _PreparedOrder.model_validate(order)
    except ValidationError as exc:
        raise ShopifyError("unexpected_answer", str(exc)[:300], False) from None


def parse_writeback(status: int, body: bytes) -> WritebackResult:
    if status == 429 or status >= 500:
        return WritebackResult(ok=False, retryable=True, code=f"http_{status}",
                               detail=body[:200].decode("utf-8", "replace"))
    try:
        answer = loads_json(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return WritebackResult(ok=False, code=f"http_{status}" if status >= 400
                               else "unexpected_answer",
                               detail=body[:200].decode("utf-8", "replace"))
    error = _error_of(answer)
    if error is not None:
        return WritebackResult(ok=False, retryable=error.retryable, code=error.code,
                               detail=error.message[:500])
    if status >= 400:
        return WritebackResult(ok=False, code=f"http_{status}")
    data = answer.get("data")
    payload = data.get("fulfillmentCreate") if isinstance(data, dict) else None
    if not isinstance(payload, dict):
        return WritebackResult(ok=False, code="unexpected_answer", detail=str(answer)[:200])
    user_errors = payload.get("userErrors") or []
    if user_errors:
        return WritebackResult(ok=False, code="user_error",
                               detail="; ".join(_user_error(e) for e in user_errors)[:500])
    fulfillment = payload.get("fulfillment")
    if not isinstance(fulfillment, dict) or not fulfillment.get("id"):
        return WritebackResult(ok=False, code="unexpected_answer", detail=str(answer)[:200])
    return WritebackResult(ok=True, code=str(fulfillment["id"]))


def _user_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    field = error.get("field") or []
    where = ".".join(str(f) for f in field) if isinstance(field, list) else str(field)
    message = str(error.get("message", ""))
    return f"{where}: {message}" if where else message


# Reconciliation ----------------------------------------------------------------------------------


def _search_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_call(shop: str, since: datetime, until: datetime, cursor: str | None,
              credentials: Credentials, now: datetime) -> Request:
    """Orders updated in [since, until], oldest change first; `cursor` is the last endCursor."""
    search = f"updated_at:>='{_search_time(since)}' AND updated_at:<='{_search_time(until)}'"
    return _graphql(credentials, ORDERS_QUERY,
                    {"first": PER_PAGE, "after": cursor, "query": search}, shop)


def parse_list(answer: Any, shop: str = "",
               cursor: str | None = None) -> tuple[list[OrderRef], str | None]:
    """The listed orders, of `shop`, and the next cursor (the answer's endCursor), None on the
    last page."""
    data = _data(answer)
    try:
        page = _OrderPage.model_validate(data.get("orders"))
    except ValidationError as exc:
        raise ShopifyError("unexpected_answer", str(exc)[:300], False) from None
    refs = [OrderRef(shop=shop, external_id=str(node.legacyResourceId),
                     status=node.displayFinancialStatus or "", updated_at=node.updatedAt)
            for node in page.nodes]
    following = page.pageInfo.endCursor if page.pageInfo.hasNextPage else None
    return refs, following


def fetch_call(ref: OrderRef, credentials: Credentials, now: datetime) -> Request:
    """REST: its answer is the webhooks' own order shape (see the module docstring)."""
    order_id = _numeric_id(ref.external_id, "Order")
    url = (f"{_base(credentials, ref.shop)}/admin/api/{_version(credentials)}"
           f"/orders/{order_id}.json")
    return Request(method="GET", url=url, headers=_token(credentials))


def parse_order(answer: Any, ref: OrderRef, source: str) -> Order:
    body = _json(answer)
    if not isinstance(body, dict):
        raise InvalidOrder("invalid_payload", "the answer is not an object")
    error = _error_of(body)
    if error is not None:
        raise error
    order = body.get("order")
    if not isinstance(order, dict):
        raise InvalidOrder("invalid_payload", "the answer has no order")
    # The same bytes path as a webhook, the shop named as X-Shopify-Shop-Domain names it.
    raw = json.dumps(order, ensure_ascii=False).encode()
    return normalise(raw, {"x-shopify-shop-domain": ref.shop}, source)


# Answers -----------------------------------------------------------------------------------------


def _json(answer: Any) -> Any:
    if isinstance(answer, bytes | bytearray | str):
        try:
            return loads_json(answer)
        except ValueError as exc:
            raise ShopifyError("malformed_answer", str(exc)[:200], True) from None
    return answer


def _data(answer: Any) -> dict[str, Any]:
    """A GraphQL answer's `data`; top-level errors raise ShopifyError."""
    body = _json(answer)
    if not isinstance(body, dict):
        raise ShopifyError("unexpected_answer", "a GraphQL answer object was expected", False)
    error = _error_of(body)
    if error is not None:
        raise error
    data = body.get("data")
    if not isinstance(data, dict):
        raise ShopifyError("unexpected_answer", "the answer has no data", False)
    return data


def _error_of(body: Mapping[str, Any]) -> ShopifyError | None:
    """GraphQL `errors: [{message, extensions: {code}}]` or REST `errors: "..."` / `{field:
    [...]}`; None when the answer carries no error."""
    errors = body.get("errors")
    if not errors:
        return None
    if isinstance(errors, list):
        first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
        extensions = first.get("extensions")
        code = str(extensions.get("code", "")) if isinstance(extensions, dict) else ""
        message = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                            for e in errors)
        return ShopifyError(code or "graphql_error", message, code in _RETRYABLE_CODES)
    if isinstance(errors, str):
        if errors.strip().lower() == "not found":
            return ShopifyError("not_found", errors, False)
        if "invalid api key or access token" in errors.lower():
            return ShopifyError("unauthorized", errors, False)
        return ShopifyError("api_error", errors, False)
    return ShopifyError("api_error", json.dumps(errors, ensure_ascii=False)[:500], False)


# Expiring offline tokens --------------------------------------------------------------------

REFRESH_PATH = "/admin/oauth/access_token"
REAUTHORISE = ("the merchant opens our app in the Shopify admin (or installs it again) to "
               "authorise it again")
_PASSING_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


def refresh_call(credentials: Credentials, now: datetime) -> Request | None:
    """A new offline token for the shop's refresh token (None without one: a non-expiring
    token, used as it is)."""
    token = credentials.get("refresh_token", "")
    if not token:
        return None
    if not (credentials.get("client_id") and credentials.get("client_secret")):
        raise ValueError("a Shopify token refresh needs the app's client_id and client_secret")
    return Request(method="POST", url=_base(credentials) + REFRESH_PATH, json_body={
        "client_id": credentials["client_id"], "client_secret": credentials["client_secret"],
        "grant_type": "refresh_token", "refresh_token": token})


def parse_refresh(answer: Any, now: datetime) -> Tokens:
    """The new tokens; RefreshRefused for a refusal for good, ShopifyError (retryable) for a
    passing fault or an answer without them."""
    body = _json(answer)
    if isinstance(body, dict) and body.get("error"):
        code = str(body["error"])
        message = str(body.get("error_description") or "")
        if code in _PASSING_OAUTH_ERRORS:
            raise ShopifyError(code, message, True)
        raise RefreshRefused(code, message)
    try:
        if not isinstance(body, dict):
            raise ValueError("not an object")
        refresh_ends = body.get("refresh_token_expires_in")
        return Tokens(access_token=str(body.get("access_token") or ""),
                      access_expires_at=expires_at(body.get("expires_in"), now),
                      refresh_token=str(body.get("refresh_token") or ""),
                      refresh_expires_at=None if refresh_ends is None
                      else expires_at(refresh_ends, now))
    except ValueError:  # pydantic's ValidationError too
        raise ShopifyError("unexpected_answer", "the refresh answer has no tokens",
                           True) from None


# The contract (chalicelib/marketplaces/contract.py) ----------------------------------------------

MARKETPLACE = Marketplace(
    name=NAME,
    inbound=INBOUND,
    fetch=Fetch.one_call(fetch_call, parse_order),
    # fulfillmentCreate needs the fulfillment orders first, and is not idempotent: the same
    # read says whether an earlier attempt (or a person) shipped the package already.
    writeback=ShipmentWrite(call=writeback_call, parse=parse_writeback,
                            prepare=PackageCheck(prepare_call, already_shipped)),
    listing=Listing(list_call, parse_list),
    refresh=TokenRefresh(refresh_call, parse_refresh, REAUTHORISE),
)
