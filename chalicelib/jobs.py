"""Fulfilment jobs for the factory warehouse: the model and its state rules. Pure.

Two axes, as Shopify's fulfillment orders have: the handshake (offered -> accepted) and the
physical work (queued -> shipped, or cancelled). A claim puts a lease on the offer; an expired
lease makes the job claimable again without anyone having to release it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.errors import Conflict
from chalicelib.orders import Address, Order


class Handshake(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"


class Work(StrEnum):
    QUEUED = "queued"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


class JobLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    title: str = ""
    variant: str = ""
    quantity: int


class Package(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    carrier_code: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")
    tracking_number: str = Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9\-]+$")


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
    created_at: datetime
    updated_at: datetime
    handshake: Handshake = Handshake.OFFERED
    work: Work = Work.QUEUED
    lease_id: str | None = None
    lease_expires_at: datetime | None = None
    claim_count: int = 0
    cancellation_requested: bool = False
    packages: tuple[Package, ...] = ()
    shipped_at: datetime | None = None

    def leased(self, now: datetime) -> bool:
        return self.lease_expires_at is not None and self.lease_expires_at > now


def job_id_for(order_id: str) -> str:
    """One job per order: the id is derived, so a replayed order cannot queue a second job."""
    return "job_" + order_id.removeprefix("ord_")


def new_job(order: Order, partner_id: str, now: datetime) -> Job:
    if order.shipping_address is None:
        raise ValueError("a job needs a shipping address")  # orders.fulfilment_problems guards
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
        lines=tuple(
            JobLine(sku=line.sku, title=line.title, variant=line.variant,
                    quantity=line.quantity)
            for line in order.lines
        ),
        created_at=now,
        updated_at=now,
    )


class ShipReport(BaseModel):
    """What the warehouse reports when a job leaves the building."""

    model_config = ConfigDict(extra="forbid")

    lease_id: str | None = None
    packages: tuple[Package, ...] = Field(min_length=1, max_length=50)


def check_ship(job: Job, report: ShipReport) -> bool:
    """Raise Conflict if the report cannot apply; False when it repeats what is recorded."""
    if job.work is Work.SHIPPED:
        if set(job.packages) == set(report.packages):
            return False
        raise Conflict("already_shipped", "job was shipped with other packages",
                       packages=[p.model_dump() for p in job.packages])
    if job.work is Work.CANCELLED:
        raise Conflict("job_cancelled", "the order was cancelled; do not ship it")
    if job.handshake is Handshake.OFFERED and (job.lease_id is None
                                               or job.lease_id != report.lease_id):
        raise Conflict("lease_mismatch", "claim the job and ship it with the lease_id you got",
                       current_state={"handshake": job.handshake, "work": job.work})
    return True
