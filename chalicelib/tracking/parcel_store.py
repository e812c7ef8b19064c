"""The shipments table: every tracked parcel, and the courier pushes exactly as they came.

  pk = SHIP#<carrier>#<number>   sk = PARCEL              the parcel (versioned, written whole)
  pk = SHIP#<carrier>#<number>   sk = RAW#<digest>        one push as received (TTL: a season)
  pk = SHIP#<carrier>#<number>   sk = CLAIM               a tracking run has its check in hand
                                                          (chalicelib/core/leases.py; TTL)
  pk = LEASE#track_parcels       sk = LEASE               one `track_parcels` run at a time

`due_pk`/`next_check_at` (sparse `due` index) are derived from the parcel's watch on every
write: a parcel whose tracking is over leaves the index. A PARCEL item's `tracking_number`
(the parcel's own field) keys the `by-tracking-number` index, so the console finds a parcel
from its number alone; the other items have no such attribute and stay out of it.
`handover_month`/`handover_at` (Asia/Shanghai month and time the parcel was handed over) key
the `by-handover-month` index the reports read, which projects what they need and no journey:
`delivered_at` and `exception_kinds`, derived here on every write, and the billed fee.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from chalicelib.core import aws, leases
from chalicelib.core.clock import epoch_seconds, iso, months_touched, parse_iso
from chalicelib.core.dynamodb import Action, from_attrs, to_attrs
from chalicelib.core.settings import settings
from chalicelib.tracking.parcels import BilledFee, HandedOver, Parcel

DUE_INDEX = "due"
TRACKING_INDEX = "by-tracking-number"
MONTH_INDEX = "by-carrier-month"
HANDOVER_INDEX = "by-handover-month"
_BILLING_ZONE = ZoneInfo("Asia/Shanghai")  # couriers date bills in China's days
DUE = "DUE"
RAW_RETENTION = timedelta(days=180)
CLAIM_RETENTION = timedelta(days=1)  # a claim left by a stopped run is gone by then (TTL)
_RUN_LEASE = {"pk": "LEASE#track_parcels", "sk": "LEASE"}
_DERIVED = ("pk", "sk", "due_pk", "next_check_at", "version", "bill_pk", "handover_month",
            "handover_at", "delivered_at", "exception_kinds")


def _table() -> str:
    return settings().shipments_table


def pk(carrier_code: str, tracking_number: str) -> str:
    return f"SHIP#{carrier_code.upper()}#{tracking_number}"


def bill_pk(carrier_code: str, month: str) -> str:
    return f"{carrier_code.upper()}#{month}"


def _bill_month(parcel: Parcel) -> str:
    return parcel.started_at.astimezone(_BILLING_ZONE).strftime("%Y-%m")


def _parcel(item: Mapping[str, Any]) -> Parcel:
    return Parcel.model_validate({k: v for k, v in item.items() if k not in _DERIVED})


def get(carrier_code: str, tracking_number: str) -> tuple[Parcel, int] | None:
    """The parcel and the version it was read at."""
    answer = aws.client("dynamodb").get_item(
        TableName=_table(), ConsistentRead=True,
        Key=to_attrs({"pk": pk(carrier_code, tracking_number), "sk": "PARCEL"}))
    if "Item" not in answer:
        return None
    item = from_attrs(answer["Item"])
    return _parcel(item), int(item["version"])


def get_many(keys: Sequence[tuple[str, str]]) -> list[Parcel]:
    """Parcels by (carrier, number), in no particular order; unknown ones are left out."""
    wanted = [to_attrs({"pk": pk(c, n), "sk": "PARCEL"}) for c, n in dict.fromkeys(keys)]
    found: list[Parcel] = []
    for start in range(0, len(wanted), 100):
        request: dict[str, Any] = {_table(): {"Keys": wanted[start:start + 100]}}
        while request:
            answer = aws.client("dynamodb").batch_get_item(RequestItems=request)
            found += [_parcel(from_attrs(i)) for i in answer["Responses"].get(_table(), [])]
            request = answer.get("UnprocessedKeys") or {}
    return found


def by_tracking_number(tracking_number: str, limit: int) -> list[tuple[str, str]]:
    """(carrier, order id) of the parcels numbered `tracking_number`, whatever their carrier
    (two couriers may use one number): one Query on the index."""
    answer = aws.client("dynamodb").query(
        TableName=_table(), IndexName=TRACKING_INDEX,
        KeyConditionExpression="tracking_number = :n",
        ExpressionAttributeValues=to_attrs({":n": tracking_number}), Limit=limit)
    return [(str(item["carrier_code"]), str(item["order_id"]))
            for item in map(from_attrs, answer.get("Items", []))]


class MonthParcel(BaseModel):
    """A parcel as the by-carrier-month index holds it: what a bill is checked with."""

    model_config = ConfigDict(frozen=True)

    carrier_code: str
    tracking_number: str
    order_id: str = ""
    region: str = ""
    billed: BilledFee | None = None


def in_month(carrier_code: str, month: str) -> Iterator[MonthParcel]:
    """Our parcels of a courier handed over in a month (YYYY-MM, Asia/Shanghai): one paged
    Query of the index (eventually consistent: a parcel written a moment ago may be absent)."""
    paginator = aws.client("dynamodb").get_paginator("query")
    pages = paginator.paginate(
        TableName=_table(), IndexName=MONTH_INDEX,
        KeyConditionExpression="bill_pk = :m",
        ExpressionAttributeValues=to_attrs({":m": bill_pk(carrier_code, month)}))
    for page in pages:
        for item in map(from_attrs, page.get("Items", [])):
            yield MonthParcel(carrier_code=carrier_code.upper(),
                              tracking_number=str(item["tracking_number"]),
                              order_id=str(item.get("order_id", "")),
                              region=str(item.get("region", "")), billed=item.get("billed"))


def _report_keys(parcel: Parcel) -> dict[str, Any]:
    """The `by-handover-month` index's keys and the facts it projects for the reports."""
    keys: dict[str, Any] = {"handover_month": _bill_month(parcel),
                            "handover_at": iso(parcel.started_at)}
    if parcel.shipment.delivered_at is not None:
        keys["delivered_at"] = iso(parcel.shipment.delivered_at)
    kinds = sorted(kind.value for kind in parcel.shipment.kinds_seen)
    if kinds:
        keys["exception_kinds"] = kinds
    return keys


def handed_over(start: datetime, end: datetime) -> tuple[list[HandedOver], int]:
    """Our parcels handed over in [start, end), whatever their courier, and the pages read: one
    paged Query of the index per Asia/Shanghai month the window touches."""
    found: list[HandedOver] = []
    pages_read = 0
    paginator = aws.client("dynamodb").get_paginator("query")
    for month in months_touched(start, end, _BILLING_ZONE):
        pages = paginator.paginate(
            TableName=_table(), IndexName=HANDOVER_INDEX,
            KeyConditionExpression="handover_month = :m AND handover_at BETWEEN :lo AND :hi",
            ExpressionAttributeValues=to_attrs({
                ":m": month, ":lo": iso(start),
                ":hi": iso(end - timedelta(microseconds=1))}))
        for page in pages:
            pages_read += 1
            found += [_handed_over(item) for item in map(from_attrs, page.get("Items", []))]
    return found, pages_read


def _handed_over(item: Mapping[str, Any]) -> HandedOver:
    delivered = item.get("delivered_at")
    _, carrier, number = str(item["pk"]).split("#", 2)  # the table's key: always projected
    return HandedOver(
        carrier_code=carrier, tracking_number=number,
        region=str(item.get("region", "")), destination=str(item.get("destination", "")),
        handed_over_at=parse_iso(str(item["handover_at"])),
        delivered_at=None if delivered is None else parse_iso(str(delivered)),
        exception_kinds=tuple(item.get("exception_kinds", ())), billed=item.get("billed"))


def billed_action(carrier_code: str, tracking_number: str, billed: BilledFee) -> Action:
    """Keep the courier's actual fee on the parcel (for a transaction: the parcel must exist).
    The version moves on, so a tracker write prepared from an older read retries instead of
    dropping it."""
    return Action(f"billed {pk(carrier_code, tracking_number)}", {"Update": {
        "TableName": _table(),
        "Key": to_attrs({"pk": pk(carrier_code, tracking_number), "sk": "PARCEL"}),
        "UpdateExpression": "SET billed = :b, version = version + :one",
        "ConditionExpression": "attribute_exists(pk)",
        "ExpressionAttributeValues": to_attrs({":b": billed.model_dump(mode="json"),
                                               ":one": 1})}})


def put(parcel: Parcel, read_version: int | None) -> Action:
    """Write the parcel whole: new (must not exist) or guarded by the version read."""
    item: dict[str, Any] = {
        **parcel.model_dump(mode="json"), "pk": pk(parcel.carrier_code, parcel.tracking_number),
        "sk": "PARCEL", "version": (read_version or 0) + 1,
        "bill_pk": bill_pk(parcel.carrier_code, _bill_month(parcel)),
        **_report_keys(parcel)}
    if parcel.watch.next_check_at is not None:
        item["due_pk"], item["next_check_at"] = DUE, iso(parcel.watch.next_check_at)
    put: dict[str, Any] = {"TableName": _table(), "Item": to_attrs(item)}
    if read_version is None:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        put["ConditionExpression"] = "version = :v"
        put["ExpressionAttributeValues"] = to_attrs({":v": read_version})
    return Action(f"parcel {item['pk']}", {"Put": put})


def key_of_label(label: str) -> tuple[str, str] | None:
    """(carrier, number) of a parcel write's label, as `put` makes it; None for other labels."""
    if not label.startswith("parcel SHIP#"):
        return None
    _, carrier, number = label.removeprefix("parcel ").split("#", 2)
    return carrier, number


def put_raw(carrier_code: str, tracking_number: str, provider: str, raw: bytes,
            now: datetime) -> Action:
    """A push as received, once: the same bytes delivered again are the same item."""
    digest = hashlib.sha256(raw).hexdigest()[:32]
    item = {"pk": pk(carrier_code, tracking_number), "sk": f"RAW#{digest}",
            "provider": provider, "raw": raw.decode("utf-8", errors="replace"),
            "received_at": iso(now),
            "expires_at": int((now + RAW_RETENTION).timestamp())}
    return Action("raw", {"Put": {"TableName": _table(), "Item": to_attrs(item)}})


def due(now: datetime, limit: int) -> Iterator[tuple[str, str]]:
    """(carrier, number) of parcels whose next check is due, most overdue first."""
    paginator = aws.client("dynamodb").get_paginator("query")
    pages = paginator.paginate(
        TableName=_table(), IndexName=DUE_INDEX,
        KeyConditionExpression="due_pk = :due AND next_check_at <= :now",
        ExpressionAttributeValues=to_attrs({":due": DUE, ":now": iso(now)}),
        PaginationConfig={"MaxItems": limit, "PageSize": min(limit, 500)})
    for page in pages:
        for item in page.get("Items", []):
            _, carrier, number = from_attrs(item)["pk"].split("#", 2)
            yield carrier, number


def claim(carrier_code: str, tracking_number: str, owner: str, now: datetime,
          until: datetime) -> bool:
    """Take the parcel's check in hand until `until` (before its provider call): False while
    another run has it. A separate item, so a push applied meanwhile neither waits for it nor
    ends it."""
    return leases.take(_table(), {"pk": pk(carrier_code, tracking_number), "sk": "CLAIM"},
                       owner, now, until,
                       {"expires_at": epoch_seconds(until + CLAIM_RETENTION)})


def release(carrier_code: str, tracking_number: str, owner: str) -> None:
    leases.release(_table(), {"pk": pk(carrier_code, tracking_number), "sk": "CLAIM"}, owner)


def take_run_lease(owner: str, now: datetime, until: datetime) -> bool:
    """One `track_parcels` run at a time (chalicelib/core/leases.py)."""
    return leases.take(_table(), _RUN_LEASE, owner, now, until)


def release_run_lease(owner: str) -> None:
    leases.release(_table(), _RUN_LEASE, owner)
