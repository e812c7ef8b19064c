"""Shipment writeback: the marketplace learns carrier and tracking number of every package we
ship. Pure: what to tell the platform, and what to do after each attempt.

One writeback per (job, warehouse shipment), created in the ship report's own transaction, so a
shipment is never recorded without it. Each package is confirmed on its own (`done`), so a retry
after a partial success repeats nothing; a platform without idempotency is asked first whether it
already has the package (the `existing` read of its writeback). Retries back off up to MAX_ATTEMPTS;
then the writeback is given up and CS gets a case (`marketplace.writeback_failed`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.marketplaces.calls import Shipped
from chalicelib.warehouse.jobs import Job
from chalicelib.warehouse.jobs import Shipment as JobShipment

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=2)


class Writeback(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    partner_id: str
    order_id: str
    order_name: str
    marketplace: str
    shop: str
    shipment_id: str
    packages: tuple[Shipped, ...]
    done: tuple[str, ...] = ()  # package ids the platform confirmed
    status: Literal["pending", "done", "failed"] = "pending"
    attempts: int = 0
    due_at: datetime
    last_error: str = ""
    created_at: datetime

    @property
    def key(self) -> str:
        return f"{self.job_id}#{self.shipment_id}"

    @property
    def remaining(self) -> tuple[Shipped, ...]:
        return tuple(p for p in self.packages if p.package_id not in self.done)


def plan(job: Job, shipment: JobShipment, now: datetime) -> Writeback:
    """`job` as the ship report left it (this shipment included)."""
    first = bool(job.shipments) and job.shipments[0].shipment_id == shipment.shipment_id
    everything = tuple((line.line_id, line.quantity) for line in job.lines if line.line_id)
    packages = tuple(
        Shipped(external_id=job.external_id, carrier_code=p.carrier_code,
                tracking_number=p.tracking_number, shipped_at=shipment.shipped_at,
                package_id=f"{shipment.shipment_id}-{n}",
                order_lines=everything if first and n == 1 else ())
        for n, p in enumerate(shipment.packages, start=1))
    return Writeback(job_id=job.job_id, partner_id=job.partner_id, order_id=job.order_id,
                     order_name=job.order_name, marketplace=job.marketplace, shop=job.shop,
                     shipment_id=shipment.shipment_id, packages=packages, due_at=now,
                     created_at=now)


def confirmed(writeback: Writeback, package_id: str) -> Writeback:
    done = (*writeback.done, package_id)
    finished = all(p.package_id in done for p in writeback.packages)
    return writeback.model_copy(update={"done": done,
                                        "status": "done" if finished else writeback.status})


def failed(writeback: Writeback, error: str, retryable: bool, now: datetime) -> Writeback:
    attempts = writeback.attempts + 1
    if not retryable or attempts >= MAX_ATTEMPTS:
        return writeback.model_copy(update={"attempts": attempts, "last_error": error,
                                            "status": "failed"})
    wait = min(FIRST_RETRY * (1 << (attempts - 1)), LONGEST_WAIT)
    return writeback.model_copy(update={"attempts": attempts, "last_error": error,
                                        "due_at": now + wait})
