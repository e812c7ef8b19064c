"""Schedule capacity: how much one scheduled tick gets through within its budget, against
platforms that answer in 150 ms, as a multiple of today's volume; and that two overlapping
ticks send nothing twice.

The three schedules that call out (chalicelib/flows): `write_back` (writebacks, every minute),
`track_parcels` (parcel checks, every minute) and `reconcile_shops` (shop pages, every 15
minutes), each run as Lambda runs it: `on_schedule(context)` with a context whose remaining time
is the function's timeout in .chalice/config.json, so the run's budget is the one it has in the
cloud (chalicelib/core/runs.py: its interval less a little, or its timeout less the margin for
the items in hand). Against the local endpoint and the simulators over real HTTP on 127.0.0.1,
every answer delayed by LATENCY: WooCommerce shops (a writeback is one call on a first attempt),
the Kuaidi100 simulator (devstack/courier.py; our client keeps its pace of 80 calls a second),
Shopee shops (a listing page of PAGE orders, each order unknown to us: queued).

Today's volume, per tick (500 orders a day, shipped in pick-up batches of 30):
- writebacks: a factory's pick-up batch comes due at once: 30 in one `write_back` tick;
- parcel checks: the same batch's 30 parcels are new, each to subscribe in the next
  `track_parcels` tick (the checks of the parcels already on their way add ~3 a minute:
  500 a day x ~8 checks over a journey / 1,440 ticks), so 33;
- reconciliation pages: 8 shops (one per platform) with a 2-hour window of ~5 orders each
  (500 a day spread over 8 shops): one page each, 8 pages a `reconcile_shops` tick.
Each kind is given more than 100 times that (MADE), so a tick that completes all of it before
its budget is spent shows its figure as at least that; the figure is the smallest of the three
multiples. Budget: >= 100x.

Then two ticks of each at the same moment, both let past the run lease (as when a lease ran out
while its run still worked, so only the per-item claims keep them apart): duplicates are what
the simulators received more than once (a writeback posted twice to one order, a number queried
twice, a page listed twice). Budget: 0.

`--quick` gives each tick 10 s instead of its budget (for trying the bench, not for figures).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.stack import app_output_discarded, verdict

NAME = "schedule_capacity"
LATENCY = 0.150
BUDGET = 100.0
TODAY = {"writebacks": 30, "parcel checks": 33, "reconciliation pages": 8}
MADE = {"writebacks": 4500, "parcel checks": 4000, "reconciliation pages": 1000}
# The parcel checks made are bounded by our Kuaidi100 pace (80 a second: 4,560 in a 57 s tick);
# more would only wait for the next tick.
PAGE = 2  # orders per Shopee listing page: many pages without many orders
OVERLAP = {"writebacks": 300, "parcel checks": 40, "reconciliation pages": 120}


class Context:
    """Lambda's context, as far as a scheduled run reads it: the time left."""

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def timeout_of(function: str) -> float:
    import json

    from bench.stack import ROOT

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    own = config["lambda_functions"][function]
    return float(own.get("lambda_timeout", config["lambda_timeout"]))


def slowed(simulator: Any, method: str, seconds: float,
           seen: Callable[[Any], None] | None = None) -> None:
    """Every call of the simulator's `method` answers `seconds` late (after `seen`)."""
    original = getattr(simulator, method)

    def later(*args: Any) -> Any:
        if seen is not None:
            seen(*args)
        time.sleep(seconds)
        return original(*args)

    setattr(simulator, method, later)


@contextmanager
def lease_free(store: Any) -> Iterator[None]:
    """Every run gets past the run lease: only the claims keep overlapping runs apart."""
    real = store.take_run_lease
    store.take_run_lease = lambda owner, now, until: True
    try:
        yield
    finally:
        store.take_run_lease = real


def together(*calls: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- writebacks ---------------------------------------------------------------------------------


class Writebacks:
    def __init__(self) -> None:
        from chalicelib.marketplaces import credentials_store
        from devstack.marketplaces.woocommerce import WooCommerceSimulator

        self.simulator = WooCommerceSimulator(shop=f"bench-{uuid.uuid4().hex[:8]}.example.cn",
                                              webhook_url="http://127.0.0.1:9/unused")
        self.simulator.start()
        credentials_store.put("woocommerce", self.simulator.shop, self.simulator.credentials())
        slowed(self.simulator, "handle", LATENCY)

    def make(self, count: int, now: datetime) -> None:
        from chalicelib.core.dynamodb import transact
        from chalicelib.marketplaces import writeback_store
        from chalicelib.marketplaces.calls import Shipped
        from chalicelib.marketplaces.writeback import Writeback

        made = []
        for _ in range(count):
            order = self.simulator.place_order(drop=True)
            package = Shipped(external_id=order.external_id, carrier_code="STO",
                              tracking_number=str(uuid.uuid4().int)[:12], shipped_at=now,
                              package_id="s1-1")
            made.append(Writeback(
                job_id=f"job_{uuid.uuid4().hex[:20]}", partner_id="factory-bench",
                order_id=f"ord_{uuid.uuid4().hex[:20]}", order_name=order.number,
                marketplace="woocommerce", shop=self.simulator.shop, shipment_id="s1",
                packages=(package,), due_at=now, created_at=now))
        for start in range(0, len(made), 25):
            transact([writeback_store.put(wb, None) for wb in made[start:start + 25]])

    def sent(self) -> Counter[str]:
        with self.simulator.lock:
            return Counter(str(w["external_id"]) for w in self.simulator.writebacks)

    def stop(self) -> None:
        self.simulator.stop()


# --- parcel checks ------------------------------------------------------------------------------


class Parcels:
    def __init__(self) -> None:
        from chalicelib.access import accounts_store
        from chalicelib.tracking import couriers
        from devstack.courier import CourierSimulator

        self.simulator = CourierSimulator(customer="BENCH", key="BENCHKEY")
        self.simulator.start()
        accounts_store.register_sources({couriers.source_name("kuaidi100"): {
            "scheme": "kuaidi100", "secrets": ["SALT"],
            "options": {"customer": "BENCH", "key": "BENCHKEY",
                        "query_url": self.simulator.query_url,
                        "subscribe_url": self.simulator.subscribe_url,
                        "callback_url": "https://api.bench/couriers/kuaidi100/push"}}})
        couriers.forget_providers()
        slowed(self.simulator, "query", LATENCY)

    def make(self, count: int, now: datetime) -> None:
        from chalicelib.core.dynamodb import transact
        from chalicelib.tracking import parcel_store
        from chalicelib.tracking.model import Journey
        from chalicelib.tracking.parcels import Parcel
        from chalicelib.tracking.watch import Watch

        made = []
        for _ in range(count):
            number = str(uuid.uuid4().int)[:12]
            made.append(Parcel(
                carrier_code="STO", tracking_number=number, provider="kuaidi100",
                order_id=f"ord_{uuid.uuid4().hex[:20]}", order_name="#1001",
                marketplace="shopify", partner_id="factory-bench",
                job_id=f"job_{uuid.uuid4().hex[:20]}", shipment_id="s1",
                started_at=now - timedelta(hours=1),
                shipment=Journey(carrier_code="STO", tracking_number=number,
                                 handed_over_at=now - timedelta(hours=1)),
                watch=Watch(provider="kuaidi100", can_query=True, next_check_at=now)))
        for start in range(0, len(made), 25):
            transact([parcel_store.put(p, None) for p in made[start:start + 25]])

    def sent(self) -> Counter[str]:
        return Counter({num: n for (_com, num), n in self.simulator.queries.items()})

    def stop(self) -> None:
        self.simulator.stop()


# --- reconciliation pages -----------------------------------------------------------------------


class Pages:
    def __init__(self) -> None:
        self.simulators: list[Any] = []
        self.lock = threading.Lock()
        self.listed: Counter[tuple[str, str]] = Counter()

    def make(self, pages: int, per_shop: int = 20) -> None:
        """`pages` pages in shops of `per_shop` pages (20: what a round lists of one shop)."""
        from chalicelib.marketplaces import credentials_store, shopee
        from devstack.marketplaces.shopee import ShopeeSimulator

        shopee.PAGE_SIZE = PAGE
        for _ in range(pages // per_shop):
            simulator = ShopeeSimulator(shop=str(400000000 + uuid.uuid4().int % 10**8),
                                        webhook_url="http://127.0.0.1:9/unused")
            simulator.start()
            credentials_store.put("shopee", simulator.shop, simulator.credentials())
            for _ in range(per_shop * PAGE - 1):  # the last page is short: the listing ends
                simulator.place_order(drop=True)

            def seen(request: Any, shop: str = simulator.shop) -> None:
                if request.path == shopee.ORDER_LIST_PATH:
                    with self.lock:
                        self.listed[(shop, request.query.get("cursor", ""))] += 1

            slowed(simulator, "handle", LATENCY, seen)
            self.simulators.append(simulator)

    def use(self) -> None:
        """These shops are the only shops there are."""
        from chalicelib.flows import reconciliation

        shops = [("shopee", s.shop) for s in self.simulators]
        reconciliation.shop_credentials.shops = lambda: shops  # type: ignore[attr-defined]

    def stop(self) -> None:
        for simulator in self.simulators:
            simulator.stop()


# --- the stack ----------------------------------------------------------------------------------


def _serve(port: Any) -> None:
    """The local endpoint, in a process of its own (bench.stack's runs it in the bench's)."""
    from devstack.endpoint import LocalAWS

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = LocalAWS(port=0)
    server.start()
    port.value = server.get_host_and_port()[1]
    threading.Event().wait()


@contextmanager
def separate_stack() -> Iterator[None]:
    """bench.stack.local_stack, with the local endpoint in its own process: in AWS, DynamoDB's
    work is not done on the function's CPU, and here it would take the GIL from the run's
    threads (the simulators stay in this process, as their answers are mostly waiting)."""
    import multiprocessing
    import os

    import boto3

    from bench.stack import BASE_ENV, WEBHOOK_SOURCES, reset_app_caches

    spawn = multiprocessing.get_context("spawn")
    port = spawn.Value("i", 0)
    endpoint = spawn.Process(target=_serve, args=(port,), daemon=True)
    endpoint.start()
    while not port.value:
        time.sleep(0.05)
    saved = dict(os.environ)
    extension = None
    try:
        from chalicelib.access import accounts_store as accounts
        from devstack.parameters_extension import start_beside
        from devstack.provision import provision

        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update({**BASE_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port.value}",
                           "APP_STAGE": "bench"})
        functions_env = {**os.environ, **provision(boto3.session.Session(), stage="bench")}
        extension = start_beside(functions_env)
        os.environ.update(functions_env)
        reset_app_caches()
        accounts.register_sources(WEBHOOK_SOURCES)
        yield
    finally:
        if extension is not None:
            extension.stop()
        endpoint.terminate()
        endpoint.join(10)
        os.environ.clear()
        os.environ.update(saved)


# --- the ticks ----------------------------------------------------------------------------------


def tick(function: str, run: Callable[[Any], None], margin: float, quick: bool) -> float:
    """Run one tick as Lambda would (its context: the function's timeout; `--quick`: 10 s
    of work and the run's `margin`); its seconds."""
    seconds = 10.0 + margin if quick else timeout_of(function)
    began = time.monotonic()
    with app_output_discarded():
        run(Context(seconds))
    return time.monotonic() - began


def duplicates(sent: Counter[Any]) -> int:
    return sum(n - 1 for n in sent.values() if n > 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    logging.disable(logging.WARNING)  # the app's per-item lines; errors still counted below
    with separate_stack():
        from chalicelib.flows import reconciliation, tracker, writeback
        from chalicelib.marketplaces import reconcile_store, writeback_store
        from chalicelib.tracking import parcel_store

        figures: dict[str, float] = {}
        dups: dict[str, int] = {}
        now = datetime.now(UTC) - timedelta(seconds=5)

        writebacks = Writebacks()
        writebacks.make(MADE["writebacks"], now)
        took = tick("write_back", writeback.on_schedule, writeback.RUN_MARGIN, quick)
        done = sum(writebacks.sent().values())
        figures["writebacks"] = done / TODAY["writebacks"]
        print(f"write_back: {done} of {MADE['writebacks']} writebacks in one tick "
              f"({took:.1f} s; timeout {timeout_of('write_back'):.0f} s)", flush=True)

        parcels = Parcels()
        parcels.make(MADE["parcel checks"], now)
        took = tick("track_parcels", tracker.on_schedule, tracker.RUN_MARGIN, quick)
        done = sum(parcels.sent().values())
        figures["parcel checks"] = done / TODAY["parcel checks"]
        print(f"track_parcels: {done} of {MADE['parcel checks']} parcel checks in one tick "
              f"({took:.1f} s; timeout {timeout_of('track_parcels'):.0f} s; Kuaidi100 at our "
              f"pace of 80 a second)", flush=True)

        pages = Pages()
        pages.make(MADE["reconciliation pages"])
        pages.use()
        took = tick("reconcile_shops", reconciliation.on_schedule, reconciliation.RUN_MARGIN,
                    quick)
        done = sum(pages.listed.values())
        figures["reconciliation pages"] = done / TODAY["reconciliation pages"]
        print(f"reconcile_shops: {done} of {MADE['reconciliation pages']} pages in one tick "
              f"({took:.1f} s; timeout {timeout_of('reconcile_shops'):.0f} s)", flush=True)
        pages.stop()

        # Two overlapping ticks of each, past the lease: what the claims leave sent twice.
        later = datetime.now(UTC)
        writebacks.make(OVERLAP["writebacks"], later)
        with lease_free(writeback_store), app_output_discarded():
            together(lambda: writeback.run_writebacks(later),
                     lambda: writeback.run_writebacks(later))
        dups["writebacks"] = duplicates(writebacks.sent())

        parcels.make(OVERLAP["parcel checks"], later)
        with lease_free(parcel_store), app_output_discarded():
            together(lambda: tracker.run_due(later), lambda: tracker.run_due(later))
        dups["parcel checks"] = duplicates(parcels.sent())

        overlap = Pages()
        overlap.make(OVERLAP["reconciliation pages"], per_shop=20)
        overlap.use()
        listed_by = datetime.now(UTC) + timedelta(seconds=1)  # after its orders were placed
        with lease_free(reconcile_store), app_output_discarded():
            results = together(lambda: reconciliation.run_reconciliation(listed_by, pages=0),
                               lambda: reconciliation.run_reconciliation(listed_by, pages=0))
        dups["reconciliation pages"] = duplicates(overlap.listed)
        print(f"two overlapping ticks: writebacks sent twice {dups['writebacks']}, numbers "
              f"queried twice {dups['parcel checks']}, pages listed twice "
              f"{dups['reconciliation pages']} (pages listed {sum(overlap.listed.values())} of "
              f"{OVERLAP['reconciliation pages']}; runs {[r['pages'] for r in results]})",
              flush=True)
        overlap.stop()
        writebacks.stop()
        parcels.stop()

    for kind, figure in figures.items():
        print(f"{kind}: {figure:.0f}x today's {TODAY[kind]} a tick")
    print("(parcel checks are bound by our Kuaidi100 pace, 80 calls a second per process with "
          "one run at a time: ~4,500 a tick whatever the latency)")
    figure = min(figures.values())
    total_dups = sum(dups.values())
    ok = figure >= BUDGET and total_dups == 0
    print(f"BENCH {NAME}: {figure:.0f}x (budget {BUDGET:.0f}x, {total_dups} duplicates) "
          f"{verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
