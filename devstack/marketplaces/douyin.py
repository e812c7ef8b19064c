"""A simulated Douyin shop (抖店): the open API our adapter calls and the message pushes.

Serves (POST, the gateway's form: `/<method with "/" for ".">?app_key=&method=&access_token=&
timestamp=&v=2&sign_method=&sign=`, body = param_json):
- `/order/orderDetail` `{"shop_order_id"}` -> data.shop_order_detail (also the writeback's
  existing check);
- `/order/searchList` `{"update_time_start", "update_time_end", "page", "size", ...}` -> data
  {page, size, total, shop_order_list} (update times inclusive, oldest change first);
- `/order/logisticsAdd` `{"order_id", "company_code", "logistics_code"}`: the whole order
  ships (recorded), then a TradeSellerShip push;
- `/logistics/newCreateOrder`, `/logistics/waybillApply`, `/logistics/cancelOrder`: the
  e-waybill (one number per order and pack_id, the receiver checked against the order's
  ciphertexts; opaque print data; numbers given back);
- `/token/refresh` `{"grant_type": "refresh_token", "refresh_token"}` (no access token): the
  current refresh token (14 days) answers data {access_token, expires_in (seconds),
  refresh_token, scope, shop_id, shop_name, authority_id, auth_subject_type} and is refused from
  then on.

Every call is verified as the gateway does: the app key, the method against the path, v=2, the
timestamp within ±300 s, the sign recomputed over the received body (hmac-sha256, or md5 when
`sign_method` is absent or "md5"), then the access token (7 days, or `token_life`; refused
once ended). A refusal is HTTP 200 with the
platform's error shape `{"code", "msg", "sub_code", "sub_msg", "log_id", "data": {}}`
(40001 missing parameter, 40003 signature / token / timestamp, 40004 invalid parameter, 50002
business failure).

Pushes: POST to the webhook, body a JSON array of messages `{"tag", "msg_id", "data": "<JSON
text>"}` (one per push here), headers `event-sign` = md5 hex(app_key + body + app_secret),
`app-id`. Tags: created 100 TradeCreate, paid 101 TradePaid, cancelled 106 TradeCanceled,
shipped 102 TradeSellerShip. The push is thin: the adapter re-fetches orderDetail.

Order ids are 19-digit numbers, sku order ids the parent id + n (as in recorded answers).
Receiver name, phone and street come encrypted (`encrypt_*`, the plain fields masked), in a
ciphertext of the platform's shape that `decrypt` reverses (the real one needs
order.batchDecrypt); `encrypt_receiver=False` gives them in plain text instead.

Guesses: error sub codes and texts come from a third-party SDK's table (isv.signature-invalid,
isv.access-token-no-existed, isv.timestamp-invalid ...) and the recorded fixtures (logisticsAdd
duplicate / unknown company, orderDetail not found); the refusals of logisticsAdd for an unpaid
or cancelled order, the push data of tag 102, and the sign being checked over the body exactly
as received are ours; so are the refusals of an ended access token (isv.access-token-expired)
and of a spent or unknown refresh token (isv.refresh-token-no-existed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.marketplaces import douyin
from devstack.labels import PlatformWaybills
from devstack.marketplaces.base import (
    NO_FAULTS,
    WAYBILL_APP_LIFE,
    Faults,
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimOrder,
    SimShipment,
    TokenBook,
)

CLOCK_SKEW = 300  # seconds the gateway accepts either way
ACCESS_LIFE = timedelta(days=7)
REFRESH_LIFE = timedelta(days=14)
_METHODS = ("order.orderDetail", "order.searchList", "order.logisticsAdd", douyin.REFRESH_METHOD,
            "logistics.newCreateOrder", "logistics.waybillApply", "logistics.cancelOrder")
MAX_PAGE_SIZE = 100
# Simulator status -> (order_status, its text).
_STATUS: dict[str, tuple[int, str]] = {
    "unpaid": (1, "待支付"),
    "paid": (2, "备货中"),
    "shipped": (3, "已发货"),
    "cancelled": (4, "已取消"),
}
_TAGS = {"created": "100", "paid": "101", "shipped": "102", "cancelled": "106"}
_COMPANY_NAMES = {"shentong": "申通快递", "shunfeng": "顺丰速运", "yuantong": "圆通速递",
                  "zhongtong": "中通快递", "yunda": "韵达快递", "jd": "京东物流", "ems": "中国邮政"}
_KEY_BLOB = "CgkIARCtHCABKAESPgo8"  # the key-info part every ciphertext carries


class DouyinSimulator(MarketplaceSimulator):
    """A Douyin shop: orders, its open API on a local port, signed pushes."""

    name = "douyin"

    def __init__(self, *, shop: str, webhook_url: str, faults: Faults = NO_FAULTS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 app_key: str | None = None, app_secret: str | None = None,
                 access_token: str | None = None, encrypt_receiver: bool = True,
                 refresh_token: str | None = None, token_life: timedelta | None = None) -> None:
        if not shop.isdigit():
            raise ValueError("a Douyin shop id is a number")
        super().__init__(shop=shop, webhook_url=webhook_url, faults=faults, clock=clock,
                         token_life=token_life)
        # The app key is a 19-digit number (the gateway refuses others).
        self.app_key = app_key or str(7 * 10**18 + secrets.randbelow(10**18))
        self.app_secret = app_secret or secrets.token_hex(16)
        self.tokens = TokenBook(
            platform=self.name, shop=self.shop, clock=self.clock,
            access_token=access_token or secrets.token_hex(16),
            refresh_token=refresh_token or secrets.token_hex(16),
            access_life=self.token_life or ACCESS_LIFE, refresh_life=REFRESH_LIFE,
            make_access=lambda: secrets.token_hex(16), make_refresh=lambda: secrets.token_hex(16))
        self.encrypt_receiver = encrypt_receiver
        self.waybills = PlatformWaybills(prefix="7735")

    # Ids ----------------------------------------------------------------------------------

    def new_id(self) -> str:
        # Leave room for the sku order ids (parent + n) within 19 digits.
        return str(self.rng.randrange(6_900_000_000_000_000_000, 6_990_000_000_000_000_000, 10))

    def new_line_id(self, external_id: str, n: int) -> str:
        return str(int(external_id) + n)

    # Configuration ------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    def credentials(self) -> dict[str, str]:
        return {"app_key": self.app_key, "app_secret": self.app_secret,
                "access_token": self.access_token, "shop_id": self.shop, "api_base": self.url,
                **self.tokens.credentials()}

    def waybill_credentials(self, life: timedelta = WAYBILL_APP_LIFE) -> dict[str, str]:
        """The e-waybill channel's account as the printing app holds it: the same app, an
        access token the shop granted it (its own life, not the shop's short one)."""
        return {"app_key": self.app_key, "app_secret": self.app_secret,
                "access_token": self.tokens.grant(life), "shop_id": self.shop,
                "api_base": self.url}

    def source(self) -> dict[str, Any]:
        return {"scheme": "douyin", "secrets": [f"{self.app_key}:{self.app_secret}"]}

    # Wire shapes --------------------------------------------------------------------------

    def render(self, order: SimOrder) -> dict[str, Any]:
        """The order as orderDetail (and, in short, searchList) shows it."""
        status, text = _STATUS[order.status]
        created, updated = _ts(order.created_at), _ts(order.updated_at)
        paid = _ts(order.paid_at) if order.paid_at else 0
        fen_total = _fen(order.total)
        skus = [{
            "order_id": line.line_id, "parent_order_id": order.external_id, "order_level": 3,
            "order_status": status, "order_status_desc": text, "main_status": status,
            "create_time": created, "update_time": updated, "pay_time": paid,
            "goods_type": 0, "product_name": line.title, "spec": [], "code": line.sku,
            "out_sku_id": "", "origin_amount": _fen(line.price), "item_num": line.quantity,
            "sum_amount": _fen(line.price) * line.quantity,
            "pay_amount": _fen(line.price) * line.quantity, "pre_sale_type": 0,
        } for line in order.lines]
        all_skus = [line.line_id for line in order.lines]
        logistics = [{
            "tracking_no": shipment.tracking_number, "company": shipment.carrier,
            "company_name": _COMPANY_NAMES.get(shipment.carrier, shipment.carrier),
            "ship_time": _ts(shipment.at),
            "delivery_id": str(int(order.external_id) + 7 * 10**17 + n),
            "product_info": [{"sku_order_id": line.line_id, "product_name": line.title,
                              "outer_sku_id": line.sku, "product_count": line.quantity,
                              "price": _fen(line.price)}
                             for line in order.lines
                             if line.line_id in (shipment.line_ids or all_skus)],
        } for n, shipment in enumerate(order.shipments, start=1)]
        address = order.street
        return {
            "shop_id": int(self.shop), "order_id": order.external_id, "order_level": 2,
            "order_status": status, "order_status_desc": text,
            "main_status": status, "main_status_desc": text,
            "create_time": created, "update_time": updated, "pay_time": paid,
            "order_amount": fen_total, "pay_amount": fen_total,
            "post_amount": _fen(order.shipping_fee), "promotion_amount": 0, "tax_amount": 0,
            "buyer_words": "",
            **({"post_receiver": order.buyer_name[:1] + "*",
                "encrypt_post_receiver": self.encrypt(order.buyer_name),
                "post_tel": order.phone[:1] + "*" * (len(order.phone) - 1),
                "encrypt_post_tel": self.encrypt(order.phone, phone=True)}
               if self.encrypt_receiver else
               {"post_receiver": order.buyer_name, "post_tel": order.phone}),
            "post_addr": {
                "province": {"name": order.province, "id": ""},
                "city": {"name": order.city, "id": ""},
                "town": {"name": order.district, "id": ""},
                "street": {"name": "", "id": ""},
                **({"detail": address[:3] + "***", "encrypt_detail": self.encrypt(address)}
                   if self.encrypt_receiver else {"detail": address}),
            },
            "doudian_open_id": "1@#" + base64.b64encode(
                hashlib.sha256(order.phone.encode()).digest()[:12]).decode(),
            "ship_time": _ts(order.shipments[0].at) if order.shipments else 0,
            "logistics_info": logistics,
            "sku_order_list": skus,
        }

    @staticmethod
    def encrypt(plain: str, *, phone: bool = False) -> str:
        """A ciphertext of the platform's shape (`#index#cipher*key#1##`, phones with `$`);
        here the cipher part is only base64, so `decrypt` can give the text back."""
        mark = "$" if phone else "#"
        index = base64.b64encode(plain[-4:].encode()).decode()
        cipher = base64.b64encode(plain.encode()).decode()
        return f"{mark}{index}{mark}{cipher}*{_KEY_BLOB}{mark}1{mark}{mark}"

    @staticmethod
    def decrypt(text: str) -> str:
        """What order.batchDecrypt would answer for a ciphertext from `encrypt`."""
        mark = text[:1]
        cipher = text.split(mark)[2].split("*")[0]
        return base64.b64decode(cipher).decode()

    def notification(self, order: SimOrder, topic: str) -> Notification:
        tag = _TAGS[topic]
        status, _ = _STATUS[order.status]
        data: dict[str, Any] = {"biz": 2, "order_status": status, "order_type": 0,
                                "p_id": int(order.external_id),
                                "s_ids": [int(line.line_id) for line in order.lines],
                                "shop_id": int(self.shop)}
        if topic == "created":
            data["create_time"] = _ts(order.created_at)
        elif topic == "paid":
            data.update(pay_amount=_fen(order.total), pay_time=_ts(order.paid_at or
                                                                  order.updated_at), pay_type=1)
        elif topic == "cancelled":
            data.update(cancel_reason="不想要了",
                        cancel_time=_ts(order.cancelled_at or order.updated_at))
        else:
            data["update_time"] = _ts(order.updated_at)
        message = {"tag": tag,
                   "msg_id": f"{order.external_id}:0:{tag}:{self.rng.randrange(10**18, 10**19)}",
                   "data": json.dumps(data, separators=(",", ":"), ensure_ascii=False)}
        body = json.dumps([message], separators=(",", ":"), ensure_ascii=False).encode()
        sign = hashlib.md5(self.app_key.encode() + body + self.app_secret.encode()).hexdigest()
        return Notification(body, {"Content-Type": "application/json", "event-sign": sign,
                                   "app-id": self.app_key})

    # The open API -------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if request.method != "POST":
            return _error(40003, "非法的参数", "isv.parameter-invalid", "仅支持 POST", request)
        refused = self._verify(request)
        if refused is not None:
            return refused
        try:
            params = json.loads(request.body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            params = None
        if not isinstance(params, dict):
            return _error(40003, "非法的参数", "isv.parameter-format-invalid",
                          "业务参数json解析失败", request)
        handlers: dict[str, Callable[[dict[str, Any], Request], Reply]] = {
            "order.orderDetail": self._order_detail,
            "order.searchList": self._search_list,
            "order.logisticsAdd": self._logistics_add,
            douyin.REFRESH_METHOD: self._refresh,
            "logistics.newCreateOrder": self._waybill_create,
            "logistics.waybillApply": self._waybill_apply,
            "logistics.cancelOrder": self._waybill_cancel,
        }
        return handlers[request.query["method"]](params, request)

    def _verify(self, request: Request) -> Reply | None:
        """The gateway's checks, in its order; None when the call may proceed."""
        query = request.query
        method = query.get("method", "")
        if request.path != "/" + method.replace(".", "/") or method not in _METHODS:
            return _error(70000, "接口服务已下线", "isp.api-service-off", "API不存在或API已下线",
                          request)
        token = method != douyin.REFRESH_METHOD  # the refresh takes no access token
        for name, sub_code, text in (
                ("app_key", "isv.app-id-missing", "认证失败，app_key不存在"),
                ("sign", "isv.signature-missing", "获取签名失败，请根据文档确保参数拼装正确"),
                ("access_token", "isv.access-token-missing", "认证失败，access_token不能为空"),
                ("timestamp", "isv.parameter-missing", "缺少参数 timestamp"),
                ("v", "isv.parameter-missing", "缺少参数 v")):
            if not query.get(name) and (token or name != "access_token"):
                return _error(40001, "缺少必选参数", sub_code, text, request)
        if query["app_key"] != self.app_key:
            return _error(40001, "缺少必选参数", "isv.app-id-missing", "认证失败，app_key不存在",
                          request)
        if query["v"] != douyin.API_VERSION:
            return _error(40003, "非法的参数", "isv.parameter-invalid", "v 必须为 2", request)
        if not query["timestamp"].isdigit():
            return _error(40003, "非法的参数", "isv.timestamp-format-error", "时间戳格式错误",
                          request)
        if abs(int(query["timestamp"]) - self.clock().timestamp()) > CLOCK_SKEW:
            return _error(40003, "非法的参数", "isv.timestamp-invalid", "时间戳不合法", request)
        if not hmac.compare_digest(self._sign(query, request.body), query["sign"].lower()):
            return _error(40003, "非法的参数", "isv.signature-invalid", "签名校验失败", request)
        judged = self.tokens.check(query["access_token"]) if token else "ok"
        if judged == "invalid":
            return _error(40003, "非法的参数", "isv.access-token-no-existed",
                          "access_token不存在，请使用最新的access_token访问", request)
        if judged == "expired":
            return _error(40003, "非法的参数", "isv.access-token-expired",
                          "access_token已过期，请刷新access_token", request)
        return None

    def _refresh(self, params: dict[str, Any], request: Request) -> Reply:
        if params.get("grant_type") != "refresh_token":
            return _error(40004, "非法的参数", "isv.parameter-invalid",
                          "grant_type 必须为 refresh_token", request)
        if not self.tokens.refresh(str(params.get("refresh_token") or "")):
            return _error(40003, "非法的参数", "isv.refresh-token-no-existed",
                          "refresh_token不存在或已过期，请重新授权", request)
        return _success({
            "access_token": self.tokens.access_token,
            "expires_in": int((self.tokens.access_ends - self.clock()).total_seconds()),
            "refresh_token": self.tokens.refresh_token, "scope": "SCOPE",
            "shop_id": int(self.shop), "shop_name": "模拟抖店", "authority_id": self.shop,
            "auth_subject_type": "MiniShop"}, request)

    def _sign(self, query: dict[str, str], body: bytes) -> str:
        """The sign the gateway expects for these parameters and exactly this body."""
        param_json = body.decode("utf-8", "replace")
        if query.get("sign_method", "md5") == "hmac-sha256":
            return douyin.sign(self.app_key, self.app_secret, query["method"], param_json,
                               query["timestamp"])
        pattern = (f"app_key{self.app_key}method{query['method']}param_json{param_json}"
                   f"timestamp{query['timestamp']}v{douyin.API_VERSION}")
        return hashlib.md5(f"{self.app_secret}{pattern}{self.app_secret}".encode()).hexdigest()

    def _order_detail(self, params: dict[str, Any], request: Request) -> Reply:
        with self.lock:
            order = self.orders.get(str(params.get("shop_order_id", "")))
            if order is None:
                return _error(40004, "非法的参数", "isv.parameter-invalid:20014",
                              "查询订单不存在", request)
            return _success({"shop_order_detail": self.render(order)}, request)

    def _search_list(self, params: dict[str, Any], request: Request) -> Reply:
        try:
            start = int(params.get("update_time_start", 0))
            end = int(params.get("update_time_end", 2**31))
            page, size = int(params.get("page", 0)), int(params.get("size", 10))
        except (TypeError, ValueError):
            return _error(40004, "非法的参数", "isv.parameter-invalid", "参数类型错误", request)
        if page < 0 or not 1 <= size <= MAX_PAGE_SIZE:
            return _error(40004, "非法的参数", "isv.parameter-invalid",
                          f"page 从 0 开始，size 取值 1-{MAX_PAGE_SIZE}", request)
        by_created = params.get("order_by") == "create_time"
        with self.lock:
            found = sorted((o for o in self.orders.values()
                            if start <= _ts(o.updated_at) <= end),
                           key=lambda o: (_ts(o.created_at if by_created else o.updated_at),
                                          o.external_id),
                           reverse=params.get("order_asc") is False)
            listed = [self.render(o) for o in found[page * size:(page + 1) * size]]
        return _success({"page": page, "size": size, "total": len(found),
                         "shop_order_list": listed}, request)

    def _logistics_add(self, params: dict[str, Any], request: Request) -> Reply:
        order_id = str(params.get("order_id", ""))
        company = str(params.get("company_code", ""))
        number = str(params.get("logistics_code", "")).strip()
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return _error(40004, "非法的参数", "isv.parameter-invalid:20014",
                              "查询订单不存在", request)
            if company not in _COMPANY_NAMES:
                return _error(40004, "非法的参数", "isv.parameter-invalid:30053",
                              "物流公司编码不存在", request)
            if not number:
                return _error(40001, "缺少必选参数", "isv.parameter-missing",
                              "缺少参数 logistics_code", request)
            if order.status == "shipped":
                return _error(50002, "业务处理失败", "isv.business-failed:30001",
                              "订单已发货，请勿重复发货", request)
            if order.status == "cancelled":
                return _error(50002, "业务处理失败", "isv.business-failed:30004",
                              "订单已取消，不能发货", request)
            if order.status == "unpaid":
                return _error(50002, "业务处理失败", "isv.business-failed:30005",
                              "订单未支付，不能发货", request)
            self.record(order_id, {"method": "order.logisticsAdd", "params": params},
                        SimShipment(carrier=company, tracking_number=number, at=self.clock(),
                                    line_ids=tuple(line.line_id for line in order.lines)))
        self.notify(order, "shipped")
        return _success({}, request)


    def _waybill_create(self, params: dict[str, Any], request: Request) -> Reply:
        """Douyin's e-waybill: a number per (order, pack_id), for orders of this shop whose
        receiver is sent as the order's own ciphertexts; per-package errors in err_infos."""
        company = str(params.get("logistics_code", ""))
        if company not in _COMPANY_NAMES:
            return _error(40004, "非法的参数", "isv.parameter-invalid", "物流商编码不存在", request)
        ebills, errors = [], []
        for info in params.get("order_infos") or []:
            order_id, pack = str(info.get("order_id", "")), str(info.get("pack_id", ""))
            with self.lock:
                order = self.orders.get(order_id)
            if order is None or not self._same_receiver(order, info.get("receiver_info") or {}):
                errors.append({"order_id": order_id, "pack_id": pack, "err_code": "100001",
                               "err_msg": "订单不存在或收件人信息不匹配"})
                continue
            number = self.waybills.issue(f"{company}|{order_id}|{pack}")
            ebills.append({"order_id": order_id, "pack_id": pack, "track_no": number,
                           "sort_code": "310-A1"})
        return _success({"ebill_infos": ebills, "err_infos": errors}, request)

    def _same_receiver(self, order: SimOrder, receiver: dict[str, Any]) -> bool:
        contact = receiver.get("contact") or {}
        detail = (receiver.get("address") or {}).get("detail_address", "")
        try:
            sent = (self.decrypt(contact["name"]), self.decrypt(contact["mobile"]),
                    self.decrypt(detail))
        except (KeyError, IndexError, ValueError, UnicodeDecodeError):
            return False
        return sent == (order.buyer_name, order.phone, order.street)

    def _waybill_apply(self, params: dict[str, Any], request: Request) -> Reply:
        infos = [{"track_no": str(a.get("track_no")),
                  "print_data": self.waybills.print_data(str(a.get("track_no"))),
                  "sign": secrets.token_hex(8)}
                 for a in params.get("waybill_applies") or []
                 if self.waybills.known(str(a.get("track_no")))]
        return _success({"waybill_infos": infos, "err_infos": []}, request)

    def _waybill_cancel(self, params: dict[str, Any], request: Request) -> Reply:
        if not self.waybills.cancel(str(params.get("track_no", ""))):
            return _error(50002, "业务处理失败", "isv.business-failed", "运单号不存在", request)
        return _success({"cancel_result": True}, request)


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _fen(yuan: Decimal) -> int:
    return int((yuan * 100).to_integral_value())


def _log_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(8).upper()


def _answer(body: dict[str, Any], request: Request) -> Reply:
    if request.headers.get("x-open-no-old-err-code") != "1":  # the deprecated fields too
        body = {**body, "err_no": 0 if body["code"] == douyin.SUCCESS else body["code"],
                "message": body["msg"]}
    return Reply.json(body)


def _success(data: dict[str, Any], request: Request) -> Reply:
    return _answer({"code": douyin.SUCCESS, "msg": "success", "sub_code": "", "sub_msg": "",
                    "log_id": _log_id(), "data": data}, request)


def _error(code: int, msg: str, sub_code: str, sub_msg: str, request: Request) -> Reply:
    return _answer({"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg,
                    "log_id": _log_id(), "data": {}}, request)
