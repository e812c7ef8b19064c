"""Electronic waybills at the print gate: the packages of a job (or of a wave's jobs) get their
numbers and labels from the provider the registry names, concurrently within a bound.

Issuing is idempotent by construction: each package's request key is derived from its job and
package number (`contract.object_id_for`), so a print that is retried, or a wave printed again
after a failure, asks for the same packages and gets the same numbers back. Nothing is
half-printed: a refusal leaves the job unprinted (the numbers already issued stay tied to their
packages and come back on the retry), answers the print call with the reason, and opens one
case per job and reason for CS/operations.

Configuration: the rules (WAYBILL_RULES_JSON: routes, default courier, the sender's address;
issuing is on once a sender is set) and one account per provider, read like a courier
provider's (`courier/waybills-<provider>` in SSM): its options are the provider's settings, its
first secret the signing secret.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

from chalicelib.access import accounts_store as accounts
from chalicelib.core.errors import ApiError
from chalicelib.cs import alert_topic
from chalicelib.cs.alerts import Severity
from chalicelib.warehouse.jobs import Job
from chalicelib.warehouse.waybills import registry
from chalicelib.warehouse.waybills.contract import (
    DouyinReceiver,
    Item,
    PlainReceiver,
    Provider,
    Receiver,
    TaobaoReceiver,
    WaybillError,
    WaybillRequest,
    WaybillResult,
)

log = logging.getLogger(__name__)
ACCOUNT_PREFIX = "waybills-"
MAX_THREADS = 25  # a wave's 49 packages in two rounds of calls, within the provider's pace
REFUSED = "waybill.refused"
_DOUYIN_CIPHER = ("#", "$", "~")  # Douyin's ciphertexts start with their field's mark


def account(provider_name: str) -> dict[str, str] | None:
    """The provider's settings with its secret, or None when no account is configured."""
    found = accounts.courier(ACCOUNT_PREFIX + provider_name)
    if found is None:
        return None
    secret = found.secrets[0]
    return {**found.options, "secret": secret, "app_secret": secret}


def receiver_of(job: Job) -> Receiver:
    """The job's receiver as its provider needs it: Douyin's encrypted fields are the order's
    ciphertexts, Taobao's the order's OAID and trade id; anything else is plain."""
    to = job.ship_to
    cipher = to.encrypted
    if job.marketplace == "douyin" and cipher and cipher.name and cipher.phone and cipher.detail:
        return DouyinReceiver(order_id=job.external_id, encrypt_name=cipher.name,
                              encrypt_mobile=cipher.phone, encrypt_detail=cipher.detail,
                              province=to.province, city=to.city)
    # A job stored before the masked text and the ciphertexts were kept apart.
    if job.marketplace == "douyin" and to.name.startswith(_DOUYIN_CIPHER):
        return DouyinReceiver(order_id=job.external_id, encrypt_name=to.name,
                              encrypt_mobile=to.phone, encrypt_detail=to.line1,
                              province=to.province, city=to.city)
    if job.marketplace in ("taobao", "tmall"):
        if not to.oaid:
            raise WaybillError("bad_request", "cainiao", "no oaid on the order")
        return TaobaoReceiver(oaid=to.oaid, tid=job.external_id, province=to.province,
                              city=to.city)
    return PlainReceiver(name=to.name or "-", phone=to.phone or "-", province=to.province or "-",
                         city=to.city or "-", detail=" ".join(p for p in (to.line1, to.line2)
                                                              if p) or "-")


def requests_for(job: Job, rules: registry.WaybillRules) -> list[WaybillRequest]:
    generation = job.printed.count if job.printed and job.reprint_required else 0
    if rules.sender is None:
        raise WaybillError("account", "waybills", "no sender configured")
    receiver = receiver_of(job)
    items = tuple(Item(name=(line.title or line.sku)[:100], count=line.quantity)
                  for line in job.lines)
    return [WaybillRequest(job_id=job.job_id, package_no=n, marketplace=job.marketplace,
                           trade_id=job.external_id,
                           courier=registry.courier_for(job.carrier.carrier_code, rules),
                           sender=rules.sender, receiver=receiver, items=items,
                           weight_grams=job.weight_grams or 500, generation=generation)
            for n in range(1, (job.package_count or 1) + 1)]


def quoted(results: Sequence[WaybillResult]) -> dict[str, Decimal]:
    """The prices the providers' answers gave, by number (the rest are the tariff's at ship)."""
    return {r.waybill_number: r.cost for r in results if r.cost is not None}


def needs_waybills(job: Job) -> bool:
    """No numbers yet, or a relabel (the address changed after print: a new number)."""
    return job.printed is None or not job.printed.waybill_numbers or job.reprint_required


def issue_all(requests: Sequence[WaybillRequest], provider: Provider,
              max_threads: int = MAX_THREADS) -> list[WaybillResult | WaybillError]:
    """Every package's waybill or its refusal, in the order asked, issued concurrently (each
    call waits on the provider, not on us); every call has ended when this returns."""
    if not requests:
        return []

    def one(request: WaybillRequest) -> WaybillResult | WaybillError:
        try:
            return provider.issue(request)
        except WaybillError as exc:
            return exc

    if max_threads == MAX_THREADS:  # the process's pool: its threads keep their connections
        return list(_pool().map(one, requests))
    with ThreadPoolExecutor(max_workers=min(max_threads, len(requests))) as pool:
        return list(pool.map(one, requests))


_shared: list[ThreadPoolExecutor] = []
_shared_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool per process (a warm Lambda keeps it): core.http keeps a keep-alive session per
    thread and host, so the next wave reuses the provider's connections."""
    with _shared_lock:
        if not _shared:
            _shared.append(ThreadPoolExecutor(max_workers=MAX_THREADS,
                                              thread_name_prefix="waybills"))
        return _shared[0]


def enabled() -> bool:
    return registry.rules().sender is not None


def issue_for_jobs(jobs: Sequence[Job], now: datetime,
                   max_threads: int = MAX_THREADS) -> dict[str, list[WaybillResult]]:
    """The waybills of jobs that have none yet, by job id; a refusal opens one case per job
    and answers as the error contract says (409 waybill_refused, 503 when it may pass)."""
    rules = registry.rules()
    wanted: dict[str, list[WaybillRequest]] = {}
    providers: dict[str, Provider] = {}
    try:
        for job in jobs:
            if not needs_waybills(job):
                continue
            name = registry.provider_for(job.marketplace, job.carrier.carrier_code, rules)
            if name not in providers:
                settings = account(name)
                if settings is None:
                    raise WaybillError("account", name, "no account configured")
                providers[name] = registry.provider(name, settings)
            wanted[job.job_id] = requests_for(job, rules)
    except WaybillError as exc:
        raise _refused(exc, jobs[0] if len(jobs) == 1 else None, now) from exc
    return _issued(wanted, {j.job_id: j for j in jobs}, providers, rules, now, max_threads)


def _issued(wanted: Mapping[str, list[WaybillRequest]], by_id: Mapping[str, Job],
            providers: Mapping[str, Provider], rules: registry.WaybillRules, now: datetime,
            max_threads: int) -> dict[str, list[WaybillResult]]:
    results: dict[str, list[WaybillResult]] = {}
    for name, provider in providers.items():
        mine = [(job_id, r) for job_id, reqs in wanted.items() for r in reqs
                if registry.provider_for(by_id[job_id].marketplace, r.courier, rules) == name]
        outcomes = issue_all([r for _, r in mine], provider, max_threads)
        for (job_id, _), outcome in zip(mine, outcomes, strict=True):
            if isinstance(outcome, WaybillError):
                raise _refused(outcome, by_id[job_id], now) from outcome
        for (job_id, _), result in zip(mine, outcomes, strict=True):
            assert isinstance(result, WaybillResult)
            results.setdefault(job_id, []).append(result)
            log.info("waybill issued", extra={"job_id": job_id, "provider": name,
                                              "tracking_number": result.waybill_number})
    return results


def _refused(exc: WaybillError, job: Job | None, now: datetime) -> ApiError:
    """The print call's answer; a refusal that will not pass by itself opens one case."""
    if not exc.retryable and job is not None:
        alert_topic.raise_case(
            REFUSED, job.job_id, Severity.HIGH,
            f"The waybill for job {job.job_id} (order {job.order_name}) was refused by "
            f"{exc.provider}: {exc.reason}. The job stays unprinted until it is resolved.",
            now, {"job_id": job.job_id, "order_id": job.order_id, "provider": exc.provider,
                  "reason": exc.reason, "code": exc.code})
    status = 503 if exc.retryable else 409
    return ApiError(status, "waybill_refused", f"the waybill provider refused: {exc.reason}",
                    provider=exc.provider, refusal=exc.reason, code=exc.code,
                    retryable=exc.retryable, **({"retry_after": 5} if exc.retryable else {}))


def cancel_unused(job: Job, numbers: Sequence[str] | None = None) -> int:
    """Give unused numbers back: a cancelled job's, or a relabelled job's old ones (`numbers`);
    a number already returned is no error. How many were given back; a provider that cannot be
    reached leaves them to the courier's monthly reconciliation (logged)."""
    if job.printed is None or job.shipments:
        return 0
    numbers = job.printed.waybill_numbers if numbers is None else numbers
    if not numbers or not enabled():
        return 0
    rules = registry.rules()
    given = 0
    try:
        name = registry.provider_for(job.marketplace, job.printed.carrier_code, rules)
        settings = account(name)
        if settings is None:
            return 0
        provider = registry.provider(name, settings)
        for number in numbers:
            provider.cancel(job.printed.carrier_code, number)
            given += 1
    except WaybillError as exc:
        log.warning("waybill cancel failed", extra={"job_id": job.job_id,
                                                    "reason": exc.reason, "code": exc.code})
    return given
