"""A simulated TikTok Shop (Partner API 202309): the API our adapter calls and the webhooks.

Serves:
- `GET /order/202309/orders?ids=<id,...>` (Get Order Detail, up to 50 ids) -> data.orders[]
  (also the writeback's existing check);
- `POST /order/202309/orders/search?page_size=&sort_field=&sort_order=&page_token=` with body
  filters `update_time_ge`/`update_time_lt` (and `create_time_*`, `order_status`) -> data
  {total_count, next_page_token ("" on the last page), orders[]};
- `POST /fulfillment/202309/orders/{order_id}/packages` (Mark Package As Shipped) `{
  "tracking_number", "shipping_provider_id", "order_line_item_ids"?}`: the named line items (all
  that are left when none are named) go in one package (recorded), then a status webhook.

Every call is verified: `app_key`, `timestamp` within ±300 s, `sign` recomputed with the
documented recipe over the received path, query (all but sign and access_token, sorted) and
body bytes, the `x-tts-access-token` header (105002 once it has ended: 7 days, or
`token_life`), and `shop_cipher`. Answers are `{"code", "message", "request_id", "data"}`;
code 0 is success.

Token refresh, on the same address (our `auth_base`): `GET /api/v2/token/refresh?app_key=&
app_secret=&refresh_token=&grant_type=refresh_token` answers data {access_token,
access_token_expire_in, refresh_token, refresh_token_expire_in (both unix moments), open_id,
seller_name, seller_base_region, user_type, granted_scopes}; the refresh token sent is refused
from then on (105002).

Webhooks: POST, body `{"type": 1, "tts_notification_id", "shop_id", "timestamp", "data":
{"is_on_hold_order", "order_id", "order_status", "update_time"}}` (thin: the adapter re-fetches),
header `Authorization` = hex HMAC-SHA256(app_secret, app_key + body).

Statuses: UNPAID; ON_HOLD (paid, when the shop is built with `hold_paid=True`, until `release`);
AWAITING_SHIPMENT; PARTIALLY_SHIPPING; AWAITING_COLLECTION (after the writeback); IN_TRANSIT,
DELIVERED, COMPLETED (`advance`); CANCELLED. Each line item is one unit: an order line of
quantity 2 shows as two line items, each with its own id, and a shipped one names its package.

Guesses: the error codes and HTTP statuses of refusals other than those recorded in the fixtures
(106001 wrong sign and 105001 wrong token answered with HTTP 401, per third-party code; 106002
stale timestamp, 106011 wrong shop_cipher, 36009001 invalid parameters, 21001001 unknown order,
21011003 bad line ids, 21011006 unknown shipping provider are ours); the page token's form; the
package status words; the shop's shipping provider ids (one per carrier, given to us as
`shipping_provider_id.<code>` credentials). The buyers are the base's Chinese ones, so the
address says region CN, which TikTok Shop does not serve. The refresh token's life (a year
here) and the codes for an ended access token or a refused refresh token (105002).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from chalicelib.marketplaces import tiktok_shop as tts
from devstack.marketplaces.base import (
    NO_FAULTS,
    Faults,
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimLine,
    SimOrder,
    SimShipment,
    TokenBook,
)

CLOCK_SKEW = 300
ACCESS_LIFE = timedelta(days=7)
REFRESH_LIFE = timedelta(days=365)
MAX_PAGE_SIZE = 100
MAX_IDS = 50
SHIPPED_STAGES = ("AWAITING_COLLECTION", "IN_TRANSIT", "DELIVERED", "COMPLETED")
_PACKAGE_STATUS = {"AWAITING_COLLECTION": "PROCESSING", "IN_TRANSIT": "SHIPPED",
                   "DELIVERED": "COMPLETED", "COMPLETED": "COMPLETED"}
_PACKAGES_PATH = re.compile(r"^/fulfillment/202309/orders/([^/]+)/packages$")
_TRACKING = re.compile(r"^[A-Za-z0-9-]{6,40}$")
_ALREADY_SHIPPED = ("Order status does not allow this operation: the package has already been "
                    "shipped.")


class TikTokShopSimulator(MarketplaceSimulator):
    """A TikTok Shop shop: orders, its Partner API on a local port, signed webhooks."""

    name = "tiktok_shop"

    def __init__(self, *, shop: str, webhook_url: str, faults: Faults = NO_FAULTS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 app_key: str | None = None, app_secret: str | None = None,
                 access_token: str | None = None, shop_cipher: str | None = None,
                 hold_paid: bool = False, refresh_token: str | None = None,
                 token_life: timedelta | None = None) -> None:
        super().__init__(shop=shop, webhook_url=webhook_url, faults=faults, clock=clock,
                         token_life=token_life)
        self.app_key = app_key or "6" + secrets.token_hex(6)
        self.app_secret = app_secret or secrets.token_hex(20)
        self.tokens = TokenBook(
            platform=self.name, shop=self.shop, clock=self.clock,
            access_token=access_token or "ROW_" + secrets.token_urlsafe(24),
            refresh_token=refresh_token or "ROW_" + secrets.token_urlsafe(24),
            access_life=self.token_life or ACCESS_LIFE, refresh_life=REFRESH_LIFE,
            make_access=lambda: "ROW_" + secrets.token_urlsafe(24),
            make_refresh=lambda: "ROW_" + secrets.token_urlsafe(24))
        self.shop_cipher = shop_cipher or "ROW_" + secrets.token_urlsafe(18)
        self.hold_paid = hold_paid
        # The shop's shipping providers (Get Shipping Providers): id -> name, one per carrier.
        self.providers = {str(7208502187360519000 + n): name
                          for n, name in enumerate(tts.CARRIERS.values(), start=1)}
        self._provider_ids = dict(zip(tts.CARRIERS, self.providers, strict=True))
        self._units: dict[str, list[tuple[str, SimLine]]] = {}  # order -> (line item id, line)
        self._packages: dict[str, list[str]] = {}  # order -> package id of each shipment
        self._stage: dict[str, str] = {}  # order -> where a shipped order's parcel is
        self._released: set[str] = set()  # orders no longer on hold

    # Ids ----------------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(self.rng.randrange(576_000_000_000_000_000, 577_000_000_000_000_000))

    def units(self, order: SimOrder) -> list[tuple[str, SimLine]]:
        """The order's line items: one per unit, each with its own id."""
        with self.lock:
            if order.external_id not in self._units:
                taken = {unit for found in self._units.values() for unit, _ in found}
                units: list[tuple[str, SimLine]] = []
                for line in order.lines:
                    for _ in range(line.quantity):
                        unit = str(self.rng.randrange(576_000_000_000_000_000,
                                                      577_000_000_000_000_000))
                        while unit in taken:
                            unit = str(int(unit) + 1)
                        taken.add(unit)
                        units.append((unit, line))
                self._units[order.external_id] = units
            return self._units[order.external_id]

    # Configuration ------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    def credentials(self) -> dict[str, str]:
        return {"app_key": self.app_key, "app_secret": self.app_secret,
                "access_token": self.access_token, "shop_cipher": self.shop_cipher,
                "api_base": self.url, "auth_base": self.url, **self.tokens.credentials(),
                **{tts.PROVIDER_ID_KEY.format(code=code): provider
                   for code, provider in self._provider_ids.items()}}

    def source(self) -> dict[str, Any]:
        return {"scheme": "tiktok_shop", "secrets": [f"{self.app_key}:{self.app_secret}"]}

    # The shop's life beyond the base's ----------------------------------------------------

    def release(self, external_id: str, drop: bool | None = None) -> SimOrder:
        """The on-hold hour is over: the order may ship (AWAITING_SHIPMENT)."""
        with self.lock:
            self._released.add(external_id)
        return self._change(external_id, "released", drop)

    def advance(self, external_id: str, stage: str, drop: bool | None = None) -> SimOrder:
        """A shipped order's parcel moves on: IN_TRANSIT, DELIVERED or COMPLETED."""
        if stage not in SHIPPED_STAGES:
            raise ValueError(f"not a stage after shipping: {stage}")
        with self.lock:
            if self.orders[external_id].status != "shipped":
                raise ValueError(f"{external_id} is not shipped")
            self._stage[external_id] = stage
        return self._change(external_id, stage.lower(), drop)

    def status(self, order: SimOrder) -> str:
        """The order's status word as the API shows it."""
        with self.lock:
            if order.status == "cancelled":
                return "CANCELLED"
            if order.status == "unpaid":
                return "UNPAID"
            if order.status == "paid":
                return "ON_HOLD" if self._on_hold(order) else "AWAITING_SHIPMENT"
            if len(self._shipped_units(order)) < len(self.units(order)):
                return "PARTIALLY_SHIPPING"
            return self._stage.get(order.external_id, "AWAITING_COLLECTION")

    def _on_hold(self, order: SimOrder) -> bool:
        return (self.hold_paid and order.status == "paid"
                and order.external_id not in self._released)

    def _shipped_units(self, order: SimOrder) -> dict[str, tuple[str, SimShipment]]:
        """Line item id -> (package id, shipment) for every unit in a package."""
        packages = self._packages.get(order.external_id, [])
        return {unit: (package, shipment)
                for package, shipment in zip(packages, order.shipments, strict=False)
                for unit in shipment.line_ids}

    # Wire shapes --------------------------------------------------------------------------

    def render(self, order: SimOrder) -> dict[str, Any]:
        with self.lock:
            status = self.status(order)
            units = self.units(order)
            shipped = self._shipped_units(order)
            packages = self._packages.get(order.external_id, [])
            stage = self._stage.get(order.external_id, "AWAITING_COLLECTION")
        items = []
        for unit, line in units:
            item: dict[str, Any] = {
                "id": unit, "sku_id": _number(line.sku, 19), "product_id": _number(line.title, 19),
                "product_name": line.title, "sku_name": "", "original_price": _money(line.price),
                "sale_price": _money(line.price), "platform_discount": "0",
                "seller_discount": "0", "currency": order.currency, "sku_type": "NORMAL",
                "seller_sku": line.sku, "is_gift": False, "tracking_number": "",
                "shipping_provider_id": "", "shipping_provider_name": "", "rts_time": 0,
            }
            if status == "CANCELLED":
                item.update(display_status="CANCELLED", cancel_user="BUYER",
                            cancel_reason="No longer needed")
            elif unit in shipped:
                package, shipment = shipped[unit]
                provider = next((i for i, n in self.providers.items() if n == shipment.carrier),
                                "")
                item.update(display_status=stage, package_status=_PACKAGE_STATUS[stage],
                            tracking_number=shipment.tracking_number,
                            shipping_provider_id=provider,
                            shipping_provider_name=shipment.carrier,
                            rts_time=_ts(shipment.at), package_id=package)
            else:
                item.update(display_status="AWAITING_SHIPMENT" if status in (
                    "PARTIALLY_SHIPPING", *SHIPPED_STAGES) else status,
                            package_status="TO_FULFILL")
            items.append(item)
        sub_total = sum((line.price for _, line in units), Decimal("0"))
        rendered: dict[str, Any] = {
            "id": order.external_id, "status": status,
            "user_id": _number(order.phone, 19),
            "buyer_email": f"v2-{_number(order.phone, 12)}@scs.tiktokw.eu",
            "buyer_message": "",
            "create_time": _ts(order.created_at), "update_time": _ts(order.updated_at),
            "fulfillment_type": "FULFILLMENT_BY_SELLER", "shipping_type": "SELLER",
            "delivery_type": "HOME_DELIVERY", "is_cod": False,
            "is_on_hold_order": status == "ON_HOLD",
            "payment": {
                "currency": order.currency, "sub_total": _money(sub_total),
                "shipping_fee": _money(order.shipping_fee), "seller_discount": "0",
                "platform_discount": "0", "total_amount": _money(order.total),
                "original_total_product_price": _money(sub_total),
                "original_shipping_fee": _money(order.shipping_fee), "tax": "0",
            },
            "recipient_address": {
                "name": order.buyer_name,
                "phone_number": f"(+86){order.phone[:3]}****{order.phone[-4:]}",
                "postal_code": order.postcode, "region_code": "CN",
                "address_detail": order.street, "address_line1": order.street,
                "address_line2": "", "address_line3": "", "address_line4": "",
                "full_address": f"{order.province}{order.city}{order.district}{order.street}",
                "district_info": [
                    {"address_level_name": "Country", "address_name": "China",
                     "address_level": "L0"},
                    {"address_level_name": "Province", "address_name": order.province,
                     "address_level": "L1"},
                    {"address_level_name": "City", "address_name": order.city,
                     "address_level": "L2"},
                    {"address_level_name": "District", "address_name": order.district,
                     "address_level": "L3"},
                ],
            },
            "packages": [{"id": package} for package in packages],
            "line_items": items,
        }
        if order.paid_at is not None:
            rendered["paid_time"] = _ts(order.paid_at)
        if order.cancelled_at is not None:
            rendered.update(cancel_time=_ts(order.cancelled_at), cancel_reason="No longer needed",
                            cancellation_initiator="BUYER")
        if len(order.shipments) == 1 and len(shipped) == len(units):  # one parcel: all of it
            shipment = order.shipments[0]
            rendered.update(tracking_number=shipment.tracking_number,
                            shipping_provider=shipment.carrier,
                            shipping_provider_id=items[0]["shipping_provider_id"],
                            rts_time=_ts(shipment.at))
        return rendered

    def notification(self, order: SimOrder, topic: str) -> Notification:
        status = self.status(order)
        body = tts.compact_json({
            "type": 1,
            "tts_notification_id": str(self.rng.randrange(7 * 10**18, 8 * 10**18)),
            "shop_id": self.shop,
            "timestamp": _ts(self.clock()),
            "data": {"is_on_hold_order": status == "ON_HOLD", "order_id": order.external_id,
                     "order_status": status, "update_time": _ts(order.updated_at)},
        })
        signature = tts.webhook_signature(self.app_key, self.app_secret, body)
        return Notification(body, {"Content-Type": "application/json",
                                   "Authorization": signature})

    # The API ------------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == tts.REFRESH_PATH:
            return self._refresh(request)
        refused = self._verify(request)
        if refused is not None:
            return refused
        if request.method == "GET" and request.path == tts.ORDER_DETAIL_PATH:
            return self._order_detail(request)
        if request.method == "POST" and request.path == tts.ORDER_SEARCH_PATH:
            return self._search(request)
        shipped = _PACKAGES_PATH.match(request.path)
        if request.method == "POST" and shipped:
            return self._mark_shipped(unquote(shipped.group(1)), request)
        return _answer(36009001, f"Invalid path: {request.method} {request.path}", status=404)

    def _verify(self, request: Request) -> Reply | None:
        query = request.query
        if query.get("app_key") != self.app_key:
            return _answer(106001, "Invalid credentials. The 'app_key' query parameter is "
                           "invalid.", status=401)
        stamp = query.get("timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) - self.clock().timestamp()) > CLOCK_SKEW:
            return _answer(106002, "Invalid credentials. The 'timestamp' query parameter is "
                           "invalid or expired.", status=401)
        given = query.get("sign", "").lower()
        expected = tts.sign(request.path, {k: v for k, v in query.items() if k != "sign"},
                            request.body, self.app_secret)
        if not given or not hmac.compare_digest(given, expected):
            return _answer(106001, "Invalid credentials. The 'sign' query parameter is invalid.",
                           status=401)
        judged = self.tokens.check(request.headers.get("x-tts-access-token", ""))
        if judged == "invalid":
            return _answer(105001, "Invalid credentials. The 'x-tts-access-token' header is "
                           "invalid.", status=401)
        if judged == "expired":
            return _answer(105002, "Expired credentials. The access token has expired.",
                           status=401)
        if query.get("shop_cipher") != self.shop_cipher:
            return _answer(106011, "Invalid shop_cipher: the shop has not authorized this app.",
                           status=401)
        return None

    def _refresh(self, request: Request) -> Reply:
        query = request.query
        if query.get("app_key") != self.app_key or not hmac.compare_digest(
                query.get("app_secret", "").encode(), self.app_secret.encode()):
            return _answer(106001, "Invalid credentials. The app_key or app_secret is invalid.",
                           status=401)
        if query.get("grant_type") != "refresh_token":
            return _answer(36009001, "Invalid parameters: grant_type must be refresh_token.")
        if not self.tokens.refresh(query.get("refresh_token", "")):
            return _answer(105002, "Expired credentials. The refresh token is invalid or has "
                           "expired, please re-authorize the shop.")
        return _answer(0, "success", {
            "access_token": self.tokens.access_token,
            "access_token_expire_in": int(self.tokens.access_ends.timestamp()),
            "refresh_token": self.tokens.refresh_token,
            "refresh_token_expire_in": int(self.tokens.refresh_ends.timestamp()),
            "open_id": "sim_" + self.shop, "seller_name": "Simulated shop",
            "seller_base_region": "GB", "user_type": 0,
            "granted_scopes": ["seller.order.info", "seller.fulfillment.basic"]})

    def _order_detail(self, request: Request) -> Reply:
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not 1 <= len(ids) <= MAX_IDS:
            return _answer(36009001, f"Invalid parameters: ids takes 1 to {MAX_IDS} order ids.")
        with self.lock:
            found = [self.render(self.orders[i]) for i in ids if i in self.orders]
        return _answer(0, "Success", {"orders": found})

    def _search(self, request: Request) -> Reply:
        query = request.query
        try:
            size = int(query.get("page_size", ""))
            offset = _offset(query.get("page_token", ""))
            filters = json.loads(request.body or b"{}")
            if not isinstance(filters, dict):
                raise ValueError("the body is not an object")
            bounds = {name: int(filters[name]) for name in (
                "update_time_ge", "update_time_lt", "create_time_ge", "create_time_lt")
                if filters.get(name) is not None}
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            return _answer(36009001, f"Invalid parameters: {exc}")
        field = query.get("sort_field", "create_time")
        if not 1 <= size <= MAX_PAGE_SIZE or field not in ("create_time", "update_time") \
                or query.get("sort_order", "DESC") not in ("ASC", "DESC"):
            return _answer(36009001, "Invalid parameters: page_size, sort_field or sort_order.")
        wanted = filters.get("order_status")
        with self.lock:
            found = [o for o in self.orders.values()
                     if _within(_ts(o.updated_at), bounds, "update_time")
                     and _within(_ts(o.created_at), bounds, "create_time")
                     and (wanted is None or self.status(o) == wanted)]
            found.sort(key=lambda o: (_ts(o.updated_at if field == "update_time"
                                          else o.created_at), o.external_id),
                       reverse=query.get("sort_order", "DESC") == "DESC")
            page = [self.render(o) for o in found[offset:offset + size]]
        following = offset + size < len(found)
        return _answer(0, "Success", {
            "total_count": len(found),
            "next_page_token": _token(offset + size) if following else "",
            "orders": page,
        })

    def _mark_shipped(self, order_id: str, request: Request) -> Reply:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _answer(36009001, "Invalid parameters: the body is not a JSON object.")
        number = str(body.get("tracking_number") or "")
        provider = str(body.get("shipping_provider_id") or "")
        named = body.get("order_line_item_ids") or []
        if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
            return _answer(36009001, "Invalid parameters: order_line_item_ids is a list of ids.")
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return _answer(21001001, "Order does not exist.", {})
            status = self.status(order)
            units = [unit for unit, _ in self.units(order)]
            left = [unit for unit in units if unit not in self._shipped_units(order)]
            if status in SHIPPED_STAGES or (named and not set(named) & set(left)
                                            and set(named) <= set(units)):
                return _answer(21011001, _ALREADY_SHIPPED, {})
            if status not in ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING"):
                return _answer(21011001, "Order status does not allow this operation.", {})
            if provider not in self.providers:
                return _answer(21011006, "Invalid shipping provider id.", {})
            if not _TRACKING.match(number):
                return _answer(21011008, "The tracking number format is invalid for the "
                               "selected shipping provider.", {})
            if not set(named) <= set(left):
                return _answer(21011003, "Invalid order_line_item_ids: not in this order or "
                               "already shipped.", {})
            packed = named or left
            package = str(self.rng.randrange(1_150_000_000_000_000, 1_160_000_000_000_000))
            self._packages.setdefault(order_id, []).append(package)
            self.record(order_id, {"path": request.path, "body": body, "package_id": package},
                        SimShipment(carrier=self.providers[provider], tracking_number=number,
                                    at=self.clock(), line_ids=tuple(packed)))
        self.notify(order, "shipped")
        return _answer(0, "Success", {"order_id": order_id, "order_line_item_ids": packed,
                                      "package_id": package, "warning": {"message": ""}})


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01")))


def _number(text: str, digits: int) -> str:
    """A stable platform-looking id derived from `text`."""
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return str(10 ** (digits - 1) + value % (9 * 10 ** (digits - 1)))


def _within(value: int, bounds: dict[str, int], field: str) -> bool:
    low, high = bounds.get(f"{field}_ge"), bounds.get(f"{field}_lt")
    return (low is None or value >= low) and (high is None or value < high)


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str) -> int:
    if not token:
        return 0
    offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    if not isinstance(offset, int) or offset < 0:
        raise ValueError("invalid page_token")
    return offset


def _answer(code: int, message: str, data: Any = None, status: int = 200) -> Reply:
    answer: dict[str, Any] = {
        "code": code, "message": message,
        "request_id": datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()}
    if data is not None:
        answer["data"] = data
    return Reply.json(answer, status)
