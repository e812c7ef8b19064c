"""A buyer's complaint that the parcel held the wrong item, too few, or missed an item (发错货、
少发、漏发), taken down by CS: an attributed event on the order's timeline and a CS case.

The case is the same kind the warehouse's own pack check opens (`shipment.wrong_items`,
`shipment.short`; `shipment.missing_items` for an item that never came), about the same
subject (the order's job), so a complaint about a shortage the packer already reported joins
that case instead of opening a second one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core import observability
from chalicelib.core.dynamodb import retrying, transact
from chalicelib.core.errors import NotFound
from chalicelib.cs import alert_topic
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import OrderEvent
from chalicelib.warehouse.jobs import Sku

log = logging.getLogger(__name__)

ComplaintKind = Literal["wrong_item", "short", "missing_item"]
CASE_TYPES: dict[str, str] = {"wrong_item": "shipment.wrong_items", "short": "shipment.short",
                              "missing_item": "shipment.missing_items"}


class ComplaintItem(BaseModel):
    """An item the buyer names: the SKU and how many are wrong or missing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Sku
    quantity: int = Field(default=1, gt=0, le=100_000)


class Complaint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ComplaintKind
    note: str = Field(min_length=1, max_length=1000)  # what the buyer said, in CS's words
    items: tuple[ComplaintItem, ...] = Field(default=(), max_length=200)


class Complained(BaseModel):
    """The answer: the timeline event, and the case it opened (or joined): its type and
    subject (the case list's `?order_id=` shows it once the dispatcher has it)."""

    order_id: str
    case_type: str
    subject: str
    event: OrderEvent


def describe(complaint: Complaint) -> str:
    items = ", ".join(f"{item.sku}×{item.quantity}" for item in complaint.items)
    return complaint.kind.replace("_", " ") + (f" ({items})" if items else "")


def complain(order_id: str, complaint: Complaint, staff_id: str, now: datetime) -> dict[str, Any]:
    observability.tag(order_id=order_id)
    stored = orders_store.get_current(order_id)
    if stored is None:
        raise NotFound("order")
    order, job = stored.order, stored.job
    actor = f"cs {staff_id}"
    case_type = CASE_TYPES[complaint.kind]
    subject = job.job_id if job else order_id  # the pack check's cases are about the job
    what = describe(complaint)
    event = OrderEvent(type="order.complaint", at=now, actor=actor, reason=complaint.note,
                       summary=f"Buyer complaint, {what}, taken by {staff_id}: {complaint.note}",
                       data=complaint.model_dump(mode="json"))
    # Published before the write, as every alert: a retry may repeat it (CS dedupes).
    alert_topic.publish(Alert(
        kind=case_type, severity=Severity.HIGH, subject=subject, at=now,
        summary=f"{order.name or order.external_id} ({order.marketplace}): buyer complaint, "
                f"{what}: {complaint.note}",
        facts={"order_id": order_id, "order_name": order.name or order.external_id,
               "marketplace": order.marketplace, "shop": order.shop,
               "complaint": complaint.kind, "reported_by": actor,
               **({"job_id": job.job_id, "partner_id": job.partner_id} if job else {}),
               **({"items": ", ".join(f"{i.sku}×{i.quantity}" for i in complaint.items)}
                  if complaint.items else {})}))
    retrying(lambda: transact([orders_store.put_event(order_id, event)]), "order",
             reread=False)
    log.info("order %s: buyer complaint (%s)", order_id, complaint.kind)
    return Complained(order_id=order_id, case_type=case_type, subject=subject,
                      event=event).model_dump(mode="json")
