"""Where reconciliation stands, in the jobs table (chalicelib/flows/reconciliation.py lists the
shops; see chalicelib/warehouse/job_store.py for the table's other items):

  pk = RECONCILE  sk = ROUND                    the round under way: when it began
  pk = RECONCILE  sk = SHOP#<marketplace>/<shop> one per shop, versioned: how far its listing
                                                 of the round has got (page, the platform's
                                                 page cursor, the window), the end of its last
                                                 complete listing, and the run that has its
                                                 next page in hand (a claim)
  pk = RECONCILE  sk = LEASE                    one `reconcile_shops` run at a time

A round lists every shop once; a run goes on with the round where the last one stopped (the
shops half listed first, at their page, then those not yet begun), and a new round begins when
every shop is done, so the shops listed last are reached however many shops there are. A page is
claimed before its platform call: a conditional update of the shop's item at the version read,
so a run that read the same position (an overlapping run, a retry) cannot list it too. The
page's outcome moves the shop on and ends the claim in one write. One item per shop: nothing
grows with the rounds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.core import aws, leases
from chalicelib.core.clock import iso, parse_iso
from chalicelib.core.dynamodb import from_attrs, is_condition_failure, to_attrs
from chalicelib.core.settings import settings

PK = "RECONCILE"
_ROUND = {"pk": PK, "sk": "ROUND"}
_RUN_LEASE = {"pk": PK, "sk": "LEASE"}


def _table() -> str:
    return settings().jobs_table


def shop_key(marketplace: str, shop: str) -> str:
    return f"{marketplace}/{shop}"


@dataclass(frozen=True)
class ShopState:
    """A shop's place in reconciliation. `version` 0: never listed (no item yet)."""

    marketplace: str
    shop: str
    version: int = 0
    round: str = ""  # the round this listing belongs to (its start and a tag)
    done: bool = False  # this round's listing is over (listed to the end, or given up)
    page: int = 1  # the next page to list, from 1
    cursor: str | None = None  # the platform's cursor of that page (None: the first)
    since: datetime | None = None  # this round's window
    until: datetime | None = None
    listed_until: datetime | None = None  # the window's end of the last complete listing
    claimed_until: datetime | None = None

    @property
    def key(self) -> str:
        return shop_key(self.marketplace, self.shop)

    def in_round(self, round_id: str) -> bool:
        return self.round == round_id

    def started(self, round_id: str) -> bool:
        """Some of this round's pages are listed, not all."""
        return self.in_round(round_id) and not self.done and self.page > 1


def _state(item: dict[str, Any]) -> ShopState:
    def moment(name: str) -> datetime | None:
        return parse_iso(item[name]) if item.get(name) else None

    return ShopState(
        marketplace=item["marketplace"], shop=item["shop"], version=int(item["version"]),
        round=item.get("round", ""), done=bool(item.get("done", False)),
        page=int(item.get("page", 1)), cursor=item.get("cursor"), since=moment("since"),
        until=moment("until"), listed_until=moment("listed_until"),
        claimed_until=moment("claimed_until"))


def shop_states() -> Iterator[ShopState]:
    """Every shop reconciliation has met."""
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=_table(), ConsistentRead=True,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :shop)",
        ExpressionAttributeValues=to_attrs({":pk": PK, ":shop": "SHOP#"}))
    for page in pages:
        for item in page.get("Items", []):
            yield _state(from_attrs(item))


def current_round() -> str | None:
    answer = aws.client("dynamodb").get_item(TableName=_table(), Key=to_attrs(_ROUND),
                                             ConsistentRead=True)
    return str(answer["Item"]["round"]["S"]) if "Item" in answer else None


def start_round(now: datetime, previous: str | None) -> str:
    """Begin a new round (every shop to list again) unless another run just did: the round
    that is under way."""
    round_id = f"{iso(now)}#{secrets.token_hex(4)}"  # two rounds begun at one moment differ
    request: dict[str, Any] = {"TableName": _table(),
                               "Item": to_attrs({**_ROUND, "round": round_id})}
    if previous is None:
        request["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        request.update(ConditionExpression="#r = :previous",
                       ExpressionAttributeNames={"#r": "round"},
                       ExpressionAttributeValues=to_attrs({":previous": previous}))
    try:
        aws.client("dynamodb").put_item(**request)
    except ClientError as exc:
        if not is_condition_failure(exc):
            raise
        return current_round() or round_id
    return round_id


def claim(state: ShopState, owner: str, now: datetime, until: datetime) -> ShopState | None:
    """Take the shop's next page in hand until `until`, if the shop is as read (`state`, with
    the round and position of the page to list) and no other run holds it: the state at its
    new version, or None."""
    key = {"pk": PK, "sk": f"SHOP#{state.key}"}
    values: dict[str, Any] = {
        ":marketplace": state.marketplace, ":shop": state.shop, ":round": state.round,
        ":page": state.page, ":false": False, ":me": owner, ":until": iso(until),
        ":now": iso(now), ":next": state.version + 1,
        ":since": iso(state.since) if state.since else "",
        ":wuntil": iso(state.until) if state.until else ""}
    sets = ["marketplace = :marketplace", "shop = :shop", "#r = :round", "page = :page",
            "done = :false", "claimed_by = :me", "claimed_until = :until", "version = :next",
            "since = :since", "#wu = :wuntil"]
    removes = []
    if state.cursor is None:
        removes.append("#c")
    else:
        sets.append("#c = :cursor")
        values[":cursor"] = state.cursor
    condition = "(attribute_not_exists(claimed_until) OR claimed_until < :now) AND " + (
        "attribute_not_exists(pk)" if state.version == 0 else "version = :v")
    if state.version:
        values[":v"] = state.version
    try:
        aws.client("dynamodb").update_item(
            TableName=_table(), Key=to_attrs(key),
            UpdateExpression="SET " + ", ".join(sets) + (
                " REMOVE " + ", ".join(removes) if removes else ""),
            ConditionExpression=condition,
            ExpressionAttributeNames={"#r": "round", "#c": "cursor", "#wu": "until"},
            ExpressionAttributeValues=to_attrs(values))
    except ClientError as exc:
        if is_condition_failure(exc):
            return None
        raise
    return replace(state, version=state.version + 1, claimed_until=until)


def advance(state: ShopState, owner: str, following: str | None, *, done: bool,
            listed: bool) -> ShopState:
    """The page in hand is over: move the shop on to the `following` page, or end its round
    (`done`; `listed`: to the end, so its window is covered). Ends the claim."""
    new = replace(state, version=state.version + 1, claimed_until=None,
                  done=done, page=state.page if done else state.page + 1,
                  cursor=None if done else following,
                  listed_until=state.until if done and listed else state.listed_until)
    values: dict[str, Any] = {":me": owner, ":v": state.version, ":next": new.version,
                              ":done": new.done, ":page": new.page}
    sets = ["version = :next", "done = :done", "page = :page"]
    removes = ["claimed_by", "claimed_until"]
    if new.cursor is None:
        removes.append("#c")
    else:
        sets.append("#c = :cursor")
        values[":cursor"] = new.cursor
    if new.listed_until is not None:
        sets.append("listed_until = :listed")
        values[":listed"] = iso(new.listed_until)
    aws.client("dynamodb").update_item(
        TableName=_table(), Key=to_attrs({"pk": PK, "sk": f"SHOP#{state.key}"}),
        UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
        ConditionExpression="claimed_by = :me AND version = :v",
        ExpressionAttributeNames={"#c": "cursor"},
        ExpressionAttributeValues=to_attrs(values))
    return new


def take_run_lease(owner: str, now: datetime, until: datetime) -> bool:
    """One `reconcile_shops` run at a time (chalicelib/core/leases.py)."""
    return leases.take(_table(), _RUN_LEASE, owner, now, until)


def release_run_lease(owner: str) -> None:
    leases.release(_table(), _RUN_LEASE, owner)
