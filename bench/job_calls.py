"""DynamoDB reads and writes per warehouse job, from offer to shipped, counted with botocore's
event hooks.

Every botocore client created in this process gets a `before-parameter-build` handler: one per
API call whatever the retries, with the call's parameters, so each call is counted under its
operation and table (and a transaction's items under theirs). Calls are counted only inside a
measured phase and only on the main thread: creating the jobs, issuing the key and the final
check are never counted, and neither is anything moto does.

The protocol is driven through the real HTTP routes (`chalice.test.Client`, in process) with a
partner key, for N offered jobs of a fresh partner created as tests/integration/
test_concurrency.py creates them (one transaction per 100 jobs, not counted):

  (a) one by one: claim 1 at a time, accept, print each with /jobs/{id}/print, pick, pack, ship
  (b) batched, as a real factory works: claim 50 at a time, accept, print through /waves of 20,
      pick, pack, ship

Steady state: one authenticated request before counting, so the process has its clients and
the API key's principal cached (auth.py caches it 60 s). A key lookup that recurs when that
cache expires during a run is a cost per minute per warm instance, not per job: it is shown on
its own line and left out of the per-job figures. The per-key rate limit (in process, no AWS
call) is raised for the run so that hundreds of requests in a few seconds are not refused.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.stack import Orders, app_output_discarded, local_stack, verdict

NAME = "job_calls"
JOBS = 100
CLAIM_BATCH = 50
WAVE_SIZE = 20
BUDGET = 10.0  # DynamoDB calls per job, one by one (the worst case of the two ways of working)
# Each of the partner's steps may start from what this instance itself last wrote of the job
# (flows/warehouse.py `remember`) instead of a read. One process is one warm instance: the
# third pass forgets before every request, as if each landed on an instance of its own (the
# most a step can cost; shown, not budgeted).
COLD = "one by one, no instance memory"
STEPS = ("claim", "accept", "print", "pick", "pack", "ship")
KEY_LOOKUP = "GetItem directory (API key)"


# --- Creating offered jobs (shared with bench.claim_latency) ------------------------------------


def offer_jobs(partner: str, count: int, orders: Orders | None = None) -> list[str]:
    """`count` offered jobs for `partner`, as tests/integration/test_concurrency.py makes them:
    one realistic order, a job per copy under a new id, one transaction per 100 jobs."""
    from chalicelib.core.clock import utcnow
    from chalicelib.core.dynamodb import transact
    from chalicelib.marketplaces import shopify
    from chalicelib.warehouse import job_store as jobs_store
    from chalicelib.warehouse import jobs

    now = utcnow() - timedelta(seconds=5)
    body = json.dumps((orders or Orders()).payload(), ensure_ascii=False).encode()
    order = shopify.normalise(body, {"x-shopify-shop-domain": "s"}, "shopify")
    template = jobs.new_job(order, partner, now)
    offered = [template.model_copy(update={"job_id": f"job_{uuid.uuid4().hex[:20]}"})
               for _ in range(count)]
    for start in range(0, count, 100):
        transact([jobs_store.put(job, None) for job in offered[start:start + 100]])
    return [job.job_id for job in offered]


def fresh_partner() -> str:
    return f"factory-bench-{uuid.uuid4().hex[:8]}"


# --- Counting -----------------------------------------------------------------------------------


@dataclass
class Phase:
    calls: Counter[str] = field(default_factory=Counter)  # "Query jobs" -> n
    items: Counter[str] = field(default_factory=Counter)  # transaction items: "Put orders" -> n

    def total(self, *, keys: bool = False) -> int:
        return sum(n for name, n in self.calls.items() if keys or name != KEY_LOOKUP)


class CallCounter:
    """Counts the API calls of every botocore client created after `install()`."""

    def __init__(self) -> None:
        self.tables: dict[str, str] = {}  # physical name -> short name, once provisioned
        self.phases: dict[str, Phase] = {}
        self.other_services: Counter[str] = Counter()
        self._phase: Phase | None = None
        self._main = threading.get_ident()

    def install(self) -> None:
        import botocore.session

        original = botocore.session.Session.create_client
        counter = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register("before-parameter-build", counter._on_call)
            return client

        botocore.session.Session.create_client = create_client

    def _table(self, name: str | None) -> str:
        return self.tables.get(name or "", name or "?")

    def _on_call(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        # Must return None. Emitted once per API call, before serialisation and any retry.
        phase = self._phase if threading.get_ident() == self._main else None
        if phase is None:
            return
        _event, service, operation = event_name.split(".", 2)
        if service != "dynamodb":
            self.other_services[f"{service}.{operation}"] += 1  # not in the figure: shown
            return
        if operation == "TransactWriteItems":
            tables = set()
            for entry in params["TransactItems"]:
                (kind, body), = entry.items()
                tables.add(self._table(body["TableName"]))
                phase.items[f"{kind} {self._table(body['TableName'])}"] += 1
            phase.calls[f"{operation} {'+'.join(sorted(tables))}"] += 1
        elif operation in ("BatchGetItem", "BatchWriteItem"):
            tables = {self._table(name) for name in params["RequestItems"]}
            phase.calls[f"{operation} {'+'.join(sorted(tables))}"] += 1
        else:
            table = self._table(params.get("TableName"))
            name = f"{operation} {table}"
            sk = str(params.get("Key", {}).get("sk", {}).get("S", "job_"))
            if table == "jobs" and not sk.startswith("job_"):
                name += f" ({sk.split('#')[0]})"  # a document beside the jobs: SKU_LOCATIONS
            phase.calls[KEY_LOOKUP if name == "GetItem directory" else name] += 1

    @contextmanager
    def counting(self, name: str) -> Iterator[Phase]:
        phase = self.phases.setdefault(name, Phase())
        self._phase = phase
        try:
            yield phase
        finally:
            self._phase = None


# --- Driving the protocol over HTTP -------------------------------------------------------------


class Partner:
    """The factory's calls through the real routes, with status checks."""

    def __init__(self, client: Any, key: str, forgetful: bool = False) -> None:
        self.client, self.key, self.forgetful = client, key, forgetful

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        if self.forgetful:
            from chalicelib.flows import warehouse

            warehouse.forget_all()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        payload = json.dumps(body).encode() if body is not None else b""
        response = getattr(self.client.http, method)(f"/warehouse/v1{path}", headers=headers,
                                                     body=payload)
        if response.status_code != expect:
            raise RuntimeError(f"{method.upper()} {path} answered {response.status_code}: "
                               f"{response.body[:500]!r}")
        return json.loads(response.body) if response.body else None

    def claim(self, count: int) -> tuple[str, list[dict[str, Any]]]:
        answer = self.call("post", "/jobs/claim", {"max_jobs": count})
        return answer["lease_id"], answer["jobs"]


def _ship_report(job: dict[str, Any], n: int) -> dict[str, Any]:
    # A fresh number per job: shipping starts its tracking, and a number already tracked for
    # another order is the (rare, alerted) reuse path, not the one measured here.
    number = f"7730{int(job['job_id'].encode().hex(), 16) % 10**8:08d}{n:04d}"
    return {"shipment_id": f"ship-{n}", "packages": [
        {"carrier_code": job["carrier"]["carrier_code"], "tracking_number": number}]}


def drive(api: Partner, counter: CallCounter, mode: str, count: int) -> None:
    """claim, accept, print, pick, pack, ship `count` jobs; each step a phase `mode:step`."""
    claimed: list[tuple[str, dict[str, Any]]] = []
    one_by_one = mode != "batched"
    per_claim = 1 if one_by_one else CLAIM_BATCH
    with counter.counting(f"{mode}:claim"):
        while len(claimed) < count:
            lease, got = api.claim(min(per_claim, count - len(claimed)))
            if not got:
                raise RuntimeError(f"claim returned no jobs after {len(claimed)}")
            claimed += [(lease, job) for job in got]
    with counter.counting(f"{mode}:accept"):
        for lease, job in claimed:
            api.call("post", f"/jobs/{job['job_id']}/accept", {"lease_id": lease})
    with counter.counting(f"{mode}:print"):
        if one_by_one:
            for _, job in claimed:
                api.call("post", f"/jobs/{job['job_id']}/print", {})
        else:
            for start in range(0, len(claimed), WAVE_SIZE):
                ids = [job["job_id"] for _, job in claimed[start:start + WAVE_SIZE]]
                api.call("post", "/waves", {"job_ids": ids}, expect=201)
    with counter.counting(f"{mode}:pick"):
        for _, job in claimed:
            api.call("post", f"/jobs/{job['job_id']}/pick", {})
    with counter.counting(f"{mode}:pack"):
        for _, job in claimed:
            api.call("post", f"/jobs/{job['job_id']}/pack",
                     {"weight_grams": 640, "package_count": 1})
    with counter.counting(f"{mode}:ship"):
        for n, (_, job) in enumerate(claimed):
            api.call("post", f"/jobs/{job['job_id']}/ship", _ship_report(job, n))


def _all_shipped(partner: str, job_ids: list[str]) -> bool:
    from chalicelib.warehouse import job_store as jobs_store

    found: dict[str, Any] = {}
    for start in range(0, len(job_ids), 100):
        found.update(jobs_store.get_many(partner, job_ids[start:start + 100]))
    return len(found) == len(job_ids) and all(job.work == "shipped" for job in found.values())


# --- Report -------------------------------------------------------------------------------------


def _merged(counter: CallCounter, mode: str) -> Phase:
    merged = Phase()
    for step in STEPS:
        phase = counter.phases[f"{mode}:{step}"]
        merged.calls.update(phase.calls)
        merged.items.update(phase.items)
    return merged


def _report(counter: CallCounter, mode: str, count: int) -> float:
    whole = _merged(counter, mode)
    per_job = whole.total() / count
    items = sum(whole.items.values())
    print(f"({mode}) {whole.total()} DynamoDB calls for {count} jobs = {per_job:.2f} per job; "
          f"{items} transaction items = {items / count:.2f} per job")
    print(f"  by step{'':<19}{'calls':>7}{'per job':>9}   operations (per job)")
    for step in STEPS:
        phase = counter.phases[f"{mode}:{step}"]
        ops = ", ".join(f"{op} {n / count:.2f}" for op, n in sorted(phase.calls.items())
                        if op != KEY_LOOKUP)
        print(f"    {step:<24}{phase.total():>7}{phase.total() / count:>9.2f}   {ops}")
    print("  by operation")
    for op, n in sorted(whole.calls.items()):
        if op != KEY_LOOKUP:
            print(f"    {op:<38}{n:>7}{n / count:>9.2f}/job")
    print("  transaction items by kind and table")
    for kind, n in sorted(whole.items.items()):
        print(f"    {kind:<38}{n:>7}{n / count:>9.2f}/job")
    print(f"  {KEY_LOOKUP}: {whole.calls[KEY_LOOKUP]} during the run (cache expiry, every "
          f"{_key_cache_seconds()} s per warm instance; not per job, not in the figure)")
    return per_job


def _key_cache_seconds() -> int:
    from chalicelib.core.settings import settings

    return settings().key_cache_seconds


def main() -> int:
    counter = CallCounter()
    counter.install()  # before anything creates a client (local_stack stores the secrets)
    with local_stack() as env:
        counter.tables = {env["JOBS_TABLE"]: "jobs", env["ORDERS_TABLE"]: "orders",
                          env["DIRECTORY_TABLE"]: "directory", env["INBOX_TABLE"]: "inbox"}
        os.environ["RATE_LIMIT_PER_SECOND"] = os.environ["RATE_LIMIT_BURST"] = "1000000"
        from chalice.test import Client

        from app import app
        from chalicelib.access import directory_store as directory
        from chalicelib.access import keys as auth
        from chalicelib.core import ratelimit
        from chalicelib.core.clock import utcnow
        from chalicelib.core.settings import settings

        settings.cache_clear()
        ratelimit.reset()
        orders = Orders()
        figures: dict[str, float] = {}
        checks: list[str] = []
        with Client(app, stage_name="local") as client, app_output_discarded():
            for mode in ("one by one", "batched", COLD):
                partner = fresh_partner()
                job_ids = offer_jobs(partner, JOBS, orders)
                key = auth.new_key()
                directory.add_key(auth.hash_key(key), "partner", partner, auth.Role.PARTNER,
                                  utcnow())
                api = Partner(client, key, forgetful=mode == COLD)
                # Warm-up: clients created, the key's principal cached. No AWS call but the
                # key lookup: get_job answers 404 for an id that cannot be a job without I/O.
                with counter.counting(f"{mode}:warm-up"):
                    api.call("get", "/jobs/warm-up", expect=404)
                drive(api, counter, mode, JOBS)
                if not _all_shipped(partner, job_ids):
                    checks.append(f"{mode}: not every job ended shipped")
        for mode in ("one by one", "batched", COLD):
            warm = counter.phases[f"{mode}:warm-up"]
            print(f"({mode}) warm-up request: {dict(warm.calls)}")
            figures[mode] = _report(counter, mode, JOBS)
            checks += [f"{mode}: no DynamoDB call counted for {step}" for step in STEPS
                       if not counter.phases[f"{mode}:{step}"].total()]
        if counter.other_services:
            print(f"other AWS calls in measured phases: {dict(counter.other_services)}")

    for problem in checks:
        print(f"FAILED: {problem}")
    one, batched = figures["one by one"], figures["batched"]
    within = one <= BUDGET and not checks
    print(f"BENCH {NAME}: {one:.2f} one by one, {batched:.2f} batched per job "
          f"[{figures[COLD]:.2f} one by one with no instance memory, not budgeted] "
          f"(budget {BUDGET:g}) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
