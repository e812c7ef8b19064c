"""One refresher per shop: a lease item per shop in the orders table (which the functions that
refresh already use; see chalicelib/orders/order_store.py for the table's own items):

  pk = SHOPTOKEN#<marketplace>#<shop>  sk = LEASE
      holder, lease_until    the refresher holding the lease, and until when (ISO 8601 UTC)
      problem_refused        fingerprint of a refresh token the platform refused (case raised)
      problem_ending         end of a refresh token CS was warned about (case raised)

A platform's refresh token rotates: the one sent is spent, so two functions refreshing one shop
at once would both send it and one of them, or the platform, would be left with a token no
longer valid (the shop locked out). Taking the lease is one conditional UpdateItem (it creates
the item the first time): it succeeds only when no lease is held or the one held has run out,
so of two refreshers exactly one gets it. The other uses the access token it has while that
still works, or waits for the holder's result. A holder that dies leaves the lease to run out.

The problems remember what CS was told, so a shop raises one case per problem, however many
calls see it: a case is raised only by the call whose conditional write records the problem
first. Nothing here is secret: a refused refresh token is kept as a fingerprint only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import from_attrs, is_condition_failure, to_attrs
from chalicelib.core.settings import settings

Problem = Literal["refused", "ending"]


@dataclass(frozen=True)
class Lease:
    """A lease held: its holder, and what CS was last told about the shop."""

    holder: str
    until: datetime
    refused: str = ""  # fingerprint of the refresh token refused, if one was
    ending: str = ""  # the refresh token end CS was warned about, if any


def _key(marketplace: str, shop: str) -> dict[str, Any]:
    return to_attrs({"pk": f"SHOPTOKEN#{marketplace}#{shop}", "sk": "LEASE"})


def acquire(marketplace: str, shop: str, holder: str, now: datetime,
            seconds: float) -> Lease | None:
    """The shop's lease for `seconds`, or None while another holder's lease runs."""
    until = now + timedelta(seconds=seconds)
    try:
        answer = aws.client("dynamodb").update_item(
            TableName=settings().orders_table, Key=_key(marketplace, shop),
            UpdateExpression="SET holder = :holder, lease_until = :until",
            ConditionExpression="attribute_not_exists(lease_until) OR lease_until <= :now",
            ExpressionAttributeValues=to_attrs({":holder": holder, ":until": iso(until),
                                                ":now": iso(now)}),
            ReturnValues="ALL_NEW")
    except ClientError as exc:
        if is_condition_failure(exc):
            return None
        raise
    item = from_attrs(answer.get("Attributes", {}))
    return Lease(holder=holder, until=until, refused=str(item.get("problem_refused", "")),
                 ending=str(item.get("problem_ending", "")))


def release(marketplace: str, shop: str, holder: str) -> None:
    """Give the lease back (only ours: one that ran out and was taken since is left alone)."""
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().orders_table, Key=_key(marketplace, shop),
            UpdateExpression="REMOVE holder, lease_until",
            ConditionExpression="holder = :holder",
            ExpressionAttributeValues=to_attrs({":holder": holder}))
    except ClientError as exc:
        if not is_condition_failure(exc):
            raise


def note(marketplace: str, shop: str, problem: Problem, value: str) -> bool:
    """Record that CS was told of `problem` (with `value`: the refused token's fingerprint,
    the refresh token's end). True only for the call that records it first: a refusal once per
    refused token, an ending once until it is cleared (the end a platform states may move)."""
    attribute = f"problem_{problem}"
    condition = f"attribute_not_exists({attribute})"
    if problem == "refused":
        condition += f" OR {attribute} <> :value"
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().orders_table, Key=_key(marketplace, shop),
            UpdateExpression=f"SET {attribute} = :value",
            ConditionExpression=condition,
            ExpressionAttributeValues=to_attrs({":value": value}))
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def clear(marketplace: str, shop: str, problem: Problem) -> bool:
    """The problem is over (a refresh worked again): True for the call that clears it."""
    attribute = f"problem_{problem}"
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().orders_table, Key=_key(marketplace, shop),
            UpdateExpression=f"REMOVE {attribute}",
            ConditionExpression=f"attribute_exists({attribute})")
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True
