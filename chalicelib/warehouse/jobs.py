"""Fulfilment jobs for the factory warehouse: the model and every transition. Pure.

Two axes, as Shopify's fulfillment orders have: the handshake (offered -> accepted | rejected)
and the physical work (queued -> printed -> picked -> packed -> shipped, or cancelled, or closed
incomplete). A claim puts a lease on the offer only; an expired lease re-offers the job.
Printing goes through the API, so "before print" and "after print" is one clear moment, and it
decides what a change does: applied at once, an intercept request, or an after-sales case.

Every transition is a function `(job, ..., now) -> Transition` that either returns the new job
with the events it causes or raises Conflict (409) carrying the current state.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from chalicelib.core.errors import Conflict
from chalicelib.core.settings import rules_from_env
from chalicelib.orders.order import Address, Order
from chalicelib.warehouse.carriers import (
    DEFAULT_CARRIER_RULES,
    CarrierChoice,
    CarrierRules,
    choose_carrier,
)
from chalicelib.warehouse.dispatch import (
    DEFAULT_DISPATCH_RULES,
    DispatchRules,
    acceptance_deadlines,
    ship_by,
    stock_up_ship_by,
)


class Handshake(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Work(StrEnum):
    QUEUED = "queued"
    PRINTED = "printed"
    PICKED = "picked"
    PACKED = "packed"
    SHIPPED = "shipped"
    CLOSED_INCOMPLETE = "closed_incomplete"
    CANCELLED = "cancelled"


UNPRINTED = (Work.QUEUED,)
IN_HAND = (Work.PRINTED, Work.PICKED, Work.PACKED)  # printed, not yet gone
ENDED = (Work.SHIPPED, Work.CLOSED_INCOMPLETE, Work.CANCELLED)


class RejectReason(StrEnum):
    OUT_OF_STOCK = "out_of_stock"
    INCORRECT_ADDRESS = "incorrect_address"
    INVALID_SKU = "invalid_sku"
    QC_FAILED = "qc_failed"
    CAPACITY = "capacity"
    OTHER = "other"


class ChangeKind(StrEnum):
    CANCEL = "cancel"
    ADDRESS = "address"
    ATTRIBUTES = "attributes"
    PROMISE = "promise"
    COURIER = "courier"  # the buyer asked for another courier: re-routed by the carrier rules


class ChangeStatus(StrEnum):
    APPLIED = "applied"
    INTERCEPT_REQUESTED = "intercept_requested"
    INTERCEPTED = "intercepted"
    INTERCEPT_FAILED = "intercept_failed"
    AFTER_SALES = "after_sales"


class ProtocolRules(BaseModel):
    """The operator's knobs; defaults from the factory contract and the CS workflow."""

    model_config = ConfigDict(frozen=True)

    lease_seconds: int = 600
    max_offers: int = 5  # unanswered offers before the job is dead-lettered to CS
    intercept_hours: float = 4  # how long the warehouse has to resolve an intercept
    realert_hours: float = 24  # how often an unresolved deadline is alerted again
    carriers: CarrierRules = DEFAULT_CARRIER_RULES
    dispatch: DispatchRules = DEFAULT_DISPATCH_RULES


DEFAULT_PROTOCOL = ProtocolRules()


@lru_cache(maxsize=1)
def protocol_rules() -> ProtocolRules:
    """This stage's rules: the contract's defaults, or PROTOCOL_RULES_JSON (its JSON form, e.g.
    cut-offs, holidays, carrier costs)."""
    return rules_from_env(ProtocolRules, "PROTOCOL_RULES_JSON")


# What a client sends as an id or a code we store or look up: never empty (DynamoDB refuses an
# empty key or map key), never longer than any we issue or a courier prints.
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# A SKU as a client names it: marketplaces allow up to 255 characters.
MAX_SKU = 255
Sku = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SKU)]


class JobLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    # The marketplace's own line item id: some platforms' writebacks must name the items.
    line_id: str = ""
    title: str = ""
    variant: str = ""
    quantity: int = Field(gt=0)
    # Stocked up for next-day dispatch (备货): set by CS in an `attributes` change; the job's
    # ship-by moves to the next working day's last cut-off, so no false late alert today.
    stock_up: bool = False


class Package(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    carrier_code: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")
    tracking_number: str = Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9\-]+$")


class PackedItem(BaseModel):
    """One SKU and how many of it went into a package, as the packer scanned or counted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Sku
    quantity: int = Field(gt=0, le=100_000)


class PackedPackage(BaseModel):
    """What one package holds (domain: pack against the items on the printed order)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: tuple[PackedItem, ...] = Field(min_length=1, max_length=200)


class PackDifference(BaseModel):
    """One SKU where the packages and the job disagree: `wrong` (not on the job), `extra`
    (more than ordered), `short` (fewer than ordered; none packed is the item left out)."""

    model_config = ConfigDict(frozen=True)

    sku: str
    ordered: int
    packed: int
    kind: Literal["wrong", "extra", "short"]


def pack_differences(lines: Sequence[JobLine],
                     packages: Sequence[PackedPackage]) -> tuple[PackDifference, ...]:
    """The packages against the job, per SKU (the job's order first, then SKUs it has not)."""
    ordered: dict[str, int] = {}
    for line in lines:
        ordered[line.sku] = ordered.get(line.sku, 0) + line.quantity
    packed: dict[str, int] = {}
    for package in packages:
        for item in package.items:
            packed[item.sku] = packed.get(item.sku, 0) + item.quantity
    found = []
    for sku in [*ordered, *(sku for sku in packed if sku not in ordered)]:
        want, got = ordered.get(sku, 0), packed.get(sku, 0)
        if want == got:
            continue
        kind: Literal["wrong", "extra", "short"] = (
            "wrong" if want == 0 else "extra" if got > want else "short")
        found.append(PackDifference(sku=sku, ordered=want, packed=got, kind=kind))
    return tuple(found)


def describe_differences(differences: Sequence[PackDifference], limit: int = 10) -> str:
    """"LS-WHT-M: 1 of 2; MUG-RED: 1, not ordered": the first `limit`, then how many more
    (the job keeps them all; a message or a timeline line needs only the gist)."""
    shown = "; ".join(f"{d.sku}: {d.packed}, not ordered" if d.kind == "wrong"
                      else f"{d.sku}: {d.packed} of {d.ordered}" for d in differences[:limit])
    more = len(differences) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


class Promise(BaseModel):
    """Something promised to the buyer that the warehouse must honour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["gift_message", "invoice_title", "delivery_window", "requested_courier",
                  "note"]
    text: str = Field(min_length=1, max_length=500)


# Not named Carrier: that is the courier itself (chalicelib/warehouse/carriers.py); this is the
# choice made for one job, as the job stores it and the warehouse API shows it.
class CarrierAssignment(BaseModel):
    """The courier chosen for the job: its code, the destination's cost region, the expected
    cost and why it was chosen."""

    model_config = ConfigDict(frozen=True)

    carrier_code: str
    region: str
    expected_cost: str | None = None  # decimal as text, CNY; None: no tariff (stored absent)
    reason: str
    # The buyer's request the rules could not honour: unknown_courier, courier_not_offered.
    fallback: str | None = None


def assignment_of(choice: CarrierChoice) -> CarrierAssignment:
    return CarrierAssignment(carrier_code=choice.carrier_code, region=choice.region,
                             expected_cost=None if choice.expected_cost is None
                             else str(choice.expected_cost),
                             reason=choice.reason, fallback=choice.fallback)


class PrintRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    carrier_code: str
    waybill_numbers: tuple[str, ...] = ()
    # The price of each number issued at print whose provider's answer said one (CNY, decimal
    # text); the others are priced by the tariff when they ship (waybills/costs.py).
    waybill_costs: dict[str, str] = Field(default_factory=dict)
    printed_at: datetime
    count: int = 1
    wave_id: str | None = None


class Shipment(BaseModel):
    model_config = ConfigDict(frozen=True)

    shipment_id: str
    packages: tuple[Package, ...]
    final: bool
    shipped_at: datetime
    # What its electronic waybills cost (CNY, decimal text): the provider's price, else the
    # tariff's; None (stored absent) when the factory brought its own numbers.
    waybill_cost: str | None = None


class Change(BaseModel):
    """A change asked for after the job was offered: never an overwrite without a record."""

    model_config = ConfigDict(frozen=True)

    change_id: str
    kind: ChangeKind
    status: ChangeStatus
    requested_by: str
    requested_at: datetime
    reason: str = ""
    stage: Work  # the work state when it was asked for
    address: Address | None = None
    lines: tuple[JobLine, ...] | None = None
    promise: Promise | None = None
    carrier_code: str | None = None  # a courier change: the courier the buyer asked for
    deadline: datetime | None = None
    alerted_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    note: str = ""

    @property
    def open(self) -> bool:
        return self.status is ChangeStatus.INTERCEPT_REQUESTED


class Job(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    partner_id: str
    order_id: str
    order_name: str
    marketplace: str
    shop: str
    external_id: str
    ship_to: Address
    buyer_note: str = ""
    lines: tuple[JobLine, ...]
    promises: tuple[Promise, ...] = ()
    carrier: CarrierAssignment
    created_at: datetime
    updated_at: datetime
    # When the order was paid (its ship-by counts from it); None on jobs queued before it was
    # kept: they are not in the by-paid-day index.
    paid_at: datetime | None = None
    version: int = 0
    handshake: Handshake = Handshake.OFFERED
    work: Work = Work.QUEUED
    # The offer and its lease.
    lease_id: str | None = None
    lease_expires_at: datetime | None = None
    claim_count: int = 0
    dead_lettered: bool = False
    # Deadlines and what was said about them.
    accept_by: datetime
    deemed_accepted_at: datetime
    # True once the contract counted the unanswered offer as accepted (`overdue`): the job is
    # then accepted like any other, and only a rejection recorded as a breach ends it.
    deemed_accepted: bool = False
    # When the factory itself accepted (the reports' confirmation within 24 h); None before it
    # did, when the contract deemed it, and on jobs accepted before the moment was kept.
    accepted_at: datetime | None = None
    ship_by: datetime
    alerts: dict[str, datetime] = Field(default_factory=dict)  # alert kind -> last sent
    # The work.
    reject_reason: RejectReason | None = None
    reject_detail: str = ""
    breach: bool = False  # rejected after accepting (or being deemed to): against the contract
    printed: PrintRecord | None = None
    reprint_required: bool = False  # an intercepted change made the label wrong
    weight_grams: int | None = None
    package_count: int | None = None
    # What the packer reported in each package, when it did; a mismatch shipped anyway is
    # recorded with the packer's reason (and CS has a wrong/short shipment case).
    packed_items: tuple[PackedPackage, ...] = ()
    pack_mismatch: tuple[PackDifference, ...] = ()
    pack_mismatch_reason: str = ""
    shipments: tuple[Shipment, ...] = ()
    changes: tuple[Change, ...] = ()

    def leased(self, now: datetime) -> bool:
        return self.lease_expires_at is not None and self.lease_expires_at > now

    @property
    def open_changes(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.open)

    @property
    def shipped_at(self) -> datetime | None:
        """When the final shipment left; None until the job is shipped."""
        if self.work is not Work.SHIPPED:
            return None
        return next((s.shipped_at for s in reversed(self.shipments) if s.final), None)

    @property
    def claimable(self) -> bool:
        return (self.handshake is Handshake.OFFERED and self.work is Work.QUEUED
                and not self.dead_lettered)

    @property
    def offer_at(self) -> datetime:
        """When the offer may next be handed out: now, or when the current lease ends."""
        return self.lease_expires_at or self.created_at

    def state(self) -> dict[str, Any]:
        return {"handshake": self.handshake, "work": self.work,
                "open_changes": [c.change_id for c in self.open_changes]}

    def conflict(self, reason: str, message: str) -> Conflict:
        return Conflict(reason, message, current_state=self.state())


class JobEvent(BaseModel):
    """What a transition tells the world: the order timeline always; the partner's change feed
    when `feed`; customer service when `alert` names an alert kind."""

    model_config = ConfigDict(frozen=True)

    type: str
    summary: str
    data: dict[str, Any] = Field(default_factory=dict)
    feed: bool = False
    alert: str | None = None
    severity: Literal["low", "medium", "high", "critical"] = "medium"


class Transition(BaseModel):
    model_config = ConfigDict(frozen=True)

    job: Job
    events: tuple[JobEvent, ...] = ()
    changed: bool = True  # False: an idempotent repeat, nothing to write


def _next(job: Job, now: datetime, *events: JobEvent, **fields: Any) -> Transition:
    new = job.model_copy(update={**fields, "updated_at": now, "version": job.version + 1})
    return Transition(job=new, events=events)


def job_id_for(order_id: str) -> str:
    """One job per order: the id is derived, so a replayed order cannot queue a second job."""
    return "job_" + order_id.removeprefix("ord_")


def new_job(order: Order, partner_id: str, now: datetime,
            rules: ProtocolRules = DEFAULT_PROTOCOL) -> Job:
    if order.shipping_address is None:
        raise ValueError("a job needs a shipping address")  # orders.fulfilment_problems guards
    choice = choose_carrier(order.shipping_address, rules.carriers,
                            requested=order.requested_courier or None)
    deadlines = acceptance_deadlines(now, rules.dispatch)
    return Job(
        job_id=job_id_for(order.order_id),
        partner_id=partner_id,
        order_id=order.order_id,
        order_name=order.name or order.external_id,
        marketplace=order.marketplace,
        shop=order.shop,
        external_id=order.external_id,
        ship_to=order.shipping_address,
        buyer_note=order.buyer_note,
        lines=lines_of(order),
        promises=promises_of(order),
        carrier=assignment_of(choice),
        created_at=now,
        updated_at=now,
        paid_at=order.paid_at or now,
        accept_by=deadlines.alert_at,
        deemed_accepted_at=deadlines.deemed_accepted_at,
        ship_by=ship_by(order.paid_at or now, rules.dispatch, order.presale_ship_date),
    )


PROMISE_CHARS = 500  # Promise.text's limit: a longer text is cut, and says so


def promise_text(text: str) -> str:
    return text if len(text) <= PROMISE_CHARS else text[:PROMISE_CHARS - 1] + "…"


def promises_of(order: Order) -> tuple[Promise, ...]:
    """What the buyer asked for besides the goods, for the factory to honour: the gift
    message (printed on the card), the invoice title, and the order's other attributes as one
    note (a seller's memo, a checkout app's fields). The buyer's note is the job's own
    `buyer_note`."""
    promises = [Promise(kind="gift_message", text=promise_text(order.gift_message))
                ] if order.gift_message else []
    if order.invoice_title:
        promises.append(Promise(kind="invoice_title", text=promise_text(order.invoice_title)))
    if order.attributes:
        promises.append(Promise(kind="note", text=attributes_note(order)))
    return tuple(promises)


def attributes_note(order: Order) -> str:
    """The order's attributes as one note: "Delivery date: 2026-12-06; seller_memo: …"."""
    return promise_text("; ".join(f"{name}: {value}" for name, value in order.attributes.items()))


def lines_of(order: Order) -> tuple[JobLine, ...]:
    return tuple(JobLine(sku=line.sku, line_id=line.line_id, title=line.title,
                         variant=line.variant, quantity=line.quantity) for line in order.lines)


def chain(job: Job, steps: Sequence[Callable[[Job], Transition]]) -> Transition:
    """Several transitions as one write; a step that does not apply (Conflict) is skipped."""
    current, events = job, list[JobEvent]()
    for step in steps:
        try:
            transition = step(current)
        except Conflict:
            continue
        if transition.changed:
            current, events = transition.job, [*events, *transition.events]
    return Transition(job=current, events=tuple(events), changed=current is not job)


def offered_event(job: Job) -> JobEvent:
    return JobEvent(type="job.created", feed=True,
                    summary=f"Job {job.job_id} offered to {job.partner_id}; {job.carrier.reason}"
                            f", ship by {job.ship_by:%Y-%m-%d %H:%M} UTC",
                    data={"job_id": job.job_id, "partner_id": job.partner_id,
                          "carrier": job.carrier.model_dump(), "ship_by": job.ship_by.isoformat()})


# The offer ---------------------------------------------------------------------------------


def claim(job: Job, lease_id: str, expires: datetime, now: datetime,
          rules: ProtocolRules = DEFAULT_PROTOCOL) -> Transition:
    if not job.claimable or job.leased(now):
        raise job.conflict("not_claimable", "the job is not on offer")
    if job.claim_count >= rules.max_offers:
        return _next(job, now, JobEvent(
            type="job.dead_lettered", alert="job.offer_unanswered", severity="high",
            summary=f"Offered {job.claim_count} times to {job.partner_id} without an answer; "
                    "taken off the offer list", data={"claim_count": job.claim_count}),
            dead_lettered=True, lease_id=None, lease_expires_at=None)
    return _next(job, now, lease_id=lease_id, lease_expires_at=expires,
                 claim_count=job.claim_count + 1)


def _require_lease(job: Job, lease_id: str, now: datetime) -> None:
    if job.handshake is not Handshake.OFFERED:
        raise job.conflict("not_offered", "the offer was already answered")
    if job.lease_id != lease_id:
        raise job.conflict("lease_mismatch", "claim the job and use the lease_id you got")
    if not job.leased(now):
        raise job.conflict("lease_expired", "the lease ran out; claim the job again")


def heartbeat(job: Job, lease_id: str, expires: datetime, now: datetime) -> Transition:
    _require_lease(job, lease_id, now)
    return _next(job, now, lease_expires_at=expires)


def release(job: Job, lease_id: str, now: datetime) -> Transition:
    _require_lease(job, lease_id, now)
    return _next(job, now, lease_id=None, lease_expires_at=None)


def accept(job: Job, lease_id: str, now: datetime) -> Transition:
    if job.handshake is Handshake.ACCEPTED and (job.lease_id == lease_id or job.deemed_accepted):
        # The same accept again, or a late one the contract already counted: nothing to do.
        return Transition(job=job, changed=False)
    _require_lease(job, lease_id, now)
    if job.work is not Work.QUEUED:
        raise job.conflict("job_closed", "the job was cancelled")
    late = " (after the contract deemed it accepted)" if job.deemed_accepted else ""
    return _next(job, now, JobEvent(
        type="job.accepted", summary=f"{job.partner_id} accepted the job{late}",
        data={"job_id": job.job_id}), handshake=Handshake.ACCEPTED, lease_expires_at=None,
        accepted_at=now)


def reject(job: Job, lease_id: str, reason: RejectReason, detail: str, now: datetime,
           breach: bool = False) -> Transition:
    """Answer the offer with a no. An accepted job (by the factory, or deemed by the contract
    after 72 h) is no longer the factory's to refuse: it may only be given back as a breach of
    the contract, said so by the caller (`breach`) and recorded on the job."""
    if job.handshake is Handshake.ACCEPTED and job.work is Work.QUEUED:
        return _breach(job, reason, detail, now, breach)
    _require_lease(job, lease_id, now)
    return _next(job, now, JobEvent(
        type="job.rejected", alert="job.rejected", severity="high",
        summary=f"{job.partner_id} rejected the job: {reason}" + (f" ({detail})" if detail else ""),
        data={"job_id": job.job_id, "reason": reason, "detail": detail}),
        handshake=Handshake.REJECTED, work=Work.CLOSED_INCOMPLETE, reject_reason=reason,
        reject_detail=detail, lease_expires_at=None)


def _breach(job: Job, reason: RejectReason, detail: str, now: datetime,
            breach: bool) -> Transition:
    how = "deemed accepted by the contract" if job.deemed_accepted else "accepted"
    if not breach:
        raise job.conflict("accepted", f"the job is {how}: refusing it now breaks the contract;"
                                       " send breach=true to give it back as a breach")
    return _next(job, now, JobEvent(
        type="job.rejected", alert="job.rejected", severity="critical", feed=True,
        summary=f"{job.partner_id} gave back a job it had {how.removesuffix(' by the contract')}"
                f" (breach of contract): {reason}" + (f" ({detail})" if detail else ""),
        data={"job_id": job.job_id, "reason": reason, "detail": detail, "breach": True}),
        handshake=Handshake.REJECTED, work=Work.CLOSED_INCOMPLETE, reject_reason=reason,
        reject_detail=detail, breach=True, lease_id=None, lease_expires_at=None)


# The work ------------------------------------------------------------------------------------


def _require_accepted(job: Job) -> None:
    if job.work is Work.CANCELLED:
        raise job.conflict("job_cancelled", "the order was cancelled; do not work on it")
    if job.handshake is not Handshake.ACCEPTED:
        raise job.conflict("not_accepted", "accept the job first")


def print_job(job: Job, now: datetime, *, waybill_numbers: tuple[str, ...] = (),
              carrier_code: str | None = None, wave_id: str | None = None,
              waybill_costs: Mapping[str, Decimal] | None = None) -> Transition:
    """The print gate: after this, a change can no longer simply be applied. A relabel after
    an intercepted change reprints in place: the parcel keeps its stage."""
    _require_accepted(job)
    relabel = job.reprint_required and job.work in IN_HAND
    if job.work is not Work.QUEUED and not relabel:
        raise job.conflict("already_printed", f"the job is {job.work}; printing is for queued jobs")
    if job.open_changes:
        raise job.conflict("change_pending", "resolve the open change requests first")
    count = job.printed.count + 1 if job.printed else 1
    record = PrintRecord(carrier_code=carrier_code or job.carrier.carrier_code,
                         waybill_numbers=waybill_numbers, printed_at=now, count=count,
                         wave_id=wave_id,
                         waybill_costs={n: str(c) for n, c in (waybill_costs or {}).items()
                                        if n in waybill_numbers})
    what = "reprinted" if count > 1 else "printed"
    return _next(job, now, JobEvent(
        type="job.printed", summary=f"Pick list and waybill {what}"
                                    + (f" in wave {wave_id}" if wave_id else ""),
        data={"job_id": job.job_id, "print": record.model_dump(mode="json")}),
        work=job.work if relabel else Work.PRINTED, printed=record, reprint_required=False)


def _require_label(job: Job) -> None:
    if job.open_changes:
        raise job.conflict("change_pending", "resolve the open change requests first")
    if job.reprint_required:
        raise job.conflict("reprint_required", "print the new label first")


def pick(job: Job, now: datetime) -> Transition:
    _require_accepted(job)
    if job.work is Work.PICKED:
        return Transition(job=job, changed=False)
    if job.work is not Work.PRINTED:
        raise job.conflict("not_printed", f"the job is {job.work}; pick after printing")
    return _next(job, now, JobEvent(type="job.picked", summary="Picked",
                                    data={"job_id": job.job_id}), work=Work.PICKED)


def pack(job: Job, weight_grams: int, package_count: int, now: datetime,
         packages: tuple[PackedPackage, ...] = (), ship_anyway: bool = False,
         reason: str = "") -> Transition:
    """Packed. With the packages' contents, they are checked against the job (domain: no wrong
    pick, nothing missing): a mismatch is refused (409 `pack_mismatch`, naming each SKU) unless
    the packer ships anyway with a reason, which is recorded and opens a wrong-items and/or a
    short-shipment case for CS."""
    _require_accepted(job)
    if job.work not in (Work.PRINTED, Work.PICKED, Work.PACKED):
        raise job.conflict("not_printed", f"the job is {job.work}; pack after printing")
    _require_label(job)
    differences = pack_differences(job.lines, packages) if packages else ()
    if differences and not ship_anyway:
        raise Conflict("pack_mismatch", "the packages do not hold the job's items: "
                       + describe_differences(differences), current_state=job.state(),
                       differences=[d.model_dump() for d in differences])
    recorded = reason if differences else ""
    if (job.work is Work.PACKED and job.weight_grams == weight_grams
            and job.package_count == package_count and job.packed_items == packages
            and job.pack_mismatch_reason == recorded):
        return Transition(job=job, changed=False)  # the same report again
    data: dict[str, Any] = {"job_id": job.job_id, "weight_grams": weight_grams,
                            "package_count": package_count}
    if packages:  # the contents are on the job; the timeline says how many were checked
        data["items_packed"] = sum(item.quantity for p in packages for item in p.items)
    events = [JobEvent(
        type="job.packed", summary=f"Packed: {package_count} package(s), {weight_grams} g"
                                   + (", items checked" if packages and not differences else ""),
        data=data)]
    events += mismatch_events(job, differences, reason)
    return _next(job, now, *events, work=Work.PACKED, weight_grams=weight_grams,
                 package_count=package_count, packed_items=packages,
                 pack_mismatch=differences, pack_mismatch_reason=recorded)


# Which case a kind of difference opens: 发错货 (wrong or extra items), 少发/漏发 (too few).
MISMATCH_CASES: dict[str, tuple[str, ...]] = {
    "shipment.wrong_items": ("wrong", "extra"), "shipment.short": ("short",)}


def mismatch_events(job: Job, differences: Sequence[PackDifference],
                    reason: str) -> list[JobEvent]:
    """A mismatch shipped anyway: one event (and CS case) per kind of fault."""
    events = []
    for case, kinds in MISMATCH_CASES.items():
        these = [d for d in differences if d.kind in kinds]
        if these:
            events.append(JobEvent(
                type=case, alert=case, severity="high",
                summary=f"Packed anyway by {job.partner_id} ({reason}): "
                        + describe_differences(these),
                data={"job_id": job.job_id, "differences": describe_differences(these),
                      "reason": reason}))
    return events


def ship(job: Job, shipment_id: str, packages: tuple[Package, ...], final: bool,
         now: datetime, waybill_cost: Decimal | None = None) -> Transition:
    known = next((s for s in job.shipments if s.shipment_id == shipment_id), None)
    if known is not None:
        if set(known.packages) == set(packages) and known.final == final:
            return Transition(job=job, changed=False)  # the same report again
        raise job.conflict("shipment_id_reused", "that shipment id was used for other packages")
    _require_accepted(job)
    if job.work not in IN_HAND:
        raise job.conflict("not_printed" if job.work is Work.QUEUED else "already_shipped",
                           f"the job is {job.work}")
    _require_label(job)
    cost = None if waybill_cost is None else str(waybill_cost)
    shipment = Shipment(shipment_id=shipment_id, packages=packages, final=final, shipped_at=now,
                        waybill_cost=cost)
    tracking = ", ".join(f"{p.carrier_code} {p.tracking_number}" for p in packages)
    return _next(job, now, JobEvent(
        type="job.shipped", summary=("Shipped" if final else "Partly shipped") + f": {tracking}",
        data={"job_id": job.job_id, "shipment_id": shipment_id, "final": final,
              "packages": [p.model_dump() for p in packages],
              **({"waybill_cost": cost} if cost is not None else {})}),
        work=Work.SHIPPED if final else job.work, shipments=(*job.shipments, shipment))


# Changes while the factory works -----------------------------------------------------------


class ChangeRequest(BaseModel):
    """A change to a job, from CS or from the marketplace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ChangeKind
    reason: str = Field(default="", max_length=1000)
    address: Address | None = None
    lines: tuple[JobLine, ...] | None = None
    promise: Promise | None = None
    # A courier change: a carrier code or a name a buyer writes ("顺丰"); the carrier rules
    # decide (an unknown or unoffered one falls back to the rule table, and the job says why).
    carrier_code: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _has_its_data(self) -> ChangeRequest:
        needed = {ChangeKind.ADDRESS: self.address, ChangeKind.ATTRIBUTES: self.lines,
                  ChangeKind.PROMISE: self.promise, ChangeKind.COURIER: self.carrier_code}
        if self.kind in needed and not needed[self.kind]:
            raise ValueError(f"a {self.kind} change needs its {self.kind} data")
        return self


ChangeOutcome = Literal["applied", "intercept", "after_sales", "closed"]


def change_outcome(work: Work) -> ChangeOutcome:
    """What a change asked for at this stage becomes: applied at once before print, an
    intercept request from print to pack, an after-sales case once shipped; nothing on a
    closed job. (`request_change` follows it; the console says it before CS confirms.)"""
    if work in (Work.CANCELLED, Work.CLOSED_INCOMPLETE):
        return "closed"
    if work in UNPRINTED:
        return "applied"
    if work in IN_HAND:
        return "intercept"
    return "after_sales"


COURIER_REFUSED = "order.courier_refused"  # a courier change after shipping: the CS case type


def request_change(job: Job, request: ChangeRequest, by: str, now: datetime,
                   rules: ProtocolRules = DEFAULT_PROTOCOL) -> Transition:
    """Before print: applied at once. Printed to packed: an intercept request with a deadline.
    Shipped: an after-sales case for CS (`change_outcome`)."""
    outcome = change_outcome(job.work)
    if outcome == "closed":
        raise job.conflict("job_closed", f"the job is {job.work}; nothing to change")
    change = Change(change_id="chg_" + secrets.token_hex(6), kind=request.kind,
                    status=ChangeStatus.APPLIED, requested_by=by, requested_at=now,
                    reason=request.reason, stage=job.work, address=request.address,
                    lines=request.lines, promise=request.promise,
                    carrier_code=request.carrier_code)
    what = _describe(change)
    if outcome == "applied":
        applied = change
        return _next(job, now, JobEvent(
            type="change.applied", feed=True, summary=f"{what}: applied before print",
            data={"job_id": job.job_id, "change": applied.model_dump(mode="json")}),
            changes=(*job.changes, applied), **_apply(job, applied, now, rules))
    if outcome == "intercept":
        pending = change.model_copy(update={
            "status": ChangeStatus.INTERCEPT_REQUESTED,
            "deadline": now + timedelta(hours=rules.intercept_hours)})
        return _next(job, now, JobEvent(
            type="change.intercept_requested", feed=True,
            summary=f"{what}: the job is {job.work}, intercept requested from {job.partner_id}",
            data={"job_id": job.job_id, "change": pending.model_dump(mode="json")}),
            changes=(*job.changes, pending))
    after = change.model_copy(update={"status": ChangeStatus.AFTER_SALES})
    if change.kind is ChangeKind.COURIER:
        # The parcel is with its courier: nothing to re-route; the request stays on the
        # timeline and after-sales tells the buyer (its own case type).
        return _next(job, now, JobEvent(
            type=COURIER_REFUSED, feed=True, alert=COURIER_REFUSED, severity="high",
            summary=f"{what}: refused, already shipped with {job.carrier.carrier_code}",
            data={"job_id": job.job_id, "change": after.model_dump(mode="json")}),
            changes=(*job.changes, after))
    return _next(job, now, JobEvent(
        type="change.after_sales", feed=True, alert="change.after_sales", severity="high",
        summary=f"{what}: already shipped, an after-sales case for CS",
        data={"job_id": job.job_id, "change": after.model_dump(mode="json")}),
        changes=(*job.changes, after))


def resolve_change(job: Job, change_id: str, intercepted: bool, reprint: bool, note: str,
                   by: str, now: datetime, rules: ProtocolRules = DEFAULT_PROTOCOL) -> Transition:
    change = next((c for c in job.changes if c.change_id == change_id), None)
    if change is None:
        raise job.conflict("unknown_change", f"no change {change_id} on this job")
    wanted = ChangeStatus.INTERCEPTED if intercepted else ChangeStatus.INTERCEPT_FAILED
    if change.status is wanted:
        return Transition(job=job, changed=False)
    if not change.open:
        raise job.conflict("change_not_open", f"the change is {change.status}")
    resolved = change.model_copy(update={"status": wanted, "resolved_by": by,
                                         "resolved_at": now, "note": note})
    changes = tuple(resolved if c.change_id == change_id else c for c in job.changes)
    what = _describe(change)
    if not intercepted:
        return _next(job, now, JobEvent(
            type="change.intercept_failed", feed=True, alert="change.intercept_failed",
            severity="high", summary=f"{what}: {job.partner_id} could not intercept"
                                     + (f" ({note})" if note else ""),
            data={"job_id": job.job_id, "change": resolved.model_dump(mode="json")}),
            changes=changes)
    fields = _apply(job, resolved, now, rules)
    # Other items must be picked again from a new pick list; a new address or courier (or
    # whatever the warehouse says needs it) only needs a new label on the parcel in hand.
    if change.kind is ChangeKind.ATTRIBUTES:
        fields["work"] = Work.QUEUED
    elif (change.kind in (ChangeKind.ADDRESS, ChangeKind.COURIER) or reprint) \
            and change.kind is not ChangeKind.CANCEL:
        fields["reprint_required"] = True
    if fields.get("work") is Work.QUEUED:
        again = ", to be picked and printed again"
    elif fields.get("reprint_required"):
        again = ", the label must be reprinted"
    else:
        again = ""
    return _next(job, now, JobEvent(
        type="change.intercepted", feed=True, summary=f"{what}: intercepted{again}",
        data={"job_id": job.job_id, "change": resolved.model_dump(mode="json")}),
        changes=changes, **fields)


def _apply(job: Job, change: Change, now: datetime, rules: ProtocolRules) -> dict[str, Any]:
    if change.kind is ChangeKind.CANCEL:
        return {"work": Work.CANCELLED, "lease_id": None, "lease_expires_at": None}
    if change.kind is ChangeKind.ADDRESS and change.address is not None:
        return {"ship_to": change.address}
    if change.kind is ChangeKind.COURIER and change.carrier_code is not None:
        # Re-routed through the same rules as a new job: re-priced for the destination.
        choice = choose_carrier(job.ship_to, rules.carriers, requested=change.carrier_code)
        return {"carrier": assignment_of(choice)}
    if change.kind is ChangeKind.ATTRIBUTES and change.lines is not None:
        if not any(line.stock_up for line in change.lines):
            return {"lines": change.lines}
        # Never earlier than promised already (a pre-sale date, an earlier stock-up).
        later = max(job.ship_by, stock_up_ship_by(now, rules.dispatch))
        return {"lines": change.lines, "ship_by": later}
    if change.promise is not None:
        return {"promises": (*job.promises, change.promise)}
    return {}


def _describe(change: Change) -> str:
    if change.kind is ChangeKind.CANCEL:
        return "Cancellation"
    if change.kind is ChangeKind.ADDRESS and change.address:
        return f"New address ({change.address.city}, {change.address.line1})"
    if change.kind is ChangeKind.ATTRIBUTES and change.lines:
        return "Changed items (" + ", ".join(
            f"{ln.sku}×{ln.quantity}" + (" stock-up, ships next day" if ln.stock_up else "")
            for ln in change.lines) + ")"
    if change.kind is ChangeKind.COURIER:
        return f"Courier change (to {change.carrier_code})"
    return f"Buyer promise ({change.promise.kind if change.promise else '?'})"


# Deadlines ------------------------------------------------------------------------------------


def overdue(job: Job, now: datetime, rules: ProtocolRules = DEFAULT_PROTOCOL) -> Transition:
    """What is late at `now`: alerted once, then again every `realert_hours` until it moves."""
    events: list[JobEvent] = []
    fields: dict[str, Any] = {}
    alerts = dict(job.alerts)
    again = timedelta(hours=rules.realert_hours)

    def due(kind: str, since: datetime) -> bool:
        last = alerts.get(kind)
        return now >= since and (last is None or now >= last + again)

    if job.handshake is Handshake.OFFERED and job.work is Work.QUEUED:
        if now >= job.deemed_accepted_at:
            # The contract's word, not a flag: the job is accepted (printable, off the offers,
            # no longer waiting on the factory's answer) and the not-accepted alerts stop.
            fields.update(deemed_accepted=True, handshake=Handshake.ACCEPTED, lease_id=None,
                          lease_expires_at=None)
            events.append(JobEvent(type="job.deemed_accepted", feed=True, summary=(
                f"{job.partner_id} did not answer within the contract's limit: the job counts "
                "as accepted; work it"), data={"job_id": job.job_id}))
        elif due("job.not_accepted", job.accept_by):
            alerts["job.not_accepted"] = now
            events.append(JobEvent(
                type="alert.not_accepted", alert="job.not_accepted", severity="high",
                summary=f"{job.partner_id} has not accepted job {job.job_id} since "
                        f"{job.created_at:%Y-%m-%d %H:%M} UTC", data={"job_id": job.job_id}))
    if job.work not in ENDED and job.handshake is not Handshake.REJECTED \
            and due("job.late_dispatch", job.ship_by):
        alerts["job.late_dispatch"] = now
        events.append(JobEvent(
            type="alert.late_dispatch", alert="job.late_dispatch", severity="high",
            summary=f"Not shipped by {job.ship_by:%Y-%m-%d %H:%M} UTC (work: {job.work})",
            data={"job_id": job.job_id, "ship_by": job.ship_by.isoformat()}))
    changes = list(job.changes)
    for index, change in enumerate(changes):
        if change.open and change.deadline and now >= change.deadline and (
                change.alerted_at is None or now >= change.alerted_at + again):
            changes[index] = change.model_copy(update={"alerted_at": now})
            events.append(JobEvent(
                type="alert.intercept_overdue", alert="change.intercept_overdue",
                severity="high", summary=f"{_describe(change)}: intercept not resolved by "
                                         f"{change.deadline:%Y-%m-%d %H:%M} UTC",
                data={"job_id": job.job_id, "change_id": change.change_id}))
    if not events:
        return Transition(job=job, changed=False)
    return _next(job, now, *events, alerts=alerts, changes=tuple(changes), **fields)


def next_deadline(job: Job, rules: ProtocolRules = DEFAULT_PROTOCOL) -> datetime | None:
    """The next moment `overdue` may have something to say, for the deadlines index."""
    again = timedelta(hours=rules.realert_hours)
    moments: list[datetime] = []

    def after(kind: str, since: datetime) -> datetime:
        last = job.alerts.get(kind)
        return since if last is None else max(since, last + again)

    if job.handshake is Handshake.OFFERED and job.work is Work.QUEUED:
        moments.append(job.deemed_accepted_at)
        moments.append(after("job.not_accepted", job.accept_by))
    if job.work not in ENDED and job.handshake is not Handshake.REJECTED:
        moments.append(after("job.late_dispatch", job.ship_by))
    for change in job.open_changes:
        if change.deadline:
            moments.append(change.deadline if change.alerted_at is None
                           else max(change.deadline, change.alerted_at + again))
    return min(moments) if moments else None

