"""A local courier that speaks the Kuaidi100 protocol: real-time query, subscription, pushes,
and the electronic waybills (label/order: devstack/labels.py).

`make run` and the end-to-end tests point our Kuaidi100 client and push endpoint at it, so a parcel
shipped by the (simulated) factory moves along a scripted journey and our system learns of it by
query and by push exactly as from the real provider. The wire format comes from
`chalicelib.tracking.couriers.kuaidi100` (signatures, carrier codes, state names), so what this
serves is what our parser reads.

Time: a parcel's journey is anchored at its first contact (subscribe or query). Step i becomes
visible at anchor + after / time_scale and is reported with that time (China time), so a system
whose thresholds are scaled by the same factor sees consistent times. The provider's own clocks
(the 30-minute query lock, abort after 3 days without a record or 60 days without a change, 4
subscriptions per number per 30 days) are scaled the same way.

Guesses, where neither the fixtures nor our client pin the protocol down:
- the lock answer: returnCode "500" with the "no result" message, i.e. our NoResult (retryable);
- a wrong `customer` answers like a wrong signature ("503"): the sign covers the customer;
- the subscription limit: returnCode "700" (our SubscriptionRejected, not retried). Every accepted
  or duplicate subscribe counts towards it;
- a (re-)subscription to a parcel that already has scans gets one push with the history so far,
  then one push per new scan; a push is acknowledged by HTTP 200 with result true and returnCode
  "200" (the message is not checked).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import requests

from chalicelib.tracking.couriers import kuaidi100 as k100
from devstack.labels import LABEL_PATH, Labels

log = logging.getLogger(__name__)

QUERY_PATH = "/poll/query.do"
SUBSCRIBE_PATH = "/poll"
PARCELS_PATH = "/_sim/parcels"
LABELS_PATH = "/_sim/labels"  # the electronic waybills its label desk issued
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NO_RECORD_ABORT = timedelta(days=3)
NO_CHANGE_ABORT = timedelta(days=60)
SUBSCRIPTION_LIMIT = 4
SUBSCRIPTION_WINDOW = timedelta(days=30)
PUSH_TIMEOUT = (3.05, 20.0)  # Kuaidi100 waits 20 s for the reply
# Codes after which Kuaidi100 stops watching: signed for, returned / cancelled, refused back.
FINAL_STATES = frozenset({"3", "301", "302", "303", "304", "4", "401", "14"})
_PHONE_COMS = frozenset(k100.com_for(code) for code in k100.PHONE_REQUIRED)
_KNOWN_COMS = frozenset(k100.CARRIERS.values())
# State code -> the status name lines carry (the first name listed for a code).
STATUS_NAMES: dict[str, str] = {}
for _name, _code in k100.STATE_NAMES.items():
    STATUS_NAMES.setdefault(_code, _name)


# Scripts ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One scan of a journey."""

    after: timedelta  # offset from the parcel's hand-over (anchor)
    state: str  # Kuaidi100 detailed statusCode
    context: str  # the scan text
    area: str = ""  # areaName

    def __post_init__(self) -> None:
        if self.state not in k100.STATES:
            raise ValueError(f"unknown Kuaidi100 state {self.state!r}")
        if self.after < timedelta(0):
            raise ValueError("a step cannot come before the hand-over")


@dataclass(frozen=True)
class Script:
    name: str
    steps: tuple[Step, ...]
    pushes: bool = True  # False: subscribe is accepted but the provider never pushes

    def __post_init__(self) -> None:
        offsets = [step.after for step in self.steps]
        if offsets != sorted(offsets):
            raise ValueError(f"script {self.name!r}: steps must be in time order")
        if any(step.state in FINAL_STATES for step in self.steps[:-1]):
            raise ValueError(f"script {self.name!r}: only the last step may be final")


# Areas as Kuaidi100 names them, with the code, centre and pinyin its lines carry.
HZ, XS = "浙江,杭州市,余杭区", "浙江,杭州市,萧山区"
SH, XH = "上海,上海,浦东新区", "上海,上海,徐汇区"
BJ, SY = "北京,北京市,朝阳区", "北京,北京市,顺义区"
CD, SZ, WH = "四川,成都市,锦江区", "广东,深圳市,南山区", "湖北,武汉市,东西湖区"
AREAS: dict[str, tuple[str, str, str]] = {
    HZ: ("330110000000", "120.30,30.42", "zhe jiang,hang zhou shi,yu hang qu"),
    XS: ("330109000000", "120.26,30.18", "zhe jiang,hang zhou shi,xiao shan qu"),
    SH: ("310115000000", "121.54,31.22", "shang hai,shang hai,pu dong xin qu"),
    XH: ("310104000000", "121.44,31.19", "shang hai,shang hai,xu hui qu"),
    BJ: ("110105000000", "116.44,39.92", "bei jing,bei jing shi,chao yang qu"),
    SY: ("110113000000", "116.65,40.13", "bei jing,bei jing shi,shun yi qu"),
    CD: ("510104000000", "104.08,30.65", "si chuan,cheng du shi,jin jiang qu"),
    SZ: ("440305000000", "113.93,22.53", "guang dong,shen zhen shi,nan shan qu"),
    WH: ("420112000000", "114.14,30.62", "hu bei,wu han shi,dong xi hu qu"),
}
# Scripts are written as China clock times for a hand-over at 14:00 on day 1 (the factory's
# afternoon collection); another hand-over hour shifts every scan by the same amount.
HANDOVER_HOUR = 14


def _s(day: int, clock: str, state: str, context: str, area: str) -> Step:
    hours, minutes = (int(part) for part in clock.split(":"))
    after = timedelta(days=day - 1, hours=hours - HANDOVER_HOUR, minutes=minutes)
    return Step(after, state, context, area)


_DELIVERED = (
    _s(1, "14:30", "101", "商家已下单，等待快递员揽收", HZ),
    _s(1, "16:30", "103", "【浙江杭州余杭区仓前公司】快递员【张师傅】已揽收", HZ),
    _s(1, "20:40", "0", "【浙江杭州余杭区仓前公司】已发出 下一站【杭州转运中心】", HZ),
    _s(2, "01:05", "1002", "【杭州市】快件已到达 杭州转运中心", XS),
    _s(2, "02:30", "1002", "【杭州转运中心】已发出 下一站【北京转运中心】", XS),
    _s(2, "14:20", "1002", "【北京市】快件已到达 北京转运中心", SY),
    _s(2, "22:40", "1002", "【北京转运中心】已发出 下一站【北京朝阳望京公司】", SY),
    _s(3, "04:10", "1001", "【北京市】快件已到达 北京朝阳望京公司", BJ),
    _s(3, "08:20", "5", "【北京朝阳望京公司】快递员【刘师傅 138****2046】正在派件", BJ),
    _s(3, "11:15", "301", "【北京朝阳望京公司】快件已签收，签收人：本人，感谢使用", BJ),
)
_REFUSED = (
    _s(1, "16:20", "103", "【杭州余杭仓前】的【赵师傅】已揽收", HZ),
    _s(1, "21:30", "1002", "快件离开【杭州中转部】已发往【成都中转部】", XS),
    _s(2, "06:40", "1002", "快件到达【武汉中转部】", WH),
    _s(2, "09:10", "1002", "快件离开【武汉中转部】已发往【成都中转部】", WH),
    _s(2, "20:20", "1002", "快件到达【成都中转部】", CD),
    _s(3, "06:30", "1001", "快件已到达【成都锦江公司】", CD),
    _s(3, "09:00", "5", "【成都锦江公司】的派件员【王师傅】正在派件", CD),
    _s(3, "10:15", "203", "收件人拒收，原因：不想要了，待寄件方确认退回", CD),
    _s(3, "17:00", "6", "快件已退回，原因：收件人拒收，正在返回寄件人途中", CD),
    _s(3, "22:10", "0", "快件离开【成都中转部】已发往【杭州中转部】", CD),
    _s(4, "09:30", "0", "快件到达【武汉中转部】", WH),
    _s(4, "20:40", "0", "快件到达【杭州中转部】", XS),
    _s(5, "08:00", "14", "快件已被寄件人签收（收件人拒签退回）", HZ),
)
_STALLED = (
    _s(1, "16:10", "103", "【浙江杭州余杭区公司】已揽收", HZ),
    _s(1, "20:30", "0", "【浙江杭州余杭区公司】已发出 下一站【杭州转运中心】", HZ),
    _s(2, "00:45", "1002", "【杭州市】快件已到达 杭州转运中心", XS),
    _s(2, "02:20", "1002", "【杭州转运中心】已发出 下一站【深圳转运中心】", XS),
)
# The second failure is exactly 24 h after the first: on another local day whatever the hour.
_FAILED_TWICE = (
    _s(1, "15:50", "103", "【浙江杭州余杭区公司】已揽收", HZ),
    _s(1, "20:10", "1002", "【杭州分拨中心】已发出 下一站【北京分拨中心】", XS),
    _s(2, "03:30", "1002", "【北京分拨中心】已到达", SY),
    _s(2, "06:20", "1001", "快件已到达【北京市朝阳区望京公司】", BJ),
    _s(2, "08:40", "5", "【北京市朝阳区望京公司】派件员：孙师傅 正在派送", BJ),
    _s(2, "15:40", "204", "快件派送不成功，原因：收件人不在家，电话无人接听，将再次派送", BJ),
    _s(2, "19:00", "0", "快件已返回【北京市朝阳区望京公司】网点保管", BJ),
    _s(3, "08:45", "5", "【北京市朝阳区望京公司】派件员：孙师傅 正在派送", BJ),
    _s(3, "15:40", "206", "快件派送不成功，原因：收件人电话无法接通，将再次派送", BJ),
    _s(3, "18:30", "0", "快件已返回【北京市朝阳区望京公司】网点保管，预约次日派送", BJ),
    _s(4, "08:40", "5", "【北京市朝阳区望京公司】派件员：孙师傅 正在派送", BJ),
    _s(4, "10:05", "302", "快件已签收，签收人：本人（派件异常后签收），如有疑问请联系快递员", BJ),
)
_NOT_PICKED_UP = (
    _s(1, "14:20", "101", "商家已下单，等待快递员揽收", HZ),
    _s(1, "15:30", "102", "【浙江杭州余杭区仓前公司】已分配快递员【张师傅】，等待揽收", HZ),
)
_UNCOLLECTED = (
    _s(1, "15:45", "103", "【杭州市邮政分公司】已收寄", HZ),
    _s(1, "21:15", "1002", "【杭州邮区中心局】已发出，下一站【武汉邮区中心局】", XS),
    _s(2, "08:30", "1002", "【武汉邮区中心局】已到达", WH),
    _s(2, "12:10", "1002", "【武汉邮区中心局】已发出，下一站【成都邮区中心局】", WH),
    _s(2, "23:05", "1001", "快件已到达【成都市锦江区揽投部】", CD),
    _s(3, "07:30", "5", "【成都市锦江区揽投部】投递员正在投递", CD),
    _s(3, "09:12", "501", "快件已投递至【丰巢智能柜（锦江花园）】，请凭取件码取件", CD),
)
_RETURNED = (
    _s(1, "16:00", "103", "【浙江杭州余杭区公司】已揽收", HZ),
    _s(1, "20:30", "0", "【浙江杭州余杭区公司】已发出 下一站【杭州转运中心】", HZ),
    _s(2, "00:50", "1002", "【杭州市】快件已到达 杭州转运中心", XS),
    _s(2, "02:10", "1002", "【杭州转运中心】已发出 下一站【上海市浦东新区张江公司】", XS),
    _s(2, "06:30", "1001", "快件已到达【上海市浦东新区张江公司】", SH),
    _s(2, "08:40", "5", "【上海市浦东新区张江公司】派件员：李师傅 正在为您派件", SH),
    _s(2, "12:10", "206", "快件派送不成功，原因：收件人电话无人接听，地址无法确认", SH),
    _s(2, "15:30", "0", "快件已返回【上海市浦东新区张江公司】网点保管", SH),
    _s(3, "08:00", "6", "收件人长时间联系不上，经寄件方同意，快件退回寄件人", SH),
    _s(3, "14:30", "0", "【上海转运中心】已发出 下一站【杭州转运中心】", SH),
    _s(3, "21:20", "0", "【杭州市】快件已到达 杭州转运中心", XS),
    _s(4, "08:10", "0", "【浙江杭州余杭区公司】快件已到达，准备退回寄件人", HZ),
    _s(4, "11:40", "4", "快件已退回寄件人，寄件人已签收", HZ),
)
_DAMAGED = (
    _s(1, "16:00", "103", "【浙江杭州余杭区营业点】快件已收取", HZ),
    _s(1, "21:05", "1002", "快件在【杭州萧山集散中心】完成分拣，准备发往【深圳华南集散中心】", XS),
    _s(2, "07:10", "1002", "快件到达【深圳华南集散中心】", SZ),
    _s(2, "09:55", "209", "快件在【深圳华南集散中心】发现外包装破损，已加固处理", SZ),
    _s(2, "13:20", "1002", "快件在【深圳华南集散中心】完成分拣，准备发往【深圳南山科技园营业点】",
       SZ),
    _s(2, "17:40", "1001", "快件到达【深圳南山科技园营业点】", SZ),
    _s(3, "08:30", "5", "【深圳南山科技园营业点】快递员正在派送途中，请保持电话畅通", SZ),
    _s(3, "11:05", "3", "快件已签收，签收人：本人（外包装破损，已当面验视），如有疑问请联系快递员",
       SZ),
)
_REDIRECTED = (
    _s(1, "17:00", "103", "【杭州余杭营业部】快递员已揽收", HZ),
    _s(1, "21:30", "1002", "您的快件已从【杭州分拣中心】发出", XS),
    _s(2, "02:40", "1002", "您的快件已到达【上海分拣中心】", SH),
    _s(2, "06:05", "1001", "您的快件已到达【上海浦东营业部】", SH),
    _s(2, "10:40", "1003", "应客户要求，快件改派至新地址【上海市徐汇区】，请留意新的派送时间", SH),
    _s(2, "17:30", "0", "您的快件已从【上海浦东营业部】发出，发往【上海徐汇营业部】", SH),
    _s(2, "21:50", "1001", "您的快件已到达【上海徐汇营业部】", XH),
    _s(3, "08:20", "5", "【上海徐汇营业部】配送员正在为您派件", XH),
    _s(3, "10:45", "301", "您的快件已签收，签收人：本人，感谢您使用", XH),
)

SCRIPTS: dict[str, Script] = {script.name: script for script in (
    Script("delivered", _DELIVERED),
    Script("refused", _REFUSED),
    Script("stalled", _STALLED),
    Script("failed_twice", _FAILED_TWICE),
    Script("not_picked_up", _NOT_PICKED_UP),
    Script("uncollected", _UNCOLLECTED),
    Script("returned", _RETURNED),
    Script("damaged", _DAMAGED),
    Script("redirected", _REDIRECTED),
    Script("poll_only", _DELIVERED, pushes=False),
    Script("no_record", ()),  # a number the carrier never scans: 500 forever, abort after 3 days
)}
DEFAULT_ROTATION = ("delivered", "refused", "stalled", "failed_twice", "not_picked_up",
                    "uncollected", "returned", "damaged", "redirected", "poll_only")


# Answers ----------------------------------------------------------------------------------------

def _error(code: str, message: str) -> dict[str, Any]:
    return {"result": False, "returnCode": code, "message": message}


BAD_DATA = _error("400", "数据不完整")
UNKNOWN_COM = _error("400", "找不到对应公司")
PHONE_MISMATCH = _error("408", "快递公司参数异常：验证码错误")
NO_RESULT = _error("500", "查询无结果，请隔段时间再查")
LOCKED = NO_RESULT  # guess: the lock is not in our fixtures; it reads as "no result yet"
BAD_SIGNATURE = _error("503", "验证签名失败")
SUBSCRIBED = {"result": True, "returnCode": "200", "message": "提交成功"}
DUPLICATE = _error("501", "POLL:重复订阅")
NOT_A_SUBSCRIBER = _error("600", "您不是合法的订阅者")
BAD_SUBSCRIPTION = _error("700", "订阅方的订阅数据存在错误"
                                 "（如不支持的快递公司、单号为空、单号超长等）或错误的回调地址")
SUBSCRIPTION_LIMIT_REACHED = _error("700", "POLL:该单号订阅次数超过限制")  # guess, see above


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _tail(phone: object) -> str | None:
    try:
        return k100.phone_tail(str(phone)) if phone else None
    except ValueError:
        return None


# State ------------------------------------------------------------------------------------------

@dataclass
class _Subscription:
    callback_url: str
    salt: str
    at: datetime
    pushed: int  # steps already pushed (acknowledged, or folded into the first push)
    ended: str = ""  # "shutdown" or "abort" once that push was acknowledged


@dataclass
class _Parcel:
    com: str
    num: str
    script: Script
    pushes: bool
    phone: str | None = None  # last four digits on the waybill
    anchor: datetime | None = None
    last_query: datetime | None = None
    subscriptions: list[_Subscription] = field(default_factory=list)
    subscribe_requests: list[datetime] = field(default_factory=list)

    @property
    def active(self) -> _Subscription | None:
        return next((sub for sub in self.subscriptions if not sub.ended), None)


@dataclass(frozen=True)
class _Push:
    parcel: _Parcel
    subscription: _Subscription
    pushed: int  # the subscription's progress once acknowledged
    status: str  # polling | shutdown | abort
    form: dict[str, str]


class CourierSimulator:
    """Kuaidi100 on 127.0.0.1: query, subscribe, pushes, and a small /_sim API for people."""

    def __init__(self, *, customer: str, key: str, time_scale: float = 1.0,
                 clock: Callable[[], datetime] = _utc_now, host: str = "127.0.0.1",
                 port: int = 0, rotation: Sequence[str] = DEFAULT_ROTATION,
                 session: requests.Session | None = None, label_secret: str = "",
                 label_latency: float = 0.0, label_balance: int | None = None) -> None:
        """`label_secret`: the account's secret for electronic waybills (label/order, signed
        with `key` and it; devstack/labels.py)."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        unknown = [name for name in rotation if name not in SCRIPTS]
        if unknown or not rotation:
            raise ValueError(f"rotation needs known script names, got {list(rotation)!r}")
        self.customer, self.key, self.time_scale = customer, key, time_scale
        self.clock, self.host, self.port = clock, host, port
        self.rotation = tuple(rotation)
        self.session = session or requests.Session()
        self.queries: Counter[tuple[str, str]] = Counter()
        self._parcels: dict[tuple[str, str], _Parcel] = {}
        self._contacts = 0  # parcels seen so far: the next one takes rotation[_contacts % n]
        self._lock = threading.Lock()  # parcel state; never held during network I/O
        self._push_lock = threading.Lock()  # one delivery round at a time, pushes in order
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.labels = Labels(key=key, secret=label_secret, balance=label_balance,
                             latency=label_latency)

    # Lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def query_url(self) -> str:
        return self.url + QUERY_PATH

    @property
    def subscribe_url(self) -> str:
        return self.url + SUBSCRIBE_PATH

    @property
    def label_url(self) -> str:
        return self.url + LABEL_PATH

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler, self)
        server = self._server
        self._spawn("courier-sim-http", lambda: server.serve_forever(poll_interval=0.05))

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=PUSH_TIMEOUT[1] + 5)
        self._threads.clear()

    def __enter__(self) -> CourierSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_pushes(self, every_seconds: float = 1.0) -> None:
        """Deliver due pushes every `every_seconds` in a daemon thread until stop()."""
        def loop() -> None:
            while not self._stopping.wait(every_seconds):
                try:
                    self.deliver_pushes()
                except Exception:  # keep pushing: one bad round must not end the journey
                    log.exception("courier simulator: push round failed")
        self._spawn("courier-sim-pushes", loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # Parcels ------------------------------------------------------------------------------------

    def assign(self, carrier_code: str, tracking_number: str, script: str, *,
               pushes: bool | None = None, phone: str | None = None) -> None:
        """Give a parcel its journey (before or after first contact; the anchor is kept)."""
        self.assign_com(k100.com_for(carrier_code), tracking_number, script, pushes=pushes,
                        phone=phone)

    def assign_com(self, com: str, tracking_number: str, script: str, *,
                   pushes: bool | None = None, phone: str | None = None) -> None:
        com = com.strip().lower()
        if com not in _KNOWN_COMS:
            raise ValueError(f"unknown Kuaidi100 com {com!r}")
        if script not in SCRIPTS:
            raise ValueError(f"unknown script {script!r}; known: {sorted(SCRIPTS)}")
        if not tracking_number.strip():
            raise ValueError("a tracking number is required")
        chosen = SCRIPTS[script]
        with self._lock:
            parcel = self._parcels.setdefault(
                (com, tracking_number), _Parcel(com, tracking_number, chosen, chosen.pushes))
            parcel.script = chosen
            parcel.pushes = chosen.pushes if pushes is None else pushes
            if phone:
                parcel.phone = k100.phone_tail(phone)

    def parcels(self) -> list[dict[str, Any]]:
        """Every parcel with its script and the scans visible so far (GET /_sim/parcels)."""
        issued = set(self.labels.numbers())  # its own lock: taken before the parcels'
        with self._lock:
            now = self.clock()
            return [self._describe(parcel, now, issued) for parcel in self._parcels.values()]

    def _describe(self, parcel: _Parcel, now: datetime,
                  issued: set[str]) -> dict[str, Any]:
        visible = self._visible(parcel, now)
        upcoming = parcel.script.steps[len(visible):]
        next_at = self._scan_time(parcel, upcoming[0]) if upcoming and parcel.anchor else None
        return {
            "com": parcel.com, "carrier_code": k100.carrier_for(parcel.com), "num": parcel.num,
            "script": parcel.script.name, "pushes": parcel.pushes,
            "issued_here": parcel.num in issued,
            "anchor": parcel.anchor.isoformat() if parcel.anchor else None,
            "queries": self.queries[(parcel.com, parcel.num)],
            "subscriptions": [{"callbackurl": sub.callback_url, "pushed": sub.pushed,
                               "ended": sub.ended or None} for sub in parcel.subscriptions],
            "steps": self._lines(parcel, visible),
            "next_step_at": next_at.isoformat() if next_at else None,
            "steps_left": len(upcoming),
        }

    def _contact(self, com: str, num: str, now: datetime) -> _Parcel:
        """The parcel, created with the next rotation script on first contact, and anchored."""
        parcel = self._parcels.get((com, num))
        if parcel is None:
            script = SCRIPTS[self.rotation[self._contacts % len(self.rotation)]]
            self._contacts += 1
            parcel = self._parcels[(com, num)] = _Parcel(com, num, script, script.pushes)
        if parcel.anchor is None:
            parcel.anchor = now
        return parcel

    # Time ---------------------------------------------------------------------------------------

    def _scaled(self, span: timedelta) -> timedelta:
        return span / self.time_scale

    def _scan_time(self, parcel: _Parcel, step: Step) -> datetime:
        assert parcel.anchor is not None
        return parcel.anchor + self._scaled(step.after)

    def _visible(self, parcel: _Parcel, now: datetime) -> tuple[Step, ...]:
        if parcel.anchor is None:
            return ()
        steps = parcel.script.steps
        shown = sum(1 for step in steps if self._scan_time(parcel, step) <= now)
        return steps[:shown]  # steps are in time order

    # Answers ------------------------------------------------------------------------------------

    def _lines(self, parcel: _Parcel, steps: Sequence[Step]) -> list[dict[str, str]]:
        """Kuaidi100 data[] lines, newest first."""
        return [self._line(parcel, step) for step in reversed(steps)]

    def _line(self, parcel: _Parcel, step: Step) -> dict[str, str]:
        at = self._scan_time(parcel, step).astimezone(k100.CHINA).strftime(TIME_FORMAT)
        code, centre, pinyin = AREAS.get(step.area, ("", "", ""))
        return {"time": at, "context": step.context, "ftime": at, "areaCode": code,
                "areaName": step.area, "status": STATUS_NAMES.get(step.state, ""),
                "location": "", "areaCenter": centre, "areaPinYin": pinyin,
                "statusCode": step.state}

    def _result(self, parcel: _Parcel, steps: Sequence[Step]) -> dict[str, Any]:
        """The body of a query answer and of a push's lastResult."""
        final = bool(steps) and steps[-1].state in FINAL_STATES
        return {"message": "ok", "nu": parcel.num, "ischeck": "1" if final else "0",
                "com": parcel.com, "status": "200", "condition": "F00",
                "state": steps[-1].state if steps else "0", "data": self._lines(parcel, steps)}

    # Query --------------------------------------------------------------------------------------

    def query(self, form: Mapping[str, str]) -> dict[str, Any]:
        """POST /poll/query.do: form customer, sign, param."""
        return dict(self._query(form))  # a copy: the error answers are shared constants

    def _query(self, form: Mapping[str, str]) -> dict[str, Any]:
        param_text, customer = form.get("param", ""), form.get("customer", "")
        expected = k100.sign(param_text, self.key, self.customer)
        if customer != self.customer or form.get("sign", "").strip().upper() != expected:
            return BAD_SIGNATURE
        param = _json_object(param_text)
        if param is None or not str(param.get("num") or "").strip():
            return BAD_DATA
        com, num = str(param.get("com") or "").strip().lower(), str(param["num"]).strip()
        with self._lock:
            self.queries[(com, num)] += 1
            if com not in _KNOWN_COMS:
                return UNKNOWN_COM
            return self._answer_query(com, num, param)

    def _answer_query(self, com: str, num: str, param: Mapping[str, Any]) -> dict[str, Any]:
        now = self.clock()
        parcel = self._contact(com, num, now)
        if not self._phone_ok(parcel, param.get("phone")):
            return PHONE_MISMATCH
        if parcel.last_query and now < parcel.last_query + self._scaled(k100.QUERY_LOCK):
            return LOCKED  # the lock runs from the last query it let through
        parcel.last_query = now
        visible = self._visible(parcel, now)
        if not visible:
            return NO_RESULT
        answer = self._result(parcel, visible)
        if str(param.get("order", "desc")).lower() == "asc":
            answer["data"].reverse()
        return answer

    def _phone_ok(self, parcel: _Parcel, phone: object) -> bool:
        """SF and ZTO check the phone's last four digits against the waybill."""
        if parcel.com not in _PHONE_COMS:
            return True
        tail = _tail(phone)
        if tail is None:
            return False
        if parcel.phone is None:
            parcel.phone = tail  # unassigned parcel: the first phone we hear is the waybill's
        return tail == parcel.phone

    # Subscribe ----------------------------------------------------------------------------------

    def subscribe(self, form: Mapping[str, str]) -> dict[str, Any]:
        """POST /poll: form schema=json, param{company, number, key, parameters{...}}."""
        return dict(self._subscribe(form))

    def _subscribe(self, form: Mapping[str, str]) -> dict[str, Any]:
        param = _json_object(form.get("param", ""))
        if form.get("schema", "json") != "json" or param is None:
            return BAD_SUBSCRIPTION
        if param.get("key") != self.key:
            return NOT_A_SUBSCRIBER
        com = str(param.get("company") or "").strip().lower()
        num = str(param.get("number") or "").strip()
        parameters = param.get("parameters")
        if not isinstance(parameters, dict):
            parameters = {}
        callback = str(parameters.get("callbackurl") or "")
        if com not in _KNOWN_COMS or not num or urlsplit(callback).scheme not in ("http", "https"):
            return BAD_SUBSCRIPTION
        with self._lock:
            return self._answer_subscribe(com, num, callback, parameters)

    def _answer_subscribe(self, com: str, num: str, callback: str,
                          parameters: Mapping[str, Any]) -> dict[str, Any]:
        now = self.clock()
        parcel = self._contact(com, num, now)
        since = now - self._scaled(SUBSCRIPTION_WINDOW)
        parcel.subscribe_requests = [at for at in parcel.subscribe_requests if at > since]
        if len(parcel.subscribe_requests) >= SUBSCRIPTION_LIMIT:
            return SUBSCRIPTION_LIMIT_REACHED
        parcel.subscribe_requests.append(now)
        if parcel.active is not None:
            return DUPLICATE
        tail = _tail(parameters.get("phone"))
        if parcel.phone is None and tail is not None:
            parcel.phone = tail
        # Scans already there go out together in the first push, later ones one push each.
        already = len(self._visible(parcel, now))
        parcel.subscriptions.append(_Subscription(
            callback, str(parameters.get("salt") or ""), now, pushed=max(0, already - 1)))
        return SUBSCRIBED

    # Pushes -------------------------------------------------------------------------------------

    def deliver_pushes(self) -> int:
        """Send every push now due; count those answered with the success reply.

        A subscription's pushes go out in order; one not acknowledged stops that subscription's
        round and is sent again on a later call.
        """
        with self._push_lock:
            with self._lock:
                now = self.clock()
                rounds = [self._due(parcel, sub, now) for parcel in self._parcels.values()
                          if parcel.pushes for sub in parcel.subscriptions if not sub.ended]
            return sum(self._send_in_order(pushes) for pushes in rounds)

    def _send_in_order(self, pushes: Sequence[_Push]) -> int:
        sent = 0
        for push in pushes:
            if not self._send(push):
                break
            with self._lock:
                push.subscription.pushed = push.pushed
                if push.status != "polling":
                    push.subscription.ended = push.status
            sent += 1
        return sent

    def _due(self, parcel: _Parcel, sub: _Subscription, now: datetime) -> list[_Push]:
        visible = self._visible(parcel, now)
        pushes: list[_Push] = []
        for shown in range(sub.pushed + 1, len(visible) + 1):  # a final state is always last
            status = "shutdown" if visible[shown - 1].state in FINAL_STATES else "polling"
            pushes.append(self._push(parcel, sub, visible[:shown], status, ""))
        if not pushes:
            reason = self._abort_reason(parcel, sub, visible, now)
            if reason:
                pushes.append(self._push(parcel, sub, visible, "abort", reason))
        return pushes

    def _abort_reason(self, parcel: _Parcel, sub: _Subscription, visible: Sequence[Step],
                      now: datetime) -> str:
        """Kuaidi100 gives up after 3 days without any scan or 60 days without a new one."""
        if not visible:
            return "3天查询无记录" if now >= sub.at + self._scaled(NO_RECORD_ABORT) else ""
        if visible[-1].state in FINAL_STATES:
            return ""
        quiet_since = max(sub.at, self._scan_time(parcel, visible[-1]))
        return "60天无变化" if now >= quiet_since + self._scaled(NO_CHANGE_ABORT) else ""

    def _push(self, parcel: _Parcel, sub: _Subscription, steps: Sequence[Step], status: str,
              message: str) -> _Push:
        body = {"status": status, "billstatus": "got", "message": message, "autoCheck": "0",
                "comOld": "", "comNew": "", "lastResult": self._result(parcel, steps)}
        param = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        # A push's sign is MD5(param + salt): the query signature with the salt as key, no customer.
        form = {"param": param, "sign": k100.sign(param, sub.salt, "")}
        return _Push(parcel, sub, len(steps), status, form)

    def _send(self, push: _Push) -> bool:
        try:
            response = self.session.post(push.subscription.callback_url, data=push.form,
                                         timeout=PUSH_TIMEOUT)
        except requests.RequestException as exc:
            log.debug("push to %s failed: %s", push.subscription.callback_url, exc)
            return False
        return response.status_code == 200 and _acknowledged(response.text)


def _acknowledged(text: str) -> bool:
    reply = _json_object(text)
    return reply is not None and reply.get("result") is True and reply.get("returnCode") == "200"


# HTTP -------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 simulator: CourierSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: benchmarks query many numbers
    server_version = "CourierSimulator"

    @property
    def simulator(self) -> CourierSimulator:
        return cast(_Server, self.server).simulator

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request on stderr."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path == PARCELS_PATH:
            self._reply(200, {"parcels": self.simulator.parcels()})
        elif urlsplit(self.path).path == LABELS_PATH:
            self._reply(200, {"labels": self.simulator.labels.describe()})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        path, body = urlsplit(self.path).path, self._body()
        try:
            status, answer = self._route(path, body)
        except Exception:
            log.exception("courier simulator: %s failed", path)
            status, answer = 500, {"error": "simulator error"}
        self._reply(status, answer)

    def _route(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path == QUERY_PATH:
            return 200, self.simulator.query(_form(body))
        if path == SUBSCRIBE_PATH:
            return 200, self.simulator.subscribe(_form(body))
        if path == PARCELS_PATH:
            return self._assign(body)
        if path == LABEL_PATH:
            method = parse_qs(urlsplit(self.path).query).get("method", [""])[0]
            return 200, self.simulator.labels.answer(method, _form(body))
        return 404, {"error": "not found"}

    def _assign(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST /_sim/parcels JSON {"com"|"carrier_code", "num", "script", "pushes"?, "phone"?}."""
        request = _json_object(body.decode("utf-8", "replace"))
        if request is None:
            return 400, {"error": "expected a JSON object"}
        try:
            com = request.get("com") or k100.com_for(str(request.get("carrier_code") or ""))
            pushes = request.get("pushes")
            self.simulator.assign_com(
                str(com), str(request.get("num") or ""), str(request.get("script") or ""),
                pushes=None if pushes is None else bool(pushes),
                phone=str(request["phone"]) if request.get("phone") else None)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        return 200, {"ok": True}

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, answer: Mapping[str, Any]) -> None:
        data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _form(body: bytes) -> dict[str, str]:
    text = body.decode("utf-8", "replace")
    return {name: values[0] for name, values in parse_qs(text, keep_blank_values=True).items()}

