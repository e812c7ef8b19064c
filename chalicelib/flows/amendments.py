"""Amendments by CS: added, signed and dated, never an overwrite (domain notes: "buyer asked to
change the address to ...; done — date, name").

Each amendment is an event on the order's timeline (the version as received never changes);
when the order has a job, it becomes a change request whose outcome depends on how far the
warehouse has got (applied, intercept, after-sales). The current view shows what actually
happened: it follows a change applied before print (or an order without a job); an intercept
request changes it only once the factory intercepts (flows/warehouse.py `resolve_change`); a
failed intercept or a change after shipping leaves it as it was: the request stays on the
timeline and CS gets an after-sales case.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib.core import observability
from chalicelib.core.dynamodb import Action, retrying, transact
from chalicelib.core.errors import ApiError, NotFound
from chalicelib.cs import alert_topic, refunds
from chalicelib.flows import warehouse
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import Address, Order, OrderEvent, amended, changed_view
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse import jobs
from chalicelib.warehouse.carriers import Carrier, requested_problem
from chalicelib.warehouse.jobs import protocol_rules
from chalicelib.warehouse.regions import region_of

log = logging.getLogger(__name__)


class AmendedAddress(Address):
    """The address CS types in: every field bounded (it is stored on the order and the job)."""

    name: str = Field(default="", max_length=200)
    company: str = Field(default="", max_length=200)
    line1: str = Field(default="", max_length=500)
    line2: str = Field(default="", max_length=500)
    city: str = Field(default="", max_length=200)
    province: str = Field(default="", max_length=200)
    province_code: str = Field(default="", max_length=32)
    postal_code: str = Field(default="", max_length=32)
    country_code: str = Field(default="", max_length=8)
    phone: str = Field(default="", max_length=64)


class AmendedLine(jobs.JobLine):
    """An order line as CS changes it: a SKU, bounded texts and a quantity DynamoDB can hold."""

    sku: jobs.Sku
    line_id: str = Field(default="", max_length=64)
    title: str = Field(default="", max_length=500)
    variant: str = Field(default="", max_length=200)
    quantity: int = Field(gt=0, le=100_000)


class Amendment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["cancel", "address", "attributes", "promise", "courier", "note"]
    reason: str = Field(min_length=1, max_length=1000)  # what the buyer asked, in CS's words
    address: AmendedAddress | None = None
    lines: tuple[AmendedLine, ...] | None = Field(default=None, max_length=200)
    promise: jobs.Promise | None = None
    carrier_code: str | None = Field(default=None, min_length=1, max_length=64)  # courier

    def change_request(self) -> jobs.ChangeRequest | None:
        if self.kind == "note":
            return None
        try:
            return jobs.ChangeRequest(kind=jobs.ChangeKind(self.kind), reason=self.reason,
                                      address=self.address, lines=self.lines,
                                      promise=self.promise, carrier_code=self.carrier_code)
        except ValidationError as exc:
            raise ApiError(422, "invalid_payload", f"the {self.kind} amendment is incomplete",
                           problems=[e["msg"] for e in exc.errors()]) from None


class JobState(BaseModel):
    handshake: jobs.Handshake
    work: jobs.Work
    open_changes: list[str]


class Amended(BaseModel):
    """The answer to an amendment (describes what `amend` returns)."""

    order_id: str
    event: OrderEvent
    change: jobs.Change | None  # the job's change request, when the order has a job
    job: JobState | None


def _current_view(order: Order, amendment: Amendment, transition: jobs.Transition | None,
                  now: datetime) -> Order:
    """The view after the amendment: changed only when the change took effect now (no job to
    ask, or applied before print); otherwise the order stays as the warehouse will ship it."""
    if transition is not None and transition.job.changes[-1].status is not \
            jobs.ChangeStatus.APPLIED:
        return order
    return changed_view(order, amendment.kind, amendment.address, now,
                        courier=amendment.carrier_code)


def checked_courier(amendment: Amendment, address: Address | None) -> Amendment:
    """A courier change names a courier the rules may give this parcel (422 `unknown_courier`
    or `courier_not_offered` otherwise: CS asks again, unlike a marketplace's request, which
    falls back to the rule table); stored as its carrier code."""
    if amendment.kind != "courier" or address is None:
        return amendment
    rules = protocol_rules().carriers
    carrier, problem = requested_problem(amendment.carrier_code or "",
                                         region_of(address, rules.regions), rules)
    if problem == "unknown_courier":
        raise ApiError(422, "unknown_courier", f"{amendment.carrier_code!r} is not a courier we "
                       "know", known=[c.value for c in Carrier])
    if problem == "courier_not_offered":
        raise ApiError(422, "courier_not_offered", f"{carrier} is not offered for this parcel",
                       offered=[c.value for c in rules.choosable()])
    return amendment.model_copy(update={"carrier_code": carrier})


def amend(order_id: str, amendment: Amendment, staff_id: str, now: datetime) -> dict[str, Any]:
    actor = f"cs {staff_id}"
    amendment.change_request()  # 422 for an incomplete amendment, before any read
    event = OrderEvent(type="order.amended", at=now, actor=actor, reason=amendment.reason,
                       summary=f"{amendment.kind} by {staff_id}: {amendment.reason}",
                       data=amendment.model_dump(mode="json", exclude_none=True))
    observability.tag(order_id=order_id)
    tried: list[tuple[int, dict[str, Any]]] = []  # each write tried: its version, its answer

    def attempt() -> dict[str, Any]:
        stored = orders_store.get_current(order_id)
        if stored is None:
            raise NotFound("order")
        if tried and stored.written(tried[-1][0], now):
            return tried[-1][1]  # an earlier attempt's write landed; its answer was lost
        job, transition = None, None
        checked = checked_courier(amendment, stored.order.shipping_address)
        request = checked.change_request()
        if request is not None and stored.job is not None:
            observability.tag(job_id=stored.job.job_id)
            job = jobs_store.get(stored.job.partner_id, stored.job.job_id)
            if job is not None:
                transition = jobs.request_change(job, request, actor, now,
                                                  protocol_rules())  # 409 if closed
                warehouse.announce(transition, now)
        view = _current_view(stored.order, checked, transition, now)
        _refund_task(stored.order, view, amendment, actor, now,
                     transition.job.job_id if transition else None)
        actions: list[Action] = [orders_store.put_current(
            view, stored, stored.job, now, amended(stored.order, view, stored.overrides))]
        if transition is not None:
            actions += warehouse.actions_for(job, transition, actor, now, order_events=[event])
        else:
            actions += orders_store.put_events(order_id, [event])
        change = transition.job.changes[-1] if transition else None
        answer = {"order_id": order_id, "event": event.model_dump(mode="json"),
                  "change": change.model_dump(mode="json") if change else None,
                  "job": transition.job.state() if transition else None}
        tried.append((stored.version + 1, answer))
        transact(actions)
        log.info("order %s amended: %s", order_id, amendment.kind)
        if transition is not None:
            warehouse.committed(transition)
        return answer

    return retrying(attempt, "order")


def _refund_task(before: Order, after: Order, amendment: Amendment, actor: str, now: datetime,
                 job_id: str | None) -> None:
    """A cancellation that took effect now (the view turned cancelled) hands the refund to
    after-sales; published before the write, as every alert (CS dedupes a repeat)."""
    if amendment.kind != "cancel" or after is before:
        return
    task = refunds.refund_task(before, "applied", actor, amendment.reason, now, job_id)
    if task is not None:
        alert_topic.publish(task)
