"""The warehouse partner's side: claim offered jobs under a lease, and report shipments."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.config import settings
from chalicelib.errors import Conflict, NotFound
from chalicelib.jobs import Job, ShipReport, check_ship
from chalicelib.orders import OrderEvent
from chalicelib.storage import TransactionConflict, transact
from chalicelib.storage import jobs as jobs_store
from chalicelib.storage import orders as orders_store


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_jobs: int = Field(default=10, ge=1, le=100)
    lease_seconds: int | None = Field(default=None, ge=30, le=12 * 3600)


class Claimed(BaseModel):
    lease_id: str | None
    lease_expires_at: datetime | None
    jobs: list[Job]


def claim(partner_id: str, request: ClaimRequest, now: datetime) -> Claimed:
    limit = min(request.max_jobs, settings().max_claim_batch)
    seen = jobs_store.claimable(partner_id, now, limit)
    if not seen:
        return Claimed(lease_id=None, lease_expires_at=None, jobs=[])
    lease_id = "lease_" + secrets.token_urlsafe(12)
    expires = now + timedelta(seconds=request.lease_seconds or settings().lease_seconds)
    claimed = jobs_store.claim(partner_id, seen, lease_id, expires, now)
    return Claimed(lease_id=lease_id if claimed else None,
                   lease_expires_at=expires if claimed else None, jobs=claimed)


def get_job(partner_id: str, job_id: str) -> Job:
    job = jobs_store.get(partner_id, job_id)
    if job is None:
        raise NotFound("job")  # also for another partner's job: its existence is not revealed
    return job


def ship(partner_id: str, job_id: str, report: ShipReport, now: datetime) -> Job:
    job = get_job(partner_id, job_id)
    if not check_ship(job, report):
        return job  # the same report again: already recorded
    packages = ", ".join(f"{p.carrier_code} {p.tracking_number}" for p in report.packages)
    event = OrderEvent(
        type="job.shipped", at=now, actor=f"partner {partner_id}",
        summary=f"Shipped by {partner_id}: {packages}",
        data={"job_id": job_id, "packages": [p.model_dump() for p in report.packages],
              "cancellation_was_requested": job.cancellation_requested},
    )
    try:
        transact([jobs_store.ship(job, report.packages, now),
                  orders_store.put_event(job.order_id, event)])
    except TransactionConflict:
        # The job changed between our read and write (a new lease, a cancellation, or this
        # same report racing itself): judge the report against the state now.
        if check_ship(get_job(partner_id, job_id), report):
            raise Conflict("job_changed", "the job changed while shipping; retry") from None
    return get_job(partner_id, job_id)
