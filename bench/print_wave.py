"""A wave of 49 jobs printed through the print gate with electronic waybills, against the
simulated courier network's Kuaidi100 label desk answering every call in 150 ms.

Issuing one number after another would take 49 x 150 ms; the figure is the wave's whole print
call (POST /warehouse/v1/waves through the real route: the jobs read, the waybills issued
concurrently within flows/waybills.py's bound, the wave written in one transaction) as a
multiple of that. Then the print is retried as after a lost answer (the same jobs, as they were
before the print, asked for their waybills again): no number may be issued twice, and the
retry must get the same numbers back.

`BENCH print_wave: <x> (budget 0.5) ok|over`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from bench.job_calls import Partner, fresh_partner, offer_jobs
from bench.stack import Orders, app_output_discarded, local_stack, verdict

NAME = "print_wave"
JOBS = 49  # the largest wave (warehouse/waves.py MAX_WAVE)
LATENCY = 0.150  # seconds the simulated provider takes per call
BUDGET = 0.5  # the wave's print time over JOBS x LATENCY
SENDER = {"name": "工厂仓库", "phone": "02188886666", "province": "上海市", "city": "上海市",
          "district": "青浦区", "detail": "华新镇华志路 1 号"}


def _accepted(api: Partner, count: int) -> list[dict[str, Any]]:
    lease, jobs = api.claim(count)
    return [api.call("post", f"/jobs/{job['job_id']}/accept", {"lease_id": lease})
            for job in jobs]


def main() -> int:
    from devstack.courier import CourierSimulator

    with local_stack() as _env, CourierSimulator(
            customer="BENCH", key="BENCHKEY", label_secret="BENCHSECRET",
            label_latency=LATENCY) as courier:
        os.environ["RATE_LIMIT_PER_SECOND"] = os.environ["RATE_LIMIT_BURST"] = "1000000"
        os.environ["WAYBILL_RULES_JSON"] = json.dumps({"sender": SENDER})
        from chalice.test import Client

        from app import app
        from chalicelib.access import accounts_store as accounts
        from chalicelib.access import directory_store as directory
        from chalicelib.access import keys as auth
        from chalicelib.core.clock import utcnow
        from chalicelib.core.settings import settings
        from chalicelib.flows import waybills
        from chalicelib.warehouse import job_store as jobs_store

        settings.cache_clear()
        accounts.register_sources({"courier/waybills-kuaidi100": {
            "scheme": "kuaidi100-label", "secrets": ["BENCHSECRET"],
            "options": {"key": "BENCHKEY", "partnerId": "STO-BENCH",
                        "label_url": courier.label_url}}})
        accounts.forget()
        partner = fresh_partner()
        offer_jobs(partner, JOBS, Orders(seed=49))
        key = auth.new_key()
        directory.add_key(auth.hash_key(key), "partner", partner, auth.Role.PARTNER, utcnow())
        with Client(app, stage_name="local") as client, app_output_discarded():
            api = Partner(client, key)
            job_ids = [job["job_id"] for job in _accepted(api, JOBS)]
            before = jobs_store.get_many(partner, job_ids)  # as a retry would find them
            started = time.perf_counter()
            wave = api.call("post", "/waves", {"job_ids": job_ids}, expect=201)
            elapsed = time.perf_counter() - started
        first = {j: [w["waybill_number"] for w in wave["waybills"][j]] for j in job_ids}
        with app_output_discarded():
            started = time.perf_counter()
            retried = waybills.issue_for_jobs([before[j] for j in job_ids], utcnow())
            retry_time = time.perf_counter() - started
        again = {j: [r.waybill_number for r in results] for j, results in retried.items()}
        numbers = courier.labels.numbers()
    issued_twice = len(numbers) - len(set(first[j][0] for j in job_ids))
    checks = []
    if len(numbers) != JOBS or issued_twice:
        checks.append(f"{len(numbers)} numbers issued for {JOBS} packages")
    if again != first:
        checks.append("the retried print got other numbers")
    figure = elapsed / (JOBS * LATENCY)
    print(f"{JOBS} jobs' waybills in one wave print: {elapsed * 1000:.0f} ms; sequential "
          f"issuing alone would take {JOBS * LATENCY * 1000:.0f} ms; numbers issued "
          f"{len(numbers)}, issued twice {issued_twice}, retried print same numbers: "
          f"{again == first} (the retry's issuing alone: {retry_time * 1000:.0f} ms)")
    for problem in checks:
        print(f"FAILED: {problem}")
    within = figure <= BUDGET and not checks
    print(f"BENCH {NAME}: {figure:.2f} (budget {BUDGET:g}) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
