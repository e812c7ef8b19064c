"""The inbox table: one item per webhook delivery, keyed (source, delivery id).

The conditional insert is the dedupe and the durable acknowledgement in one call; the table's
stream is the outbox that feeds the order worker. `pending` marks a delivery not yet applied
(a sparse index finds the stuck ones), so a failure anywhere later is visible, never lost.
A stuck delivery the sweep has alerted carries `redrive_pk`/`redrive_at` (sparse `redrive-due`
index) until its last re-drive: the moment it is next sent through the stream again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import (
    MAX_ITEM_BYTES,
    MAX_PARTITION_KEY_BYTES,
    Action,
    from_attrs,
    is_condition_failure,
    plain_size,
    to_attrs,
)
from chalicelib.core.settings import settings
from chalicelib.orders.deliveries import Accepted

PENDING = "pending"
PENDING_INDEX = "pending-by-received"
REDRIVE_INDEX = "redrive-due"
REDRIVE = "REDRIVE"


def key(source: str, delivery_id: str) -> str:
    return f"{source}#{delivery_id}"


class Unstorable(ValueError):
    """A delivery DynamoDB would refuse as it is: `reason` "key_too_long" or "too_large"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_storable(source: str, scheme: str, accepted: Accepted, raw: bytes,
                   received_at: datetime) -> None:
    """Refuse (Unstorable) a delivery whose key or item DynamoDB would refuse: decided before
    writing, so the caller hears its own mistake (a 4xx) instead of our 503."""
    size = len(key(source, accepted.delivery_id).encode("utf-8", "surrogatepass"))
    if size > MAX_PARTITION_KEY_BYTES:
        raise Unstorable("key_too_long", f"the inbox key would be {size} bytes; at most "
                         f"{MAX_PARTITION_KEY_BYTES}")
    size = plain_size(_delivery_item(source, scheme, accepted, raw, received_at))
    if size > MAX_ITEM_BYTES:
        raise Unstorable("too_large", f"the delivery would be {size} bytes stored; at most "
                         f"{MAX_ITEM_BYTES}")


def _delivery_item(source: str, scheme: str, accepted: Accepted, raw: bytes,
                   received_at: datetime) -> dict[str, Any]:
    retention = timedelta(days=settings().delivery_retention_days)
    item: dict[str, Any] = {
        "pk": key(source, accepted.delivery_id),
        "source": source,
        "scheme": scheme,
        "delivery_id": accepted.delivery_id,
        "topic": accepted.topic,
        "shop": accepted.shop,
        "headers": accepted.headers,
        "body": raw.decode("utf-8", errors="replace"),
        "received_at": iso(received_at),
        "expires_at": int((received_at + retention).timestamp()),
    }
    if accepted.actionable:
        item[PENDING] = PENDING
    else:
        item["outcome"] = "ignored"
    return item


def put_delivery(source: str, scheme: str, accepted: Accepted, raw: bytes,
                 received_at: datetime) -> bool:
    """Store a delivery once. False when it was stored before (a duplicate delivery).

    Inside a request deadline (core.aws.deadline), retried only while it can still answer."""
    item = to_attrs(_delivery_item(source, scheme, accepted, raw, received_at))
    try:
        aws.within_deadline(lambda: aws.client("dynamodb").put_item(
            TableName=settings().inbox_table, Item=item,
            ConditionExpression="attribute_not_exists(pk)",
        ))
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def delivery_action(source: str, scheme: str, accepted: Accepted, raw: bytes,
                    received_at: datetime) -> Action:
    """The same delivery as a transaction item (a push naming several orders, split)."""
    return Action(f"delivery {accepted.delivery_id}", {"Put": {
        "TableName": settings().inbox_table,
        "Item": to_attrs(_delivery_item(source, scheme, accepted, raw, received_at)),
        "ConditionExpression": "attribute_not_exists(pk)"}})


def finish(pk: str, outcome: str, now: datetime, detail: str = "") -> Action:
    """Mark a delivery applied; fails (label "inbox") if it was already applied."""
    return Action("inbox", {"Update": {
        "TableName": settings().inbox_table,
        "Key": to_attrs({"pk": pk}),
        "UpdateExpression": "SET outcome = :o, processed_at = :t, outcome_detail = :d "
                            "REMOVE #pending",
        "ConditionExpression": "attribute_exists(#pending)",
        "ExpressionAttributeNames": {"#pending": PENDING},
        "ExpressionAttributeValues": to_attrs({":o": outcome, ":t": iso(now), ":d": detail}),
    }})


def pending_before(cutoff: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Deliveries received before `cutoff` and still not applied, oldest first."""
    answer = aws.client("dynamodb").query(
        TableName=settings().inbox_table,
        IndexName=PENDING_INDEX,
        KeyConditionExpression="#pending = :p AND received_at < :c",
        ExpressionAttributeNames={"#pending": PENDING},
        ExpressionAttributeValues=to_attrs({":p": PENDING, ":c": iso(cutoff)}),
        Limit=limit,
    )
    return [from_attrs(item) for item in answer.get("Items", [])]


def get(pk: str) -> dict[str, Any] | None:
    answer = aws.client("dynamodb").get_item(
        TableName=settings().inbox_table, Key=to_attrs({"pk": pk}), ConsistentRead=True
    )
    return from_attrs(answer["Item"]) if "Item" in answer else None


def unalerted_before(cutoff: datetime, after: dict[str, Any] | None = None
                     ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of the deliveries received before `cutoff`, still pending and not yet alerted,
    oldest first (keys and received_at: the index holds no bodies), and where the next page
    starts (None: the last). A page reads up to 1 MB of the index, about 7,000 deliveries, the
    alerted ones left out by the filter."""
    request: dict[str, Any] = {
        "TableName": settings().inbox_table, "IndexName": PENDING_INDEX,
        "KeyConditionExpression": "#pending = :p AND received_at < :c",
        "FilterExpression": "attribute_not_exists(alerted_at)",
        "ExpressionAttributeNames": {"#pending": PENDING},
        "ExpressionAttributeValues": to_attrs({":p": PENDING, ":c": iso(cutoff)}),
    }
    return _page(request, after)


def _page(request: dict[str, Any], after: dict[str, Any] | None
          ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of an index query from `after`, and where the next starts (None: the last)."""
    if after:
        request = {**request, "ExclusiveStartKey": to_attrs(after)}
    answer = aws.client("dynamodb").query(**request)
    last = answer.get("LastEvaluatedKey")
    return ([from_attrs(item) for item in answer.get("Items", [])],
            from_attrs(last) if last else None)


def mark_alerted(pk: str, now: datetime, redrive_at: datetime | None = None) -> bool:
    """Record that CS was told about a stuck delivery, and when it is next re-driven (None:
    never); False if someone already did. The update itself is the first re-drive: a new image
    on the stream, which the worker applies."""
    values: dict[str, Any] = {":t": iso(now), ":one": 1}
    update = "SET alerted_at = :t, redriven_at = :t, redrives = :one"
    if redrive_at is not None:
        update += ", redrive_pk = :r, redrive_at = :next"
        values.update({":r": REDRIVE, ":next": iso(redrive_at)})
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().inbox_table,
            Key=to_attrs({"pk": pk}),
            UpdateExpression=update,
            ConditionExpression="attribute_exists(#pending) AND attribute_not_exists(alerted_at)",
            ExpressionAttributeNames={"#pending": PENDING},
            ExpressionAttributeValues=to_attrs(values),
        )
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def redrives_due(now: datetime, after: dict[str, Any] | None = None
                 ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of the alerted deliveries due to be re-driven at `now` (pk, redrive_at,
    received_at), earliest first, and where the next page starts (None: the last)."""
    request: dict[str, Any] = {
        "TableName": settings().inbox_table, "IndexName": REDRIVE_INDEX,
        "KeyConditionExpression": "redrive_pk = :r AND redrive_at <= :now",
        "ExpressionAttributeValues": to_attrs({":r": REDRIVE, ":now": iso(now)}),
    }
    return _page(request, after)


def redrive(pk: str, due: str, now: datetime, following: datetime | None) -> str:
    """Send a stuck delivery through the stream again (its item touched: a new image), due next
    at `following` (None: this was the last). "redriven"; "applied" if the worker applied it
    meanwhile (it leaves the index); "moved" if another sweep re-drove it first."""
    values: dict[str, Any] = {":t": iso(now), ":one": 1, ":zero": 0, ":due": due}
    update = "SET redriven_at = :t, redrives = if_not_exists(redrives, :zero) + :one"
    if following is None:
        update += " REMOVE redrive_pk, redrive_at"
    else:
        update += ", redrive_at = :next"
        values[":next"] = iso(following)
    dynamodb = aws.client("dynamodb")
    try:
        dynamodb.update_item(
            TableName=settings().inbox_table, Key=to_attrs({"pk": pk}),
            UpdateExpression=update,
            ConditionExpression="attribute_exists(#pending) AND redrive_at = :due",
            ExpressionAttributeNames={"#pending": PENDING},
            ExpressionAttributeValues=to_attrs(values))
        return "redriven"
    except ClientError as exc:
        if not is_condition_failure(exc):
            raise
    try:
        dynamodb.update_item(
            TableName=settings().inbox_table, Key=to_attrs({"pk": pk}),
            UpdateExpression="REMOVE redrive_pk, redrive_at",
            ConditionExpression="attribute_not_exists(#pending) AND redrive_at = :due",
            ExpressionAttributeNames={"#pending": PENDING},
            ExpressionAttributeValues=to_attrs({":due": due}))
        return "applied"
    except ClientError as exc:
        if not is_condition_failure(exc):
            raise
    return "moved"


def pending_page(*, newest_first: bool, limit: int, after: dict[str, Any] | None = None
                 ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of the deliveries not yet applied, by received time (keys, received_at and
    alerted_at only: the index holds no bodies), and where the next page starts (None: the
    last)."""
    request: dict[str, Any] = {
        "TableName": settings().inbox_table, "IndexName": PENDING_INDEX,
        "KeyConditionExpression": "#pending = :p",
        "ExpressionAttributeNames": {"#pending": PENDING},
        "ExpressionAttributeValues": to_attrs({":p": PENDING}),
        "ScanIndexForward": not newest_first, "Limit": limit,
    }
    return _page(request, after)


def reopen(pk: str, outcome: str, now: datetime) -> bool:
    """Mark an applied delivery whose outcome was `outcome` pending again, so it is applied
    once more (an operator's replay after a fix); False if it is not in that state. Its stream
    record reaches the worker too: whichever applies it first wins (`finish` is conditional)."""
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().inbox_table,
            Key=to_attrs({"pk": pk}),
            UpdateExpression="SET #pending = :p, replayed_at = :t, previous_outcome = :o",
            ConditionExpression="attribute_not_exists(#pending) AND outcome = :o",
            ExpressionAttributeNames={"#pending": PENDING},
            ExpressionAttributeValues=to_attrs({":p": PENDING, ":t": iso(now), ":o": outcome}),
        )
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


STREAM_PAGES = 20  # a failed batch is at most 25 records (app.py): one page normally holds it


def batch_keys(stream_arn: str, shard_id: str, first: str, last: str) -> list[str]:
    """The inbox keys of a stream batch (sequence numbers `first`..`last` of a shard), in
    stream order, each once; from the table's stream, which keeps records 24 hours. Raises
    ClientError when the stream no longer has them (TrimmedDataAccessException and the like)."""
    streams = aws.client("dynamodbstreams")
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id,
                                          ShardIteratorType="AT_SEQUENCE_NUMBER",
                                          SequenceNumber=first)["ShardIterator"]
    keys: dict[str, None] = {}
    for _page in range(STREAM_PAGES):
        answer = streams.get_records(ShardIterator=iterator, Limit=1000)
        records = answer.get("Records", [])
        for record in records:
            change = record["dynamodb"]
            if int(change["SequenceNumber"]) > int(last):
                return list(keys)
            keys[from_attrs(change["Keys"])["pk"]] = None
        iterator = answer.get("NextShardIterator")
        if not records or not iterator:
            break
    return list(keys)
