"""A simulated Shopee shop: the Open Platform v2 calls our adapter (`chalicelib.marketplaces.
shopee`) makes, and order status pushes.

Serves, under `url` (what `credentials()["api_base"]` names):
- `GET /api/v2/order/get_order_detail`: `order_sn_list` (comma separated, at most 50),
  `response_optional_fields` (optional fields are left out unless asked for, as Shopee does);
- `GET /api/v2/order/get_order_list`: `time_range_field` (create_time, update_time),
  `time_from` / `time_to` (unix s, inclusive, at most 15 days apart), `page_size` (1-100),
  `cursor` (an offset; `more` and `next_cursor` answer it), `order_status`,
  `response_optional_fields=order_status`;
- `POST /api/v2/logistics/ship_order`: `{"order_sn", "package_number"?, "non_integrated":
  {"tracking_number"}}`: only a READY_TO_SHIP order (else `logistics.ship_order_not_ready_to_
  ship`), an empty number is `logistics.error_param`; recorded, the order becomes SHIPPED and
  a push tells so;
- `GET /api/v2/logistics/get_tracking_number`: `order_sn`, `package_number`? -> the number.

Every call is checked as Shopee checks it: `partner_id`, `timestamp` (within 5 minutes of the
simulator's clock), `access_token`, `shop_id` and `sign` = lower-hex HMAC-SHA256(partner_key,
partner_id + path + timestamp + access_token + shop_id), recomputed here: a wrong one is 403
`{"error": "error_sign", "message": "Wrong sign."}`, a wrong token or shop 403 `error_auth`, an
access token past its end (4 hours, or `token_life`) 403 `invalid_acceess_token`.
- `POST /api/v2/auth/access_token/get?partner_id=&timestamp=&sign=` (the public signature:
  partner_id + path + timestamp) with `{"refresh_token", "partner_id", "shop_id"}`: the
  current refresh token (30 days) answers a new access token and a new refresh token; the one
  sent is refused from then on (403 `error_auth` "Invalid refresh_token.").

Pushes: code 3 (order_status_push) on every status change, `{"msg_id", "data": {"ordersn",
"status", "update_time", "completed_scenario", "items"}, "shop_id", "code": 3, "timestamp"}`,
header Authorization = lower-hex HMAC-SHA256(partner_key, callback URL + "|" + body), the callback
URL being the one the push is sent to. The source secret is "partner_key|callback_url".

Guesses and simplifications:
- Error HTTP statuses (403 for sign, token and shop, 400 for parameters), the wording of
  `error_param` messages, the `error_param` "Invalid timestamp." answer, and an unknown order_sn
  simply missing from `order_list` (no error).
- Which get_order_detail fields are optional (`OPTIONAL_FIELDS`, from the API reference's
  response_optional_fields list; the rest always come).
- The shop sells to the simulators' Chinese buyers: region and address region "CN", the order's
  currency; `full_address` is the complete address as Shopee writes it.
- After ship_order through a non-integrated channel the order shows SHIPPED at once (a real order
  may show PROCESSED until the carrier's first scan); no code 4 push (that is for Shopee's own
  logistics).
- item_id / model_id are stable numbers derived from the SKU; the listing is sorted by the chosen
  time, oldest first.
- The error for an ended access token (`invalid_acceess_token`, Shopee's own spelling as
  third-party code quotes it) and the refresh's HTTP statuses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.marketplaces import shopee
from devstack.marketplaces.base import (
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimOrder,
    SimShipment,
    TokenBook,
)

TIMESTAMP_WINDOW = timedelta(minutes=5)
ACCESS_LIFE = timedelta(hours=4)
REFRESH_LIFE = timedelta(days=30)
MAX_DETAIL = 50
MAX_PAGE_SIZE = 100
CHANNEL = "Others (Seller Own Fleet)"
_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"

STATUS_WORDS = {"unpaid": "UNPAID", "paid": "READY_TO_SHIP", "shipped": "SHIPPED",
                "cancelled": "CANCELLED"}
_LOGISTICS = {"UNPAID": "LOGISTICS_NOT_START", "READY_TO_SHIP": "LOGISTICS_READY",
              "SHIPPED": "LOGISTICS_PICKUP_DONE", "CANCELLED": "LOGISTICS_INVALID"}
OPTIONAL_FIELDS = frozenset({
    "buyer_user_id", "buyer_username", "estimated_shipping_fee", "recipient_address",
    "actual_shipping_fee", "goods_to_declare", "note", "note_update_time", "item_list",
    "pay_time", "dropshipper", "dropshipper_phone", "split_up", "buyer_cancel_reason",
    "cancel_by", "cancel_reason", "actual_shipping_fee_confirmed", "buyer_cpf_id",
    "fulfillment_flag", "pickup_done_time", "package_list", "shipping_carrier",
    "payment_method", "total_amount", "invoice_data", "checkout_shipping_carrier",
    "reverse_shipping_fee", "order_chargeable_weight_gram", "edt",
})


def _number(text: str, digits: int) -> int:
    """A stable `digits`-long number for a text (item and model ids from a SKU)."""
    low = int(10 ** (digits - 1))
    return low + int(hashlib.sha256(text.encode()).hexdigest(), 16) % (9 * low)


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


class ShopeeSimulator(MarketplaceSimulator):
    name = "shopee"

    def __init__(self, *, partner_id: str | None = None, partner_key: str | None = None,
                 access_token: str | None = None, refresh_token: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.partner_id = partner_id or str(self.rng.randrange(2_000_000, 2_999_999))
        self.partner_key = partner_key or secrets.token_hex(32)
        self.tokens = TokenBook(
            platform=self.name, shop=self.shop, clock=self.clock,
            access_token=access_token or secrets.token_hex(16),
            refresh_token=refresh_token or secrets.token_hex(16),
            access_life=self.token_life or ACCESS_LIFE, refresh_life=REFRESH_LIFE,
            make_access=lambda: secrets.token_hex(16), make_refresh=lambda: secrets.token_hex(16))

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    def new_id(self) -> str:
        day = self.clock().astimezone(UTC).strftime("%y%m%d")
        return day + "".join(self.rng.choice(_ALPHABET) for _ in range(8))

    def credentials(self) -> dict[str, str]:
        return {"partner_id": self.partner_id, "partner_key": self.partner_key,
                "access_token": self.access_token, "shop_id": self.shop, "api_base": self.url,
                **self.tokens.credentials()}

    def source(self) -> dict[str, Any]:
        return {"scheme": shopee.NAME, "secrets": [f"{self.partner_key}|{self.webhook_url}"]}

    @property
    def _shop_id(self) -> int | str:
        return int(self.shop) if self.shop.isdigit() else self.shop

    # The order ---------------------------------------------------------------------------------

    def package_number(self, order: SimOrder) -> str:
        return f"OFG{_number(order.external_id, 13)}"

    def render(self, order: SimOrder) -> dict[str, Any]:
        """get_order_detail's order with every optional field."""
        status = STATUS_WORDS[order.status]
        items = [{
            "item_id": _number(line.sku.rpartition("-")[0] or line.sku, 11),
            "item_name": line.title,
            "item_sku": line.sku.rpartition("-")[0] or line.sku,
            "model_id": _number(line.sku, 12),
            "model_name": "",
            "model_sku": line.sku,
            "model_quantity_purchased": line.quantity,
            "model_original_price": float(line.price),
            "model_discounted_price": float(line.price),
            "wholesale": False,
            "weight": 0.3,
            "add_on_deal": False,
            "main_item": False,
            "add_on_deal_id": 0,
            "promotion_type": "",
            "promotion_id": 0,
            "order_item_id": _number(line.line_id, 11),
            "promotion_group_id": 0,
            "image_info": {"image_url": ""},
            "product_location_id": ["CNZ"],
            "is_prescription_item": False,
            "is_b2c_owned_item": False,
        } for line in order.lines]
        cancelled = order.status == "cancelled"
        return {
            "order_sn": order.external_id,
            "region": "CN",
            "currency": order.currency,
            "cod": False,
            "total_amount": float(order.total),
            "order_status": status,
            "shipping_carrier": CHANNEL,
            "payment_method": "Credit/Debit Card",
            "estimated_shipping_fee": float(order.shipping_fee),
            "message_to_seller": "",
            "create_time": _unix(order.created_at),
            "update_time": _unix(order.updated_at),
            "days_to_ship": 3,
            "ship_by_date": _unix(order.created_at + timedelta(days=3)),
            "buyer_user_id": _number(order.phone, 9),
            "buyer_username": f"buyer{order.phone[-4:]}",
            "recipient_address": {
                "name": order.buyer_name, "phone": order.phone, "town": "",
                "district": order.district, "city": order.city, "state": order.province,
                "region": "CN", "zipcode": order.postcode,
                "full_address": f"{order.province}{order.city}{order.district}{order.street}",
            },
            "actual_shipping_fee": float(order.shipping_fee),
            "note": "",
            "note_update_time": 0,
            "item_list": items,
            "pay_time": _unix(order.paid_at) if order.paid_at else None,
            "dropshipper": None,
            "dropshipper_phone": None,
            "split_up": False,
            "buyer_cancel_reason": "Change of mind" if cancelled else "",
            "cancel_by": "buyer" if cancelled else "",
            "cancel_reason": "BUYER_REQUEST" if cancelled else "",
            "buyer_cpf_id": None,
            "fulfillment_flag": "fulfilled_by_local_seller",
            "pickup_done_time": _unix(order.shipments[-1].at) if order.shipments else 0,
            "package_list": [{
                "package_number": self.package_number(order),
                "logistics_status": _LOGISTICS[status],
                "shipping_carrier": CHANNEL,
                "item_list": [{"item_id": item["item_id"], "model_id": item["model_id"],
                               "model_quantity": item["model_quantity_purchased"],
                               "order_item_id": item["order_item_id"], "promotion_group_id": 0,
                               "product_location_id": "CNZ"} for item in items],
                "parcel_chargeable_weight_gram": 300 * sum(li.quantity for li in order.lines),
                "group_shipment_id": None,
            }],
            "invoice_data": None,
        }

    # Pushes ------------------------------------------------------------------------------------

    def notification(self, order: SimOrder, topic: str) -> Notification:
        now = self.clock()
        push = {
            "msg_id": secrets.token_hex(16),
            "data": {"completed_scenario": "", "items": [], "ordersn": order.external_id,
                     "status": STATUS_WORDS[order.status],
                     "update_time": _unix(order.updated_at)},
            "shop_id": self._shop_id,
            "code": shopee.ORDER_STATUS_PUSH,
            "timestamp": _unix(now),
        }
        body = json.dumps(push, separators=(",", ":")).encode()
        return Notification(body=body, headers={
            "Content-Type": "application/json",
            "Authorization": shopee.push_signature(self.partner_key, self.webhook_url, body),
        })

    # The API -----------------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if (request.method, request.path) == ("POST", shopee.REFRESH_PATH):
            return self._refresh(request)
        handlers = {
            ("GET", shopee.ORDER_DETAIL_PATH): self._detail,
            ("GET", shopee.ORDER_LIST_PATH): self._list,
            ("POST", shopee.SHIP_ORDER_PATH): self._ship,
            ("GET", shopee.TRACKING_NUMBER_PATH): self._tracking_number,
        }
        handler = handlers.get((request.method, request.path))
        if handler is None:
            return _error("error_not_found", "Not found.", 404)
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        with self.lock:
            return handler(request)

    def _authenticate(self, request: Request) -> Reply | None:
        query = request.query
        missing = [name for name in ("partner_id", "timestamp", "sign", "access_token",
                                     "shop_id") if not query.get(name)]
        if missing:
            return _error("error_param", f"Wrong parameters, detail: {missing[0]} is required.",
                          400)
        if query["partner_id"] != self.partner_id:
            return _error("error_param", "Invalid partner_id.", 400)
        expected = shopee.sign(query["partner_id"], request.path, query["timestamp"],
                               query["access_token"], query["shop_id"], self.partner_key)
        if not hmac.compare_digest(expected.encode(), query["sign"].encode()):
            return _error("error_sign", "Wrong sign.", 403)
        try:
            sent = datetime.fromtimestamp(int(query["timestamp"]), UTC)
        except (ValueError, OverflowError, OSError):
            sent = None
        if sent is None or abs(self.clock() - sent) > TIMESTAMP_WINDOW:
            return _error("error_param", "Invalid timestamp.", 400)
        judged = self.tokens.check(query["access_token"])
        if judged == "invalid" or query["shop_id"] != self.shop:
            return _error("error_auth", "Invalid access_token.", 403)
        if judged == "expired":
            return _error("invalid_acceess_token", "Invalid access_token.", 403)
        return None

    def _refresh(self, request: Request) -> Reply:
        """RefreshAccessToken: a public call, signed without token or shop."""
        query = request.query
        if query.get("partner_id") != self.partner_id:
            return _error("error_param", "Invalid partner_id.", 400)
        expected = shopee.public_sign(self.partner_id, request.path, query.get("timestamp", ""),
                                      self.partner_key)
        if not hmac.compare_digest(expected.encode(), query.get("sign", "").encode()):
            return _error("error_sign", "Wrong sign.", 403)
        try:
            sent = datetime.fromtimestamp(int(query["timestamp"]), UTC)
            body = request.json()
        except (KeyError, ValueError, OverflowError, OSError):
            return _error("error_param", "Invalid timestamp.", 400)
        if abs(self.clock() - sent) > TIMESTAMP_WINDOW:
            return _error("error_param", "Invalid timestamp.", 400)
        if not isinstance(body, dict) or str(body.get("shop_id")) != self.shop \
                or str(body.get("partner_id")) != self.partner_id:
            return _error("error_param", "Wrong parameters, detail: shop_id and partner_id are "
                                         "required.", 400)
        if not self.tokens.refresh(str(body.get("refresh_token") or "")):
            return _error("error_auth", "Invalid refresh_token.", 403)
        return Reply.json({
            "partner_id": int(self.partner_id), "refresh_token": self.tokens.refresh_token,
            "access_token": self.tokens.access_token,
            "expire_in": int((self.tokens.access_ends - self.clock()).total_seconds()),
            "request_id": secrets.token_hex(16), "error": "", "message": "",
            "shop_id": self._shop_id})

    def _detail(self, request: Request) -> Reply:
        wanted = [sn for sn in request.query.get("order_sn_list", "").split(",") if sn]
        if not wanted or len(wanted) > MAX_DETAIL:
            return _error("error_param", "order_sn_list should have 1 to 50 order_sn.", 400)
        optional = {f.strip() for f in request.query.get("response_optional_fields", "")
                    .split(",")}
        shown = []
        for sn in wanted:
            order = self.orders.get(sn)
            if order is not None:
                full = self.render(order)
                shown.append({k: v for k, v in full.items()
                              if k not in OPTIONAL_FIELDS or k in optional})
        return _ok({"order_list": shown}, warning=[])

    def _list(self, request: Request) -> Reply:
        query = request.query
        field = query.get("time_range_field", "")
        if field not in ("create_time", "update_time"):
            return _error("error_param", "time_range_field should be create_time or "
                                         "update_time.", 400)
        try:
            since = datetime.fromtimestamp(int(query["time_from"]), UTC)
            until = datetime.fromtimestamp(int(query["time_to"]), UTC)
            page_size = int(query.get("page_size", "0"))
            offset = int(query.get("cursor") or "0")
        except (KeyError, ValueError, OverflowError, OSError):
            return _error("error_param", "time_from, time_to, page_size and cursor must be "
                                         "numbers.", 400)
        if not since < until:
            return _error("error_param", "time_from should be earlier than time_to.", 400)
        if until - since > shopee.LIST_WINDOW:
            return _error("error_param", "The time range can not be more than 15 days.", 400)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return _error("error_param", "page_size should be between 1 and 100.", 400)

        def moment(order: SimOrder) -> int:
            return _unix(order.created_at if field == "create_time" else order.updated_at)

        status = query.get("order_status", "")
        found = sorted((o for o in self.orders.values()
                        if _unix(since) <= moment(o) <= _unix(until)
                        and status in ("", STATUS_WORDS[o.status])),
                       key=lambda o: (moment(o), o.external_id))
        page = found[offset:offset + page_size]
        more = offset + page_size < len(found)
        show_status = "order_status" in query.get("response_optional_fields", "").split(",")
        listed = [{"order_sn": o.external_id,
                   **({"order_status": STATUS_WORDS[o.status]} if show_status else {})}
                  for o in page]
        return _ok({"more": more, "next_cursor": str(offset + page_size) if more else "",
                    "order_list": listed})

    def _ship(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("order_sn"):
            return _error("error_param", "Wrong parameters, detail: order_sn is required.", 400)
        order = self.orders.get(str(body["order_sn"]))
        if order is None:
            return _error("error_not_found", "Order not found.", 400)
        package = body.get("package_number")
        if package not in (None, "", self.package_number(order)):
            return _error("logistics.package_number_invalid", "Invalid package_number.", 400)
        if order.status != "paid" or order.shipments:
            return _error(shopee.NOT_READY_TO_SHIP, "The order is not ready to ship.", 400)
        non_integrated = body.get("non_integrated")
        number = str(non_integrated.get("tracking_number") or "").strip() \
            if isinstance(non_integrated, dict) else ""
        if not number:
            return _error("logistics.error_param",
                          "Tracking Number Error. Please input a valid tracking number.", 400)
        self.record(order.external_id, {"path": request.path, "body": body},
                    SimShipment(carrier=CHANNEL, tracking_number=number, at=self.clock()))
        self.notify(order, "shipped")
        return _ok({})

    def _tracking_number(self, request: Request) -> Reply:
        order = self.orders.get(request.query.get("order_sn", ""))
        if order is None:
            return _error("error_not_found", "Order not found.", 400)
        number = order.shipments[-1].tracking_number if order.shipments else ""
        return _ok({"tracking_number": number, "first_mile_tracking_number": "", "hint": ""})


def _ok(response: Any, **extra: Any) -> Reply:
    return Reply.json({"request_id": secrets.token_hex(16), "error": "", "message": "",
                       "response": response, **extra})


def _error(code: str, message: str, status: int) -> Reply:
    return Reply.json({"request_id": secrets.token_hex(16), "error": code, "message": message},
                      status)
