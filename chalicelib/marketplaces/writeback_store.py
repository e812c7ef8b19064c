"""Writebacks in the jobs table, beside the job whose shipment they report (one partition per
partner; see chalicelib/warehouse/job_store.py for the table's other items):

  pk = <partner>  sk = WRITEBACK#<job>#<shipment>   versioned; while pending, in the sparse
                                                    `deadlines` index under WRITEBACK at due_at
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import Action, from_attrs, to_attrs
from chalicelib.core.settings import settings
from chalicelib.marketplaces.writeback import Writeback
from chalicelib.warehouse.job_store import DEADLINES_INDEX

WRITEBACKS_DUE = "WRITEBACK"  # their own partition of the sparse deadlines index
_STORED = ("pk", "sk", "deadline_pk", "deadline_at", "version")  # the store's, not the model's


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


def get(partner_id: str, key: str) -> tuple[Writeback, int] | None:
    answer = aws.client("dynamodb").get_item(
        TableName=settings().jobs_table, ConsistentRead=True,
        Key=to_attrs({"pk": partner_id, "sk": f"WRITEBACK#{key}"}))
    if "Item" not in answer:
        return None
    item = from_attrs(answer["Item"])
    fields = {k: v for k, v in item.items() if k not in _STORED}
    return Writeback.model_validate(fields), int(item["version"])


def due(now: datetime, limit: int = 100) -> list[tuple[str, str]]:
    """(partner, writeback key) of writebacks due at or before `now`."""
    answer = aws.client("dynamodb").query(
        TableName=settings().jobs_table, IndexName=DEADLINES_INDEX, Limit=limit,
        KeyConditionExpression="deadline_pk = :due AND deadline_at <= :now",
        ExpressionAttributeValues=to_attrs({":due": WRITEBACKS_DUE, ":now": iso(now)}))
    return [(item["pk"]["S"], item["sk"]["S"].removeprefix("WRITEBACK#"))
            for item in answer.get("Items", [])]
