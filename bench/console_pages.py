"""Console pages: the server time of the case queue, the order page and the dashboard with
10,000 orders and 2,000 open cases in the tables, each as a ratio of one bare Query of the
same page size (issue 15: at most 3x each; the DynamoDB calls per page stated, no Scan).

Seeded untimed into the bench stack's own tables (infra/resources.yaml through local_stack),
through the stores' item builders and BatchWriteItem (25 a call): 10,000 orders from the
realistic Shopify fixture (RECEIVED, CURRENT and two timeline EVENT items each), their 10,000
jobs (500 paid today on the dispatch calendar, the rest over the 19 days before; a third
shipped, some late; some offers the factory has not accepted), 2,000 open cases of six types,
four severities, four carriers and three marketplaces. One target order has a shipped job, a
tracked parcel with ten courier scans and two cases.

What is timed: GET /console/cases (the first page: 50 cases, most severe first, with the
counts), GET /console/orders/<target> and GET /console/today through chalice's in-process
client with a back_office session's cookie: routing, the session check, the reads, Jinja's
rendering; the Lambda's work. Each page's baseline is one bare Query through a plain boto3
client (not the app's) returning the same page size from the table or index the page's main
read uses. Pages and baselines alternate, the order rotating each round; REPS rounds. Ratio:
page median / its baseline's median; the figure is the worst page's ratio.

Then, per page: the DynamoDB calls by operation (botocore's before-call on the app's client),
asserted to hold no Scan; where the time goes (inside DynamoDB calls, counted as wall time
covered by at least one call, so concurrent calls are not counted twice; Jinja's rendering;
the rest); and the same pages and baselines against an "instant DynamoDB" (botocore's
before-send answering with the bytes recorded from the real endpoint: no HTTP, no moto), which
separates our code's cost from the local endpoint's. The local endpoint (moto) answers an
index Query by walking the whole table and serves one call at a time; DynamoDB reads only the
key's items and serves calls at once. The BENCH line is the real endpoint's figure.
"""

from __future__ import annotations

import gc
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bench.stack import (
    FIXTURE,
    SHOP,
    app_output_discarded,
    local_stack,
    median,
    ms,
    percentile,
    verdict,
)

NAME = "console_pages"
ORDERS = 10_000
PAID_TODAY = 500
OPEN_CASES = 2_000
QUEUE_PAGE = 50  # chalicelib/console/views.py QUEUE_PAGE
REPS = 15
INSTANT_REPS = 25
BUDGET = 3.0
PARTNER = "factory-bench"
TARGET = 4_321  # the order whose page is timed
SCANS = 10
TYPES = ("courier.lost", "courier.refused", "courier.stalled", "job.not_accepted",
         "job.late_dispatch", "order.invalid")
CARRIERS = ("STO", "YTO", "ZTO", "SF")
MARKETPLACES = ("shopify", "taobao", "jd")
PAGES = ("queue", "order", "today")


# --- Seeding --------------------------------------------------------------------------------


@dataclass
class Seeded:
    target: str  # the target order's id
    day: str  # today on the dispatch calendar (the by-paid-day key)
    writes: Counter[str] = field(default_factory=Counter)  # table -> items written


def _write(ddb: Any, table: str, items: list[dict[str, Any]], seeded: Seeded) -> None:
    for start in range(0, len(items), 25):
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": item}}
                                           for item in items[start:start + 25]]}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
    seeded.writes[table] += len(items)


def _orders(now: datetime, today_start: datetime) -> list[Any]:
    """ORDERS orders from the fixture: the first PAID_TODAY paid since today's midnight on the
    dispatch calendar, the rest over the 19 days before."""
    from chalicelib.marketplaces import shopify

    base = shopify.normalise(FIXTURE.read_bytes(), {"x-shopify-shop-domain": SHOP}, "shopify")
    rng = random.Random(15)
    made = []
    for n in range(ORDERS):
        if n < PAID_TODAY:
            paid = today_start + (now - today_start) * rng.random()
        else:
            paid = today_start - timedelta(minutes=rng.randint(1, 19 * 24 * 60))
        made.append(base.model_copy(update={
            "external_id": str(6_000_000_000_000 + n), "placed_at": paid - timedelta(minutes=3),
            "paid_at": paid, "updated_at": paid}))
    return made


def _job(order: Any, n: int, now: datetime) -> Any:
    """The order's job: accepted (2% still offered, a day old); a third shipped, one in six
    of them after its deadline."""
    from chalicelib.warehouse import jobs
    from chalicelib.warehouse.dispatch import DEFAULT_DISPATCH_RULES, ship_by

    job = jobs.new_job(order, PARTNER, order.paid_at)
    deadline = ship_by(order.paid_at, DEFAULT_DISPATCH_RULES)
    update: dict[str, Any] = {"job_id": f"job_bench{n:06d}", "order_id": order.order_id,
                              "paid_at": order.paid_at, "ship_by": deadline,
                              "handshake": jobs.Handshake.ACCEPTED}
    if n % 50 == 7:
        update["handshake"] = jobs.Handshake.OFFERED
        update["created_at"] = now - timedelta(hours=30 + n % 40)
    elif n % 3 == 0 or n == TARGET:
        shipped = deadline + timedelta(minutes=20 if n % 6 == 3 else -45)
        package = jobs.Package(carrier_code=CARRIERS[n % 4], tracking_number=f"77{n:010d}")
        update["work"] = jobs.Work.SHIPPED
        update["shipments"] = (jobs.Shipment(shipment_id=f"s{n}", packages=(package,),
                                             final=True, shipped_at=min(shipped, now)),)
    return job.model_copy(update=update)


def _order_items(order: Any, job: Any, raw: str, now: datetime) -> list[dict[str, Any]]:
    from chalicelib.orders import order_store
    from chalicelib.orders.order import OrderEvent

    events = [OrderEvent(type="order.received", at=order.paid_at, actor="shopify webhook",
                         summary="order received", reason="orders/paid"),
              OrderEvent(type="job.created", at=order.paid_at + timedelta(seconds=2),
                         actor="order worker", summary=f"job {job.job_id} for {PARTNER}",
                         data={"partner_id": PARTNER, "job_id": job.job_id})]
    actions = [order_store.put_received(order, raw, "shopify webhook", order.paid_at),
               order_store.put_current(order, None, order_store.JobRef(PARTNER, job.job_id),
                                       order.paid_at),
               *order_store.put_events(order.order_id, events)]
    return [action.item["Put"]["Item"] for action in actions]


def _case_items(orders: list[Any], now: datetime) -> list[dict[str, Any]]:
    """OPEN_CASES open cases; every sixth one newer than an hour, the rest over ten days."""
    from chalicelib.core.dynamodb import to_attrs
    from chalicelib.cs import case_store, cases
    from chalicelib.cs.alerts import Alert, Severity

    items = []
    for n in range(OPEN_CASES):
        kind = TYPES[n % len(TYPES)]
        order = orders[(n * 37) % ORDERS]
        carrier = CARRIERS[n % len(CARRIERS)]
        subject = (f"parcel:{carrier}:77{n:010d}" if kind.startswith("courier")
                   else order.order_id)
        at = now - timedelta(minutes=(n % 6 == 0 and n % 55) or 60 + 7 * n)
        case = cases.open_case(Alert(
            kind=kind, severity=list(Severity)[(n * 7) % 4], subject=subject, at=at,
            summary=f"{kind} on {order.name}: the courier's last scan was two days ago",
            facts={"order_id": order.order_id, "carrier_code": carrier,
                   "marketplace": MARKETPLACES[n % len(MARKETPLACES)],
                   "tracking_number": f"77{n:010d}", "order_name": order.name}))
        items.append(to_attrs(case_store._item(case, 1, [f"alert-{n}"])))
    return items


def _target_extras(order: Any, job: Any, now: datetime) -> tuple[dict[str, Any],
                                                                  list[dict[str, Any]]]:
    """The target's parcel (ten scans folded as the tracker folds them) and its two cases."""
    from chalicelib.core.dynamodb import to_attrs
    from chalicelib.cs import case_store, cases
    from chalicelib.cs.alerts import Alert, Severity
    from chalicelib.tracking import parcel_store
    from chalicelib.tracking.fold import apply_events
    from chalicelib.tracking.model import Journey, ShipmentStatus, TrackingEvent
    from chalicelib.tracking.parcels import Parcel
    from chalicelib.tracking.watch import Watch

    package = job.shipments[0].packages[0]
    shipped = job.shipments[0].shipped_at
    steps = [(ShipmentStatus.INFO_RECEIVED, "Shenzhen", "electronic waybill printed"),
             (ShipmentStatus.PICKED_UP, "Shenzhen Longhua", "picked up by the courier")]
    steps += [(ShipmentStatus.IN_TRANSIT, city, f"arrived at the {city} sorting centre")
              for city in ("Shenzhen", "Guangzhou", "Changsha", "Wuhan", "Zhengzhou",
                           "Shijiazhuang", "Beijing")]
    steps.append((ShipmentStatus.OUT_FOR_DELIVERY, "Beijing Chaoyang", "out for delivery"))
    events = [TrackingEvent(provider="kuaidi100", carrier_code=package.carrier_code,
                            tracking_number=package.tracking_number,
                            occurred_at=shipped + timedelta(hours=3 * k), status=status,
                            raw_code=str(k), description=words, location=city)
              for k, (status, city, words) in enumerate(steps[:SCANS])]
    journey, _ = apply_events(Journey(carrier_code=package.carrier_code,
                                      tracking_number=package.tracking_number,
                                      handed_over_at=shipped), events)
    parcel = Parcel(carrier_code=package.carrier_code, tracking_number=package.tracking_number,
                    provider="kuaidi100", order_id=order.order_id, order_name=order.name,
                    marketplace=order.marketplace, partner_id=PARTNER, job_id=job.job_id,
                    shipment_id=job.shipments[0].shipment_id, started_at=shipped,
                    shipment=journey, watch=Watch(provider="kuaidi100",
                                                  next_check_at=now + timedelta(hours=2)))
    item = parcel_store.put(parcel, None).item["Put"]["Item"]
    made = []
    for kind, severity in (("courier.stalled", Severity.MEDIUM),
                           ("after_sales.return", Severity.HIGH)):
        case = cases.open_case(Alert(
            kind=kind, severity=severity, subject=parcel.subject, at=now - timedelta(hours=5),
            summary=f"{kind} for {parcel.label}", facts={
                "order_id": order.order_id, "carrier_code": package.carrier_code,
                "marketplace": order.marketplace, "tracking_number": package.tracking_number}))
        made.append(to_attrs(case_store._item(case, 1, [f"alert-{kind}"])))
    return item, made


def seed(now: datetime) -> Seeded:
    import boto3

    from chalicelib.core.dynamodb import to_attrs
    from chalicelib.core.settings import settings
    from chalicelib.warehouse import day_dispatch, job_store
    from chalicelib.warehouse.jobs import protocol_rules

    rules = protocol_rules().dispatch
    day = day_dispatch.working_day(now, rules)
    orders = _orders(now, day_dispatch.day_start(day, rules))
    seeded = Seeded(target=orders[TARGET].order_id, day=day.isoformat())
    raw = FIXTURE.read_text(encoding="utf-8")
    ddb = boto3.client("dynamodb")
    order_items: list[dict[str, Any]] = []
    job_items: list[dict[str, Any]] = []
    parcel: dict[str, Any] = {}
    target_cases: list[dict[str, Any]] = []
    for n, order in enumerate(orders):
        job = _job(order, n, now)
        order_items += _order_items(order, job, raw.replace("5678901234567", order.external_id),
                                    now)
        job_items.append(to_attrs(job_store.item_of(job)))
        if n == TARGET:
            parcel, target_cases = _target_extras(order, job, now)
    s = settings()
    _write(ddb, s.orders_table, order_items, seeded)
    _write(ddb, s.jobs_table, job_items, seeded)
    _write(ddb, s.cases_table, _case_items(orders, now) + target_cases, seeded)
    _write(ddb, s.shipments_table, [parcel], seeded)
    return seeded


# --- Signing in -----------------------------------------------------------------------------


class Browser:
    """The in-process client with a cookie jar (as tests/integration/test_console.py)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    def get(self, path: str) -> Any:
        return self._keep(self.client.http.get(path, headers=self._headers()))

    def post(self, path: str, fields: dict[str, str]) -> Any:
        from urllib.parse import urlencode

        headers = {**self._headers(), "Content-Type": "application/x-www-form-urlencoded"}
        return self._keep(self.client.http.post(path, headers=headers, body=urlencode(fields)))

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} \
            if self.cookies else {}

    def _keep(self, response: Any) -> Any:
        found = response.headers.get("Set-Cookie") or []
        for line in [found] if isinstance(found, str) else found:
            name, _, rest = line.partition("=")
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = rest.split(";", 1)[0]
        return response

    def sign_in(self) -> None:
        import html

        from chalicelib.access import directory_store as directory
        from chalicelib.access.keys import Role, hash_key, new_key
        from chalicelib.core.clock import utcnow

        key = new_key()
        directory.add_key(hash_key(key), "staff", "cs-bench", Role.BACK_OFFICE, utcnow())
        form = self.get("/console/sign-in").body.decode()
        token = re.search(r'name="csrf_token" value="([^"]*)"', form)
        assert token, "no CSRF token on the sign-in form"
        answer = self.post("/console/sign-in", {"csrf_token": html.unescape(token.group(1)),
                                                "key": key, "next": "/console/cases"})
        assert answer.status_code == 303 and "obk_session" in self.cookies, answer.status_code


# --- Watching the app's DynamoDB calls ------------------------------------------------------


class Watch:
    """The app's DynamoDB calls while a page is served: counted by operation, timed (the wall
    time covered by at least one call in flight), and Jinja's rendering time."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.spans: list[tuple[float, float]] = []
        self.labelled: list[tuple[str, float]] = []  # (call, seconds) in the order they ended
        self.render = 0.0
        self._lock = threading.Lock()
        self.on = False

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.dynamodb", self._named)
        client.meta.events.register("before-call.dynamodb", self._started)
        client.meta.events.register("after-call.dynamodb", self._ended)

    @staticmethod
    def _named(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        """The call's name in the report: operation, index (or table), a further page."""
        where = params.get("IndexName") or str(params.get("TableName", "")).rsplit("-", 1)[-1]
        more = "+page" if "ExclusiveStartKey" in params else ""
        context["bench_label"] = f"{model.name} {where}{more}"

    def _started(self, model: Any, params: dict[str, Any], context: dict[str, Any],
                 **_: Any) -> None:
        # Must return None: a before-call handler's value would replace the call.
        context["bench_started"] = time.perf_counter()
        context["bench_body"] = params.get("body", b"")
        if self.on:
            with self._lock:
                self.calls[model.name] += 1

    def _ended(self, context: dict[str, Any], **_: Any) -> None:
        if self.on and "bench_started" in context:
            with self._lock:
                self.spans.append((context["bench_started"], time.perf_counter()))
                self.labelled.append((context.get("bench_label", "?"),
                                      time.perf_counter() - context["bench_started"]))

    def wrap_render(self) -> None:
        from chalicelib.console import web

        original = getattr(web, "render")  # noqa: B009 (the name web.py calls, not exported)
        watch = self

        def timed(*args: Any, **kwargs: Any) -> str:
            started = time.perf_counter()
            try:
                return str(original(*args, **kwargs))
            finally:
                watch.render += time.perf_counter() - started

        setattr(web, "render", timed)  # noqa: B010

    def in_calls(self) -> float:
        """Wall time covered by at least one call (concurrent calls counted once)."""
        covered, reach = 0.0, float("-inf")
        for start, end in sorted(self.spans):
            if end > reach:
                covered += end - max(start, reach)
                reach = end
        return covered

    @contextmanager
    def page(self) -> Iterator[None]:
        self.calls.clear()
        self.spans.clear()
        self.labelled.clear()
        self.render = 0.0
        self.on = True
        try:
            yield
        finally:
            self.on = False


class InstantDynamoDB:
    """botocore's before-send answers with the bytes the real endpoint answered the same
    request with (recorded by after-call), so only our side of the wire is timed. A request
    whose only difference is a time in it (a page's `now`) finds its recording too."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], bytes] = {}
        self.recording = False
        self.on = False
        self.missed: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        client.meta.events.register("after-call.dynamodb", self._record)
        client.meta.events.register("before-send.dynamodb", self._answer)

    @staticmethod
    def _key(operation: str, body: bytes | str | None) -> tuple[str, str]:
        text = body.decode() if isinstance(body, bytes) else (body or "")
        return operation, re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|\+00:00)", "T", text)

    def _record(self, http_response: Any, model: Any, context: dict[str, Any],
                **_: Any) -> None:
        if self.recording and http_response is not None and http_response.status_code == 200:
            self.answers[self._key(model.name, context.get("bench_body"))] = \
                http_response.content

    def _answer(self, request: Any, **_: Any) -> Any:
        if not self.on:
            return None
        from botocore.awsrequest import AWSResponse

        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).split(".")[-1]
        key = self._key(operation, request.body)
        if key not in self.answers:
            self.missed[operation] += 1
            return None  # to the real endpoint: counted, and reported
        body = self.answers[key]

        class Raw:
            def stream(self, **_: Any) -> Iterator[bytes]:
                yield body

        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"},
                           Raw())


@contextmanager
def reads_in_turn() -> Iterator[None]:
    """The pages' reads one after the other (`runs.started` as the flows call it, answering a
    finished future): each call is then timed alone, and the page's time says what sending its
    reads together saves on this endpoint."""
    from concurrent.futures import Future

    from chalicelib.flows import case_desk, order_view, today

    def in_turn(call: Callable[..., Any], *args: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(call(*args))
        except Exception as error:  # the future carries it, as the pool's would
            done.set_exception(error)
        return done

    modules = (case_desk, order_view, today)
    saved = [getattr(module, "started") for module in modules]  # noqa: B009
    for module in modules:
        setattr(module, "started", in_turn)  # noqa: B010
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            setattr(module, "started", original)  # noqa: B010


# --- The work -------------------------------------------------------------------------------


def _baselines(plain: Any, seeded: Seeded) -> dict[str, Callable[[], int]]:
    """Per page, one bare Query of the same page size from its main read's table or index."""
    from chalicelib.core.settings import settings

    s = settings()

    def queue() -> int:  # list_cases' first page: the critical partition, newest first
        return len(plain.query(
            TableName=s.cases_table, IndexName="open-by-severity", Limit=QUEUE_PAGE,
            KeyConditionExpression="open_severity = :s", ScanIndexForward=False,
            ExpressionAttributeValues={":s": {"S": "critical"}})["Items"])

    def order() -> int:  # order_store.read_all: the order's partition
        return len(plain.query(
            TableName=s.orders_table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
            ExpressionAttributeValues={":pk": {"S": f"ORDER#{seeded.target}"}})["Items"])

    def today() -> int:  # job_store.paid_on: the day's rows of the by-paid-day index
        return len(plain.query(
            TableName=s.jobs_table, IndexName="by-paid-day",
            KeyConditionExpression="paid_day = :d",
            ExpressionAttributeValues={":d": {"S": seeded.day}})["Items"])

    return {"queue": queue, "order": order, "today": today}


def _paths(seeded: Seeded) -> dict[str, str]:
    return {"queue": "/console/cases", "order": f"/console/orders/{seeded.target}",
            "today": "/console/today"}


def _check(name: str, body: str, seeded: Seeded) -> None:
    """The page is the page asked for, with what it must show (not an error page)."""
    if name == "queue":
        assert body.count('href="/console/cases/') >= QUEUE_PAGE, "not 50 cases on the queue"
    elif name == "order":
        assert seeded.target in body and "Zhengzhou" in body, "the order page lacks its parcel"
    else:
        assert "<svg" in body, "no charts on the dashboard"


def rotate(reps: int, work: dict[str, Callable[[], Any]]) -> dict[str, list[float]]:
    """`reps` rounds of every piece of work, the order rotating each round; each timed."""
    names = list(work)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(reps):
        gc.collect()
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            started = time.perf_counter()
            work[name]()
            times[name].append(time.perf_counter() - started)
    return times


@dataclass
class PageShape:
    calls: Counter[str]
    in_calls: list[float] = field(default_factory=list)
    render: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    each: dict[str, list[float]] = field(default_factory=dict)  # call -> seconds per serving


def shapes(browser: Browser, paths: dict[str, str], watch: Watch, reps: int,
           seeded: Seeded) -> dict[str, PageShape]:
    """Each page served `reps` times under the watch: calls, time in calls, rendering."""
    found: dict[str, PageShape] = {}
    for name, path in paths.items():
        shape = PageShape(calls=Counter())
        for _ in range(reps):
            with watch.page():
                started = time.perf_counter()
                answer = browser.get(path)
                shape.total.append(time.perf_counter() - started)
            assert answer.status_code == 200, (name, answer.status_code)
            _check(name, answer.body.decode(), seeded)
            assert "Scan" not in watch.calls, f"{name} scans a table: {watch.calls}"
            if not shape.calls or sum(watch.calls.values()) < sum(shape.calls.values()):
                # The steady state: the fewest calls of the servings (once a minute the
                # session's key is read again, when its cached principal expires).
                shape.calls = Counter(watch.calls)
            shape.in_calls.append(watch.in_calls())
            shape.render.append(watch.render)
            served: dict[str, float] = {}
            for label, seconds in watch.labelled:
                served[label] = served.get(label, 0.0) + seconds
            for label, seconds in served.items():
                shape.each.setdefault(label, []).append(seconds)
        found[name] = shape
    return found


def main() -> int:
    with local_stack():
        import boto3
        from chalice.test import Client

        from app import app
        from chalicelib.core import aws
        from chalicelib.core.clock import utcnow

        started = time.perf_counter()
        seeded = seed(utcnow())
        print(f"seeded {dict(seeded.writes)} items in {time.perf_counter() - started:.0f} s; "
              f"target order {seeded.target}, dispatch day {seeded.day}")
        plain = boto3.session.Session().client("dynamodb")
        app_client = aws.client("dynamodb")
        watch, instant = Watch(), InstantDynamoDB()
        watch.attach(app_client)
        instant.attach(app_client)
        instant.attach(plain)
        plain.meta.events.register("before-call.dynamodb", _keep_body)
        watch.wrap_render()
        paths = _paths(seeded)
        baselines = _baselines(plain, seeded)
        with Client(app, stage_name="local") as client, app_output_discarded():
            browser = Browser(client)
            instant.recording = True  # from the sign-in on: the key's lookup is read again
            browser.sign_in()
            pages = {name: (lambda p=path: browser.get(p)) for name, path in paths.items()}
            instant.recording = True  # the warm-up records the answers the instant run replays
            sizes = {name: count() for name, count in baselines.items()}
            shaped = shapes(browser, paths, watch, 3, seeded)
            with reads_in_turn():
                serial = shapes(browser, paths, watch, 3, seeded)
            instant.recording = False
            real = rotate(REPS, {**pages, **{f"bare {n}": baselines[n] for n in PAGES}})
            instant.on = True
            try:
                shapes(browser, paths, watch, 2, seeded)  # warm the instant path
                instant_shaped = shapes(browser, paths, watch, 5, seeded)
                fast = rotate(INSTANT_REPS, {**pages,
                                             **{f"bare {n}": baselines[n] for n in PAGES}})
            finally:
                instant.on = False
    return report(seeded, sizes, {"together": shaped, "in turn": serial,
                                  "instant": instant_shaped}, real, fast, instant.missed)


def _keep_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["bench_body"] = params.get("body", b"")


def report(seeded: Seeded, sizes: dict[str, int], shaped_by: dict[str, dict[str, PageShape]],
           real: dict[str, list[float]], fast: dict[str, list[float]],
           missed: Counter[str]) -> int:
    shaped, serial = shaped_by["together"], shaped_by["in turn"]
    print(f"{REPS} rotating rounds of the three pages and their baselines against the local "
          f"endpoint (moto); {INSTANT_REPS} against the instant DynamoDB (recorded answers)")
    print(f"  {'page':<8}{'bare Query':>26}{'median':>12}{'p90':>12}{'bare median':>13}"
          f"{'ratio':>8}{'instant':>12}{'bare inst.':>12}{'ratio':>8}")
    baseline_of = {"queue": "open-by-severity, 50", "order": "order partition",
                   "today": "by-paid-day"}
    worst, ratios, fast_ratios = 0.0, {}, {}
    for name in PAGES:
        page, bare = real[name], real[f"bare {name}"]
        ratio = median(page) / median(bare)
        ratios[name] = ratio
        worst = max(worst, ratio)
        fast_ratio = fast_ratios[name] = median(fast[name]) / median(fast[f"bare {name}"])
        print(f"  {name:<8}{baseline_of[name] + f' ({sizes[name]} items)':>26}"
              f"{ms(median(page)):>12}{ms(percentile(page, 90)):>12}{ms(median(bare)):>13}"
              f"{ratio:>7.2f}x{ms(median(fast[name])):>12}{ms(median(fast[f'bare {name}'])):>12}"
              f"{fast_ratio:>7.2f}x")
    print("DynamoDB calls per page (the app's client; no page may Scan), each call's median "
          "time against the local endpoint when the page's reads go one after the other (each "
          "alone: sent together they queue in the endpoint, which serves one at a time):")
    for name in PAGES:
        calls = shaped[name].calls
        assert calls == serial[name].calls, (name, calls, serial[name].calls)  # the same reads
        print(f"  {name:<8}{sum(calls.values())} calls: "
              + ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
              + f"; page {ms(median(serial[name].total))} with its reads in turn, "
              f"{ms(median(shaped[name].total))} with them together")
        assert "Scan" not in calls, f"{name} scans a table: {calls}"
        for label, seconds in sorted(serial[name].each.items(), key=lambda x: -median(x[1])):
            print(f"      {label:<44}{ms(median(seconds)):>12}")
    print("Where a page's time goes (medians of the watched runs; 'in DynamoDB calls' is the "
          "wall time with at least one call in flight):")
    for label, table in (("local endpoint", shaped), ("instant DynamoDB", shaped_by["instant"])):
        for name in PAGES:
            shape = table[name]
            total, inside, render = (median(shape.total), median(shape.in_calls),
                                     median(shape.render))
            print(f"  {label:<17}{name:<7} total {ms(total):>11}  in DynamoDB calls "
                  f"{ms(inside):>11}  rendering {ms(render):>10}  the rest "
                  f"{ms(total - inside - render):>10}")
    if missed:
        print(f"  (instant DynamoDB: {dict(missed)} calls had no recording and went to the "
              "local endpoint)")
    print(f"Against the instant DynamoDB (our side of the wire only: routing, session, "
          f"botocore's serialising and parsing, our models, Jinja): worst page "
          f"{max(fast_ratios.values()):.2f}x its bare Query ("
          + ", ".join(f"{name} {fast_ratios[name]:.2f}x" for name in PAGES) + ")")
    within = worst <= BUDGET
    print(f"BENCH {NAME}: worst page {worst:.2f}x a bare Query of its page size "
          f"(queue {ratios['queue']:.2f}x, order {ratios['order']:.2f}x, "
          f"today {ratios['today']:.2f}x) (budget {BUDGET:.1f}x) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
