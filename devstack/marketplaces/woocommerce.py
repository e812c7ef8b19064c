"""A simulated WooCommerce store: the WP REST API v3 order endpoints, the Shipment Tracking
extension, and order webhooks, as our adapter (`chalicelib.marketplaces.woocommerce`) uses them.

Serves, under `url` (the store's site root, what `credentials()["store_url"]` names):
- `GET /wp-json/wc/v3/orders/{id}`: the order (404 `woocommerce_rest_shop_order_invalid_id`);
- `GET /wp-json/wc/v3/orders`: `modified_after` / `modified_before` (both exclusive, whole
  seconds; UTC with `dates_are_gmt=true`, else the store's time, China), `orderby` (date, id,
  modified), `order` (asc, desc), `per_page` (1-100, else 400 `rest_invalid_param`), `page`;
- `GET` / `POST /wp-json/wc-shipment-tracking/v3/orders/{id}/shipment-trackings`: the
  extension's items; a POST (`tracking_provider` or `custom_tracking_provider`,
  `custom_tracking_link`, `tracking_number` (required: 400 `rest_missing_callback_param`),
  `date_shipped`) answers 201 with the item, is recorded, and completes a paid order (which fires
  `order.updated`).

Authentication as `WC_REST_Authentication` does over SSL: `consumer_key`/`consumer_secret` in the
query, else HTTP Basic. A known key with a wrong secret is 401 `woocommerce_rest_authentication_
error` "Consumer secret is invalid."; no or an unknown key leaves the request anonymous, which the
permission check refuses with 401 `woocommerce_rest_cannot_view` (GET) or `..._cannot_create`
(POST).

Webhooks (`WC_Webhook::deliver`): one webhook per topic (`order.created` for an order's first
notification, `order.updated` after), the body `wp_json_encode` of the order built when the
delivery is SENT (a held `order.created` shows the order as it is by then), signed
X-WC-Webhook-Signature = base64(HMAC-SHA256(webhook secret, body)), with X-WC-Webhook-Source (the
home URL), -Topic, -Resource, -Event, -ID and a fresh -Delivery-ID per delivery.

Guesses and simplifications:
- The site's home URL is `https://{shop}/` (its identity in webhooks and `_links`) while its API
  answers at `url`, as behind a proxy. Basic authentication is accepted over plain http here
  (real WooCommerce wants OAuth 1.0a without SSL); the adapter allows http only on loopback.
- Order ids are small sequential numbers (WordPress post ids), `number` is the simulator's order
  number (as with a sequential order numbers plugin; core shows the id).
- Statuses: unpaid pending, paid processing, shipped completed, cancelled cancelled. Adding
  tracking completes a processing order (what merchants and most tracking plugins do); the
  extension itself changes no status. Tracking on another status is stored, nothing more.
- X-WC-Webhook-Delivery-ID is a random 32-hex id (WooCommerce hashes the webhook id and time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chalicelib.core.signatures import hmac_sha256
from chalicelib.marketplaces import woocommerce as wc
from devstack.marketplaces.base import (
    Fate,
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimOrder,
    SimShipment,
)

ORDERS_PATH = "/wp-json/wc/v3/orders"
_ORDER = re.compile(r"/wp-json/wc/v3/orders/(\d+)")
_TRACKINGS = re.compile(r"/wp-json/wc-shipment-tracking/v3/orders/(\d+)/shipment-trackings")
WC_VERSION = "9.4.2"
WP_VERSION = "6.7.1"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
MAX_PER_PAGE = 100
WEBHOOK_IDS = {"order.created": 11, "order.updated": 12}

STATUS_WORDS = {"unpaid": "pending", "paid": "processing", "shipped": "completed",
                "cancelled": "cancelled"}


def _error(code: str, message: str, status: int, **data: Any) -> Reply:
    return Reply.json({"code": code, "message": message, "data": {"status": status, **data}},
                      status)


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _gmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def _local(moment: datetime) -> str:
    return moment.astimezone(wc.CHINA).strftime(TIME_FORMAT)


def _state_code(province: str) -> str:
    """浙江省 -> CN12 (WooCommerce's CN state codes name provinces without 省/市/自治区)."""
    return next((code for code, name in wc.CN_STATES.items() if province.startswith(name)), "")


def _product_id(sku: str) -> int:
    return int(hashlib.sha256(sku.encode()).hexdigest()[:6], 16) % 9000 + 100


def _php_json(payload: Any) -> bytes:
    """As `wp_json_encode` writes it: non-ASCII as \\uXXXX, slashes escaped."""
    return json.dumps(payload, separators=(",", ":")).replace("/", "\\/").encode()


class WooCommerceSimulator(MarketplaceSimulator):
    name = "woocommerce"

    def __init__(self, *, consumer_key: str | None = None, consumer_secret: str | None = None,
                 webhook_secret: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumer_key = consumer_key or f"ck_{secrets.token_hex(20)}"
        self.consumer_secret = consumer_secret or f"cs_{secrets.token_hex(20)}"
        self.webhook_secret = webhook_secret or secrets.token_urlsafe(24)
        self.trackings: dict[str, list[dict[str, Any]]] = {}
        self._announced: set[str] = set()  # orders whose order.created was built
        self._first_id = self.rng.randrange(700, 9000)

    @property
    def home_url(self) -> str:
        return self.shop if "//" in self.shop else f"https://{self.shop}/"

    def new_id(self) -> str:
        return str(self._first_id + self._sequence)

    def credentials(self) -> dict[str, str]:
        return {"store_url": self.url, "consumer_key": self.consumer_key,
                "consumer_secret": self.consumer_secret}

    def source(self) -> dict[str, Any]:
        return {"scheme": wc.NAME, "secrets": [self.webhook_secret]}

    # The order ---------------------------------------------------------------------------------

    def render(self, order: SimOrder) -> dict[str, Any]:
        home = self.home_url
        surname, given = order.buyer_name[:1], order.buyer_name[1:]
        state = _state_code(order.province)
        paid = order.paid_at is not None and order.status != "unpaid"
        completed = order.shipments[-1].at if order.status == "shipped" and order.shipments \
            else None
        place = {"first_name": given, "last_name": surname, "company": "",
                 "address_1": f"{order.district}{order.street}", "address_2": "",
                 "city": order.city, "state": state, "postcode": order.postcode, "country": "CN"}
        items: list[dict[str, Any]] = [{
            "id": int(line.line_id), "name": line.title, "product_id": _product_id(line.sku),
            "variation_id": 0, "quantity": line.quantity, "tax_class": "",
            "subtotal": _money(line.price * line.quantity), "subtotal_tax": "0.00",
            "total": _money(line.price * line.quantity), "total_tax": "0.00", "taxes": [],
            "meta_data": [], "sku": line.sku, "price": float(line.price),
            "image": {"id": "", "src": ""}, "parent_name": None,
        } for line in order.lines]
        return {
            "id": int(order.external_id),
            "parent_id": 0,
            "status": STATUS_WORDS[order.status],
            "currency": order.currency,
            "version": WC_VERSION,
            "prices_include_tax": False,
            "date_created": _local(order.created_at),
            "date_modified": _local(order.updated_at),
            "discount_total": "0.00",
            "discount_tax": "0.00",
            "shipping_total": _money(order.shipping_fee),
            "shipping_tax": "0.00",
            "cart_tax": "0.00",
            "total": _money(order.total),
            "total_tax": "0.00",
            "customer_id": 0,
            "order_key": f"wc_order_{hashlib.sha256(order.external_id.encode()).hexdigest()[:12]}",
            "billing": {**place, "email": f"buyer{order.phone[-4:]}@example.cn",
                        "phone": order.phone},
            "shipping": {**place, "phone": order.phone},
            "payment_method": "alipay",
            "payment_method_title": "支付宝",
            "transaction_id": f"2026{order.external_id:0>24}" if paid else "",  # Alipay's
            "customer_ip_address": "203.0.113.24",
            "customer_user_agent": "Mozilla/5.0",
            "created_via": "checkout",
            "customer_note": "",
            "date_completed": _local(completed) if completed else None,
            "date_paid": _local(order.paid_at) if paid and order.paid_at else None,
            "cart_hash": "",
            "number": order.number,
            "meta_data": [],
            "line_items": items,
            "tax_lines": [],
            "shipping_lines": [{"id": int(order.external_id) * 10, "method_title": "Flat rate",
                                "method_id": "flat_rate", "instance_id": "1",
                                "total": _money(order.shipping_fee), "total_tax": "0.00",
                                "taxes": [], "meta_data": []}],
            "fee_lines": [],
            "coupon_lines": [],
            "refunds": [],
            "payment_url": f"{home}checkout/order-pay/{order.external_id}/",
            "is_editable": order.status == "unpaid",
            "needs_payment": order.status == "unpaid",
            "needs_processing": True,
            "date_created_gmt": _gmt(order.created_at),
            "date_modified_gmt": _gmt(order.updated_at),
            "date_completed_gmt": _gmt(completed) if completed else None,
            "date_paid_gmt": _gmt(order.paid_at) if paid and order.paid_at else None,
            "currency_symbol": "¥" if order.currency == "CNY" else order.currency,
            "_links": {
                "self": [{"href": f"{home}wp-json/wc/v3/orders/{order.external_id}"}],
                "collection": [{"href": f"{home}wp-json/wc/v3/orders"}],
            },
        }

    # Webhooks ----------------------------------------------------------------------------------

    def notification(self, order: SimOrder, topic: str) -> Notification:
        with self.lock:
            first = order.external_id not in self._announced
            self._announced.add(order.external_id)
        return self._webhook(order, "order.created" if first else "order.updated")

    def _webhook(self, order: SimOrder, topic: str) -> Notification:
        body = _php_json(self.render(order))
        signature = base64.b64encode(hmac_sha256(self.webhook_secret.encode(), body)).decode()
        return Notification(body=body, headers={
            "Content-Type": "application/json",
            "User-Agent": f"WooCommerce/{WC_VERSION} Hookshot (WordPress/{WP_VERSION})",
            "X-WC-Webhook-Source": self.home_url,
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": topic.partition(".")[0],
            "X-WC-Webhook-Event": topic.partition(".")[2],
            "X-WC-Webhook-Signature": signature,
            "X-WC-Webhook-ID": str(WEBHOOK_IDS.get(topic, 10)),
            "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
        })

    def _deliver(self, note: Notification, fate: Fate) -> None:
        # WooCommerce builds the payload when it delivers: the order as it is now.
        with self.lock:
            order = self.orders.get(fate.external_id)
            if order is not None:
                note = self._webhook(order, note.headers["X-WC-Webhook-Topic"])
        super()._deliver(note, fate)

    # The API -----------------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        if request.method == "GET" and request.path.rstrip("/") == ORDERS_PATH:
            return self._list(request)
        match = _ORDER.fullmatch(request.path)
        if match and request.method == "GET":
            with self.lock:
                order = self.orders.get(match.group(1))
                if order is None:
                    return _error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
                return Reply.json(self.render(order))
        match = _TRACKINGS.fullmatch(request.path)
        if match and request.method in ("GET", "POST"):
            with self.lock:
                if match.group(1) not in self.orders:
                    return _error("woocommerce_rest_order_invalid_id", "Order ID is invalid.",
                                  404)
                if request.method == "GET":
                    return Reply.json(self.trackings.get(match.group(1), []))
                return self._add_tracking(match.group(1), request)
        return _error("rest_no_route", "No route was found matching the URL and request method.",
                      404)

    def _authenticate(self, request: Request) -> Reply | None:
        key, secret = request.query.get("consumer_key", ""), request.query.get(
            "consumer_secret", "")
        if not (key and secret):
            key, secret = _basic(request.headers.get("authorization", ""))
        if key and secret and hmac.compare_digest(key.encode(), self.consumer_key.encode()):
            if hmac.compare_digest(secret.encode(), self.consumer_secret.encode()):
                return None
            return _error("woocommerce_rest_authentication_error",
                          "Consumer secret is invalid.", 401)
        # Anonymous: the endpoint's permission check refuses.
        if request.method == "GET":
            return _error("woocommerce_rest_cannot_view",
                          "Sorry, you cannot list resources.", 401)
        return _error("woocommerce_rest_cannot_create",
                      "Sorry, you are not allowed to create resources.", 401)

    def _list(self, request: Request) -> Reply:
        query = request.query
        try:
            per_page = int(query.get("per_page", "10"))
            page = int(query.get("page", "1"))
        except ValueError:
            return _error("rest_invalid_param", "Invalid parameter(s): per_page, page", 400)
        if not 1 <= per_page <= MAX_PER_PAGE:
            return _error("rest_invalid_param", "Invalid parameter(s): per_page", 400,
                          params={"per_page": "per_page must be between 1 (inclusive) and "
                                                  "100 (inclusive)"})
        gmt = query.get("dates_are_gmt", "").lower() in ("1", "true")
        try:
            after = _bound(query.get("modified_after"), gmt)
            before = _bound(query.get("modified_before"), gmt)
        except ValueError:
            return _error("rest_invalid_param",
                          "Invalid parameter(s): modified_after, modified_before", 400)
        orderby = query.get("orderby", "date")
        sort_keys = {"date": lambda o: (o.created_at, int(o.external_id)),
                     "id": lambda o: (int(o.external_id),),
                     "modified": lambda o: (o.updated_at, int(o.external_id))}
        if orderby not in sort_keys or query.get("order", "desc") not in ("asc", "desc"):
            return _error("rest_invalid_param", "Invalid parameter(s): orderby, order", 400)
        with self.lock:
            found = [o for o in self.orders.values()
                     if (after is None or _second(o.updated_at) > after)
                     and (before is None or _second(o.updated_at) < before)]
            found.sort(key=sort_keys[orderby], reverse=query.get("order", "desc") == "desc")
            start = (max(page, 1) - 1) * per_page
            return Reply.json([self.render(o) for o in found[start:start + per_page]])

    def _add_tracking(self, external_id: str, request: Request) -> Reply:
        content_type = request.headers.get("content-type", "")
        try:
            fields = request.json() if "json" in content_type else request.form()
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return _error("rest_invalid_json", "Invalid JSON body passed.", 400)
        number = str(fields.get("tracking_number") or "").strip()
        if not number:
            return _error("rest_missing_callback_param", "Missing parameter(s): tracking_number",
                          400, params=["tracking_number"])
        provider = str(fields.get("custom_tracking_provider") or fields.get("tracking_provider")
                       or "")
        shipped_on = str(fields.get("date_shipped") or self.clock().astimezone(wc.CHINA).date())
        tracking_id = uuid.uuid4().hex
        base = f"{self.home_url}wp-json/wc-shipment-tracking/v3/orders/{external_id}"
        item = {
            "tracking_id": tracking_id,
            "tracking_provider": provider,
            "tracking_link": str(fields.get("custom_tracking_link") or ""),
            "tracking_number": number,
            "date_shipped": shipped_on,
            "_links": {
                "self": [{"href": f"{base}/shipment-trackings/{tracking_id}"}],
                "collection": [{"href": f"{base}/shipment-trackings"}],
                "up": [{"href": f"{self.home_url}wp-json/wc/v3/orders/{external_id}"}],
            },
        }
        order = self.orders[external_id]
        self.trackings.setdefault(external_id, []).append(item)
        completes = order.status == "paid"
        self.record(external_id, {"path": request.path, "body": fields},
                    SimShipment(carrier=provider, tracking_number=number, at=self.clock())
                    if completes else None)
        if completes:
            self.notify(order, "shipped")
        return Reply.json(item, 201)


def _basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    key, _, secret = decoded.partition(":")
    return key, secret


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _bound(text: str | None, gmt: bool) -> datetime | None:
    """A date query bound (ISO 8601); without an offset, UTC if `dates_are_gmt`, else the
    store's time zone."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC if gmt else wc.CHINA)
    return _second(moment)
