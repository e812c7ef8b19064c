"""2,000 orders through everything while 5 % of DynamoDB calls fail as AWS's do (issue 14).

Each order goes the whole way through the real code, in process: a signed Shopify webhook
(`POST /webhooks/shopify`), the order worker on DynamoDB-stream batches of 25, the factory's
claim (50 at a time), accept, print (waves of 20), pick, pack and ship, then a CS amendment
(a note). All the while the fault layer of the tests (tests/faults.py, `Faults.storm`) fails
5 % of the attempts of every DynamoDB call the app makes, each with a kind drawn (seeded) from
those that can befall it: transaction conflicts, throttled cancellations, throughput
exceeded, throttling, request limit, internal server errors, timeouts before and after the
write, an unreachable endpoint. Botocore's own retries run as configured, their pauses scaled
to a hundredth (the same jittered schedule; waiting seconds per fault would take hours); the
app's retry helper pauses as it does in production.

The clients behave as the contract tells them: a 503 (or 429) is sent again (at once: the
faults are random, not a load that waiting relieves); a 409 after a retried request is done
when its `current_state` shows the step done (the first try landed, its answer was lost). The
stream re-delivers a batch from its first failed record on (what Lambda does with a partial
batch response on a stream), records after it included, so the worker meets records it has
already applied.

Figure: answers 500 (and `system.fault` cases the edge raised), orders lost (accepted by the
webhook but not ending shipped and amended: a step never done, a delivery never judged) and
duplicated (an event on an order's timeline more often than once); all must be 0, and every
order's timeline must be exactly received, created, accepted, printed, picked, packed,
shipped, tracking started, amended.

`FAULT_STORM_ORDERS` overrides the 2,000 (a quick look).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.stack import SOURCE, WEBHOOK_PATH, Orders, app_output_discarded, local_stack, verdict

NAME = "fault_storm"
ORDERS = int(os.environ.get("FAULT_STORM_ORDERS", "2000"))
FAULT_RATE = 0.05
SEED = 14
STREAM_BATCH = 25
CLAIM_BATCH = 50
WAVE_SIZE = 20
TRIES = 25  # a client's attempts of one request before it is counted as given up
EXPECTED = ["order.received", "job.created", "job.accepted", "job.printed", "job.picked",
            "job.packed", "job.shipped", "shipment.tracking_started", "order.amended"]
# How far each step gets a job: a 409 after a retry means done when the job is there already.
WORK_ORDER = ["queued", "printed", "picked", "packed", "shipped"]


class GaveUp(Exception):
    pass


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)  # "step status" -> n
    retried: Counter[str] = field(default_factory=Counter)  # step -> requests sent again
    done_on_409: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    redelivered: int = 0  # stream records delivered again
    our_faults: list[str] = field(default_factory=list)  # system.fault raised by the edge

    @property
    def five_hundreds(self) -> int:
        return sum(n for key, n in self.answers.items() if key.endswith(" 500"))


class Storm:
    """The marketplace, the factory and CS, each retrying as the contract says."""

    def __init__(self, client: Any, partner_key: str, cs_key: str, tally: Tally) -> None:
        self.client, self.tally = client, tally
        self.partner = {"Authorization": f"Bearer {partner_key}",
                        "Content-Type": "application/json"}
        self.cs = {"Authorization": f"Bearer {cs_key}", "Content-Type": "application/json"}

    def send(self, step: str, call: Callable[[], Any]) -> tuple[int, Any, bool]:
        """(status, body, retried): `call()` until it answers neither 500, 503 nor 429."""
        for attempt in range(TRIES):
            response = call()
            status = int(response.status_code)
            self.tally.answers[f"{step} {status}"] += 1
            if status in (500, 503, 429):
                self.tally.retried[step] += 1
                continue
            return status, json.loads(response.body) if response.body else None, attempt > 0
        self.tally.gave_up.append(step)
        raise GaveUp(step)

    def post(self, step: str, path: str, body: Any, headers: dict[str, str]) -> tuple[
            int, Any, bool]:
        data = json.dumps(body).encode()
        return self.send(step, lambda: self.client.http.post(path, headers=headers, body=data))

    # The steps ---------------------------------------------------------------------------------

    def webhook(self, body: bytes, headers: dict[str, str]) -> bool:
        status, answer, _ = self.send("webhook", lambda: self.client.http.post(
            WEBHOOK_PATH, headers=headers, body=body))
        return status == 200 and answer["status"] in ("accepted", "duplicate")

    def claim(self, count: int) -> tuple[str | None, list[dict[str, Any]]]:
        status, answer, _ = self.post("claim", "/warehouse/v1/jobs/claim", {"max_jobs": count},
                                      self.partner)
        if status != 200:
            raise RuntimeError(f"claim answered {status}: {answer}")
        return answer["lease_id"], answer["jobs"]

    def step(self, step: str, job_id: str, body: Any, done: Callable[[dict[str, Any]], bool]
             ) -> None:
        status, answer, retried = self.post(step, f"/warehouse/v1/jobs/{job_id}/{step}", body,
                                            self.partner)
        if status == 200:
            return
        state = (answer.get("details") or {}).get("current_state") if status == 409 else None
        if retried and state is not None and done(state):
            self.tally.done_on_409[step] += 1  # the first try landed; its answer was lost
            return
        raise RuntimeError(f"{step} {job_id} answered {status}: {answer}")

    def wave(self, job_ids: Sequence[str]) -> None:
        status, answer, retried = self.post("wave", "/warehouse/v1/waves",
                                            {"job_ids": list(job_ids)}, self.partner)
        if status == 201:
            return
        refused = (answer.get("details") or {}).get("jobs") or {} if status == 409 else {}
        if retried and refused and all(v.get("error") == "already_printed"
                                       for v in refused.values()):
            self.tally.done_on_409["wave"] += 1
            return
        raise RuntimeError(f"wave answered {status}: {answer}")

    def amend(self, order_id: str) -> None:
        status, answer, _ = self.post("amend", f"/cs/v1/orders/{order_id}/amendments",
                                      {"kind": "note", "reason": "buyer asked for gift wrap"},
                                      self.cs)
        if status != 201:
            raise RuntimeError(f"amend {order_id} answered {status}: {answer}")



# The stream --------------------------------------------------------------------------------------


def stream_records(delivery_ids: Sequence[str], env: dict[str, str]) -> list[dict[str, Any]]:
    """The INSERT records of these inbox items, as the stream carries them (read with a client
    of the bench's own: no fault)."""
    import boto3

    table = env["INBOX_TABLE"]
    keys = [{"pk": {"S": f"{SOURCE}#{d}"}} for d in delivery_ids]
    found = boto3.client("dynamodb").batch_get_item(RequestItems={table: {
        "Keys": keys, "ConsistentRead": True}})["Responses"][table]
    images = {item["pk"]["S"]: item for item in found}
    return [{
        "eventID": uuid.uuid4().hex, "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"ApproximateCreationDateTime": int(time.time()), "Keys": key,
                     "NewImage": images[key["pk"]["S"]],
                     "SequenceNumber": str(10**20 + n),
                     "SizeBytes": len(json.dumps(images[key["pk"]["S"]])),
                     "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": env["INBOX_STREAM_ARN"]} for n, key in enumerate(keys)]


def work_stream(client: Any, records: list[dict[str, Any]], tally: Tally) -> None:
    """Invoke the worker until the batch is through: after a partial failure the stream
    delivers again from the first failed record on."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    for _ in range(TRIES):
        try:
            answer = client.lambda_.invoke("order_worker", {"Records": records}).payload
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        except BatchProcessingError:
            failed = {record["eventID"] for record in records}
        if not failed:
            return
        first = min(n for n, record in enumerate(records) if record["eventID"] in failed)
        records = records[first:]
        tally.redelivered += len(records)
    tally.gave_up.append("worker")


# The run -----------------------------------------------------------------------------------------


def _issue_keys(partner: str) -> tuple[str, str]:
    from chalicelib.access import directory_store as directory
    from chalicelib.access import keys as auth
    from chalicelib.core.clock import utcnow

    issued = []
    for kind, principal, role in (("partner", partner, auth.Role.PARTNER),
                                  ("staff", "storm-cs", auth.Role.BACK_OFFICE)):
        key = auth.new_key()
        directory.add_key(auth.hash_key(key), kind, principal, role, utcnow())
        issued.append(key)
    return issued[0], issued[1]


def _outcomes(delivery_ids: Sequence[str], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    import boto3

    from chalicelib.core.dynamodb import from_attrs

    table, found = env["INBOX_TABLE"], {}
    ddb = boto3.client("dynamodb")
    for start in range(0, len(delivery_ids), 100):
        keys = [{"pk": {"S": f"{SOURCE}#{d}"}} for d in delivery_ids[start:start + 100]]
        for item in ddb.batch_get_item(RequestItems={table: {
                "Keys": keys, "ConsistentRead": True}})["Responses"][table]:
            plain = from_attrs(item)
            found[str(plain["delivery_id"])] = plain
    return found


def _phase(name: str, started: float, count: int) -> float:
    now = time.monotonic()
    # The app's output is discarded meanwhile (`app_output_discarded`): the report's own.
    print(f"  {name:<10} {now - started:7.1f} s  ({count} done)", file=sys.__stdout__,
          flush=True)
    return now


def run(storm: Storm, client: Any, env: dict[str, str], tally: Tally
        ) -> tuple[list[str], dict[str, str], list[str]]:
    """Drive every order; (accepted delivery ids, job id -> order id, problems)."""
    orders, problems = Orders(seed=SEED), []
    started = time.monotonic()
    accepted: list[str] = []
    for _ in range(ORDERS):
        delivery = orders.delivery()
        try:
            if storm.webhook(delivery.body, delivery.headers):
                accepted.append(delivery.delivery_id)
        except GaveUp:
            problems.append(f"webhook {delivery.delivery_id} given up")
    started = _phase("intake", started, len(accepted))

    for start in range(0, len(accepted), STREAM_BATCH):
        work_stream(client, stream_records(accepted[start:start + STREAM_BATCH], env), tally)
    started = _phase("worker", started, len(accepted))

    job_of: dict[str, str] = {}  # job id -> order id
    claimed: list[tuple[str, dict[str, Any]]] = []
    empty = 0
    while len(claimed) < len(accepted) and empty < 3:
        lease, jobs = storm.claim(CLAIM_BATCH)
        empty = 0 if jobs else empty + 1
        for job in jobs:
            if job["job_id"] in job_of:
                problems.append(f"job {job['job_id']} handed out twice")
            job_of[job["job_id"]] = job["order_id"]
            claimed.append((str(lease), job))
    started = _phase("claim", started, len(claimed))

    def stage(step: str) -> Callable[[dict[str, Any]], bool]:
        return lambda state: WORK_ORDER.index(state["work"]) >= WORK_ORDER.index(step)

    for lease, job in claimed:
        storm.step("accept", job["job_id"], {"lease_id": lease},
                   lambda state: state["handshake"] == "accepted")
    started = _phase("accept", started, len(claimed))
    for start in range(0, len(claimed), WAVE_SIZE):
        storm.wave([job["job_id"] for _, job in claimed[start:start + WAVE_SIZE]])
    started = _phase("print", started, len(claimed))
    for _, job in claimed:
        storm.step("pick", job["job_id"], {}, stage("picked"))
    started = _phase("pick", started, len(claimed))
    for _, job in claimed:
        storm.step("pack", job["job_id"], {"weight_grams": 640, "package_count": 1},
                   stage("packed"))
    started = _phase("pack", started, len(claimed))
    for n, (_, job) in enumerate(claimed):
        number = f"7731{n:012d}"
        storm.step("ship", job["job_id"], {"shipment_id": f"s{n}", "packages": [
            {"carrier_code": job["carrier"]["carrier_code"], "tracking_number": number}]},
            stage("shipped"))
    started = _phase("ship", started, len(claimed))
    for _, job in claimed:
        storm.amend(job["order_id"])
    _phase("amend", started, len(claimed))
    return accepted, job_of, problems


def _timelines(env: dict[str, str]) -> dict[str, list[str]]:
    """Every order's timeline (its events' types in order, as the order view shows them), from
    one scan of the orders table: the local endpoint answers a Query by scanning the whole
    table, so 2,000 order views would take minutes."""
    import boto3

    events: dict[str, list[tuple[str, str]]] = {}
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(
        TableName=env["ORDERS_TABLE"], ProjectionExpression="pk, sk, #type",
        ExpressionAttributeNames={"#type": "type"}, ConsistentRead=True)
    for page in pages:
        for item in page["Items"]:
            sk = item["sk"]["S"]
            if sk.startswith("EVENT#"):
                order_id = item["pk"]["S"].removeprefix("ORDER#")
                events.setdefault(order_id, []).append((sk, item["type"]["S"]))
    return {order_id: [kind for _, kind in sorted(found)] for order_id, found in events.items()}


def check(env: dict[str, str], accepted: Sequence[str],
          job_of: dict[str, str]) -> tuple[int, int, list[str]]:
    """(lost, duplicated, problems) from the stored state, read without faults."""
    started = time.monotonic()
    problems: list[str] = []
    outcomes = _outcomes(accepted, env)
    order_ids = []
    lost = duplicated = 0
    for delivery_id in accepted:
        item = outcomes.get(delivery_id)
        if item is None or "pending" in item or item.get("outcome") != "created":
            lost += 1
            problems.append(f"delivery {delivery_id}: {item and item.get('outcome')}")
            continue
        order_ids.append(str(item["outcome_detail"]))
    if len(set(order_ids)) != len(order_ids):
        duplicated += len(order_ids) - len(set(order_ids))
        problems.append("two deliveries made one order")
    claimed_orders = set(job_of.values())
    timelines = _timelines(env)
    for order_id in order_ids:
        timeline = timelines.get(order_id, [])
        counts = Counter(timeline)
        extra = sum(n - 1 for n in counts.values() if n > 1)
        if extra:
            duplicated += 1
            problems.append(f"order {order_id} doubled: {timeline}")
        elif timeline != EXPECTED:
            lost += 1
            problems.append(f"order {order_id} ended at {timeline[-1:] or 'nothing'}"
                            f"{'' if order_id in claimed_orders else ' (never claimed)'}")
    _phase("check", started, len(order_ids))
    return lost, duplicated, problems


def main() -> int:
    with local_stack() as env:
        partner = f"factory-storm-{uuid.uuid4().hex[:8]}"
        os.environ.update({"RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000",
                           "WAREHOUSE_PARTNER": partner})
        from chalice.test import Client

        import chalicelib.api as edge
        from app import app
        from chalicelib.core import ratelimit
        from chalicelib.core.settings import settings
        from tests.faults import Faults

        settings.cache_clear()
        ratelimit.reset()
        tally = Tally()
        real_fault = edge._our_fault

        def our_fault(route: str, exc: Exception) -> None:
            tally.our_faults.append(f"{route}: {type(exc).__name__}")
            real_fault(route, exc)

        edge._our_fault = our_fault
        partner_key, cs_key = _issue_keys(partner)
        faults = Faults(seed=SEED, backoff_scale=0.01)
        print(f"{ORDERS} orders, {FAULT_RATE:.0%} of DynamoDB call attempts failing "
              f"(seed {SEED}); phase times:", flush=True)
        began = time.monotonic()
        problems: list[str] = []
        with Client(app, stage_name="local") as client, app_output_discarded(), \
                faults.installed():
            storm = Storm(client, partner_key, cs_key, tally)
            faults.storm(FAULT_RATE)
            try:
                accepted, job_of, problems = run(storm, client, env, tally)
            except (GaveUp, RuntimeError) as exc:
                problems.append(f"the run stopped: {exc}")
                accepted, job_of = [], {}
            faults.clear()
            elapsed = time.monotonic() - began
            lost, duplicated, found = check(env, accepted, job_of)
        problems += found
        if not accepted:
            lost = ORDERS

    attempts = sum(faults.calls.values())
    print(f"{elapsed:.0f} s for {ORDERS} orders; {attempts} DynamoDB call attempts, "
          f"{faults.total()} failed ({faults.total() / max(1, attempts):.1%})")
    by_kind = Counter[str]()
    for (kind, _), n in faults.injected.items():
        by_kind[kind] += n
    print("  faults by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    print("  answers: " + ", ".join(f"{k} {n}" for k, n in sorted(tally.answers.items())))
    print(f"  requests sent again after 503/429/500: {dict(tally.retried)}")
    print(f"  409 after a retry, found done: {dict(tally.done_on_409)}")
    print(f"  stream records delivered again: {tally.redelivered}")
    print(f"  system.fault raised by the edge: {len(tally.our_faults)} {tally.our_faults[:5]}")
    for problem in [*problems, *(f"gave up: {g}" for g in tally.gave_up)][:20]:
        print(f"  PROBLEM: {problem}")
    five = tally.five_hundreds
    ended = lost == 0 and duplicated == 0 and not problems and not tally.gave_up
    within = ended and five == 0 and not tally.our_faults
    print(f"BENCH {NAME}: {five} answers 500 ({len(tally.our_faults)} system.fault), {lost} "
          f"lost, {duplicated} duplicated of {ORDERS} orders, every order ended "
          f"{'where it should' if ended else 'NOT where it should'} "
          f"(budget 0 500s, 0 lost, 0 duplicated) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
