"""A simulated Lazada seller: the LazOP calls our adapter (`chalicelib.marketplaces.lazada`) makes,
and trade order pushes.

Serves, under `url` + "/rest" (what `credentials()["api_base"]` names):
- `GET /rest/order/get?order_id=`: the order, without its items;
- `GET /rest/order/items/get?order_id=`: its items, ONE PER UNIT (a line of quantity 2 is two
  items, each with its own order_item_id);
- `GET /rest/orders/get`: `created_after` or `update_after` (one is required), `created_before`,
  `update_before` (ISO 8601, inclusive, whole seconds), `status`, `sort_by` (created_at,
  updated_at), `sort_direction` (ASC, DESC), `offset` (at most 5000), `limit` (1-100);
  answers `{"count", "countTotal", "orders"}`;
- `POST /rest/order/rts` (system parameters and sign in the query, the API's as a form):
  `delivery_type` (dropship, pickup, send_to_warehouse), `order_item_ids` (a JSON list),
  `shipment_provider`, `tracking_number`: every item pending or ready_to_ship (else E073), a
  tracking number not used by another order (else E063); recorded, the items become
  ready_to_ship with the number, and pushes tell so.

Every call is checked as LazOP checks it: `app_key`, `timestamp` (ms), `sign_method` sha256,
`access_token`, and `sign` = upper-hex HMAC-SHA256(app_secret, api path + every other parameter,
query and form, sorted by name as name+value), recomputed here: a wrong one is `IncompleteSignature`
(ISV), a wrong token or one past its end (30 days, or `token_life`) `IllegalAccessToken`.
- `POST /rest/auth/token/refresh` (our `auth_base`; Lazada's is auth.lazada.com): signed the
  same way but without an access token, `refresh_token` in the form: the current refresh token
  (180 days) answers `{"code": "0", "access_token", "refresh_token", "expires_in",
  "refresh_expires_in", ...}` and is refused from then on (`IllegalRefreshToken`).

Pushes: one trade order message (message_type 0) per order item whose status changed, `{"seller_id",
"message_type": 0, "data": {"order_status", "trade_order_id", "trade_order_line_id",
"status_update_time"}, "timestamp" (ms), "site"}`, header Authorization = lower-hex
HMAC-SHA256(app_secret, app_key + body). The source secret is "app_key:app_secret". A
notification handed over (`hand_over_order`) is the message about the first item only.

Item statuses: unpaid; pending once paid; ready_to_ship once in an RTS; canceled (the order
cancelled before its item was ready to ship). shipped and delivered (the carrier's scans) are not
reached: the simulator has no carrier.

Guesses and simplifications:
- Errors answer HTTP 200 with `{"type", "code", "message", "request_id"}`; the codes and wording of
  IncompleteSignature, InvalidTimestamp (more than TIMESTAMP_WINDOW off), MissingParameter,
  InvalidParameter, E016 (no such order) and E020 (unknown provider). E063 and E073 follow the
  recorded answers.
- Re-RTS of ready_to_ship items is accepted (E073's wording allows it) and recorded again.
- The shop sells to the simulators' Chinese buyers: the address country is "CN" (Lazada writes
  its own countries' names; the adapter reads both), currency is the order's, site lazada_my.
- Order ids are 15 digits; the n-th unit's order_item_id is the order id + n x 10^8 (as the
  recorded answers number them). GetOrders writes ISO 8601 times, GetOrder and GetOrderItems
  "YYYY-MM-DD HH:MM:SS +0800", as the recorded answers do.
- Shipment providers accepted: the adapter's CARRIERS names (a real seller's list comes from
  /shipment/providers/get).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from chalicelib.marketplaces import lazada
from devstack.marketplaces.base import (
    Fate,
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimLine,
    SimOrder,
    SimShipment,
    TokenBook,
)

PREFIX = "/rest"
ACCESS_LIFE = timedelta(days=30)
REFRESH_LIFE = timedelta(days=180)
TIMESTAMP_WINDOW = timedelta(hours=2)
MAX_LIMIT = 100
SITE = "lazada_my"
SELLER_TIME = timezone(timedelta(hours=8))
DELIVERY_TYPES = frozenset({"dropship", "pickup", "send_to_warehouse"})
RTS_STATUSES = frozenset({"pending", "ready_to_ship"})
ITEM_STEP = 10**8


@dataclass(frozen=True)
class Unit:
    """One Lazada order item: one unit of a SimLine."""

    item_id: str
    line: SimLine


def _time(moment: datetime) -> str:
    """GetOrder / GetOrderItems: "2026-11-23 10:30:00 +0800"."""
    return moment.astimezone(SELLER_TIME).strftime("%Y-%m-%d %H:%M:%S %z")


def _iso(moment: datetime) -> str:
    """GetOrders: "2026-11-23T10:30:00+08:00"."""
    return moment.astimezone(SELLER_TIME).replace(microsecond=0).isoformat()


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


class LazadaSimulator(MarketplaceSimulator):
    name = "lazada"

    def __init__(self, *, app_key: str | None = None, app_secret: str | None = None,
                 access_token: str | None = None, refresh_token: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app_key = app_key or str(self.rng.randrange(100_000, 999_999))
        self.app_secret = app_secret or secrets.token_urlsafe(24)
        self.tokens = TokenBook(
            platform=self.name, shop=self.shop, clock=self.clock,
            access_token=access_token or "50000" + secrets.token_hex(28),
            refresh_token=refresh_token or "50001" + secrets.token_hex(28),
            access_life=self.token_life or ACCESS_LIFE, refresh_life=REFRESH_LIFE,
            make_access=lambda: "50000" + secrets.token_hex(28),
            make_refresh=lambda: "50001" + secrets.token_hex(28))
        self._pushed: dict[str, str] = {}  # order_item_id -> the status last pushed
        self._pushing: str | None = None  # the item the notification being built is about

    def new_id(self) -> str:
        return str(self.rng.randrange(10**14, 8 * 10**14))

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    def credentials(self) -> dict[str, str]:
        return {"app_key": self.app_key, "app_secret": self.app_secret,
                "access_token": self.access_token, "api_base": self.url + PREFIX,
                "auth_base": self.url + PREFIX, **self.tokens.credentials()}

    def source(self) -> dict[str, Any]:
        return {"scheme": lazada.NAME, "secrets": [f"{self.app_key}:{self.app_secret}"]}

    # The order ---------------------------------------------------------------------------------

    def units(self, order: SimOrder) -> list[Unit]:
        """The order's items, one per unit, in line order."""
        lines = [line for line in order.lines for _ in range(line.quantity)]
        return [Unit(str(int(order.external_id) + n * ITEM_STEP), line)
                for n, line in enumerate(lines, start=1)]

    def item_status(self, order: SimOrder, item_id: str) -> str:
        if any(item_id in shipment.line_ids for shipment in order.shipments):
            return "ready_to_ship"
        return {"unpaid": "unpaid", "cancelled": "canceled"}.get(order.status, "pending")

    def _shipment_of(self, order: SimOrder, item_id: str) -> SimShipment | None:
        return next((s for s in reversed(order.shipments) if item_id in s.line_ids), None)

    def render(self, order: SimOrder) -> dict[str, Any]:
        """GetOrder's data."""
        return self._order(order, _time)

    def _order(self, order: SimOrder, when: Callable[[datetime], str]) -> dict[str, Any]:
        items = sum((line.price * line.quantity for line in order.lines), Decimal("0"))
        address = {
            "first_name": order.buyer_name, "last_name": "", "phone": order.phone, "phone2": "",
            "address1": order.street, "address2": order.district, "address3": order.province,
            "address4": order.city, "address5": order.postcode, "city": order.city,
            "post_code": order.postcode, "country": "CN",
        }
        units = self.units(order)
        return {
            "order_id": int(order.external_id),
            "order_number": int(order.external_id),
            "created_at": when(order.created_at),
            "updated_at": when(order.updated_at),
            "customer_first_name": order.buyer_name,
            "customer_last_name": "",
            "price": _money(items),
            "voucher": "0.00",
            "voucher_seller": "0.00",
            "voucher_platform": "0.00",
            "voucher_code": "",
            "shipping_fee": _money(order.shipping_fee),
            "shipping_fee_original": _money(order.shipping_fee),
            "shipping_fee_discount_seller": "0.00",
            "shipping_fee_discount_platform": "0.00",
            "payment_method": "MIXEDCARD",
            "items_count": len(units),
            "statuses": sorted({self.item_status(order, u.item_id) for u in units}),
            "remarks": "",
            "buyer_note": "",
            "delivery_info": "",
            "gift_option": False,
            "gift_message": "",
            "national_registration_number": "",
            "promised_shipping_times": "",
            "extra_attributes": "{\"TaxInvoiceRequested\":false}",
            "warehouse_code": "dropshipping",
            "address_updated_at": None,
            "address_billing": {**address, "customer_email": ""},
            "address_shipping": address,
        }

    def items(self, order: SimOrder) -> list[dict[str, Any]]:
        """GetOrderItems' data."""
        units = self.units(order)
        share = order.shipping_fee / len(units) if units else order.shipping_fee
        rendered = []
        for unit in units:
            shipment = self._shipment_of(order, unit.item_id)
            status = self.item_status(order, unit.item_id)
            rendered.append({
                "order_item_id": int(unit.item_id),
                "order_id": int(order.external_id),
                "purchase_order_id": "",
                "purchase_order_number": "",
                "shop_id": self.shop,
                "name": unit.line.title,
                "sku": unit.line.sku,
                "shop_sku": f"{unit.line.sku}_MY",
                "sku_id": int(unit.line.line_id) % 10**10,
                "variation": "",
                "item_price": float(unit.line.price),
                "paid_price": float(unit.line.price),
                "currency": order.currency,
                "tax_amount": 0.0,
                "shipping_amount": float(round(share, 2)),
                "shipping_service_cost": 0,
                "voucher_amount": 0.0,
                "voucher_seller": 0.0,
                "voucher_platform": 0,
                "status": status,
                "reason": "Change of mind" if status == "canceled" else "",
                "reason_detail": "",
                "cancel_return_initiator": "cancellation-customer" if status == "canceled"
                else "",
                "tracking_code": shipment.tracking_number if shipment else "",
                "tracking_code_pre": "",
                "shipment_provider": shipment.carrier if shipment else "",
                "shipping_type": "Dropshipping",
                "shipping_provider_type": "standard",
                "package_id": f"FP{int(unit.item_id) % 10**15:015d}" if shipment else "",
                "is_digital": 0,
                "is_fbl": 0,
                "is_reroute": 0,
                "buyer_id": int(order.phone),
                "warehouse_code": "dropshipping",
                "product_main_image": "",
                "product_detail_url": "",
                "created_at": _time(order.created_at),
                "updated_at": _time(order.updated_at),
                "promised_shipping_time": _time(order.created_at + timedelta(days=2)),
                "sla_time_stamp": _iso(order.created_at + timedelta(days=2)),
            })
        return rendered

    # Pushes ------------------------------------------------------------------------------------

    def notify(self, order: SimOrder, topic: str, drop: bool | None = None) -> Fate:
        """One message per order item whose status changed (Lazada pushes per order line)."""
        with self.lock:
            units = self.units(order)
            changed = [u for u in units
                       if self._pushed.get(u.item_id) != self.item_status(order, u.item_id)]
            fate: Fate | None = None
            try:
                for unit in changed or units[:1]:
                    self._pushing = unit.item_id
                    fate = super().notify(order, topic, drop)
            finally:
                self._pushing = None
            assert fate is not None, "an order has at least one item"
            return fate

    def notification(self, order: SimOrder, topic: str) -> Notification:
        """The message about the item `notify` is at (called alone: the first item)."""
        item_id = self._pushing or self.units(order)[0].item_id
        status = self.item_status(order, item_id)
        with self.lock:
            self._pushed[item_id] = status
        message = {
            "seller_id": self.shop,
            "message_type": lazada.TRADE_ORDER,
            "data": {"order_status": status,
                     "trade_order_id": order.external_id,
                     "trade_order_line_id": item_id,
                     "status_update_time": int(order.updated_at.timestamp())},
            "timestamp": int(self.clock().timestamp() * 1000),
            "site": SITE,
        }
        body = json.dumps(message, separators=(",", ":")).encode()
        return Notification(body=body, headers={
            "Content-Type": "application/json",
            "Authorization": lazada.push_signature(self.app_key, self.app_secret, body),
        })

    # The API -----------------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        path = request.path.removeprefix(PREFIX) if request.path.startswith(PREFIX + "/") \
            else ""
        handlers = {
            ("GET", "/order/get"): self._get_order,
            ("GET", "/order/items/get"): self._get_items,
            ("GET", "/orders/get"): self._get_orders,
            ("POST", "/order/rts"): self._rts,
            ("POST", lazada.REFRESH_PATH): self._refresh,
        }
        handler = handlers.get((request.method, path))
        if handler is None:
            return _error("InvalidApiPath", "The specified API path is invalid", http=404)
        params = {**request.query, **(request.form() if request.method == "POST" else {})}
        refused = self._authenticate(path, params, token=path != lazada.REFRESH_PATH)
        if refused is not None:
            return refused
        with self.lock:
            return handler(params)

    def _authenticate(self, path: str, params: dict[str, str], token: bool = True
                      ) -> Reply | None:
        for name in ("app_key", "timestamp", "sign_method", "sign",
                     *(("access_token",) if token else ())):
            if not params.get(name):
                return _missing(name)
        if params["app_key"] != self.app_key:
            return _error("InvalidAppKey", "The specified app key is invalid")
        if params["sign_method"].lower() != lazada.SIGN_METHOD:
            return _error("InvalidSignMethod", "The specified sign method is not supported")
        expected = lazada.sign(path, params, self.app_secret)
        if not secrets.compare_digest(expected.encode(), params["sign"].upper().encode()):
            return _error("IncompleteSignature",
                          "The request signature does not conform to platform standards")
        try:
            sent = datetime.fromtimestamp(int(params["timestamp"]) / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            sent = None
        if sent is None or abs(self.clock() - sent) > TIMESTAMP_WINDOW:
            return _error("InvalidTimestamp", "The specified timestamp is invalid or expired")
        if token and self.tokens.check(params["access_token"]) != "ok":
            return _error("IllegalAccessToken", "The specified access token is invalid or expired")
        return None

    def _refresh(self, params: dict[str, str]) -> Reply:
        if not self.tokens.refresh(params.get("refresh_token", "")):
            return _error("IllegalRefreshToken",
                          "The specified refresh token is invalid or expired")
        now = self.clock()
        return Reply.json({
            "code": "0", "request_id": secrets.token_hex(12),
            "access_token": self.tokens.access_token, "refresh_token": self.tokens.refresh_token,
            "expires_in": int((self.tokens.access_ends - now).total_seconds()),
            "refresh_expires_in": int((self.tokens.refresh_ends - now).total_seconds()),
            "country": "my", "account_platform": "seller_center",
            "country_user_info": [{"country": "my", "user_id": self.shop,
                                   "seller_id": self.shop, "short_code": "MY1SIM"}],
            "account": f"seller-{self.shop}@example.com"})

    def _order_of(self, params: dict[str, str]) -> SimOrder | Reply:
        order_id = params.get("order_id", "")
        if not order_id:
            return _missing("order_id")
        order = self.orders.get(order_id)
        if order is None:
            return _error("16", f"E016: \"{order_id}\" Invalid Order ID")
        return order

    def _get_order(self, params: dict[str, str]) -> Reply:
        order = self._order_of(params)
        return order if isinstance(order, Reply) else _ok(self.render(order))

    def _get_items(self, params: dict[str, str]) -> Reply:
        order = self._order_of(params)
        return order if isinstance(order, Reply) else _ok(self.items(order))

    def _get_orders(self, params: dict[str, str]) -> Reply:
        if not (params.get("created_after") or params.get("update_after")):
            return _missing("created_after")
        try:
            bounds = {name: _second(lazada.parse_time(params[name]))
                      for name in ("created_after", "created_before", "update_after",
                                   "update_before") if params.get(name)}
            offset = int(params.get("offset") or "0")
            limit = int(params.get("limit") or "100")
        except ValueError as exc:
            return _error("InvalidParameter", f"Invalid parameter: {exc}")
        if not (0 <= offset <= lazada.MAX_OFFSET and 1 <= limit <= MAX_LIMIT):
            return _error("InvalidParameter", "offset must be 0-5000 and limit 1-100")
        sort_by = params.get("sort_by", "created_at")
        direction = params.get("sort_direction", "DESC").upper()
        if sort_by not in ("created_at", "updated_at") or direction not in ("ASC", "DESC"):
            return _error("InvalidParameter", "Invalid sort_by or sort_direction")

        def inside(order: SimOrder) -> bool:
            created, updated = _second(order.created_at), _second(order.updated_at)
            limits = (("created_after", created, 1), ("created_before", created, -1),
                      ("update_after", updated, 1), ("update_before", updated, -1))
            return all((moment - bounds[name]) * sign >= timedelta(0)
                       for name, moment, sign in limits if name in bounds)

        status = params.get("status", "")
        found = [o for o in self.orders.values() if inside(o) and (
            not status or status in {self.item_status(o, u.item_id) for u in self.units(o)})]
        found.sort(key=lambda o: (o.created_at if sort_by == "created_at" else o.updated_at,
                                  o.external_id), reverse=direction == "DESC")
        page = found[offset:offset + limit]
        return _ok({"count": len(page), "countTotal": len(found),
                    "orders": [self._order(o, _iso) for o in page]})

    def _rts(self, params: dict[str, str]) -> Reply:
        for name in ("delivery_type", "order_item_ids", "shipment_provider", "tracking_number"):
            if not params.get(name, "").strip():
                return _missing(name)
        if params["delivery_type"] not in DELIVERY_TYPES:
            return _error("InvalidParameter", "Invalid delivery_type")
        try:
            wanted = [str(i) for i in json.loads(params["order_item_ids"])]
        except (ValueError, TypeError):
            return _error("InvalidParameter", "order_item_ids must be a JSON list")
        owners = {unit.item_id: order for order in self.orders.values()
                  for unit in self.units(order)}
        orders = {id(owners[i]): owners[i] for i in wanted if i in owners}
        if not wanted or len(orders) != 1 or any(i not in owners for i in wanted):
            return _error("InvalidParameter", "Invalid Order Item IDs")
        (order,) = orders.values()
        if any(self.item_status(order, i) not in RTS_STATUSES for i in wanted):
            return _error("73", "E073: All order items must have status Pending or Ready To "
                                f"Ship. ({','.join(wanted)})")
        provider = params["shipment_provider"]
        if provider not in lazada.CARRIERS.values():
            return _error("20", f"E020: \"{provider}\" Invalid shipment provider")
        number = params["tracking_number"].strip()
        if any(s.tracking_number == number for o in self.orders.values() if o is not order
               for s in o.shipments):
            return _error("63", f"E063: The tracking code {number} has already been used")
        self.record(order.external_id,
                    {"path": "/order/rts", "params": {k: v for k, v in params.items()
                                                      if k not in ("sign", "access_token")}},
                    SimShipment(carrier=provider, tracking_number=number, at=self.clock(),
                                line_ids=tuple(wanted)))
        self.notify(order, "shipped")
        return _ok({"order_items": [{"order_item_id": int(i), "purchase_order_id": "",
                                     "purchase_order_number": ""} for i in wanted]})


def _ok(data: Any) -> Reply:
    return Reply.json({"code": "0", "request_id": secrets.token_hex(12), "data": data})


def _error(code: str, message: str, kind: str = "ISV", http: int = 200) -> Reply:
    return Reply.json({"type": kind, "code": code, "message": message,
                       "request_id": secrets.token_hex(12)}, http)


def _missing(name: str) -> Reply:
    return _error("MissingParameter", f"The input parameter \"{name}\" that is mandatory for "
                                      "processing this request is not supplied")
