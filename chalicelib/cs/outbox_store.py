"""The outbox of notes (chalicelib/cs/notes.py), in the cases table beside the cases they speak of.

  pk = NOTE#<note id>        one message on its way to one channel (versioned)
  pk = CHANNEL#<channel id>  the channel's noise state: rate-limit slots and the open digest
  pk = LEASE#notifier        one notifier run at a time (a lease that expires)

`due_pk`/`due_at` (sparse `notes-due` index) are derived: only pending notes carry them; so is
`undelivered_pk` (sparse `notes-undelivered`, by `created_at`): notes that failed or died. An open
digest is a pending note of its own, so everything the notifier must do is on the one index.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from chalicelib.core import aws, leases, listing
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import Action, Item, from_attrs, to_attrs
from chalicelib.core.settings import settings
from chalicelib.cs.alerts import Severity
from chalicelib.cs.noise import ChannelState
from chalicelib.cs.notes import Note

NOTES_DUE = "notes-due"
NOTES_UNDELIVERED = "notes-undelivered"
DUE = "NOTE"
URGENT = "NOTE!"  # the due index's partition taken first
_DERIVED = ("pk", "version", "due_pk", "undelivered_pk", "expires_at")
# How long a done note stays (TTL, `expires_at`, from when it was created): one that reached
# its channel, was folded into a digest or skipped is history the case already tells ...
DONE_NOTE_RETENTION = timedelta(days=30)
# ... one no channel took (or that fell back) and an alert that never became a case are listed
# for CS (GET /cs/v1/notifications) for a year. A pending note never expires.
UNDELIVERED_RETENTION = timedelta(days=365)
# A lease a crashed run left behind goes a day after it lapsed (it is taken over at once anyway).
LEASE_LINGER = timedelta(days=1)


def _table() -> str:
    return settings().cases_table


def _get(pk: str) -> dict[str, Any] | None:
    answer = aws.client("dynamodb").get_item(TableName=_table(), Key=to_attrs({"pk": pk}),
                                             ConsistentRead=True)
    return from_attrs(answer["Item"]) if "Item" in answer else None


def _guarded_put(item: dict[str, Any], version: int | None) -> dict[str, Any]:
    put: dict[str, Any] = {"TableName": _table(), "Item": to_attrs(
        {**item, "version": (version or 0) + 1})}
    if version is None:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        put["ConditionExpression"] = "version = :v"
        put["ExpressionAttributeValues"] = to_attrs({":v": version})
    return put


# Notes --------------------------------------

def _note_item(note: Note) -> dict[str, Any]:
    # The index's sort key in the one text form the due query compares against (iso()).
    item = {**note.model_dump(mode="json"), "pk": f"NOTE#{note.note_id}",
            "due_at": iso(note.due_at)}
    if note.status == "pending":
        urgent = note.kind == "digest" or note.severity is Severity.CRITICAL
        item["due_pk"] = URGENT if urgent else DUE
    elif note.status in ("failed", "dead"):
        item["undelivered_pk"] = note.status
    if note.status != "pending":
        retention = UNDELIVERED_RETENTION if "undelivered_pk" in item else DONE_NOTE_RETENTION
        item["expires_at"] = expiry(note.created_at + retention)
    return item


def expiry(at: datetime) -> int:
    """The TTL attribute's value: epoch seconds."""
    return int(at.timestamp())


def get_note(note_id: str) -> tuple[Note, int] | None:
    item = _get(f"NOTE#{note_id}")
    if item is None:
        return None
    return Note.model_validate({k: v for k, v in item.items() if k not in _DERIVED}), int(
        item["version"])


def put_note(note: Note, version: int | None) -> Action:
    """A new note (if absent: the same note planned twice is one note) or its next state."""
    return Action("note", {"Put": _guarded_put(_note_item(note), version)})


def due_notes(now: datetime, limit: int) -> Iterator[str]:
    """Due note ids, urgent ones first (digests and critical cases: behind a storm's backlog
    they must not wait, and a digest left waiting keeps growing), then the rest, oldest first."""
    left = limit
    for partition in (URGENT, DUE):
        pages = aws.client("dynamodb").get_paginator("query").paginate(
            TableName=_table(), IndexName=NOTES_DUE,
            KeyConditionExpression="due_pk = :due AND due_at <= :now",
            ExpressionAttributeValues=to_attrs({":due": partition, ":now": iso(now)}),
            PaginationConfig={"MaxItems": left, "PageSize": min(left, 500)})
        for page in pages:
            for item in page.get("Items", []):
                left -= 1
                yield str(from_attrs(item)["pk"]).removeprefix("NOTE#")
        if left <= 0:
            return


def undelivered(status: str, limit: int = 500) -> list[Note]:
    """Notes that gave up on their channel ("failed": fell back to email) or on every channel
    ("dead"), oldest first: for the CS API."""
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=_table(), IndexName=NOTES_UNDELIVERED,
        KeyConditionExpression="undelivered_pk = :s",
        ExpressionAttributeValues=to_attrs({":s": status}),
        PaginationConfig={"MaxItems": limit})
    return [Note.model_validate({k: v for k, v in from_attrs(i).items() if k not in _DERIVED})
            for page in pages for i in page.get("Items", [])]


# Channel noise state --------------------------------------

def channel_state(channel: str) -> tuple[ChannelState, int | None]:
    item = _get(f"CHANNEL#{channel}")
    if item is None:
        return ChannelState(), None
    return ChannelState.model_validate(item["state"]), int(item["version"])


def put_channel_state(channel: str, state: ChannelState, version: int | None) -> Action:
    item: dict[str, Any] = {"pk": f"CHANNEL#{channel}", "state": state.model_dump(mode="json")}
    return Action("channel", {"Put": _guarded_put(item, version)})


# The run lease --------------------------------------

_LEASE = {"pk": "LEASE#notifier"}


def take_lease(owner: str, now: datetime, hold: timedelta) -> bool:
    """One notifier at a time: a schedule may fire while the last run is still sending (the
    shared helper, chalicelib/core/leases.py). A lease left behind expires a day after it
    lapsed (TTL)."""
    return leases.take(_table(), _LEASE, owner, now, now + hold,
                       extra={"expires_at": expiry(now + hold + LEASE_LINGER)})


def release_lease(owner: str) -> None:
    leases.release(_table(), _LEASE, owner)


def put_dead_alert(message_id: str, body: str, now: datetime) -> None:
    """An alert that could not even become a case: listed with the dead notes."""
    aws.client("dynamodb").put_item(TableName=_table(), Item=to_attrs({
        "pk": f"DEADALERT#{message_id}", "undelivered_pk": "dead_alert",
        "created_at": iso(now), "body": body, "expires_at": expiry(now + UNDELIVERED_RETENTION)}))


UNDELIVERED_KEYS = ("pk", "undelivered_pk", "created_at")  # a cursor's position in the lists


def _undelivered_request(partition: str) -> dict[str, Any]:
    return {"TableName": _table(), "IndexName": NOTES_UNDELIVERED,
            "KeyConditionExpression": "undelivered_pk = :s",
            "ExpressionAttributeValues": to_attrs({":s": partition})}


def undelivered_page(status: str, limit: int, after: Item | None) -> listing.Listing:
    """A page of `undelivered`, oldest first: items for `note_of`."""
    return listing.query(_undelivered_request(status), UNDELIVERED_KEYS, limit, after)


def note_of(item: Item) -> Note:
    return Note.model_validate({k: v for k, v in item.items() if k not in _DERIVED})


def dead_alerts_page(limit: int, after: Item | None) -> listing.Listing:
    """A page of `dead_alerts`, oldest first: items for `dead_alert_of`."""
    return listing.query(_undelivered_request("dead_alert"), UNDELIVERED_KEYS, limit, after)


def dead_alert_of(item: Item) -> dict[str, Any]:
    return {"message_id": str(item["pk"]).removeprefix("DEADALERT#"),
            "received_at": item["created_at"], "body": item["body"]}


def dead_alerts(limit: int = 500) -> list[dict[str, Any]]:
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=_table(), IndexName=NOTES_UNDELIVERED,
        KeyConditionExpression="undelivered_pk = :s",
        ExpressionAttributeValues=to_attrs({":s": "dead_alert"}),
        PaginationConfig={"MaxItems": limit})
    return [{"message_id": str(item["pk"]).removeprefix("DEADALERT#"),
             "received_at": item["created_at"], "body": item["body"]}
            for page in pages for item in map(from_attrs, page.get("Items", []))]


UNDELIVERED_KINDS = ("failed", "dead", "dead_alert")  # the notes-undelivered partitions


def undelivered_since(kind: str, since: datetime) -> int:
    """How many notes failed (`failed`: fell back), died (`dead`) or alerts never became a case
    (`dead_alert`) since `since`: one Query with Select=COUNT (a page more per MB read)."""
    request = {**_undelivered_request(kind),
               "KeyConditionExpression": "undelivered_pk = :s AND created_at >= :since",
               "ExpressionAttributeValues": to_attrs({":s": kind, ":since": iso(since)}),
               "Select": "COUNT"}
    return sum(int(page.get("Count", 0)) for page in
               aws.client("dynamodb").get_paginator("query").paginate(**request))
