"""The jobs table: pk = partner id, sk = job id, so every read and write is scoped to a partner
by its key, and another partner's job id simply is not there.

Claimable jobs carry `offer_partner` and `offer_at` (the sparse `offers` index): `offer_at` is
when the job may next be handed out, i.e. its creation time, then the end of each lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from chalicelib import aws
from chalicelib.config import settings
from chalicelib.jobs import Handshake, Job, Package, Work
from chalicelib.storage import Action, TransactionConflict, from_attrs, to_attrs, transact
from chalicelib.timeutil import iso

OFFERS_INDEX = "offers"
_TRANSACTION_LIMIT = 100
_STATE_FIELDS = ("pk", "sk", "offer_partner", "offer_at")


def _key(partner_id: str, job_id: str) -> dict[str, Any]:
    return to_attrs({"pk": partner_id, "sk": job_id})


def _job(item: dict[str, Any]) -> Job:
    return Job.model_validate({k: v for k, v in item.items() if k not in _STATE_FIELDS})


def put_new(job: Job) -> Action:
    item = {
        "pk": job.partner_id, "sk": job.job_id, **job.model_dump(mode="json", exclude_none=True),
        "offer_partner": job.partner_id, "offer_at": iso(job.created_at),
    }
    return Action("job", {"Put": {
        "TableName": settings().jobs_table, "Item": to_attrs(item),
        "ConditionExpression": "attribute_not_exists(pk)",
    }})


def get(partner_id: str, job_id: str) -> Job | None:
    answer = aws.client("dynamodb").get_item(
        TableName=settings().jobs_table, Key=_key(partner_id, job_id), ConsistentRead=True
    )
    return _job(from_attrs(answer["Item"])) if "Item" in answer else None


def cancel(partner_id: str, job_id: str, now: datetime) -> Action:
    """Cancel at once: only while queued, not accepted and under no live lease."""
    return Action("job_cancel", {"Update": {
        "TableName": settings().jobs_table, "Key": _key(partner_id, job_id),
        "UpdateExpression": "SET #work = :cancelled, updated_at = :now "
                            "REMOVE offer_partner, offer_at",
        "ConditionExpression": "#work = :queued AND handshake = :offered AND ("
                               "attribute_not_exists(lease_expires_at) OR lease_expires_at < :now)",
        "ExpressionAttributeNames": {"#work": "work"},
        "ExpressionAttributeValues": to_attrs({
            ":cancelled": Work.CANCELLED, ":queued": Work.QUEUED,
            ":offered": Handshake.OFFERED, ":now": iso(now),
        }),
    }})


def request_cancellation(partner_id: str, job_id: str, now: datetime) -> Action:
    """The warehouse holds the job: flag it, the partner sees the flag on the job."""
    return Action("job_request", {"Update": {
        "TableName": settings().jobs_table, "Key": _key(partner_id, job_id),
        "UpdateExpression": "SET cancellation_requested = :yes, updated_at = :now",
        "ConditionExpression": "#work = :queued",
        "ExpressionAttributeNames": {"#work": "work"},
        "ExpressionAttributeValues": to_attrs({
            ":yes": True, ":now": iso(now), ":queued": Work.QUEUED,
        }),
    }})


def claimable(partner_id: str, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Offered jobs whose offer is free at `now`, oldest first (the index is eventually
    consistent: the claim's condition re-checks each one)."""
    answer = aws.client("dynamodb").query(
        TableName=settings().jobs_table,
        IndexName=OFFERS_INDEX,
        KeyConditionExpression="offer_partner = :p AND offer_at <= :now",
        ExpressionAttributeValues=to_attrs({":p": partner_id, ":now": iso(now)}),
        Limit=limit,
    )
    return [from_attrs(item) for item in answer.get("Items", [])]


def claim(partner_id: str, seen: Sequence[dict[str, Any]], lease_id: str,
          expires: datetime, now: datetime) -> list[Job]:
    """Lease the seen jobs; a job someone else claimed meanwhile is left out, not an error."""
    remaining = {item["sk"]: item for item in seen}
    for _attempt in range(3):
        if not remaining:
            break
        batch = list(remaining.values())[:_TRANSACTION_LIMIT]
        try:
            transact([_claim_action(partner_id, item, lease_id, expires, now) for item in batch])
        except TransactionConflict as conflict:
            for job_id in conflict.failed:
                remaining.pop(job_id, None)
            continue
        claimed = [
            _job({**item, "lease_id": lease_id, "lease_expires_at": iso(expires),
                  "claim_count": int(item.get("claim_count", 0)) + 1, "updated_at": iso(now)})
            for item in batch
        ]
        rest = list(remaining.values())[_TRANSACTION_LIMIT:]
        return claimed + (claim(partner_id, rest, lease_id, expires, now) if rest else [])
    return []


def _claim_action(partner_id: str, item: dict[str, Any], lease_id: str, expires: datetime,
                  now: datetime) -> Action:
    return Action(item["sk"], {"Update": {
        "TableName": settings().jobs_table, "Key": _key(partner_id, item["sk"]),
        "UpdateExpression": "SET lease_id = :lease, lease_expires_at = :exp, offer_at = :exp, "
                            "updated_at = :now ADD claim_count :one",
        # Unchanged offer_at means nobody claimed or shipped it since we read the index.
        "ConditionExpression": "offer_at = :seen",
        "ExpressionAttributeValues": to_attrs({
            ":lease": lease_id, ":exp": iso(expires), ":now": iso(now), ":one": 1,
            ":seen": item["offer_at"],
        }),
    }})


def ship(job: Job, packages: Sequence[Package], now: datetime) -> Action:
    """Record the shipment; guarded by the state the rules were checked against."""
    guard = "#work = :queued"
    values: dict[str, Any] = {
        ":queued": Work.QUEUED, ":shipped": Work.SHIPPED, ":accepted": Handshake.ACCEPTED,
        ":packages": [p.model_dump() for p in packages], ":now": iso(now),
    }
    if job.handshake is Handshake.OFFERED:
        guard += " AND lease_id = :lease"
        values[":lease"] = job.lease_id
    return Action("job_ship", {"Update": {
        "TableName": settings().jobs_table, "Key": _key(job.partner_id, job.job_id),
        "UpdateExpression": "SET #work = :shipped, handshake = :accepted, packages = :packages, "
                            "shipped_at = :now, updated_at = :now REMOVE offer_partner, offer_at",
        "ConditionExpression": guard,
        "ExpressionAttributeNames": {"#work": "work"},
        "ExpressionAttributeValues": to_attrs(values),
    }})
