"""The warehouse protocol as a service: read a job, apply a pure transition, write it back with
its timeline events, feed entries and CS alerts, guarded by the version read.

Alerts are published before the write: a retry may repeat one (CS dedupes on kind + subject),
but a crash between the write and the publish cannot lose one. Every transition written is
logged with its job and order ids and counted by event (JobTransitions), `committed`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.core import observability
from chalicelib.core.clock import utcnow
from chalicelib.core.dynamodb import (
    MAX_TRANSACTION_ITEMS,
    Action,
    TransactionConflict,
    ambiguous,
    retrying,
    storage_errors,
    transact,
)
from chalicelib.core.errors import ApiError, Busy, Conflict, NotFound
from chalicelib.core.settings import settings
from chalicelib.cs import alert_topic, alerts, refunds
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import OrderEvent, amended, changed_view
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse import jobs
from chalicelib.warehouse.jobs import ClientId, Job, Transition, protocol_rules
from chalicelib.warehouse.tariffs import tariff_rules
from chalicelib.warehouse.waves import SkuLocations, WaybillNumber
from chalicelib.warehouse.waybills import costs as waybill_costs

log = logging.getLogger(__name__)


# Writing transitions -------------------------------------------------------------------------


def actions_for(old: Job | None, transition: Transition, actor: str, now: datetime,
                order_events: Sequence[OrderEvent] = ()) -> list[Action]:
    """The job (version-guarded), its events on the order's timeline after `order_events`
    (one sequence, so events of one instant keep their order), its feed entries."""
    job = transition.job
    actions = [jobs_store.put(job, None if old is None else old.version)]
    actions += orders_store.put_events(job.order_id, [*order_events, *(
        OrderEvent(type=event.type, at=now, actor=actor, summary=event.summary, data=event.data)
        for event in transition.events)])
    actions += [jobs_store.feed_entry(job, event, now, seq)
                for seq, event in enumerate(transition.events) if event.feed]
    return actions


def action_count(transition: Transition) -> int:
    """How many writes `actions_for` makes of a transition (without building them)."""
    return 1 + len(transition.events) + sum(event.feed for event in transition.events)


def announce(transition: Transition, now: datetime) -> None:
    job = transition.job
    for event in transition.events:
        if event.alert:
            alert_topic.publish(alerts.Alert(
                kind=event.alert, severity=alerts.Severity(event.severity), subject=job.job_id,
                at=now, summary=f"{job.order_name} ({job.marketplace}): {event.summary}",
                facts={"order_id": job.order_id, "order_name": job.order_name, "job_id": job.job_id,
                       "partner_id": job.partner_id, "marketplace": job.marketplace,
                       "carrier_code": job.carrier.carrier_code, **_plain(event.data)},
            ))


def committed(transition: Transition) -> None:
    """A transition was written: one line naming its events, each counted by type (the metric
    JobTransitions, dimension `transition`: job.created, job.shipped, change.applied, ...)."""
    types = [event.type for event in transition.events]
    if not types:
        return  # a lease taken, extended or given back: no news
    for kind in types:
        observability.count("JobTransitions", transition=kind)
    job = transition.job
    log.info("job %s: %s", job.job_id, ", ".join(types),
             extra={"job_id": job.job_id, "order_id": job.order_id})


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}


def apply(partner_id: str, job_id: str, step: Callable[[Job], Transition], actor: str,
          now: datetime, extra: Callable[[Transition], list[Action]] | None = None,
          on_conflict: Callable[[Job, frozenset[str]], None] | None = None) -> Job:
    """Read, transition, write; re-read and re-judge if the job changed in between or the
    transaction collided with another (`dynamodb.retrying`: jittered back-off, then 503 busy).

    A write whose answer was lost (a timeout after DynamoDB committed it) is found done on the
    next read (the job at the version and time this call wrote), not done again.

    `extra`: more writes for the same transaction (starting a shipment's tracking);
    `on_conflict`: told which writes' conditions failed before the next attempt.
    The first attempt may start from this instance's own last write of the job (`remember`)
    instead of a read; if that copy was stale, its guard fails and the same attempt judges
    again on a fresh read, so a stale copy costs one failed write and no attempt."""
    written: list[Job] = []  # what this call tried to write, if anything
    recalled = [_recalled(partner_id, job_id)]  # for the first attempt only

    def write(job: Job, transition: Transition) -> Job:
        announce(transition, now)
        written.append(transition.job)
        try:
            transact([*actions_for(job, transition, actor, now),
                      *(extra(transition) if extra else ())])
        except TransactionConflict as exc:
            if on_conflict is not None:
                on_conflict(job, exc.failed)
            raise
        committed(transition)
        remember([transition.job])
        return transition.job

    def attempt() -> Job:
        copy, recalled[0] = recalled[0], None
        from_copy = _from_copy(partner_id, copy, step)
        if copy is not None and from_copy is not None:
            try:
                return write(copy, from_copy)
            except TransactionConflict:
                pass  # the copy was behind: judged again below on a fresh read
        job = get_job(partner_id, job_id)
        if written and _is_ours(job, written[-1]):
            return job  # an earlier attempt's write landed; its answer was lost
        transition = step(job)  # raises Conflict for an illegal transition
        return write(job, transition) if transition.changed else job

    return retrying(attempt, "job")


def _is_ours(found: Job, wrote: Job) -> bool:
    """The job as read is the one we wrote: same version and lease, written at our instant."""
    return (found.version, found.updated_at, found.lease_id) == (
        wrote.version, wrote.updated_at, wrote.lease_id)


def _from_copy(partner_id: str, copy: Job | None,
               step: Callable[[Job], Transition]) -> Transition | None:
    """The transition of a remembered copy, if it may be acted on without a read: only a change
    that tells no one (no alert goes out on a stale copy's word); a refusal is judged again on
    a fresh read (the copy may just be behind)."""
    if copy is None:
        return None
    observability.tag(job_id=copy.job_id, partner_id=partner_id, order_id=copy.order_id)
    try:
        transition = step(copy)
    except (ApiError, ValueError):
        return None
    if transition.changed and not any(event.alert for event in transition.events):
        return transition
    return None


# A warm instance's own last writes of jobs, for the partner's next step on them (accept after
# the claim, pick after print): bounded, and short-lived so a copy is seldom behind.
_RECENT_SECONDS = 300.0
_RECENT_MAX = 2000
_recent: OrderedDict[tuple[str, str], tuple[float, Job]] = OrderedDict()
_recent_lock = threading.Lock()


def remember(written: Sequence[Job]) -> None:
    """Keep jobs this instance has just written. Safe however stale a copy gets: every write
    is guarded by the version it was judged on, so a job changed elsewhere fails the guard
    and is read again (one failed write instead of one read)."""
    at = time.monotonic()
    with _recent_lock:
        for job in written:
            key = (job.partner_id, job.job_id)
            _recent[key] = (at, job)
            _recent.move_to_end(key)
        while len(_recent) > _RECENT_MAX:
            _recent.popitem(last=False)


def forget_all() -> None:
    """Drop every remembered job (tests that change jobs behind the service's back)."""
    with _recent_lock:
        _recent.clear()


def _recalled(partner_id: str, job_id: str) -> Job | None:
    with _recent_lock:
        entry = _recent.pop((partner_id, job_id), None)
    if entry is None or time.monotonic() - entry[0] > _RECENT_SECONDS:
        return None
    return entry[1]


def get_job(partner_id: str, job_id: str) -> Job:
    """The partner's job (its ids and its order's on the request's log lines)."""
    observability.tag(job_id=job_id, partner_id=partner_id)
    job = jobs_store.get(partner_id, job_id)
    if job is None:
        raise NotFound("job")  # also for another partner's job: its existence is not revealed
    observability.tag(order_id=job.order_id)
    return job


# Requests --------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimRequest(_Request):
    max_jobs: int = Field(default=10, ge=1, le=100)
    lease_seconds: int | None = Field(default=None, ge=30, le=12 * 3600)
    wait_seconds: int = Field(default=0, ge=0, le=20)


class Claimed(BaseModel):
    lease_id: str | None
    lease_expires_at: datetime | None
    jobs: list[Job]


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None


class FeedEntry(BaseModel):
    cursor: str
    at: datetime
    job_id: str
    type: str  # change.applied, change.intercept_requested, change.after_sales, ...
    change: jobs.Change | None = None


class FeedPage(BaseModel):
    entries: list[FeedEntry]
    next_cursor: str


class SkuLocationsSaved(BaseModel):
    count: int


class LeaseRequest(_Request):
    lease_id: ClientId
    lease_seconds: int | None = Field(default=None, ge=30, le=12 * 3600)


class RejectRequest(_Request):
    lease_id: ClientId | None = None  # the offer's lease; none needed to give back as a breach
    reason: jobs.RejectReason
    detail: str = Field(default="", max_length=1000)
    # An accepted job (or one the contract deemed accepted at 72 h) is refused only as a breach
    # of contract: true says so, and it is recorded on the job.
    breach: bool = False

    @model_validator(mode="after")
    def _lease_unless_breach(self) -> RejectRequest:
        if self.lease_id is None and not self.breach:
            raise ValueError("lease_id is required to refuse an offer")
        return self


class PrintRequest(_Request):
    waybill_numbers: tuple[WaybillNumber, ...] = Field(default=(), max_length=50)
    carrier_code: str | None = Field(default=None, min_length=2, max_length=32)


class PickRequest(_Request):
    pass


# Item entries a pack report may list over all its packages: they are stored on the job, whose
# item DynamoDB caps at 400 KB (a SKU may take 255 characters).
MAX_PACKED_ENTRIES = 400


class PackRequest(_Request):
    weight_grams: int = Field(gt=0, le=1_000_000)
    package_count: int = Field(ge=1, le=100)
    # What each package holds (SKU and quantity), checked against the job; optional, so a
    # partner that does not scan yet still packs.
    packages: tuple[jobs.PackedPackage, ...] = Field(default=(), max_length=100)
    # A mismatch is refused unless the packer ships it anyway, saying why (recorded; CS gets
    # a wrong/short shipment case).
    ship_anyway: bool = False
    reason: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> PackRequest:
        if self.packages and len(self.packages) != self.package_count:
            raise ValueError("packages must list each of the package_count packages")
        if sum(len(package.items) for package in self.packages) > MAX_PACKED_ENTRIES:
            raise ValueError(f"at most {MAX_PACKED_ENTRIES} items over all packages")
        if self.ship_anyway and not self.reason.strip():
            raise ValueError("ship_anyway needs a reason")
        return self


class ShipRequest(_Request):
    shipment_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    # Left out: the waybills issued at print (the factory may still report numbers it got
    # elsewhere); an empty list is a mistake.
    packages: tuple[jobs.Package, ...] | None = Field(default=None, min_length=1, max_length=50)
    final: bool = True


class ResolveRequest(_Request):
    outcome: Literal["intercepted", "failed"]
    reprint: bool = False
    note: str = Field(default="", max_length=1000)


# The offer -----------------------------------------------------------------------------------

# A claim walks past offers other pollers took until it has what it asked for or the index has
# no more; these bound one claim's work (an index page is one Query, a round one transaction).
_WALK_PAGES = 40
_WALK_ROUNDS = 200
# And its time: after _WALK_SECONDS a claim answers with what it has; with nothing yet it goes
# on until _ANSWER_WITHIN of the request, inside API Gateway's 29 s.
_WALK_SECONDS = 5.0
_ANSWER_WITHIN = 25.0
# How often a long poll looks at the offers index again: one Query of an empty range costs
# 0.5 read units, and a new offer is seen within this much.
_POLL_SECONDS = 0.25
# A claim reads this many times what it asks for (at most a page of 100) and starts at a
# random place in it, so concurrent pollers reach for different offers among the oldest.
_SPREAD = 4


def claim(partner_id: str, request: ClaimRequest, now: datetime | None = None,
          sleep: Callable[[float], None] = time.sleep) -> Claimed:
    """Lease up to `max_jobs` offers; with `wait_seconds`, wait for one to appear (long poll).
    The wait (at most 20 s) and the walk stay inside API Gateway's 29 s."""
    started = time.monotonic()
    deadline = started + request.wait_seconds
    while True:
        moment = now or utcnow()
        claimed = _claim_once(partner_id, request, moment, started + _ANSWER_WITHIN)
        if claimed.jobs or time.monotonic() >= deadline:
            return claimed
        sleep(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _claim_once(partner_id: str, request: ClaimRequest, now: datetime,
                answer_by: float) -> Claimed:
    """Walk the offers oldest first, leasing them in rounds of one transaction; offers another
    poller took meanwhile (the transaction names them) are passed over for the next ones."""
    limit = min(request.max_jobs, settings().max_claim_batch)
    lease_id = "lease_" + secrets.token_urlsafe(12)
    expires = now + timedelta(seconds=request.lease_seconds or settings().lease_seconds)
    claimed: list[Job] = []
    waiting: list[Job] = []  # read from the index, not tried yet
    page_size = min(100, max(limit, _SPREAD * limit))
    pages = jobs_store.offer_pages(partner_id, now, page_size)
    walked = rounds = 0
    # A round's size: halved at a conflict (one offer another poller took cancels the whole
    # transaction, so smaller rounds waste less while pollers overlap), doubled at a success.
    size = limit
    started = time.monotonic()
    while len(claimed) < limit and rounds < _WALK_ROUNDS and not _walked_enough(
            started, answer_by, claimed):
        if not waiting:
            page = next(pages, None) if walked < _WALK_PAGES else None
            if page is None:
                break  # the queue is empty (or this claim has walked far enough)
            walked += 1
            waiting = _rotated(page)
        rounds += 1
        steps, waiting = _leases(waiting, min(size, limit - len(claimed)), lease_id, expires,
                                 now)
        if not steps:
            continue
        for _, transition in steps:
            announce(transition, now)  # dead-lettered offers
        try:
            _transact_contended(_claim_actions(steps, f"partner {partner_id}", now),
                                [transition.job for _, transition in steps])
        except TransactionConflict as conflict:
            # Taken by someone else since we read them: the rest are tried again, in smaller
            # rounds (one taken offer cancels a whole transaction) and in another order than
            # the other pollers who read the same page.
            left = [old for old, _ in steps if old.job_id not in conflict.failed] + waiting
            if len(conflict.failed) * 2 > len(steps):  # most were taken: so is the rest
                left, pages = [], jobs_store.offer_pages(partner_id, now, page_size)
            waiting = _rotated(left) if left else left
            size = max(1, size // 2)
            continue
        for _, transition in steps:
            committed(transition)  # offers dead-lettered on the way
        claimed += [t.job for _, t in steps if t.job.lease_id == lease_id]
        size *= 2
    if not claimed:
        return Claimed(lease_id=None, lease_expires_at=None, jobs=[])
    remember(claimed)
    observability.count("JobsClaimed", len(claimed))
    log.info("partner %s claimed %d jobs under %s", partner_id, len(claimed), lease_id)
    return Claimed(lease_id=lease_id, lease_expires_at=expires, jobs=claimed)


def _walked_enough(started: float, answer_by: float, claimed: list[Job]) -> bool:
    moment = time.monotonic()
    return moment >= answer_by or (moment - started >= _WALK_SECONDS and bool(claimed))


def _rotated(page: list[Job]) -> list[Job]:
    start = secrets.randbelow(len(page))
    return page[start:] + page[:start]


def _leases(waiting: list[Job], wanted: int, lease_id: str, expires: datetime,
            now: datetime) -> tuple[list[tuple[Job, Transition]], list[Job]]:
    """The claims of up to `wanted` waiting offers that fit one transaction, and the offers
    left waiting. An offer already leased (the index lags) is dropped."""
    steps: list[tuple[Job, Transition]] = []
    size = 0
    for index, job in enumerate(waiting):
        if len(steps) == wanted:
            return steps, waiting[index:]
        try:
            transition = jobs.claim(job, lease_id, expires, now, protocol_rules())
        except Conflict:
            continue  # the index lagged: no longer on offer
        actions = action_count(transition)
        if size + actions > MAX_TRANSACTION_ITEMS:
            return steps, waiting[index:]
        steps.append((job, transition))
        size += actions
    return steps, []


def _claim_actions(steps: Sequence[tuple[Job, Transition]], actor: str,
                   now: datetime) -> list[Action]:
    """One transaction for the round: each job's writes stay atomic with it."""
    return [action for old, transition in steps
            for action in actions_for(old, transition, actor, now)]


def _transact_contended(actions: Sequence[Action], written: Sequence[Job]) -> None:
    """`transact`, retried on contention. A write whose answer was lost after it committed is
    success, found by reading one of its jobs (a transaction is all or nothing): when botocore
    sent it again and met its conditions, or when every attempt's answer was lost."""
    try:
        retrying(lambda: transact(actions), "job", reread=False)
    except TransactionConflict as conflict:
        if not _landed([job for job in written if job.job_id in conflict.failed][:1]):
            raise
    except storage_errors() as exc:
        if not ambiguous(exc) or not _landed(written[:1]):
            raise


def _landed(jobs_written: Sequence[Job]) -> bool:
    """Is the first of these jobs stored as written? False for none."""
    for ours in jobs_written:
        found = jobs_store.get(ours.partner_id, ours.job_id)
        return found is not None and _is_ours(found, ours)
    return False


def heartbeat(partner_id: str, job_id: str, request: LeaseRequest, now: datetime) -> Job:
    expires = now + timedelta(seconds=request.lease_seconds or settings().lease_seconds)
    return apply(partner_id, job_id, lambda j: jobs.heartbeat(j, request.lease_id, expires, now),
                 f"partner {partner_id}", now)


def release(partner_id: str, job_id: str, request: LeaseRequest, now: datetime) -> Job:
    return apply(partner_id, job_id, lambda j: jobs.release(j, request.lease_id, now),
                 f"partner {partner_id}", now)


def accept(partner_id: str, job_id: str, request: LeaseRequest, now: datetime) -> Job:
    return apply(partner_id, job_id, lambda j: jobs.accept(j, request.lease_id, now),
                 f"partner {partner_id}", now)


def reject(partner_id: str, job_id: str, request: RejectRequest, now: datetime) -> Job:
    return apply(partner_id, job_id,
                 lambda j: jobs.reject(j, request.lease_id or "", request.reason, request.detail,
                                       now, breach=request.breach),
                 f"partner {partner_id}", now)


# The work ------------------------------------------------------------------------------------


def print_job(partner_id: str, job_id: str, request: PrintRequest, now: datetime,
              costs: Mapping[str, Decimal] | None = None) -> Job:
    """`costs`: the issued numbers' prices as their provider answered (none: the tariff's)."""
    return apply(partner_id, job_id, lambda j: jobs.print_job(
        j, now, waybill_numbers=request.waybill_numbers, carrier_code=request.carrier_code,
        waybill_costs=costs), f"partner {partner_id}", now)


def print_labelled(partner_id: str, job_id: str, request: PrintRequest,
                   now: datetime) -> dict[str, Any]:
    """The print gate with electronic waybills: a job printed without numbers of its own gets
    one per package from the provider (flows/waybills.py; idempotent per job and package), and
    the answer carries them with their labels. A relabel's old numbers are given back once the
    new label is recorded. A refusal prints nothing (409/503 waybill_refused)."""
    from chalicelib.flows import waybills

    issued: list[Any] = []
    old: tuple[str, ...] = ()
    if not request.waybill_numbers and waybills.enabled():
        job = get_job(partner_id, job_id)
        jobs.print_job(job, now)  # refused before any number is taken (409 as it says)
        if waybills.needs_waybills(job):
            old = job.printed.waybill_numbers if job.printed else ()
            issued = waybills.issue_for_jobs([job], now).get(job_id, [])
            request = request.model_copy(update={
                "waybill_numbers": tuple(r.waybill_number for r in issued)})
    printed = print_job(partner_id, job_id, request, now, waybills.quoted(issued))
    if old:
        waybills.cancel_unused(printed, [n for n in old if n not in request.waybill_numbers])
    return {**printed.model_dump(mode="json"),
            "waybills": [r.model_dump(mode="json") for r in issued]}


def pick(partner_id: str, job_id: str, now: datetime) -> Job:
    return apply(partner_id, job_id, lambda j: jobs.pick(j, now), f"partner {partner_id}", now)


def pack(partner_id: str, job_id: str, request: PackRequest, now: datetime) -> Job:
    return apply(partner_id, job_id,
                 lambda j: jobs.pack(j, request.weight_grams, request.package_count, now,
                                     request.packages, request.ship_anyway, request.reason),
                 f"partner {partner_id}", now)


def ship(partner_id: str, job_id: str, request: ShipRequest, now: datetime) -> Job:
    """Record the shipment, start tracking its parcels and plan telling the marketplace, in one
    transaction: a retried report finds all of it done or none. A tracking number another
    order already has is not tracked twice (CS hears of it); the shipment is recorded."""
    from chalicelib.flows import tracker, writeback

    skip: set[tuple[str, str]] = set()

    def tracking(transition: Transition) -> list[Action]:
        shipment = next(s for s in transition.job.shipments
                        if s.shipment_id == request.shipment_id)
        return [*tracker.start_actions(transition.job, shipment, now, skip),
                *writeback.writeback_actions(transition.job, shipment, now)]

    def step(job: Job) -> Transition:
        packages = _printed_packages(job) if request.packages is None else request.packages
        return jobs.ship(job, request.shipment_id, packages, request.final, now,
                         waybill_costs.shipment_cost(job, packages, tariff_rules()))

    return apply(partner_id, job_id, step,
        f"partner {partner_id}", now, extra=tracking,
        on_conflict=lambda job, failed: skip.update(tracker.reused(job, failed, now)))


def _printed_packages(job: Job) -> tuple[jobs.Package, ...]:
    """A ship report without packages ships the electronic waybills the print gate issued."""
    if job.printed is None or not job.printed.waybill_numbers:
        raise job.conflict("packages_required", "no waybill was issued at print: name the "
                                                "packages and their tracking numbers")
    return tuple(jobs.Package(carrier_code=job.printed.carrier_code, tracking_number=number)
                 for number in job.printed.waybill_numbers)


def resolve_change(partner_id: str, job_id: str, change_id: str, request: ResolveRequest,
                   now: datetime) -> Job:
    """The factory's answer to an intercept request; an intercepted cancellation or address
    change reaches the order's current view in the same transaction (until then the order
    shows what the parcel in hand will do; a failed intercept leaves it so)."""
    from chalicelib.flows import waybills

    actor = f"partner {partner_id}"
    job = apply(partner_id, job_id, lambda j: jobs.resolve_change(
        j, change_id, request.outcome == "intercepted", request.reprint, request.note, actor,
        now, protocol_rules()), actor, now,
        extra=lambda transition: intercepted_view(transition, change_id, now))
    if job.work is jobs.Work.CANCELLED:
        waybills.cancel_unused(job)  # the intercepted parcel's numbers go back unused
    return job


def intercepted_view(transition: Transition, change_id: str, now: datetime) -> list[Action]:
    """The order's current view rewritten (guarded by its version) when the change was just
    intercepted and changes what the view shows; nothing otherwise."""
    change = next(c for c in transition.job.changes if c.change_id == change_id)
    if change.status is not jobs.ChangeStatus.INTERCEPTED:
        return []
    stored = orders_store.get_current(transition.job.order_id)
    if stored is None:
        return []
    if change.kind is jobs.ChangeKind.CANCEL:
        # The goods stay home: the buyer's money goes back (after-sales' refund task). A
        # marketplace's own cancellation is intercepted the same way.
        task = refunds.refund_task(stored.order, "intercepted", change.requested_by,
                                   change.reason, now, transition.job.job_id)
        if task is not None:
            alert_topic.publish(task)
    view = changed_view(stored.order, change.kind, change.address, now,
                        courier=change.carrier_code)
    if view == stored.order:
        return []  # a marketplace's own change: its view already says so
    return [orders_store.put_current(view, stored, stored.job, now,
                                     amended(stored.order, view, stored.overrides))]


# Reading ---------------------------------------------------------------------------------------


def jobs_updated_since(partner_id: str, since: datetime, cursor: str | None,
                       limit: int) -> dict[str, Any]:
    try:
        found, next_cursor = jobs_store.updated_since(partner_id, since, cursor, limit)
    except ValueError:
        raise ApiError(400, "invalid_cursor", "use the next_cursor you were given") from None
    return JobPage(jobs=found, next_cursor=next_cursor).model_dump(mode="json")


# Entries younger than this may still have a write in flight with an earlier timestamp.
FEED_SETTLE = timedelta(seconds=1)


def changes(partner_id: str, cursor: str | None, limit: int, now: datetime) -> dict[str, Any]:
    try:
        entries, next_cursor = jobs_store.feed(partner_id, cursor, now - FEED_SETTLE, limit)
    except ValueError:
        raise ApiError(400, "invalid_cursor", "use the next_cursor you were given") from None
    return FeedPage.model_validate({"entries": entries, "next_cursor": next_cursor}
                                   ).model_dump(mode="json")


# Deadlines -------------------------------------------------------------------------------------


def sweep_deadlines(now: datetime, limit: int = 100) -> int:
    """Alert what is late (acceptance, dispatch, intercepts); returns how many jobs moved."""
    moved, rules = 0, protocol_rules()
    for partner_id, job_id in jobs_store.due(now, limit):
        try:
            with observability.unit():  # one job's keys on its lines only
                after = apply(partner_id, job_id, lambda j: jobs.overdue(j, now, rules),
                              "deadline watch", now)
        except (Conflict, NotFound, Busy):
            continue  # refused, busy (the next sweep sees it again) or gone
        moved += after.updated_at == now
    return moved


# Waves, returns, shelf locations -------------------------------------------------------------


def create_wave(partner_id: str, request: Any, now: datetime) -> dict[str, Any]:
    """A wave through the print gate, all or nothing. With electronic waybills on, the jobs
    the factory brings no numbers for get theirs first, concurrently (flows/waybills.py): a
    refusal prints nothing; the numbers already issued come back on the retry."""
    from chalicelib.flows import waybills
    from chalicelib.warehouse import waves

    issued: dict[str, list[Any]] = {}
    found: dict[str, Job] | None = None
    if waybills.enabled():
        found = dict(jobs_store.get_many(partner_id, request.job_ids))
        waves.plan(request, found, {}, now)  # refused before any number is taken
        missing = [found[j] for j in request.job_ids
                   if j not in request.waybill_numbers and waybills.needs_waybills(found[j])]
        issued = waybills.issue_for_jobs(missing, now) if missing else {}
        request = request.model_copy(update={"waybill_numbers": {
            **request.waybill_numbers,
            **{j: tuple(r.waybill_number for r in results) for j, results in issued.items()}}})
    wave = _write_wave(partner_id, request, now, found,
                       waybills.quoted([r for results in issued.values() for r in results]))
    if not issued:
        return wave
    return {**wave, "waybills": {j: [r.model_dump(mode="json") for r in results]
                                 for j, results in issued.items()}}


def _write_wave(partner_id: str, request: Any, now: datetime,
                read: Mapping[str, Job] | None = None,
                costs: Mapping[str, Decimal] | None = None) -> dict[str, Any]:
    """`read`: the jobs as just read (the waybills were issued for them), for the first
    attempt; a conflict's retry reads them again. `costs`: the issued numbers' prices."""
    from chalicelib.warehouse import waves

    planned: list[dict[str, Any]] = []  # the wave an earlier attempt tried to write
    first = [read]

    def attempt() -> dict[str, Any]:
        if planned and jobs_store.get_wave(partner_id, planned[-1]["wave_id"],
                                           consistent=True) is not None:
            return planned[-1]  # written; its answer was lost
        found, first[0] = first[0] or jobs_store.get_many(partner_id, request.job_ids), None
        wave, steps = waves.plan(request, found, jobs_store.sku_locations(partner_id), now,
                                 costs)
        actor = f"partner {partner_id}"
        actions = [jobs_store.put_wave(partner_id, wave)]
        for old, transition in steps:
            actions += actions_for(old, transition, actor, now)
        planned.append(wave)
        transact(actions)
        for _, transition in steps:
            committed(transition)
        remember([transition.job for _, transition in steps])
        return wave

    return retrying(attempt, "wave")


def get_wave(partner_id: str, wave_id: str) -> dict[str, Any]:
    wave = jobs_store.get_wave(partner_id, wave_id)
    if wave is None:
        raise NotFound("wave")
    return wave


def register_return(partner_id: str, report: Any, now: datetime) -> dict[str, Any]:
    """Idempotent on the return tracking number; each new return becomes a CS alert. Outside
    the registration window it is queued to the next one (its `window`), not refused."""
    from chalicelib.warehouse import returns

    known = jobs_store.get_return(partner_id, report.return_tracking_number)
    if known is not None:
        return known
    record = returns.record(report, partner_id, now, protocol_rules().dispatch,
                            returns.returns_rules())
    job = jobs_store.get(partner_id, report.job_id) if report.job_id else None
    if job is not None:
        observability.tag(job_id=job.job_id, order_id=job.order_id)
    damaged = report.goods_damaged or report.packaging == "damaged"
    window = record["window"]
    queued = f" (queued to the {window['day']} window)" if window["queued"] else ""
    alert_topic.publish(alerts.Alert(
        kind="return.damaged" if damaged else "return.received",
        severity=alerts.Severity.HIGH if damaged else alerts.Severity.MEDIUM,
        subject=f"return:{report.return_tracking_number}", at=now,
        summary=f"Return {report.return_tracking_number} from {report.buyer_name} received by "
                f"{partner_id}{queued}: {report.reason}; liability: {record['liability_hint']}",
        facts={"order_name": report.order_name or (job.order_name if job else ""),
               "order_id": job.order_id if job else "", "packaging": report.packaging,
               "damage_location": report.damage_location, "liability": record["liability"],
               "complaint": report.complaint, "window_day": window["day"]},
    ))
    actions = [jobs_store.put_return(partner_id, record)]
    if job is not None:
        actions.append(orders_store.put_event(job.order_id, OrderEvent(
            type="return.received", at=now, actor=f"partner {partner_id}",
            summary=f"Return received ({report.reason}); liability: {record['liability_hint']}",
            data={"return_tracking_number": report.return_tracking_number,
                  "liability": record["liability"], "window_day": window["day"]})))
    try:
        retrying(lambda: transact(actions), "return", reread=False)
    except TransactionConflict:
        return jobs_store.get_return(partner_id, report.return_tracking_number) or record
    return record


def set_sku_locations(partner_id: str, request: SkuLocations,
                      now: datetime) -> SkuLocationsSaved:
    return SkuLocationsSaved(count=jobs_store.merge_sku_locations(partner_id, request.locations,
                                                                 now))


def on_schedule() -> None:
    """The 5-minute deadline sweep (app.py `sweep_deadlines`)."""
    sweep_deadlines(utcnow())
