"""Writebacks in the jobs table, beside the job whose shipment they report (one partition per
partner; see chalicelib/warehouse/job_store.py for the table's other items):

  pk = <partner>  sk = WRITEBACK#<job>#<shipment>   versioned; while pending, in the sparse
                                                    `deadlines` index under WRITEBACK at due_at
  pk = LEASE#write_back  sk = LEASE                 one `write_back` run at a time

A run claims a writeback before it calls the platform (`claim`): `claimed_by`/`claimed_until`
on the item, and `deadline_at` moved to `claimed_until`, so no other run lists or takes it while
it is in hand. The outcome's write replaces the item whole, which ends the claim; a claim still
there when it expires belongs to a run that stopped before writing the outcome, and so may have
told the platform (`Stored.interrupted`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.core import aws, leases
from chalicelib.core.clock import iso, parse_iso
from chalicelib.core.dynamodb import Action, from_attrs, is_condition_failure, to_attrs
from chalicelib.core.settings import settings
from chalicelib.marketplaces.writeback import Writeback
from chalicelib.warehouse.job_store import DEADLINES_INDEX

WRITEBACKS_DUE = "WRITEBACK"  # their own partition of the sparse deadlines index
_STORED = ("pk", "sk", "deadline_pk", "deadline_at", "version", "claimed_by",
           "claimed_until")  # the store's, not the model's
_RUN_LEASE = {"pk": "LEASE#write_back", "sk": "LEASE"}


def put(writeback: Writeback, read_version: int | None) -> Action:
    item: dict[str, Any] = {**writeback.model_dump(mode="json"), "pk": writeback.partner_id,
                            "sk": f"WRITEBACK#{writeback.key}",
                            "version": (read_version or 0) + 1}
    if writeback.status == "pending":
        item["deadline_pk"], item["deadline_at"] = WRITEBACKS_DUE, iso(writeback.due_at)
    put: dict[str, Any] = {"TableName": settings().jobs_table, "Item": to_attrs(item)}
    if read_version is None:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        put["ConditionExpression"] = "version = :v"
        put["ExpressionAttributeValues"] = to_attrs({":v": read_version})
    return Action(f"writeback {writeback.key}", {"Put": put})


@dataclass(frozen=True)
class Stored:
    writeback: Writeback
    version: int
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    def in_hand(self, now: datetime) -> bool:
        """Claimed by a run that may still be working on it."""
        return self.claimed_until is not None and self.claimed_until >= now

    @property
    def interrupted(self) -> bool:
        """A claim was left on it: the run that took it stopped before writing the outcome,
        maybe after the platform was told."""
        return self.claimed_by is not None


def read(partner_id: str, key: str) -> Stored | None:
    answer = aws.client("dynamodb").get_item(
        TableName=settings().jobs_table, ConsistentRead=True,
        Key=to_attrs({"pk": partner_id, "sk": f"WRITEBACK#{key}"}))
    if "Item" not in answer:
        return None
    item = from_attrs(answer["Item"])
    fields = {k: v for k, v in item.items() if k not in _STORED}
    until = item.get("claimed_until")
    return Stored(Writeback.model_validate(fields), int(item["version"]),
                  item.get("claimed_by"), parse_iso(until) if until else None)


def get(partner_id: str, key: str) -> tuple[Writeback, int] | None:
    found = read(partner_id, key)
    return None if found is None else (found.writeback, found.version)


def claim(partner_id: str, key: str, read_version: int, owner: str, now: datetime,
          until: datetime) -> bool:
    """Take a due writeback in hand until `until`, if it is as read and no other run holds it;
    the outcome's write is then guarded by `read_version + 1`."""
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().jobs_table,
            Key=to_attrs({"pk": partner_id, "sk": f"WRITEBACK#{key}"}),
            UpdateExpression="SET claimed_by = :me, claimed_until = :until, "
                             "deadline_at = :until, version = :next",
            ConditionExpression="version = :v AND deadline_at <= :now AND "
                                "(attribute_not_exists(claimed_until) OR claimed_until < :now)",
            ExpressionAttributeValues=to_attrs({
                ":me": owner, ":until": iso(until), ":now": iso(now), ":v": read_version,
                ":next": read_version + 1}))
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def due(now: datetime, limit: int = 100) -> Iterator[tuple[str, str]]:
    """(partner, writeback key) of writebacks due at or before `now`, most overdue first, read
    a page at a time as they are taken."""
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=settings().jobs_table, IndexName=DEADLINES_INDEX,
        KeyConditionExpression="deadline_pk = :due AND deadline_at <= :now",
        ExpressionAttributeValues=to_attrs({":due": WRITEBACKS_DUE, ":now": iso(now)}),
        PaginationConfig={"MaxItems": limit, "PageSize": min(limit, 500)})
    for page in pages:
        for item in page.get("Items", []):
            yield item["pk"]["S"], item["sk"]["S"].removeprefix("WRITEBACK#")


def take_run_lease(owner: str, now: datetime, until: datetime) -> bool:
    """One `write_back` run at a time (chalicelib/core/leases.py)."""
    return leases.take(settings().jobs_table, _RUN_LEASE, owner, now, until)


def release_run_lease(owner: str) -> None:
    leases.release(settings().jobs_table, _RUN_LEASE, owner)
