"""The tracker: follows every shipped parcel with its courier provider. The I/O around the pure
rules of chalicelib.tracking.watch (what to conclude, when to look again) and
chalicelib.tracking.parcels (what it means for CS and the order); the providers, their calls
and what a failed call means are chalicelib.tracking.couriers' (`Provider`, `ProviderError`).

- `start`: the warehouse reported a shipment; each package becomes a tracked parcel, due at once.
- `receive_push`: a provider pushed news (verified, stored raw, applied).
- `run_due`: the scheduler's tick; subscribe, query or judge every parcel whose check is due.
  Bounded, one run at a time, each check claimed: it works to the budget its Lambda context
  leaves (chalicelib/core/runs.py), under the `track_parcels` lease, on a small pool (a few
  parcels per provider, whose pace core.http keeps: Kuaidi100's 80 a second), and takes each
  parcel's check in hand (parcel_store.claim) before reading it and calling the provider, so
  an overlapping or retried run cannot ask the provider twice (Kuaidi100 locks a number queried
  twice in 30 minutes); the claim is given back when the check is over (one left by a
  stopped run holds 30 minutes). What the budget
  does not reach stays due for the next tick.
Every write of a parcel is guarded by the version read, together with its timeline lines, so a
push and a poll of the same parcel at the same moment cannot lose each other's scans. Alerts
are published before the write: if the write fails the same changes are found again on the
retry and the cases layer drops the repeated alerts (never the other way round).
Each parcel checked is one unit of work on the logs (its tracking number, order and job ids);
provider calls are counted by provider and result (ProviderQueries, ProviderSubscriptions).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.core import observability, runs
from chalicelib.core.clock import utcnow
from chalicelib.core.dynamodb import Action, retrying, transact
from chalicelib.core.errors import ApiError, NotFound
from chalicelib.cs import alert_topic
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import OrderEvent
from chalicelib.tracking import couriers
from chalicelib.tracking import parcel_store as store
from chalicelib.tracking import watch as tracking
from chalicelib.tracking.couriers import (
    ACCOUNT_ALERT,
    Provider,
    ProviderError,
    PushReply,
    TrackingPush,
)
from chalicelib.tracking.model import Journey, JourneyChange, ShipmentStatus
from chalicelib.tracking.parcels import Parcel, alerts_for, completes_order, timeline_for
from chalicelib.tracking.watch import tracking_rules
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse.jobs import Job
from chalicelib.warehouse.jobs import Shipment as JobShipment

log = logging.getLogger(__name__)
_ATTEMPTS = 5


# Starting -----------------------------------------------------------------------------------------

def start_actions(job: Job, shipment: JobShipment, now: datetime,
                  skip: Set[tuple[str, str]] = frozenset()) -> list[Action]:
    """The writes that start tracking a reported shipment, for the ship report's own
    transaction: each package a new parcel (it must not exist: a number already tracked for
    another order fails the transaction with its label, see `reused`), and its timeline line."""
    actions: list[Action] = []
    for package in shipment.packages:
        key = (package.carrier_code.upper(), package.tracking_number)
        if key in skip:
            continue
        parcel = _new_parcel(job, shipment, package.carrier_code, package.tracking_number, now)
        # seq: after the job.shipped line written at the same instant.
        actions += [store.put(parcel, None), orders_store.put_event(
            job.order_id, _started_event(parcel, now), seq=100)]
    return actions


def reused(job: Job, failed: Set[str], now: datetime) -> set[tuple[str, str]]:
    """The packages whose numbers another order's parcel already has (from a failed ship
    transaction's labels); CS hears of each. The ship goes through without tracking them."""
    found: set[tuple[str, str]] = set()
    for label in failed:
        key = store.key_of_label(label)
        if key is None:
            continue
        found.add(key)
        existing = store.get(*key)
        if existing is not None and existing[0].job_id != job.job_id:
            _number_reused(job, existing[0], now)
    return found


def _new_parcel(job: Job, shipment: JobShipment, carrier_code: str, number: str,
                now: datetime) -> Parcel:
    name = couriers.provider_for(carrier_code)
    kind = couriers.provider_class(name)
    watch = tracking.start_watch(name, can_push=kind.can_push, can_query=kind.can_query, now=now)
    rules = tracking_rules()
    return Parcel(
        carrier_code=carrier_code.upper(), tracking_number=number, provider=name,
        order_id=job.order_id, order_name=job.order_name, marketplace=job.marketplace,
        partner_id=job.partner_id, job_id=job.job_id, shipment_id=shipment.shipment_id,
        phone=job.ship_to.phone, destination=job.ship_to.city or job.ship_to.province,
        region=job.carrier.region,  # the tariff region a bill's line is priced by
        started_at=now, watch=watch, shipment=Journey(
            carrier_code=carrier_code.upper(), tracking_number=number, handed_over_at=now,
            promised_by=now + rules.delivery_promise if rules.delivery_promise else None))


def _started_event(parcel: Parcel, now: datetime) -> OrderEvent:
    return OrderEvent(
        type="shipment.tracking_started", at=now, actor=f"courier {parcel.provider}",
        summary=f"Tracking {parcel.label} with {parcel.provider}",
        data={"carrier_code": parcel.carrier_code, "tracking_number": parcel.tracking_number,
              "shipment_id": parcel.shipment_id})


def _number_reused(job: Job, other: Parcel, now: datetime) -> None:
    alert_topic.publish(Alert(
        kind="courier.tracking_number_reused", severity=Severity.HIGH, subject=other.subject,
        at=now, facts={"order_id": job.order_id, "order_name": job.order_name,
                       "job_id": job.job_id, "other_order_id": other.order_id},
        summary=f"{job.order_name}: tracking number {other.label} was already used for "
                f"{other.order_name}; check the label"))


# Applying what we learn ---------------------------------------------------------------------------

Step = Callable[[Parcel], tuple[Parcel, tuple[JourneyChange, ...]]]


@dataclass(frozen=True)
class Applied:
    parcel: Parcel
    changes: tuple[JourneyChange, ...]


def apply(carrier_code: str, number: str, step: Step, now: datetime,
          extra: Sequence[Action] = (),
          read: tuple[Parcel, int] | None = None) -> Applied | None:
    """Read, step, write (version-guarded, with the order's timeline); re-read on a race or a
    transaction in conflict, after a pause (`retrying`; given up: Busy, 503 `busy` to a push,
    the next tick to a check). A write whose answer was lost is found done: the step, applied
    again to the parcel as written, changes nothing (scans are deduplicated). `read`: the
    parcel and version the caller has just read, for the first attempt (a check reads it
    before its provider call; the version guard catches a push that came meanwhile)."""
    first = [read]

    def attempt() -> Applied | None:
        found, first[0] = first[0] or store.get(carrier_code, number), None
        if found is None:
            return None
        old, version = found
        new, changes = step(old)
        if new == old:
            return Applied(old, ())
        for alert in alerts_for(new, changes):
            alert_topic.publish(alert)
        events = timeline_for(new, changes, now)
        if changes and _completes(new, changes):
            events.append(OrderEvent(
                type="order.completed", at=now, actor=f"courier {new.provider}",
                summary=f"Delivered ({new.label}): order complete"))
        transact([store.put(new, version), *extra,
                  *orders_store.put_events(new.order_id, events)])
        if changes:
            log.info("parcel %s: %s", new.label, ", ".join(_described(c) for c in changes),
                     extra={"order_id": new.order_id, "job_id": new.job_id})
        return Applied(new, changes)

    return retrying(attempt, "parcel", attempts=_ATTEMPTS)


def _described(change: JourneyChange) -> str:
    if change.type == "status" and change.status is not None:
        return f"status {change.status.value}"
    kind = change.exception.kind.value if change.exception else "?"
    return f"{change.type} {kind}"


def _completes(parcel: Parcel, changes: Sequence[JourneyChange]) -> bool:
    if not any(c.type == "status" and c.status is ShipmentStatus.DELIVERED for c in changes):
        return False
    job = jobs_store.get(parcel.partner_id, parcel.job_id)
    if job is None:
        return False
    keys = [(p.carrier_code, p.tracking_number) for s in job.shipments for p in s.packages]
    others = [p for p in store.get_many(keys)
              if (p.carrier_code, p.tracking_number) != (parcel.carrier_code,
                                                         parcel.tracking_number)]
    return completes_order(job.work.value == "shipped", [parcel, *others])


def _with(parcel: Parcel, result: tuple[Journey, tracking.Watch, tuple[JourneyChange, ...]],
          ) -> tuple[Parcel, tuple[JourneyChange, ...]]:
    shipment, watch, changes = result
    return parcel.model_copy(update={"shipment": shipment, "watch": watch}), changes


# Pushes -------------------------------------------------------------------------------------------

def receive_push(provider_name: str, headers: Mapping[str, str], raw: bytes,
                 now: datetime) -> PushReply:
    """Verify against each secret (rotation), store as received, apply; answer as expected."""
    from chalicelib.access import accounts_store as accounts

    try:
        kind = couriers.provider_class(provider_name)
    except LookupError:
        raise NotFound("courier_provider") from None
    account = accounts.courier(provider_name)
    if account is None:
        raise NotFound("courier_provider")
    push = _verified(kind.read_push, headers, raw, account.secrets)
    observability.tag(provider=provider_name, carrier_code=push.carrier_code,
                      tracking_number=push.tracking_number)
    observability.count("TrackingPushes", provider=provider_name)
    raw_item = store.put_raw(push.carrier_code, push.tracking_number, provider_name, raw, now)
    rules = tracking_rules()
    applied = apply(push.carrier_code, push.tracking_number, lambda p: _with(p, tracking.after_push(
        p.shipment, p.watch, push.events, push.monitoring, push.resubscribe_after, now, rules)),
        now, extra=[raw_item])
    if applied is None:  # not ours (or not yet): keep the evidence, do not make them retry
        retrying(lambda: transact([raw_item]), "parcel", reread=False)
        log.warning("push for untracked parcel %s %s from %s", push.carrier_code,
                    push.tracking_number, provider_name)
    return kind.push_reply()


def _verified(read: Callable[[Mapping[str, str], bytes, str], TrackingPush],
              headers: Mapping[str, str], raw: bytes, secrets: Sequence[str]) -> TrackingPush:
    failure: ApiError | None = None
    for secret in secrets:
        try:
            return read(headers, raw, secret)
        except ApiError as exc:
            if exc.status != 401:
                raise
            failure = exc
    assert failure is not None  # a source has at least one secret
    raise failure


# The scheduler's tick -----------------------------------------------------------------------------

@dataclass
class TickReport:
    subscribed: int = 0
    queried: int = 0
    judged: int = 0
    errors: int = 0
    busy: int = 0  # the run found another holding the lease, and did nothing

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def add(self, other: TickReport) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


# The tick: at most RUN_SECONDS (the next comes a minute later), nothing new in the last
# RUN_MARGIN seconds before Lambda would stop track_parcels (.chalice/config.json); WORKERS
# parcels at once, at most PER_PROVIDER with one provider (its pace is the limit anyway).
RUN_SECONDS = 57.0
RUN_MARGIN = 20.0
WORKERS = 16
PER_PROVIDER = 16
LIMIT = 5000  # due parcels one tick reads at most (it reads them as it gets to them)
CLAIM_HOLD = timedelta(minutes=30)  # the longest provider lock on a number asked twice (Kuaidi100)


def run_due(now: datetime, limit: int = LIMIT, budget: runs.Budget | None = None) -> TickReport:
    """Everything due now, oldest first, within the budget (default RUN_SECONDS), under the
    run's lease; one parcel's failure never stops the others."""
    budget = budget or runs.Budget.seconds(RUN_SECONDS)
    report = TickReport()
    owner = secrets.token_hex(8)
    until = budget.hold_until(now)
    if not store.take_run_lease(owner, now, until):
        log.info("track_parcels: another run holds the lease")
        report.busy = 1
        return report
    lock = threading.Lock()

    def one(key: tuple[str, str]) -> None:
        carrier_code, number = key
        mine = TickReport()
        with observability.unit(carrier_code=carrier_code, tracking_number=number):
            try:
                check(carrier_code, number, now, mine, owner=owner, until=until)
            except Exception:  # the parcel stays due and is tried on the next tick
                mine.errors += 1
                log.exception("tracking check of %s %s failed", carrier_code, number)
        with lock:
            report.add(mine)

    try:
        runs.work_through("track_parcels", store.due(now, limit), one, budget=budget,
                          lane=_lane, workers=WORKERS, per_lane=PER_PROVIDER)
    finally:
        store.release_run_lease(owner)
    return report


def _lane(key: tuple[str, str]) -> str:
    """The provider that will be asked (as tracking started it), for the pool's lanes."""
    try:
        return couriers.provider_for(key[0])
    except LookupError:
        return key[0]


def check(carrier_code: str, number: str, now: datetime, report: TickReport,
          owner: str | None = None, until: datetime | None = None) -> None:
    """One parcel's check, in hand (claimed for `owner` until `until`) while it is made."""
    owner = owner or secrets.token_hex(8)
    until = until or runs.Budget.seconds(RUN_SECONDS).hold_until(now)
    # Released when the check is over; one left by a run Lambda stopped mid-check holds for
    # the provider's lock, as its query may have counted (Kuaidi100 locks the number 30 min).
    if not store.claim(carrier_code, number, owner, now, max(until, now + CLAIM_HOLD)):
        return  # another run has it in hand
    try:
        _check(carrier_code, number, now, report)
    finally:
        store.release(carrier_code, number, owner)


def _check(carrier_code: str, number: str, now: datetime, report: TickReport) -> None:
    found = store.get(carrier_code, number)
    if found is None or found[0].watch.next_check_at is None:
        return
    parcel = found[0]
    read = [found]  # for the first write after the provider call (`apply`), used once

    def applied(step: Step) -> None:
        apply(carrier_code, number, step, now, read=read.pop() if read else None)

    observability.tag(order_id=parcel.order_id, job_id=parcel.job_id, provider=parcel.provider)
    if parcel.watch.next_check_at is not None and parcel.watch.next_check_at > now:
        return  # a push or another tick moved it on since the index was read
    rules = tracking_rules()
    action = tracking.due_action(parcel.watch, now)
    metric = {"subscribe": "ProviderSubscriptions", "query": "ProviderQueries"}.get(action)
    try:
        provider = _provider(parcel.provider)
        if action == "subscribe":
            accepted = provider.subscribe(parcel)
            observability.count("ProviderSubscriptions", provider=parcel.provider, result="ok")
            report.subscribed += 1
            applied(lambda p: (p.model_copy(update={
                "watch": tracking.after_subscribe(p.shipment, p.watch, accepted, now, rules)}),
                ()))
        elif action == "query":
            events = provider.query(parcel)
            observability.count("ProviderQueries", provider=parcel.provider, result="ok")
            report.queried += 1
            applied(lambda p: _with(p, tracking.after_query(
                p.shipment, p.watch, events, now, rules)))
        else:
            report.judged += 1
            applied(lambda p: _with(p, tracking.after_judge(
                p.shipment, p.watch, now, rules)))
    except ProviderError as exc:
        report.errors += 1
        if metric is not None:
            observability.count(metric, provider=parcel.provider, result="error")
        # By type only: a provider's message may quote what we sent (the buyer's phone).
        log.warning("tracking %s: %s %s failed: %s", parcel.label, parcel.provider, action,
                    observability.describe(exc))
        if exc.alert:
            alert_topic.publish(Alert(
                kind=exc.alert, severity=Severity.HIGH, subject=parcel.subject, at=now,
                summary=f"{parcel.order_name}: tracking {parcel.label} failed: {exc}",
                facts={"order_id": parcel.order_id}))
        counted = exc.counted
        applied(lambda p: (p.model_copy(update={
            "watch": tracking.after_query_error(p.shipment, p.watch, now, rules,
                                                counted=counted)}), ()))


def _provider(name: str) -> Provider:
    """The parcel's provider with its account as configured now."""
    from chalicelib.access import accounts_store as accounts

    account = accounts.courier(name)
    if account is None:
        raise ProviderError(f"no account configured for courier provider {name}",
                            counted=False, alert=ACCOUNT_ALERT)
    try:
        return couriers.provider(name, account)
    except LookupError:  # a provider since removed: nobody to ask, CS must look
        raise ProviderError(f"no courier provider {name}", counted=False,
                            alert=ACCOUNT_ALERT) from None


def on_schedule(context: Any = None) -> None:
    """The 1-minute tick (app.py `track_parcels`), to the time its Lambda context leaves."""
    report = run_due(utcnow(), budget=runs.Budget.of(context, most=RUN_SECONDS,
                                                     margin=RUN_MARGIN))
    if report.subscribed or report.queried or report.judged or report.errors:
        log.info("tracking tick: %s", report.as_dict())
