"""Leases: an item in a DynamoDB table saying who holds something and until when, taken with a
conditional write so that two holders never overlap.

The one helper for every "one at a time" in the app:

- a scheduled run's lease (one run of a schedule works at a time: EventBridge may fire the next
  tick while the last is still working, and Lambda may retry an invocation it thinks failed);
  the notifier's (chalicelib/cs/outbox_store.py), the writeback, tracking, reconciliation and
  Taobao runs' (their stores);
- an item's claim (a parcel check in hand: chalicelib/tracking/parcel_store.py), so that an
  overlapping or retried run cannot send the same thing twice.

A lease is taken if there is none, if the one there has expired, or if it is already ours (a
run taking its lease again). It is released by deleting it, only by its holder. `until` must
outlast the holder: for a Lambda function, the moment Lambda stops it plus a grace
(chalicelib/core/runs.py `Budget.hold_until`), so a lease outlives a holder that is still
working and never one that is gone. Times compare as text in the one stored format (`iso`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import is_condition_failure, to_attrs


def take(table: str, key: Mapping[str, str], owner: str, now: datetime, until: datetime,
         extra: Mapping[str, Any] | None = None) -> bool:
    """Hold `key` in `table` for `owner` until `until`: False while someone else holds it.
    `extra` attributes go on the item too (e.g. `expires_at` where the table has a TTL)."""
    try:
        aws.client("dynamodb").put_item(
            TableName=table,
            Item=to_attrs({**(extra or {}), **key, "owner": owner, "until": iso(until)}),
            ConditionExpression="attribute_not_exists(pk) OR #u < :now OR #o = :me",
            ExpressionAttributeNames={"#u": "until", "#o": "owner"},
            ExpressionAttributeValues=to_attrs({":now": iso(now), ":me": owner}))
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def release(table: str, key: Mapping[str, str], owner: str) -> None:
    """Give `key` back, if `owner` still holds it (one taken over after it expired is not ours
    to delete)."""
    try:
        aws.client("dynamodb").delete_item(
            TableName=table, Key=to_attrs(dict(key)), ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues=to_attrs({":me": owner}))
    except ClientError as exc:
        if not is_condition_failure(exc):
            raise
