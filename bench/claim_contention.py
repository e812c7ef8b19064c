"""Claim contention: 8 pollers of one partner on 2,000 waiting jobs.

Each poller loops: claim up to CLAIM_SIZE jobs (`chalicelib.flows.warehouse.claim`, the
service, in process, each poller on a thread of its own), then spends HANDLING seconds per job
it got (a sleep: the factory's own work on them, accepting, printing) before it claims again.
An empty answer is checked at once against the offers index (strongly consistent locally; no
lease ends during the run): if an offer is still there, the answer came while jobs waited and
the poller goes on; if none is, the poller stops.

Why the handling time: the local endpoint serialises every DynamoDB call (one lock in moto),
so pollers that only claim would measure moto, not whether claims keep pollers busy. With it,
a poller's rate is set by its own work as long as claims hand it jobs, which is the question.
The time spent in claims is printed beside the figure. Claims of 50 rather than 10 for the
same reason: moto answers a Query by going through the whole table (about 0.35 s at 2,000
jobs, whatever the page), so with claims of 10 the 8 pollers would wait on moto's lock, not
on each other.

Conditions (all must hold):
  * empty answers while jobs waited <= 1 % of all answers;
  * every poller got work;
  * jobs per second of the 8 >= 4x one poller's alone (a fresh partner with BASELINE_JOBS
    jobs, the same loop);
  * 0 double hand-outs (every job in exactly one answer) and none left unclaimed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.job_calls import fresh_partner, offer_jobs
from bench.stack import Orders, app_output_discarded, local_stack, median, percentile, verdict

NAME = "claim_contention"
POLLERS = 8
JOBS = 2000
BASELINE_JOBS = 200
CLAIM_SIZE = 50
HANDLING = 0.2  # seconds of the factory's own work per job claimed
EMPTY_BUDGET = 0.01
SPEEDUP_BUDGET = 4.0


@dataclass
class Poller:
    jobs: list[str] = field(default_factory=list)
    answers: int = 0
    empty_while_waiting: int = 0
    claim_seconds: list[float] = field(default_factory=list)


def offers_left(partner: str) -> bool:
    from chalicelib.core.clock import utcnow
    from chalicelib.warehouse import job_store

    return bool(job_store.claimable(partner, utcnow(), 1))


def poll(partner: str, start: threading.Barrier) -> Poller:
    from chalicelib.flows import warehouse

    me = Poller()
    request = warehouse.ClaimRequest(max_jobs=CLAIM_SIZE)
    start.wait()
    while True:
        began = time.perf_counter()
        answer = warehouse.claim(partner, request)
        me.claim_seconds.append(time.perf_counter() - began)
        me.answers += 1
        if answer.jobs:
            me.jobs += [job.job_id for job in answer.jobs]
            time.sleep(HANDLING * len(answer.jobs))
        elif offers_left(partner):
            me.empty_while_waiting += 1
        else:
            return me


def run(partner: str, pollers: int) -> tuple[list[Poller], float]:
    start = threading.Barrier(pollers + 1)
    with ThreadPoolExecutor(max_workers=pollers) as pool:
        futures = [pool.submit(poll, partner, start) for _ in range(pollers)]
        start.wait()
        began = time.perf_counter()
        results = [future.result() for future in futures]
    return results, time.perf_counter() - began


def main() -> int:
    with local_stack():
        os.environ["AWS_READ_TIMEOUT_SECONDS"] = "60"  # as tests/conftest.py: moto is slow
        from chalicelib.core import aws
        from chalicelib.core.settings import settings

        aws.reset()
        settings.cache_clear()
        orders = Orders()
        alone_partner, partner = fresh_partner(), fresh_partner()
        alone_offered = offer_jobs(alone_partner, BASELINE_JOBS, orders)
        offered = offer_jobs(partner, JOBS, orders)
        with app_output_discarded():
            run(fresh_partner_with(orders, 20), 1)  # warm-up: clients, connection pools
            alone, alone_seconds = run(alone_partner, 1)
            many, many_seconds = run(partner, POLLERS)

    checks: list[str] = []
    for label, results, expected in (("alone", alone, alone_offered), ("8 pollers", many,
                                                                       offered)):
        handed = Counter(job for result in results for job in result.jobs)
        doubles = sum(n - 1 for n in handed.values() if n > 1)
        missing = len(set(expected) - set(handed))
        if doubles:
            checks.append(f"{label}: {doubles} double hand-outs")
        if missing:
            checks.append(f"{label}: {missing} jobs never handed out")
    alone_rate = len(alone_offered) / alone_seconds
    many_rate = len(offered) / many_seconds
    speedup = many_rate / alone_rate
    answers = sum(p.answers for p in many)
    empty_waiting = sum(p.empty_while_waiting for p in many)
    idle = sum(1 for p in many if not p.jobs)
    doubles = sum(n - 1 for n in Counter(j for p in many for j in p.jobs).values() if n > 1)
    claims = [s for p in many for s in p.claim_seconds]
    print(f"one poller alone: {len(alone_offered)} jobs in {alone_seconds:.1f} s = "
          f"{alone_rate:.1f} jobs/s ({sum(p.answers for p in alone)} answers)")
    print(f"{POLLERS} pollers: {len(offered)} jobs in {many_seconds:.1f} s = {many_rate:.1f} "
          f"jobs/s = {speedup:.2f}x one poller's; claims of up to {CLAIM_SIZE}, "
          f"{HANDLING * 1000:.0f} ms handling per job")
    print(f"  answers {answers}, empty while jobs waited {empty_waiting} "
          f"({100 * empty_waiting / answers:.2f} %), pollers without work {idle}")
    print("  jobs per poller: " + ", ".join(str(len(p.jobs)) for p in many))
    print(f"  claim time: median {1000 * median(claims):.0f} ms, p90 "
          f"{1000 * percentile(claims, 90):.0f} ms, max {1000 * max(claims):.0f} ms; "
          f"share of the pollers' time in claims "
          f"{100 * sum(claims) / (POLLERS * many_seconds):.0f} %")
    for problem in checks:
        print(f"FAILED: {problem}")
    empty_share = empty_waiting / answers
    within = (empty_share <= EMPTY_BUDGET and idle == 0 and speedup >= SPEEDUP_BUDGET
              and doubles == 0 and not checks)
    print(f"BENCH {NAME}: {speedup:.2f}x one poller's jobs/s, {100 * empty_share:.2f} % empty "
          f"while jobs waited, {POLLERS - idle}/{POLLERS} pollers got work, {doubles} double "
          f"hand-outs (budget >= {SPEEDUP_BUDGET:g}x, <= {100 * EMPTY_BUDGET:g} %, "
          f"{POLLERS}/{POLLERS}, 0) {verdict(within)}")
    return 0 if within else 1


def fresh_partner_with(orders: Orders, count: int) -> str:
    partner = fresh_partner()
    offer_jobs(partner, count, orders)
    return partner


if __name__ == "__main__":
    sys.exit(main())
