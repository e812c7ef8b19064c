"""A simulated Taobao / Tmall shop: the TOP gateway our adapter (`chalicelib.marketplaces.taobao`)
calls, and the TMC message queue it polls.

Serves one gateway, `{url}/router/rest` (what `credentials()["gateway"]` names): POST with a
form body (GET with a query string works too; both are merged), dispatching on `method`:
- `taobao.tmc.messages.consume` (`group_name`, `quantity` 10-200, default 100) -> the queued
  messages not yet confirmed, oldest first, as `{"messages": {"tmc_message": [{id, topic,
  pub_app_key, pub_time, user_id, user_nick, content}]}}` (no `messages` at all when there are
  none); a consumed message is invisible for `redeliver_after` seconds, then handed out again
  until it is confirmed;
- `taobao.tmc.messages.confirm` (`s_message_ids`: up to 200, comma separated; `f_message_ids`:
  failed ones, handed out again at once) -> `{"is_success": true}`;
- `taobao.trade.fullinfo.get` (`fields`, `tid`) -> `{"trade": ...}` with only the fields asked
  for (`orders` for whole sub-orders, `orders.<field>` for some of their fields);
- `taobao.trades.sold.increment.get` (`fields`, `start_modified`, `end_modified` at most one day
  apart, both inclusive, `status`?, `page_no` from 1, `page_size` 1-100 (default 40),
  `use_has_next`) -> `{"trades": {"trade": [...]}, "has_next"}` (`total_results` instead when
  use_has_next is not "true"), oldest change first;
- `cainiao.waybill.ii.get` (`param_waybill_cloud_print_apply_new_request`) -> one waybill number
  per object id (a repeat answers the same one) with opaque print data, for a trade of this shop
  whose recipient carries its tid and OAID; `cainiao.waybill.ii.cancel` (`cp_code`,
  `waybill_code`) gives a number back;
- `taobao.logistics.offline.send` (`tid`, `out_sid`, `company_code`; `is_split`=1 with
  `sub_tid`, comma separated oids) -> `{"shipping": {"is_success": true}}`: the sub-orders get the
  waybill (`invoice_no`, `logistics_company` in fullinfo), recorded (`record`), and a
  `taobao_trade_TradeSellerShip` message (`TradePartlySellerShip` while some sub-orders wait) is
  queued.
A success answer is `{"<method without "taobao." and dots as _>_response": {..., "request_id"}}`.

Every call is checked as the gateway does, in this order: `method` known (21/22), `app_key`
(28/29), `sign` present (24), `sign_method` md5 (the default) / hmac / hmac-sha256 (41),
`timestamp` "YYYY-MM-DD HH:MM:SS" in GMT+8 within 10 minutes of the simulator's clock either way
(30/31), `v` = 2.0 (32/33), `format` = json (23), the sign recomputed here from the documented
recipe (25), then, for the trade and logistics methods, `session` (26/27; 27 too once it has
ended: a day, or `token_life`). The recipe: every
parameter but `sign` whose value is not empty, sorted by name, concatenated as name + value;
md5: upper-hex MD5(secret + s + secret); hmac: upper-hex HMAC-MD5(secret, s); hmac-sha256:
upper-hex HMAC-SHA256(secret, s). A refusal is HTTP 200 with `{"error_response": {"code", "msg",
"sub_code", "sub_msg", "request_id"}}`.

TMC: nothing is pushed. A notification (`notify`, with the base's drop / duplicate / reorder
faults) is put on the queue instead of posted: a duplicate is the same message (same id) queued
twice, a held one is queued after the next. Topics: created TradeCreate, paid TradeBuyerPay,
cancelled TradeClose, shipped TradeSellerShip (all `taobao_trade_*`); the content is JSON text
`{"buyer_nick", "payment", "oid", "tid", "type", "seller_nick", "status"}` with the trade's status
when the event happened. `GET /_sim/tmc` shows the queue.

Session refresh (`taobao.top.auth.token.refresh`, no session, `refresh_token`), for an app sold
on the service market only (`refreshable=True`, what `make run` builds; otherwise the session is
of fixed length, the credentials carry no refresh token and the call is refused with
isv.permission-denied, as TOP refuses it to other apps): the current refresh token (30 days)
answers `{"top_auth_token_refresh_response": {"token_result": "<JSON
text>"}}` with the new session as `access_token`, `expires_in`, `expire_time` (ms), the new
`refresh_token`, `re_expires_in`, `refresh_token_valid_time` (ms) and the r1/r2/w1/w2 lifetimes;
the refresh token sent is refused from then on (15, isv.refresh-token-expired).

`webhook_url` is not used (nothing is posted). The shop is the seller's nick (`shop`, e.g.
"栖木家居旗舰店"): TMC's `user_nick`, the content's and the trade's `seller_nick`. Trade ids are
19-digit numbers, a sub-order's oid is the tid + n (as in the recorded fullinfo answer); ids are
JSON numbers (with `tid_str` beside `tid`).

Statuses: unpaid WAIT_BUYER_PAY, paid WAIT_SELLER_SEND_GOODS, shipped WAIT_BUYER_CONFIRM_GOODS
(SELLER_CONSIGNED_PART while some sub-orders are unshipped), cancelled TRADE_CLOSED_BY_TAOBAO
(closed before payment) or TRADE_CLOSED (a paid trade closed: refunded).

Guesses and simplifications (what the recorded fixtures and our adapter's sources do not say):
- The gateway's error codes (9, 21-34, 40, 41, 47) and their msg texts are from memory of
  TOP's public error table; every sub_code and sub_msg of the gateway checks except the session's
  ("invalid-sessionkey", recorded) is ours (isv.invalid-signature, isv.invalid-timestamp ...).
  The order of the checks is ours; so is the strict comparison with the upper-case hex sign.
- The session is checked only for the trade and logistics methods (TMC is the app's, not a
  seller's); format must be json (TOP answers XML otherwise: not served here).
- The TMC redelivery delay (`redeliver_after`, default 30 s: TMC's is longer and not
  documented to us), consume handing out messages oldest first, one queue whatever
  `group_name` says, a confirm of an unknown id being a success, `f_message_ids` handed out
  again at once, and `pub_app_key` 12497914 (the recorded messages') as the publisher of trade
  messages; the message's `oid` is the tid (as recorded for a whole-trade event).
- fullinfo for an unknown tid: code 15, isv.trade-not-exist. The listing's page_size default 40
  and its order (oldest change first).
- offline.send: an unpaid or closed trade, or a sub-order already shipped, is refused with
  B04 (the recorded text says "status wrong: already shipped or closed"); a send without
  is_split on a partly shipped trade ships the rest; an unknown company_code is code 41
  isv.invalid-parameter:company_code; a waybill that is not 8-30 letters and digits, or that
  another trade already used, is B60 (recorded text); company names are Taobao's usual ones.
- An ended session is refused as an invalid one (27, `session-expired`); a spent refresh token
  with code 15 and `isv.refresh-token-expired`; the session lives a day, the refresh token 30.
- The receiver is given in plain text (the app may decrypt); `mask_receiver=True` gives it
  masked as since the 2021 privacy rules, with an `oaid`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from devstack.labels import PlatformWaybills
from devstack.marketplaces.base import (
    NO_FAULTS,
    WAYBILL_APP_LIFE,
    Fate,
    Faults,
    MarketplaceSimulator,
    Notification,
    Reply,
    Request,
    SimOrder,
    SimShipment,
    TokenBook,
)

GATEWAY_PATH = "/router/rest"
CHINA = timezone(timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_SKEW = timedelta(minutes=10)
REDELIVER_SECONDS = 30.0
ACCESS_LIFE = timedelta(days=1)
REFRESH_LIFE = timedelta(days=30)
CONSUME_RANGE = (10, 200)
CONFIRM_MAX = 200
LIST_SPAN = timedelta(days=1)
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 40
PUBLISHER = "12497914"  # pub_app_key of Taobao's own trade messages (as recorded)
SIGN_METHODS = ("md5", "hmac", "hmac-sha256")

TOPICS = {"created": "taobao_trade_TradeCreate", "paid": "taobao_trade_TradeBuyerPay",
          "cancelled": "taobao_trade_TradeClose", "shipped": "taobao_trade_TradeSellerShip"}
PARTLY_SHIPPED = "taobao_trade_TradePartlySellerShip"
COMPANIES = {"STO": "申通快递", "SF": "顺丰速运", "YTO": "圆通速递", "ZTO": "中通快递",
             "YUNDA": "韵达快递", "JD": "京东快递", "EMS": "EMS", "ZJS": "宅急送",
             "DBKD": "德邦快递", "HTKY": "百世快递"}
_WAYBILL = re.compile(r"[A-Za-z0-9]{8,30}")
ALREADY_SHIPPED = ("isv.logistics-offline-service-error:B04",
                   "订单状态不对该物流订单已经发货或者已关闭，不能重复发货")
BAD_WAYBILL = ("isv.logistics-offline-service-error:B60", "运单号不符合规则或已经被使用")
_TRADE_METHODS = frozenset({"taobao.trade.fullinfo.get", "taobao.trades.sold.increment.get",
                            "taobao.logistics.offline.send", "cainiao.waybill.ii.get",
                            "cainiao.waybill.ii.cancel"})


class _Refused(Exception):
    """A TOP error answer: code, msg, sub_code, sub_msg."""

    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(f"{code} {sub_code}")
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


def _missing(name: str) -> _Refused:
    return _Refused(40, "Missing required arguments", f"isv.missing-parameter:{name}",
                    f"缺少必选参数 {name}")


def _invalid(name: str, why: str) -> _Refused:
    return _Refused(41, "Invalid arguments", f"isv.invalid-parameter:{name}", why)


@dataclass
class Queued:
    """One TMC message on the queue: visible (handed out by consume) from `visible_at`."""

    message: dict[str, Any]
    visible_at: datetime
    deliveries: int = 0


class TaobaoSimulator(MarketplaceSimulator):
    """A Taobao / Tmall shop: trades, the TOP gateway on a local port, the TMC queue."""

    name = "taobao"

    def __init__(self, *, shop: str, webhook_url: str = "", faults: Faults = NO_FAULTS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 app_key: str | None = None, app_secret: str | None = None,
                 session: str | None = None, sign_method: str = "hmac-sha256",
                 redeliver_after: float = REDELIVER_SECONDS,
                 mask_receiver: bool = False, refresh_token: str | None = None,
                 token_life: timedelta | None = None, refreshable: bool = False) -> None:
        if sign_method not in SIGN_METHODS:
            raise ValueError(f"sign_method must be one of {SIGN_METHODS}")
        super().__init__(shop=shop, webhook_url=webhook_url, faults=faults, clock=clock,
                         token_life=token_life)
        self.user_id = 2_200_000_000 + zlib.crc32(shop.encode("utf-8")) % 10**8
        self.app_key = app_key or str(secrets.randbelow(9 * 10**7) + 10**7)  # 8 digits
        self.app_secret = app_secret or secrets.token_hex(16)
        self.refreshable = refreshable
        self.tokens = TokenBook(
            platform=self.name, shop=self.shop, clock=self.clock,
            access_token=session or f"61{secrets.token_hex(22)}{self.user_id}",
            refresh_token=refresh_token or f"62{secrets.token_hex(22)}{self.user_id}",
            access_life=self.token_life or ACCESS_LIFE, refresh_life=REFRESH_LIFE,
            make_access=lambda: f"61{secrets.token_hex(22)}{self.user_id}",
            make_refresh=lambda: f"62{secrets.token_hex(22)}{self.user_id}")
        self.sign_method = sign_method
        self.redeliver_after = timedelta(seconds=redeliver_after)
        self.mask_receiver = mask_receiver
        self.tmc: list[Queued] = []
        self.waybills = PlatformWaybills(prefix="7731")
        self._message_id = self.rng.randrange(8_400_000_000_000_000_000,
                                              8_500_000_000_000_000_000, 1000)

    # Ids ----------------------------------------------------------------------------------

    def new_id(self) -> str:
        # Leave room for the sub-order ids (tid + n) within 19 digits.
        return str(self.rng.randrange(3_900_000_000_000_000_000, 4_000_000_000_000_000_000, 100))

    def new_line_id(self, external_id: str, n: int) -> str:
        return str(int(external_id) + n)

    # Configuration ------------------------------------------------------------------------

    @property
    def session(self) -> str:
        return self.tokens.access_token

    def credentials(self) -> dict[str, str]:
        return {"app_key": self.app_key, "app_secret": self.app_secret,
                "session": self.session, "sign_method": self.sign_method,
                "gateway": self.url + GATEWAY_PATH,
                **(self.tokens.credentials() if self.refreshable else {})}

    def waybill_credentials(self, life: timedelta = WAYBILL_APP_LIFE) -> dict[str, str]:
        """The Cainiao channel's account as the printing app holds it: the same TOP app, a
        session the seller granted it (its own life, not the shop's short one) and the
        seller's user id."""
        return {"app_key": self.app_key, "app_secret": self.app_secret,
                "session": self.tokens.grant(life), "sign_method": self.sign_method,
                "gateway": self.url + GATEWAY_PATH, "user_id": str(self.user_id)}

    def source(self) -> dict[str, Any] | None:
        """Taobao posts nothing to us: TMC messages are polled (`poll_taobao`)."""
        return None

    # Wire shapes --------------------------------------------------------------------------

    def trade_status(self, order: SimOrder) -> str:
        if order.status == "unpaid":
            return "WAIT_BUYER_PAY"
        if order.status == "cancelled":
            return "TRADE_CLOSED" if order.paid_at else "TRADE_CLOSED_BY_TAOBAO"
        shipped = _shipped_lines(order)
        if not shipped:
            return "WAIT_SELLER_SEND_GOODS"
        if all(line.line_id in shipped for line in order.lines):
            return "WAIT_BUYER_CONFIRM_GOODS"
        return "SELLER_CONSIGNED_PART"

    def render(self, order: SimOrder) -> dict[str, Any]:
        """The trade as taobao.trade.fullinfo.get shows it with every field asked for."""
        status = self.trade_status(order)
        closed = status.startswith("TRADE_CLOSED")
        shipped = _shipped_lines(order)
        subtotal = sum((line.price * line.quantity for line in order.lines), Decimal("0"))
        orders = []
        for line in order.lines:
            shipment = shipped.get(line.line_id)
            line_status = status if closed or status == "WAIT_BUYER_PAY" else (
                "WAIT_BUYER_CONFIRM_GOODS" if shipment else "WAIT_SELLER_SEND_GOODS")
            amount = _yuan(line.price * line.quantity)
            item: dict[str, Any] = {
                "oid": int(line.line_id), "oid_str": line.line_id,
                "num_iid": 600_000_000_000 + zlib.crc32(line.sku.encode()) % 10**11,
                "sku_id": str(5_000_000_000_000 + zlib.crc32(line.sku[::-1].encode())),
                "title": line.title, "outer_iid": line.sku.rsplit("-", 1)[0],
                "outer_sku_id": line.sku, "sku_properties_name": "", "price": _yuan(line.price),
                "num": line.quantity, "total_fee": amount, "payment": amount,
                "discount_fee": "0.00", "adjust_fee": "0.00", "divide_order_fee": amount,
                "status": line_status,
                "refund_status": "SUCCESS" if status == "TRADE_CLOSED" else "NO_REFUND",
                "seller_type": "B", "order_from": "WAP,WAP", "buyer_rate": False,
                "seller_rate": False, "is_oversold": False, "cid": 50_000_436,
                "snapshot_url": f"w:{line.line_id}_1",
                "pic_path": "https://img.alicdn.com/bao/uploaded/i1/"
                            f"{self.user_id}/O1CN01{line.sku.replace('-', '')}.jpg",
            }
            if shipment is not None:
                item.update(invoice_no=shipment.tracking_number,
                            logistics_company=COMPANIES.get(shipment.carrier, shipment.carrier),
                            consign_time=_top_time(shipment.at), shipping_type="express")
            orders.append(item)
        trade: dict[str, Any] = {
            "tid": int(order.external_id), "tid_str": order.external_id, "status": status,
            "type": "fixed", "seller_nick": self.shop, "buyer_nick": _buyer_nick(order),
            "buyer_open_uid": "AAH" + base64.urlsafe_b64encode(
                hashlib.sha256(order.phone.encode()).digest()[:16]).decode().rstrip("="),
            "created": _top_time(order.created_at), "modified": _top_time(order.updated_at),
            "total_fee": _yuan(subtotal), "post_fee": _yuan(order.shipping_fee),
            "discount_fee": "0.00", "adjust_fee": "0.00", "payment": _yuan(order.total),
            "received_payment": "0.00", "paid_coupon_fee": "0.00", "order_tax_fee": "0.00",
            "buyer_message": "", "seller_memo": "", "invoice_name": "",
            **self._receiver(order),
            "receiver_country": "", "shipping_type": "express", "trade_from": "WAP,WAP",
            "seller_flag": 0,
            "orders": {"order": orders},
        }
        if order.paid_at is not None:
            trade["pay_time"] = _top_time(order.paid_at)
        if order.shipments:
            trade["consign_time"] = _top_time(order.shipments[0].at)
        if closed:
            trade["end_time"] = _top_time(order.cancelled_at or order.updated_at)
        return trade

    def _receiver(self, order: SimOrder) -> dict[str, str]:
        fields = {"receiver_name": order.buyer_name, "receiver_state": order.province,
                  "receiver_city": order.city, "receiver_district": order.district,
                  "receiver_town": "", "receiver_address": order.street,
                  "receiver_zip": order.postcode, "receiver_mobile": order.phone,
                  "receiver_phone": ""}
        if self.mask_receiver:
            fields.update(receiver_name=order.buyer_name[:1] + "**",
                          receiver_mobile="*******" + order.phone[-4:],
                          receiver_address=order.street[:4] + "**********",
                          oaid=self.oaid(order))
        return fields

    def notification(self, order: SimOrder, topic: str) -> Notification:
        """The TMC message for the event (queued by `_deliver`, never posted)."""
        status = self.trade_status(order)
        tmc_topic = PARTLY_SHIPPED if (topic == "shipped"
                                       and status == "SELLER_CONSIGNED_PART") else TOPICS[topic]
        content = {"buyer_nick": _buyer_nick(order), "payment": _yuan(order.total),
                   "oid": int(order.external_id), "tid": int(order.external_id),
                   "type": "fixed", "seller_nick": self.shop, "status": status}
        with self.lock:
            self._message_id += 1
            message_id = self._message_id
        message = {"id": message_id, "topic": tmc_topic, "pub_app_key": PUBLISHER,
                   "pub_time": _top_time(self.clock()), "user_id": self.user_id,
                   "user_nick": self.shop,
                   "content": json.dumps(content, ensure_ascii=False, separators=(",", ":"))}
        return Notification(json.dumps(message, ensure_ascii=False).encode("utf-8"),
                            {"Content-Type": "application/json"})

    def _deliver(self, note: Notification, fate: Fate) -> None:
        # TMC does not push: the message waits on the queue until a consume takes it.
        message = json.loads(note.body)
        with self.lock:
            self.tmc.append(Queued(message, visible_at=self.clock()))

    def queued(self) -> list[dict[str, Any]]:
        """GET /_sim/tmc: what waits on the TMC queue (consumed or not)."""
        with self.lock:
            return [{"id": q.message["id"], "topic": q.message["topic"],
                     "tid": json.loads(q.message["content"]).get("tid"),
                     "visible_at": q.visible_at.isoformat(), "deliveries": q.deliveries}
                    for q in self.tmc]

    # The gateway --------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if request.path == "/_sim/tmc" and request.method == "GET":
            return Reply.json(self.queued())
        if request.path != GATEWAY_PATH:
            return Reply.json({"error_response": {
                "code": 22, "msg": "Invalid method", "sub_msg": f"no such path {request.path}",
                "request_id": _request_id()}}, 404)
        try:
            if request.method not in ("GET", "POST"):
                raise _Refused(9, "Http action not allowed")
            try:
                params = {**request.query, **(request.form() if request.body else {})}
            except UnicodeDecodeError:
                raise _Refused(47, "Invalid encoding") from None
            handlers: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
                "taobao.tmc.messages.consume": self._consume,
                "taobao.tmc.messages.confirm": self._confirm,
                "taobao.trade.fullinfo.get": self._fullinfo,
                "taobao.trades.sold.increment.get": self._increment,
                "taobao.logistics.offline.send": self._offline_send,
                "taobao.top.auth.token.refresh": self._refresh,
                "cainiao.waybill.ii.get": self._waybill_get,
                "cainiao.waybill.ii.cancel": self._waybill_cancel,
            }
            self._verify(params, handlers)
            method = params["method"]
            body = handlers[method](params)
        except _Refused as refusal:
            error: dict[str, Any] = {"code": refusal.code, "msg": refusal.msg}
            if refusal.sub_code:
                error.update(sub_code=refusal.sub_code, sub_msg=refusal.sub_msg)
            error["request_id"] = _request_id()
            return Reply.json({"error_response": error})
        key = method.removeprefix("taobao.").replace(".", "_") + "_response"  # cainiao_... too
        return Reply.json({key: {**body, "request_id": _request_id()}})

    def _verify(self, params: dict[str, str], methods: dict[str, Any]) -> None:
        """The gateway's checks, in its order; raises _Refused."""
        method = params.get("method", "")
        if not method:
            raise _Refused(21, "Missing method")
        if method not in methods:
            raise _Refused(22, "Invalid method", "isv.method-not-exist", f"API {method} 不存在")
        if not params.get("app_key"):
            raise _Refused(28, "Missing app key")
        if params["app_key"] != self.app_key:
            raise _Refused(29, "Invalid app Key", "isv.appkey-not-exists", "AppKey不存在")
        if not params.get("sign"):
            raise _Refused(24, "Missing signature")
        sign_method = params.get("sign_method") or "md5"
        if sign_method not in SIGN_METHODS:
            raise _invalid("sign_method", f"不支持的签名方法 {sign_method}")
        text = params.get("timestamp", "")
        if not text:
            raise _Refused(30, "Missing timestamp")
        try:
            sent = datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA)
        except ValueError:
            raise _Refused(31, "Invalid timestamp", "isv.invalid-timestamp",
                           "时间戳格式应为 yyyy-MM-dd HH:mm:ss") from None
        if abs(sent - self.clock()) > MAX_SKEW:
            raise _Refused(31, "Invalid timestamp", "isv.invalid-timestamp",
                           "时间戳与服务器时间相差超过10分钟")
        if not params.get("v"):
            raise _Refused(32, "Missing version")
        if params["v"] != "2.0":
            raise _Refused(33, "Invalid version", "isv.invalid-version", "v 必须为 2.0")
        if params.get("format") != "json":
            raise _Refused(23, "Invalid format", "isv.invalid-format", "format 必须为 json")
        if not hmac.compare_digest(params["sign"].encode(),
                                   self.expected_sign(params, sign_method).encode()):
            raise _Refused(25, "Invalid signature", "isv.invalid-signature", "签名无效")
        if method in _TRADE_METHODS:
            if not params.get("session"):
                raise _Refused(26, "Missing session", "isv.missing-session", "缺少 session")
            judged = self.tokens.check(params["session"])
            if judged == "invalid":
                raise _Refused(27, "Invalid session", "invalid-sessionkey", "SessionKey非法")
            if judged == "expired":
                raise _Refused(27, "Invalid session", "session-expired", "SessionKey已过期")

    def oaid(self, order: SimOrder) -> str:
        """The Open Addressee ID a masked trade carries (stable per shop and buyer)."""
        return hashlib.sha256(f"{self.shop}|{order.phone}".encode()).hexdigest()[:32]

    def _waybill_get(self, params: dict[str, str]) -> dict[str, Any]:
        """Cainiao cloud print: one number per object id, for trades of this shop whose OAID
        matches; the print data is opaque (Cainiao's print component decrypts it)."""
        try:
            request = json.loads(_required(params, "param_waybill_cloud_print_apply_new_request"))
            dtos = request["trade_order_info_dtos"]
            cp_code = str(request["cp_code"])
        except (ValueError, KeyError, TypeError):
            raise _invalid("param_waybill_cloud_print_apply_new_request", "参数格式错误") from None
        if cp_code not in ("STO", "SF", "YTO", "ZTO", "YUNDA", "JD", "EMS"):
            raise _Refused(15, "Remote service error", "isv.CP_CODE_NOT_SUPPORT",
                           "不支持的快递公司")
        modules = []
        for dto in dtos:
            tids = dto.get("order_info", {}).get("trade_order_list") or []
            recipient = dto.get("recipient") or {}
            with self.lock:
                order = self.orders.get(str(tids[0])) if tids else None
            if order is None or str(recipient.get("tid")) != order.external_id:
                raise _Refused(15, "Remote service error", "isv.TRADE_NOT_EXIST", "交易订单不存在")
            if recipient.get("oaid") != self.oaid(order):
                raise _Refused(15, "Remote service error", "isv.OAID_INVALID", "oaid 无效")
            number = self.waybills.issue(f"{cp_code}|{dto['object_id']}")
            modules.append({"object_id": dto["object_id"], "waybill_code": number,
                            "print_data": self.waybills.print_data(
                                number, str(dto.get("template_url") or ""))})
        return {"modules": {"waybill_cloud_print_response": modules}}

    def _waybill_cancel(self, params: dict[str, str]) -> dict[str, Any]:
        if not self.waybills.cancel(_required(params, "waybill_code")):
            raise _Refused(15, "Remote service error", "isv.WAYBILL_NOT_EXIST", "面单号不存在")
        return {"cancel_result": True}

    def _refresh(self, params: dict[str, str]) -> dict[str, Any]:
        if not self.refreshable:
            raise _Refused(15, "Remote service error", "isv.permission-denied",
                           "只有服务市场订购类应用可以刷新token")
        if not self.tokens.refresh(params.get("refresh_token", "")):
            raise _Refused(15, "Remote service error", "isv.refresh-token-expired",
                           "refresh_token已过期或已使用")
        now = self.clock()
        access = int((self.tokens.access_ends - now).total_seconds())
        refresh = int((self.tokens.refresh_ends - now).total_seconds())
        result = {
            "access_token": self.tokens.access_token, "token_type": "Bearer",
            "expires_in": access, "expire_time": int(self.tokens.access_ends.timestamp() * 1000),
            "refresh_token": self.tokens.refresh_token, "re_expires_in": refresh,
            "refresh_token_valid_time": int(self.tokens.refresh_ends.timestamp() * 1000),
            "r1_expires_in": access, "r2_expires_in": min(access, 1800),
            "w1_expires_in": access, "w2_expires_in": min(access, 1800),
            "taobao_user_nick": quote(self.shop), "taobao_user_id": str(self.user_id)}
        return {"token_result": json.dumps(result, separators=(",", ":"))}

    def expected_sign(self, params: dict[str, str], sign_method: str) -> str:
        """The sign the gateway expects, from the documented recipe (not our adapter's)."""
        pieces = [name + params[name] for name in sorted(params)
                  if name != "sign" and params[name] != ""]
        text, key = "".join(pieces).encode("utf-8"), self.app_secret.encode("utf-8")
        if sign_method == "md5":
            return hashlib.md5(key + text + key).hexdigest().upper()
        digest = hashlib.md5 if sign_method == "hmac" else hashlib.sha256
        return hmac.new(key, text, digest).hexdigest().upper()

    # TMC ----------------------------------------------------------------------------------

    def _consume(self, params: dict[str, str]) -> dict[str, Any]:
        low, high = CONSUME_RANGE
        quantity = _number(params, "quantity", 100)
        if not low <= quantity <= high:
            raise _invalid("quantity", f"quantity 取值 {low}-{high}")
        now = self.clock()
        with self.lock:
            taken = [q for q in self.tmc if q.visible_at <= now][:quantity]
            for queued in taken:
                queued.visible_at = now + self.redeliver_after
                queued.deliveries += 1
            messages = [dict(q.message) for q in taken]
        return {"messages": {"tmc_message": messages}} if messages else {}

    def _confirm(self, params: dict[str, str]) -> dict[str, Any]:
        done = _ids(params, "s_message_ids")
        failed = _ids(params, "f_message_ids")
        if not done and not failed:
            raise _missing("s_message_ids")
        if len(done) > CONFIRM_MAX or len(failed) > CONFIRM_MAX:
            raise _invalid("s_message_ids", f"每次最多确认 {CONFIRM_MAX} 条消息")
        now = self.clock()
        with self.lock:
            self.tmc = [q for q in self.tmc if str(q.message["id"]) not in done]
            for queued in self.tmc:
                if str(queued.message["id"]) in failed:
                    queued.visible_at = now
        return {"is_success": True}

    # Trades -------------------------------------------------------------------------------

    def _fullinfo(self, params: dict[str, str]) -> dict[str, Any]:
        fields = _required(params, "fields")
        tid = _required(params, "tid")
        if not tid.isdigit():
            raise _invalid("tid", "tid 必须为数字")
        with self.lock:
            order = self.orders.get(tid)
            if order is None:
                raise _Refused(15, "Remote service error", "isv.trade-not-exist", "交易不存在")
            return {"trade": _select(self.render(order), fields)}

    def _increment(self, params: dict[str, str]) -> dict[str, Any]:
        fields = _required(params, "fields")
        start = _time(params, "start_modified")
        end = _time(params, "end_modified")
        if end < start:
            raise _invalid("end_modified", "结束时间不能早于开始时间")
        if end - start > LIST_SPAN:
            raise _invalid("start_modified", "修改时间跨度不能大于一天")
        page_no = _number(params, "page_no", 1)
        page_size = _number(params, "page_size", DEFAULT_PAGE_SIZE)
        if page_no < 1:
            raise _invalid("page_no", "page_no 从 1 开始")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _invalid("page_size", f"page_size 取值 1-{MAX_PAGE_SIZE}")
        status = params.get("status", "")
        with self.lock:
            found = sorted((o for o in self.orders.values()
                            if start <= o.updated_at.replace(microsecond=0) <= end
                            and (not status or self.trade_status(o) == status)),
                           key=lambda o: (o.updated_at, o.external_id))
            first = (page_no - 1) * page_size
            page = [_select(self.render(o), fields) for o in found[first:first + page_size]]
        answer: dict[str, Any] = {"trades": {"trade": page}} if page else {}
        if params.get("use_has_next", "").lower() == "true":
            answer["has_next"] = first + page_size < len(found)
        else:
            answer["total_results"] = len(found)
        return answer

    # Writeback ----------------------------------------------------------------------------

    def _offline_send(self, params: dict[str, str]) -> dict[str, Any]:
        tid = _required(params, "tid")
        out_sid = _required(params, "out_sid").strip()
        company = _required(params, "company_code")
        split = params.get("is_split", "") in ("1", "true")
        wanted = [oid.strip() for oid in params.get("sub_tid", "").split(",") if oid.strip()]
        if split and not wanted:
            raise _missing("sub_tid")
        with self.lock:
            order = self.orders.get(tid)
            if order is None:
                raise _Refused(15, "Remote service error", "isv.trade-not-exist", "交易不存在")
            oids = [line.line_id for line in order.lines]
            if split and any(oid not in oids for oid in wanted):
                raise _invalid("sub_tid", "子订单不属于该交易")
            shipped = _shipped_lines(order)
            lines = wanted if split else [oid for oid in oids if oid not in shipped]
            if (order.status in ("unpaid", "cancelled") or not lines
                    or any(oid in shipped for oid in lines)):
                raise _Refused(15, "Remote service error", *ALREADY_SHIPPED)
            if company not in COMPANIES:
                raise _invalid("company_code", "物流公司编码不存在")
            used_elsewhere = any(s.tracking_number == out_sid and s.carrier == company
                                 for o in self.orders.values() if o is not order
                                 for s in o.shipments)
            if not _WAYBILL.fullmatch(out_sid) or used_elsewhere:
                raise _Refused(15, "Remote service error", *BAD_WAYBILL)
            business = {k: v for k, v in params.items()
                        if k in ("tid", "out_sid", "company_code", "is_split", "sub_tid")}
            self.record(tid, {"method": "taobao.logistics.offline.send", "params": business},
                        SimShipment(carrier=company, tracking_number=out_sid, at=self.clock(),
                                    line_ids=tuple(lines)))
        self.notify(order, "shipped")
        return {"shipping": {"is_success": True}}


def _shipped_lines(order: SimOrder) -> dict[str, SimShipment]:
    """Each shipped sub-order's (first) shipment."""
    found: dict[str, SimShipment] = {}
    for shipment in order.shipments:
        for oid in shipment.line_ids or tuple(line.line_id for line in order.lines):
            found.setdefault(oid, shipment)
    return found


def _select(trade: dict[str, Any], fields: str) -> dict[str, Any]:
    """Only the fields asked for: "orders" whole sub-orders, "orders.x" some of their fields."""
    wanted = {name.strip() for name in fields.split(",") if name.strip()}
    selected = {k: v for k, v in trade.items() if k in wanted and k != "orders"}
    sub = {name.partition(".")[2] for name in wanted if name.startswith("orders.")}
    if "orders" in wanted:
        selected["orders"] = trade["orders"]
    elif sub:
        selected["orders"] = {"order": [{k: v for k, v in item.items() if k in sub}
                                        for item in trade["orders"]["order"]]}
    return selected


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value.strip():
        raise _missing(name)
    return value


def _number(params: dict[str, str], name: str, default: int) -> int:
    text = params.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise _invalid(name, f"{name} 必须为整数") from None


def _ids(params: dict[str, str], name: str) -> set[str]:
    ids = {part.strip() for part in params.get(name, "").split(",") if part.strip()}
    if any(not part.isdigit() for part in ids):
        raise _invalid(name, "消息ID必须为数字")
    return ids


def _time(params: dict[str, str], name: str) -> datetime:
    text = _required(params, name)
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA)
    except ValueError:
        raise _invalid(name, "时间格式应为 yyyy-MM-dd HH:mm:ss") from None


def _top_time(moment: datetime) -> str:
    return moment.astimezone(CHINA).strftime(TIME_FORMAT)


def _yuan(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _buyer_nick(order: SimOrder) -> str:
    return f"t**{order.phone[-1]}"  # masked, as TOP shows buyer nicks now


def _request_id() -> str:
    return base64.b32encode(secrets.token_bytes(8)).decode().lower().rstrip("=")[:13]
