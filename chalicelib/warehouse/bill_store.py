"""The bills table: couriers' monthly bills as imported, with their findings and totals.

  pk = BILL#<bill id>    sk = HEAD                          the bill: file, periods, counts
  pk = BILL#<bill id>    sk = FINDING#<kind>#<carrier>#<waybill>#<line>   one finding
  pk = BILL#<bill id>    sk = TOTAL#<carrier>#<month>#<region>            one total
  pk = BILLS#<carrier>   sk = <month>#<bill id>             the courier's bills, by month

The bill id is a hash of the file, and every other key follows from the bill's content, so an
import that is repeated (or resumed after a crash) writes the same items: the HEAD is written
last, and its presence is what says a bill is imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import from_attrs, to_attrs
from chalicelib.core.settings import settings
from chalicelib.warehouse.settlement import Finding, Key, Total


class BillHead(BaseModel):
    model_config = ConfigDict(frozen=True)

    bill_id: str
    format: str
    filename: str
    imported_at: datetime
    imported_by: str
    lines: int
    periods: tuple[Key, ...]
    counts: dict[str, int]  # findings per kind


class StoredBill(BaseModel):
    model_config = ConfigDict(frozen=True)

    head: BillHead
    findings: tuple[Finding, ...]
    totals: tuple[Total, ...]


class BillListing(BaseModel):
    model_config = ConfigDict(frozen=True)

    bill_id: str
    carrier_code: str
    month: str
    filename: str
    imported_at: datetime


def _table() -> str:
    return settings().bills_table


def _pk(bill_id: str) -> str:
    return f"BILL#{bill_id}"


def _write_all(items: Iterable[Mapping[str, Any]]) -> None:
    """Idempotent puts, 25 a batch, until none is left unprocessed."""
    batch = [{"PutRequest": {"Item": to_attrs(item)}} for item in items]
    for start in range(0, len(batch), 25):
        request: dict[str, Any] = {_table(): batch[start:start + 25]}
        while request:
            answer = aws.client("dynamodb").batch_write_item(RequestItems=request)
            request = answer.get("UnprocessedItems") or {}


def put_details(bill_id: str, findings: Iterable[Finding], totals: Iterable[Total]) -> None:
    """The findings and totals of a bill (before its HEAD)."""
    items: list[dict[str, Any]] = [
        {"pk": _pk(bill_id), "sk": f"FINDING#{f.key}", **f.model_dump(mode="json")}
        for f in findings]
    items += [{"pk": _pk(bill_id), "sk": f"TOTAL#{t.carrier_code}#{t.month}#{t.region.value}",
               **t.model_dump(mode="json")} for t in totals]
    _write_all(items)


def put_head(head: BillHead) -> None:
    """The bill as imported, and its place in each courier's list: written last."""
    listings = [{"pk": f"BILLS#{carrier}", "sk": f"{month}#{head.bill_id}",
                 "bill_id": head.bill_id, "carrier_code": carrier, "month": month,
                 "filename": head.filename, "imported_at": iso(head.imported_at)}
                for carrier, month in head.periods]
    _write_all([*listings, {"pk": _pk(head.bill_id), "sk": "HEAD",
                            **head.model_dump(mode="json")}])


def get_head(bill_id: str) -> BillHead | None:
    answer = aws.client("dynamodb").get_item(
        TableName=_table(), Key=to_attrs({"pk": _pk(bill_id), "sk": "HEAD"}))
    if "Item" not in answer:
        return None
    return BillHead.model_validate(_fields(from_attrs(answer["Item"])))


def _fields(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("pk", "sk")}


def get(bill_id: str) -> StoredBill | None:
    """The bill with every finding and total: one paged Query on its key."""
    paginator = aws.client("dynamodb").get_paginator("query")
    pages = paginator.paginate(
        TableName=_table(), KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues=to_attrs({":pk": _pk(bill_id)}))
    head: BillHead | None = None
    findings: list[Finding] = []
    totals: list[Total] = []
    for page in pages:
        for item in map(from_attrs, page.get("Items", [])):
            sk = str(item["sk"])
            if sk == "HEAD":
                head = BillHead.model_validate(_fields(item))
            elif sk.startswith("FINDING#"):
                findings.append(Finding.model_validate(_fields(item)))
            elif sk.startswith("TOTAL#"):
                totals.append(Total.model_validate(_fields(item)))
    if head is None:
        return None  # never imported, or an import that did not finish
    return StoredBill(head=head, findings=tuple(sorted(findings, key=finding_order)),
                      totals=tuple(totals))


_KIND_ORDER = {"overcharge": 0, "not_ours": 1, "duplicate": 2, "missing": 3}


def finding_order(finding: Finding) -> tuple[int, int, str]:
    return (_KIND_ORDER[finding.kind], finding.line, finding.waybill)


def bills_of(carrier_code: str, limit: int = 24) -> list[BillListing]:
    """A courier's bills, newest month first."""
    answer = aws.client("dynamodb").query(
        TableName=_table(), KeyConditionExpression="pk = :pk", ScanIndexForward=False,
        ExpressionAttributeValues=to_attrs({":pk": f"BILLS#{carrier_code.upper()}"}),
        Limit=limit)
    return [BillListing.model_validate(_fields(from_attrs(item)))
            for item in answer.get("Items", [])]


def bills_for_month(carrier_code: str, month: str) -> list[BillListing]:
    """A courier's bills that cover a month (YYYY-MM): one Query on the key's prefix."""
    answer = aws.client("dynamodb").query(
        TableName=_table(), KeyConditionExpression="pk = :pk AND begins_with(sk, :month)",
        ExpressionAttributeValues=to_attrs({":pk": f"BILLS#{carrier_code.upper()}",
                                            ":month": f"{month}#"}))
    return [BillListing.model_validate(_fields(from_attrs(item)))
            for item in answer.get("Items", [])]
