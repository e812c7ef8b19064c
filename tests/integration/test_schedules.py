"""The scheduled runs under real AWS behaviour (issue 14): each works to a budget, one run at a
time (a lease), and claims each item before its HTTP call, so two overlapping runs (the next
tick while the last still works, Lambda's retry of a run it thinks timed out) never send the
same thing twice, and what one run did not reach the next one does.

Against the local endpoint and the simulated platforms over real HTTP, each answering slowly
(`slowed`), so the runs really overlap. To show the per-item claim is what protects (not only
the lease), some tests let the second run past the lease, as when the first run's lease ran out
while it still worked: those fail if the claim is taken away."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.access import accounts_store as accounts
from chalicelib.core import aws, runs
from chalicelib.core.dynamodb import to_attrs, transact
from chalicelib.core.settings import settings
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces import reconcile_store, shopee, writeback_store
from chalicelib.marketplaces.calls import Shipped
from chalicelib.marketplaces.writeback import Writeback
from chalicelib.tracking import couriers, parcel_store
from chalicelib.tracking.model import Journey
from chalicelib.tracking.parcels import Parcel
from chalicelib.tracking.watch import Watch
from devstack.courier import CourierSimulator
from devstack.marketplaces.base import MarketplaceSimulator, Request
from devstack.marketplaces.shopee import ShopeeSimulator
from devstack.marketplaces.woocommerce import WooCommerceSimulator
from tests.budgets import BudgetUntil


def slowed(simulator: Any, seconds: float, *methods: str) -> None:
    """Every answer of the simulator's `methods` (default: its API) takes `seconds` more."""
    for name in methods or ("handle",):
        original = getattr(simulator, name)

        def later(*args: Any, _original: Callable[..., Any] = original) -> Any:
            time.sleep(seconds)
            return _original(*args)

        setattr(simulator, name, later)


_T0 = time.monotonic()


def past() -> datetime:
    """A moment of this test's own, hours earlier than any earlier test's: only its items are
    due at it (the tables and their due indexes are shared), and what an earlier test left due
    (a parcel's next check) is not due at it or in the hours after it."""
    return datetime(2024, 1, 1, tzinfo=UTC) - timedelta(seconds=(time.monotonic() - _T0) * 10**4)


def lease_always_free(monkeypatch: pytest.MonkeyPatch, store: Any) -> None:
    """Let every run past the lease, as when the first run's lease ran out while it still
    worked: then only the claims keep the runs apart."""
    monkeypatch.setattr(store, "take_run_lease", lambda owner, now, until: True)


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Start the calls at the same moment on threads; their results."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


# --- write_back ---------------------------------------------------------------------------------


@pytest.fixture
def woo(stack: dict[str, str]) -> Iterator[WooCommerceSimulator]:
    shop = f"shop-{uuid.uuid4().hex[:8]}.example.cn"
    with WooCommerceSimulator(shop=shop, webhook_url="http://127.0.0.1:9/unused") as simulator:
        shop_credentials.put("woocommerce", shop, simulator.credentials())
        slowed(simulator, 0.25)
        yield simulator


def writebacks(simulator: MarketplaceSimulator, count: int, now: datetime) -> list[Writeback]:
    """`count` shipments of orders the shop holds, each a writeback due at `now`."""
    made = []
    for _ in range(count):
        order = simulator.place_order(drop=True)
        number = str(uuid.uuid4().int)[:12]
        package = Shipped(external_id=order.external_id, carrier_code="STO",
                          tracking_number=number, shipped_at=now, package_id="s1-1")
        wb = Writeback(job_id=f"job_{uuid.uuid4().hex[:20]}", partner_id="factory-sched",
                       order_id=f"ord_{uuid.uuid4().hex[:20]}", order_name=order.number,
                       marketplace=simulator.name, shop=simulator.shop, shipment_id="s1",
                       packages=(package,), due_at=now, created_at=now)
        made.append(wb)
    for start in range(0, len(made), 25):
        transact([writeback_store.put(wb, None) for wb in made[start:start + 25]])
    return made


def posts(simulator: MarketplaceSimulator) -> Counter[str]:
    """Writebacks the platform took, by order: 1 each is right, 2 is a duplicate."""
    with simulator.lock:
        return Counter(str(w["external_id"]) for w in simulator.writebacks)


def statuses(made: list[Writeback]) -> Counter[str]:
    found = [writeback_store.get(wb.partner_id, wb.key) for wb in made]
    return Counter(f[0].status if f else "missing" for f in found)


def test_a_run_that_finds_the_lease_held_sends_nothing(woo: WooCommerceSimulator) -> None:
    from chalicelib.flows import writeback

    now = past()
    made = writebacks(woo, 6, now)
    first = threading.Thread(target=writeback.run_writebacks, args=(now,))
    first.start()
    deadline = time.monotonic() + 10
    while not woo.writebacks and time.monotonic() < deadline:
        time.sleep(0.01)  # the first run is sending
    second = writeback.run_writebacks(now)
    first.join(30)
    assert second == {"done": 0, "retry": 0, "failed": 0, "errors": 0, "busy": 1}
    assert posts(woo) == Counter({wb.packages[0].external_id: 1 for wb in made})
    assert statuses(made) == {"done": 6}


def test_two_overlapping_write_back_runs_tell_the_platform_once_per_writeback(
        woo: WooCommerceSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both runs get past the lease and read the same due writebacks: each one is sent by the
    run that claimed it, once. Without the claim, each is sent by both."""
    from chalicelib.flows import writeback

    lease_always_free(monkeypatch, writeback_store)
    monkeypatch.setattr(writeback, "PER_MARKETPLACE", 3)  # so the runs take turns
    now = past()
    made = writebacks(woo, 16, now)
    first, second = together(lambda: writeback.run_writebacks(now),
                             lambda: writeback.run_writebacks(now))
    assert first["done"] + second["done"] == 16
    assert first["done"] and second["done"]  # they did overlap
    assert posts(woo) == Counter({wb.packages[0].external_id: 1 for wb in made})
    assert statuses(made) == {"done": 16}


def test_a_run_stopped_mid_writeback_makes_the_next_one_ask_the_platform_first(
        woo: WooCommerceSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda stops a run after the platform took the tracking number, before the outcome was
    written: its claim stays on the writeback. When the claim has run out, the next run treats
    the writeback as a retry and asks WooCommerce first (which does not deduplicate): it finds
    the number and sends nothing. Without the claim there is nothing to tell it, and the
    tracking number goes on the order twice."""
    from chalicelib.flows import writeback

    now = past()
    (made,) = writebacks(woo, 1, now)
    real = writeback.transact

    def stopped(actions: Any) -> None:
        raise RuntimeError("Task timed out")  # the function stopped here

    monkeypatch.setattr(writeback, "transact", stopped)
    writeback.run_writebacks(now, budget=runs.Budget.seconds(5))
    assert posts(woo) == {made.packages[0].external_id: 1}
    left = writeback_store.read(made.partner_id, made.key)
    assert left is not None and left.writeback.status == "pending" and left.in_hand(now)
    monkeypatch.setattr(writeback, "transact", real)
    # While the claim holds, nobody takes it; once it has run out, the next run does.
    assert writeback.run_writebacks(now + timedelta(seconds=1))["done"] == 0
    later = now + timedelta(minutes=5)
    assert writeback.run_writebacks(later)["done"] == 1
    assert posts(woo) == {made.packages[0].external_id: 1}
    assert statuses([made]) == {"done": 1}


def test_a_write_back_run_stops_at_its_budget_and_the_next_goes_on(
        woo: WooCommerceSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.flows import writeback

    monkeypatch.setattr(writeback, "PER_MARKETPLACE", 2)
    now = past()
    made = writebacks(woo, 20, now)
    first = writeback.run_writebacks(now, budget=BudgetUntil.after(lambda: len(posts(woo)) >= 2))
    # None starts once the budget is spent: the two, and those in hand (PER_MARKETPLACE).
    assert 2 <= first["done"] <= 2 + 2
    assert statuses(made) == {"done": first["done"], "pending": 20 - first["done"]}
    second = writeback.run_writebacks(now, budget=runs.Budget.seconds(30))
    assert second["done"] == 20 - first["done"]
    assert posts(woo) == Counter({wb.packages[0].external_id: 1 for wb in made})


# --- track_parcels ------------------------------------------------------------------------------


@pytest.fixture
def courier(stack: dict[str, str]) -> Iterator[CourierSimulator]:
    """Kuaidi100 on 127.0.0.1, each query answered 0.25 s late, as our account."""
    with CourierSimulator(customer="CUST", key="KEY") as simulator:
        accounts.register_sources({couriers.source_name("kuaidi100"): {
            "scheme": "kuaidi100", "secrets": ["SALT"],
            "options": {"customer": "CUST", "key": "KEY", "query_url": simulator.query_url,
                        "subscribe_url": simulator.subscribe_url,
                        "callback_url": "https://api.test/couriers/kuaidi100/push"}}})
        couriers.forget_providers()
        slowed(simulator, 0.25, "query")
        yield simulator
    couriers.forget_providers()
    # The parcels this test made are due again later: other tests' ticks must not meet them.
    for parcel in _made.pop(simulator, []):
        for sk in ("PARCEL", "CLAIM"):
            aws.client("dynamodb").delete_item(
                TableName=settings().shipments_table, Key=to_attrs({
                    "pk": parcel_store.pk(parcel.carrier_code, parcel.tracking_number),
                    "sk": sk}))


_made: dict[CourierSimulator, list[Parcel]] = {}


def parcels(courier: CourierSimulator, count: int, now: datetime) -> list[Parcel]:
    """`count` STO parcels followed by query (no pushes), each due at `now` (deleted when the
    test's `courier` stops)."""
    made = []
    for _ in range(count):
        number = str(uuid.uuid4().int)[:12]
        made.append(Parcel(
            carrier_code="STO", tracking_number=number, provider="kuaidi100",
            order_id=f"ord_{uuid.uuid4().hex[:20]}", order_name="#1001", marketplace="shopify",
            partner_id="factory-sched", job_id=f"job_{uuid.uuid4().hex[:20]}",
            shipment_id="s1", started_at=now - timedelta(hours=1),
            shipment=Journey(carrier_code="STO", tracking_number=number,
                             handed_over_at=now - timedelta(hours=1)),
            watch=Watch(provider="kuaidi100", can_query=True, next_check_at=now)))
    _made.setdefault(courier, []).extend(made)
    for start in range(0, len(made), 25):
        transact([parcel_store.put(p, None) for p in made[start:start + 25]])
    return made


def queries(simulator: CourierSimulator, made: list[Parcel]) -> Counter[str]:
    """Queries Kuaidi100 had of each parcel: 1 is right, 2 is locked out for 30 minutes."""
    return Counter({p.tracking_number: simulator.queries[("shentong", p.tracking_number)]
                    for p in made})


def still_due(made: list[Parcel], now: datetime) -> int:
    found = [parcel_store.get(p.carrier_code, p.tracking_number) for p in made]
    return sum(1 for f in found if f and f[0].watch.next_check_at
               and f[0].watch.next_check_at <= now)


def test_two_overlapping_track_parcels_runs_query_each_parcel_once(
        courier: CourierSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both runs get past the lease and read the same due parcels: each parcel is checked by
    the run that claimed it, once. Without the claim both runs ask Kuaidi100 for the parcels
    they reach together, and Kuaidi100 locks those numbers for 30 minutes."""
    from chalicelib.flows import tracker

    lease_always_free(monkeypatch, parcel_store)
    now = past()
    made = parcels(courier, 60, now)  # enough that both runs are still claiming together
    first, second = together(lambda: tracker.run_due(now), lambda: tracker.run_due(now))
    assert first.queried + second.queried >= 60
    assert first.queried and second.queried  # they did overlap
    assert queries(courier, made) == Counter({p.tracking_number: 1 for p in made})
    assert still_due(made, now) == 0


def test_a_track_parcels_run_that_finds_the_lease_held_does_nothing(
        courier: CourierSimulator) -> None:
    from chalicelib.flows import tracker

    now = past()
    made = parcels(courier, 4, now)
    assert parcel_store.take_run_lease("another-run", now, now + timedelta(minutes=2))
    try:
        report = tracker.run_due(now)
    finally:
        parcel_store.release_run_lease("another-run")
    assert report.busy == 1 and report.queried == 0
    assert sum(queries(courier, made).values()) == 0
    assert tracker.run_due(now).queried >= 4


def test_a_track_parcels_run_stops_at_its_budget_and_the_next_goes_on(
        courier: CourierSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.flows import tracker

    monkeypatch.setattr(tracker, "PER_PROVIDER", 2)
    now = past()
    made = parcels(courier, 20, now)
    first = tracker.run_due(
        now, budget=BudgetUntil.after(lambda: sum(queries(courier, made).values()) >= 2))
    assert 2 <= first.queried <= 2 + 2  # the two, and the checks in hand (PER_PROVIDER)
    assert still_due(made, now) == 20 - first.queried
    second = tracker.run_due(now, budget=runs.Budget.seconds(30))
    assert first.queried + second.queried == 20
    assert still_due(made, now) == 0
    assert queries(courier, made) == Counter({p.tracking_number: 1 for p in made})


def test_a_check_left_in_hand_by_a_stopped_run_is_not_asked_again_within_the_lock(
        courier: CourierSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda stops a run after Kuaidi100 answered, before the parcel was written: the parcel is
    still due, but its claim holds for Kuaidi100's 30-minute lock, so the next ticks leave it
    alone (asking again would be locked out); after the lock it is asked again."""
    from chalicelib.flows import tracker

    now = past()
    (made,) = parcels(courier, 1, now)

    def stopped(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Task timed out")  # the function stopped here

    with monkeypatch.context() as patch:
        patch.setattr(tracker, "apply", stopped)
        patch.setattr(parcel_store, "release", lambda *args: None)  # nothing runs after a stop
        tracker.run_due(now)
    assert queries(courier, [made])[made.tracking_number] == 1
    assert still_due([made], now) == 1
    for minutes in (1, 5, 29):
        assert tracker.run_due(now + timedelta(minutes=minutes)).queried == 0
    assert tracker.run_due(now + timedelta(minutes=31)).queried == 1
    assert queries(courier, [made])[made.tracking_number] == 2


# --- reconcile_shops ----------------------------------------------------------------------------


class Shops:
    """Simulated Shopee shops, the only shops there are for the test, each page of each listing
    counted as the platform saw it."""

    def __init__(self, simulators: list[ShopeeSimulator]) -> None:
        self.simulators = simulators
        self.lock = threading.Lock()
        self.listed: Counter[tuple[str, str]] = Counter()  # (shop, cursor) -> times listed

    def count(self, simulator: ShopeeSimulator) -> None:
        original = simulator.handle

        def counted(request: Request) -> Any:
            if request.path == shopee.ORDER_LIST_PATH:
                with self.lock:
                    self.listed[(simulator.shop, request.query.get("cursor", ""))] += 1
            return original(request)

        simulator.handle = counted  # type: ignore[method-assign]

    def keys(self) -> list[str]:
        return sorted(f"shopee/{s.shop}" for s in self.simulators)


PAGES_PER_SHOP = 3  # 5 orders, 2 a page


@pytest.fixture
def shops(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Shops]:
    from chalicelib.flows import reconciliation

    monkeypatch.setattr(shopee, "PAGE_SIZE", 2)
    simulators = [ShopeeSimulator(shop=str(300000000 + uuid.uuid4().int % 10**8),
                                  webhook_url="http://127.0.0.1:9/unused") for _ in range(6)]
    made = Shops(simulators)
    for simulator in simulators:
        simulator.start()
        shop_credentials.put("shopee", simulator.shop, simulator.credentials())
        for _ in range(5):
            simulator.place_order(drop=True)  # their pushes never reach us
        slowed(simulator, 0.1)
        made.count(simulator)
    monkeypatch.setattr(reconciliation.shop_credentials, "shops",
                        lambda: [("shopee", s.shop) for s in simulators])
    try:
        yield made
    finally:
        for simulator in simulators:
            simulator.stop()


def total(*counts: dict[str, int]) -> Counter[str]:
    summed: Counter[str] = Counter()
    for count in counts:
        summed.update(count)
    return summed


def every_page_once(shops: Shops) -> Counter[tuple[str, str]]:
    return Counter({(s.shop, cursor): 1 for s in shops.simulators
                    for cursor in ("", "2", "4")})


def test_reconciliation_resumes_where_it_stopped_and_reaches_the_shops_listed_last(
        shops: Shops, caplog: pytest.LogCaptureFixture) -> None:
    """Runs of 5 pages each (as the local stack has them): each goes on where the last one
    stopped, at the shop and page, until every page of every shop is listed, once; then a new
    round begins with the first shop."""
    from chalicelib.flows import reconciliation

    now = datetime.now(UTC) + timedelta(seconds=1)
    caplog.set_level("INFO", logger=reconciliation.__name__)
    done, said = [], []
    for _ in range(4):
        caplog.clear()
        done.append(reconciliation.run_reconciliation(now, pages=5))
        said.append(caplog.text)
        if done[-1]["pages"] < 5:
            break
    assert [d["pages"] for d in done] == [5, 5, 5, 3]
    assert shops.listed == every_page_once(shops)
    assert total(*done)["queued"] == 6 * 5 and total(*done)["shops"] == 6
    # Every run after the first went on where the last stopped: the second with a shop half
    # listed, at its page.
    assert all("reconciliation resumes at shop shopee/" in text for text in said[1:])
    assert re.search(r"resumes at shop shopee/\d+ page [23] ", said[1])
    caplog.clear()
    again = reconciliation.run_reconciliation(now + timedelta(minutes=1), pages=1)
    assert "begins a round" in caplog.text
    assert again["pages"] == 1 and sum(shops.listed.values()) == 6 * PAGES_PER_SHOP + 1


def test_two_overlapping_reconciliation_runs_list_each_page_once(
        shops: Shops, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both runs get past the lease and read the same round: each page is listed by the run
    that claimed it, once. Without the claim both runs list every page."""
    from chalicelib.flows import reconciliation

    lease_always_free(monkeypatch, reconcile_store)
    now = datetime.now(UTC) + timedelta(seconds=1)
    first, second = together(lambda: reconciliation.run_reconciliation(now, pages=0),
                             lambda: reconciliation.run_reconciliation(now, pages=0))
    assert first["pages"] + second["pages"] == 6 * PAGES_PER_SHOP
    assert first["busy"] + second["busy"] >= 1  # they did meet
    assert shops.listed == every_page_once(shops)
    assert first["queued"] + second["queued"] == 6 * 5


def test_a_reconciliation_run_stops_at_its_budget_and_the_next_goes_on(shops: Shops) -> None:
    from chalicelib.flows import reconciliation

    now = datetime.now(UTC) + timedelta(seconds=1)
    first = reconciliation.run_reconciliation(
        now, pages=0, budget=BudgetUntil.after(lambda: sum(shops.listed.values()) >= 2))
    # No page starts once the budget is spent: the two, and those already in hand then.
    assert 2 <= first["pages"] <= 2 + reconciliation.WORKERS
    assert first["pages"] < 6 * PAGES_PER_SHOP
    second = reconciliation.run_reconciliation(now, pages=0, budget=runs.Budget.seconds(30))
    assert first["pages"] + second["pages"] == 6 * PAGES_PER_SHOP
    assert shops.listed == every_page_once(shops)
    assert first["queued"] + second["queued"] == 6 * 5
