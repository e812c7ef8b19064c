"""What every simulated marketplace shares: a shop's orders, a local HTTP server for the
platform's API, signed notifications sent with the faults real platforms have, and the
writebacks it received.

A platform module (`devstack/marketplaces/<platform>.py`) subclasses
`MarketplaceSimulator` and supplies only the platform's wire format: how an order looks in its
API (`render`), its notification (`notification`), and its API routes (`route`), built from the
same pure adapter module our system uses where that helps (signatures, status words), so what the
simulator says is what our adapter reads.

Faults (`Faults`): a notification may be sent twice (the platform's retry), held back and sent
after the next one (out of order), or dropped (never sent: reconciliation must find the order).
Every notification's fate is recorded, so a test can name the orders only reconciliation knows.

Expiring access (`TokenBook`): where a platform's shop access expires, its simulator refuses an
access token past its end and renews it with the refresh token, which rotates: a refresh
answers a new pair and the refresh token sent is refused from then on. `make run` gives the
tokens short lives (LOCAL_TOKEN_SECONDS), so our renewal runs within minutes; each renewal is
a line in the stack's output.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import requests

log = logging.getLogger("devstack.marketplaces")

SEND_TIMEOUT = (3.05, 10.0)
SEND_ATTEMPTS = 3  # a platform retries a failed delivery (a few times, here at once)

Status = Literal["unpaid", "paid", "shipped", "cancelled"]


@dataclass
class SimLine:
    line_id: str  # the platform's line item id (writebacks name it on some platforms)
    sku: str
    title: str
    quantity: int
    price: Decimal


@dataclass
class SimShipment:
    carrier: str  # as the platform's writeback named it (its own carrier code or name)
    tracking_number: str
    at: datetime
    line_ids: tuple[str, ...] = ()


@dataclass
class SimOrder:
    """One order as the platform holds it, platform-neutral; `render` gives its wire shape."""

    external_id: str
    number: str  # what the buyer and CS see (e.g. "#1043", or the id itself)
    status: Status
    buyer_name: str
    phone: str
    province: str
    city: str
    district: str
    street: str
    postcode: str
    lines: list[SimLine]
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    shipments: list[SimShipment] = field(default_factory=list)
    currency: str = "CNY"
    shipping_fee: Decimal = Decimal("0")

    @property
    def total(self) -> Decimal:
        return sum((line.price * line.quantity for line in self.lines), Decimal("0")) \
            + self.shipping_fee


@dataclass(frozen=True)
class Notification:
    """One delivery exactly as the platform sends it."""

    body: bytes
    headers: Mapping[str, str]
    url: str = ""  # default: the simulator's webhook url


@dataclass(frozen=True)
class Faults:
    """Probabilities per notification (independent draws; drop wins over the others)."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    seed: int | None = None


NO_FAULTS = Faults()


@dataclass
class Fate:
    external_id: str
    topic: str
    # handed: given to whoever placed the order, to deliver themselves (make demo-order)
    fate: Literal["sent", "duplicated", "held", "dropped", "handed"]
    answers: list[int] = field(default_factory=list)  # HTTP status of each delivery attempt


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, answer: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(answer, ensure_ascii=False, default=str).encode())


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))


# How long the access a seller grants a printing app (the waybill channels) lives here: the whole
# run, whatever LOCAL_TOKEN_SECONDS makes of the shop's own access.
WAYBILL_APP_LIFE = timedelta(days=365)


class TokenBook:
    """A shop's authorisation as a platform keeps it. Every access token issued works until its
    own end (a renewal does not cut the previous one short); one refresh token is valid at a
    time, until its end: a refresh spends it and issues a new access token and a new refresh
    token (each with a full life)."""

    def __init__(self, *, platform: str, shop: str, clock: Callable[[], datetime],
                 access_token: str, refresh_token: str, access_life: timedelta,
                 refresh_life: timedelta, make_access: Callable[[], str],
                 make_refresh: Callable[[], str]) -> None:
        self.platform, self.shop, self.clock = platform, shop, clock
        self.access_life, self.refresh_life = access_life, refresh_life
        self._make_access, self._make_refresh = make_access, make_refresh
        self._lock = threading.Lock()
        now = clock()
        self._access: dict[str, datetime] = {access_token: now + access_life}
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.refresh_ends = now + refresh_life
        self.refreshes = 0
        self.refused: list[str] = []  # refresh tokens refused (spent, unknown or ended)

    @property
    def access_ends(self) -> datetime:
        return self._access[self.access_token]

    def check(self, token: str) -> Literal["ok", "expired", "invalid"]:
        """An access token as the platform judges it."""
        with self._lock:
            ends = next((e for t, e in self._access.items() if _same(t, token)), None)
        if ends is None:
            return "invalid"
        return "ok" if self.clock() < ends else "expired"

    def refresh(self, token: str) -> bool:
        """Spend `token` (the current refresh token, not ended) for a new pair; False (and
        nothing changes) for any other."""
        with self._lock:
            now = self.clock()
            if not _same(token, self.refresh_token) or now >= self.refresh_ends:
                self.refused.append(token)
                log.info("%s %s: token refresh refused (a spent, unknown or ended refresh "
                         "token)", self.platform, self.shop)
                return False
            self.access_token, self.refresh_token = self._make_access(), self._make_refresh()
            self._access[self.access_token] = now + self.access_life
            self.refresh_ends = now + self.refresh_life
            self.refreshes += 1
        log.info("%s %s: shop token refreshed (#%d), access until %s; the refresh token "
                 "rotated, the old one is refused from now", self.platform, self.shop,
                 self.refreshes, self.access_ends.isoformat(timespec="seconds"))
        return True

    def grant(self, life: timedelta) -> str:
        """Another access token of the same shop with a life of its own (not renewed, not
        cut short by a renewal): an authorisation the seller gave a second app, such as the
        printing app that asks the platform's waybill channel for labels."""
        token = self._make_access()
        with self._lock:
            self._access[token] = self.clock() + life
        return token

    def credentials(self) -> dict[str, str]:
        """What the shop's parameter holds after an authorisation (or the last renewal)."""
        return {"refresh_token": self.refresh_token,
                "access_token_expires_at": self.access_ends.isoformat(timespec="seconds"),
                "refresh_token_expires_at": self.refresh_ends.isoformat(timespec="seconds")}


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# Buyers and goods the simulated shops sell: realistic enough for address validation and routing.
_BUYERS = (
    ("张伟", "13800138000", "浙江省", "杭州市", "西湖区", "文三路 90 号 5 幢 301", "310012"),
    ("王芳", "13912345678", "广东省", "深圳市", "南山区", "科技园南区 高新南一道 8 号", "518057"),
    ("李娜", "13700001111", "上海市", "上海市", "徐汇区", "漕溪北路 88 号 12 楼", "200030"),
    ("刘洋", "13611112222", "北京市", "北京市", "朝阳区", "建国路 93 号 万达广场 8 号楼", "100022"),
    ("陈静", "13522223333", "四川省", "成都市", "武侯区", "人民南路四段 11 号", "610041"),
    ("杨磊", "13433334444", "江苏省", "南京市", "鼓楼区", "中山北路 200 号", "210009"),
)
_GOODS = (
    ("TEA-LJ-250", "西湖龙井 250g", Decimal("168.00")),
    ("MUG-CER-01", "陶瓷马克杯 白", Decimal("39.90")),
    ("TOTE-CNV-02", "帆布托特包 米色", Decimal("59.00")),
    ("SCARF-SLK-07", "真丝方巾 青", Decimal("229.00")),
)


class MarketplaceSimulator(ABC):
    """One simulated shop of one platform. Subclasses set `name` (the adapter's scheme) and
    implement `render`, `notification`, `route`, `credentials` and `source`."""

    name: str = ""

    def __init__(self, *, shop: str, webhook_url: str, faults: Faults = NO_FAULTS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 token_life: timedelta | None = None) -> None:
        self.shop = shop
        # How long access tokens live where the platform's expire (None: the platform's own).
        self.token_life = token_life
        self.webhook_url = webhook_url
        self.faults = faults
        self.clock = clock
        self.rng = random.Random(faults.seed)
        self.orders: dict[str, SimOrder] = {}
        self.writebacks: list[dict[str, Any]] = []  # every writeback request, as received
        self.fates: list[Fate] = []
        self.lock = threading.RLock()
        self._held: list[tuple[Notification, Fate]] = []
        self._outbox: queue.Queue[tuple[Notification, Fate] | threading.Event | None] = \
            queue.Queue()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._sequence = 0

    # What a platform module supplies ------------------------------------------------------

    @abstractmethod
    def render(self, order: SimOrder) -> Any:
        """The order as the platform's API shows it (the JSON its order endpoint answers)."""

    @abstractmethod
    def notification(self, order: SimOrder, topic: str) -> Notification:
        """The signed notification the platform sends when `order` changed (`topic`: created,
        paid, cancelled, shipped)."""

    @abstractmethod
    def route(self, request: Request) -> Reply:
        """The platform's API: order fetch, listing, writeback (recorded with `record`)."""

    @abstractmethod
    def credentials(self) -> dict[str, str]:
        """What `admin shop` would store for this shop: api base pointing here, keys."""

    @abstractmethod
    def source(self) -> dict[str, Any] | None:
        """Our webhook source for this platform: {"scheme": ..., "secrets": [...], ...}; None
        for a platform that posts no notifications to us (we fetch them)."""

    def new_id(self) -> str:
        """A platform-shaped order id (override for platforms with their own format)."""
        return str(self.rng.randrange(10**12, 10**13))

    def new_line_id(self, external_id: str, n: int) -> str:
        """The platform's id of the order's n-th line (from 1); override like `new_id`."""
        return f"{external_id}{n}"

    # Server ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        server = self._server
        for name, target in ((f"{self.name} api", lambda: server.serve_forever(0.05)),
                             (f"{self.name} notifications", self._deliver_forever)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._outbox.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> MarketplaceSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every notification queued so far was delivered (tests)."""
        done = threading.Event()
        self._outbox.put(done)
        if not done.wait(timeout):
            raise TimeoutError(f"{self.name}: notifications not delivered in {timeout} s")

    # The shop's life ------------------------------------------------------------------------

    def place_order(self, *, paid: bool = True, drop: bool | None = None) -> SimOrder:
        """A buyer places (and pays for) an order; the platform notifies. `drop` forces the
        notifications of this order to be dropped (True) or delivered (False)."""
        order = self._new_order(paid)
        self.notify(order, "paid" if paid else "created", drop=drop)
        return order

    def hand_over_order(self) -> tuple[SimOrder, Notification]:
        """A paid order whose notification the caller delivers (a demo that wants to show our
        answer): recorded as "handed", never sent by the simulator."""
        order = self._new_order(paid=True)
        with self.lock:
            self.fates.append(Fate(order.external_id, "paid", "handed"))
            return order, self.notification(order, "paid")

    def _new_order(self, paid: bool) -> SimOrder:
        now = self.clock()
        with self.lock:
            self._sequence += 1
            buyer = self.rng.choice(_BUYERS)
            goods = self.rng.sample(_GOODS, self.rng.randint(1, 2))
            external_id = self.new_id()
            lines = [SimLine(line_id=self.new_line_id(external_id, n), sku=sku, title=title,
                             quantity=self.rng.randint(1, 2), price=price)
                     for n, (sku, title, price) in enumerate(goods, start=1)]
            order = SimOrder(external_id=external_id, number=str(1000 + self._sequence),
                             status="paid" if paid else "unpaid", buyer_name=buyer[0],
                             phone=buyer[1], province=buyer[2], city=buyer[3], district=buyer[4],
                             street=buyer[5], postcode=buyer[6], lines=lines, created_at=now,
                             updated_at=now, paid_at=now if paid else None)
            self.orders[external_id] = order
        return order

    def pay(self, external_id: str, drop: bool | None = None) -> SimOrder:
        return self._change(external_id, "paid", drop, status="paid", paid_at=self.clock())

    def cancel(self, external_id: str, drop: bool | None = None) -> SimOrder:
        return self._change(external_id, "cancelled", drop, status="cancelled",
                            cancelled_at=self.clock())

    def _change(self, external_id: str, topic: str, drop: bool | None, **changes: Any) -> SimOrder:
        with self.lock:
            order = self.orders[external_id]
            for key, value in changes.items():
                setattr(order, key, value)
            order.updated_at = max(self.clock(), order.updated_at)
        self.notify(order, topic, drop=drop)
        return order

    def record(self, external_id: str, what: dict[str, Any], shipment: SimShipment | None
               ) -> None:
        """A writeback the platform accepted: recorded, and the order shows it."""
        with self.lock:
            self.writebacks.append({"external_id": external_id, "at": self.clock(), **what})
            order = self.orders[external_id]
            if shipment is not None:
                order.shipments.append(shipment)
                order.status = "shipped"
                order.updated_at = max(self.clock(), order.updated_at)
        log.info("%s %s: writeback %s", self.name, external_id, json.dumps(what, default=str,
                                                                           ensure_ascii=False))

    def summary(self) -> list[dict[str, Any]]:
        """GET /_sim/orders: every order, its shipments and what became of its notifications."""
        with self.lock:
            return [{"external_id": o.external_id, "number": o.number, "status": o.status,
                     "updated_at": o.updated_at.isoformat(),
                     "shipments": [asdict(s) for s in o.shipments],
                     "notifications": [f.fate for f in self.fates
                                       if f.external_id == o.external_id]}
                    for o in self.orders.values()]

    # Notifications --------------------------------------------------------------------------

    def notify(self, order: SimOrder, topic: str, drop: bool | None = None) -> Fate:
        with self.lock:
            note = self.notification(order, topic)
            draw = self.rng.random
            dropped = draw() < self.faults.drop if drop is None else drop
            fate = Fate(order.external_id, topic,
                        "dropped" if dropped else "duplicated" if draw() < self.faults.duplicate
                        else "held" if draw() < self.faults.reorder else "sent")
            self.fates.append(fate)
            if fate.fate == "dropped":
                log.info("%s %s %s: notification dropped", self.name, order.external_id, topic)
            elif fate.fate == "held":
                self._held.append((note, fate))  # goes out after the next one
            else:
                self._outbox.put((note, fate))
                if fate.fate == "duplicated":
                    self._outbox.put((note, fate))
                for held in self._held:
                    self._outbox.put(held)
                self._held.clear()
        return fate

    def flush_held(self) -> None:
        """Send what is held back (a late delivery), e.g. before a test's final check."""
        with self.lock:
            for held in self._held:
                self._outbox.put(held)
            self._held.clear()

    def _deliver_forever(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._deliver(*item)

    def _deliver(self, note: Notification, fate: Fate) -> None:
        for _attempt in range(SEND_ATTEMPTS):
            try:
                answer = requests.post(note.url or self.webhook_url, data=note.body,
                                       headers=dict(note.headers), timeout=SEND_TIMEOUT)
            except requests.RequestException as exc:
                log.warning("%s %s: delivery failed: %s", self.name, fate.external_id,
                            type(exc).__name__)
                fate.answers.append(0)
                continue
            fate.answers.append(answer.status_code)
            if answer.status_code < 300:
                return
        log.warning("%s %s %s: undelivered after %d attempts", self.name, fate.external_id,
                    fate.topic, SEND_ATTEMPTS)

    # HTTP -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.path == "/_sim/orders" and request.method == "GET":
            return Reply.json(self.summary())
        waybills = getattr(self, "waybills", None)  # the platform's waybill channel, if any
        if request.path == "/_sim/waybills" and request.method == "GET" and waybills is not None:
            return Reply.json(waybills.describe())
        if request.path == "/_sim/writebacks" and request.method == "GET":
            with self.lock:
                return Reply.json(self.writebacks)
        if request.path == "/_sim/orders" and request.method == "POST":
            options = request.json() or {}
            if options.get("send", True):
                order = self.place_order(paid=options.get("paid", True), drop=options.get("drop"))
                return Reply.json({"external_id": order.external_id}, 201)
            order, note = self.hand_over_order()
            return Reply.json({"external_id": order.external_id, "notification": {
                "url": note.url or self.webhook_url, "headers": dict(note.headers),
                "body": note.body.decode("utf-8")}}, 201)
        try:
            return self.route(request)
        except Exception as exc:  # a simulator bug must show, not hang the caller
            log.exception("%s: %s %s failed", self.name, request.method, request.path)
            return Reply.json({"error": type(exc).__name__, "message": str(exc)}, 500)


def _handler_for(simulator: MarketplaceSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, parts.path, dict(parse_qsl(parts.query)),
                              {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length) if length else b"")
            reply = simulator.handle(request)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
