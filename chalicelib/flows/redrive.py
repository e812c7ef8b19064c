"""The operator's repairs (the admin's `pending`, `replay` and `redrive`): what is stuck, and
putting it through again. Each is safe to repeat:

- a delivery is applied by the order worker's own `apply_delivery`, whose transaction is
  conditional on the delivery still being pending: one already applied changes nothing;
- a queue message moved back is sent before it is deleted, so a failure in between leaves
  it in both places, and its consumer deduplicates (Amazon on NotificationId, the alert
  dispatcher per case);
- the inbox dead-letter queue holds Lambda's on-failure records, which name a stream batch,
  not a message to send back: the stream cannot be written to, so the deliveries the batch
  names are applied here, one by one, and the record is deleted once none is left pending.

Nothing here prints a delivery's body or a message's: they may carry buyer data. What is shown
is ids, times and counts.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError, ParamValidationError

from chalicelib.core import aws
from chalicelib.core.clock import iso, parse_iso
from chalicelib.orders import inbox_store

# --- Pending deliveries ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A delivery not yet applied, as the pending index holds it (no body)."""

    source: str
    delivery_id: str
    received_at: datetime
    age: timedelta
    alerted_at: datetime | None  # when CS was told it was not applied in time

    @property
    def key(self) -> str:
        return inbox_store.key(self.source, self.delivery_id)


@dataclass(frozen=True)
class PendingPage:
    deliveries: list[Pending]
    cursor: str | None  # where the next page starts; None: this was the last


def split_key(pk: str) -> tuple[str, str]:
    """(source, delivery id) of an inbox key: a source has no '#', a delivery id may (a split
    push's child is <message id>#<order id>)."""
    source, _, delivery_id = pk.partition("#")
    return source, delivery_id


def pending(now: datetime, *, newest_first: bool = False, limit: int = 20,
            cursor: str | None = None) -> PendingPage:
    """One page of the deliveries still pending, oldest (or newest) first. ValueError for a
    cursor this did not hand out."""
    items, last = inbox_store.pending_page(newest_first=newest_first, limit=limit,
                                           after=_decode_cursor(cursor) if cursor else None)
    deliveries = []
    for item in items:
        source, delivery_id = split_key(item["pk"])
        received = parse_iso(item["received_at"])
        alerted = item.get("alerted_at")
        deliveries.append(Pending(source, delivery_id, received, now - received,
                                  parse_iso(alerted) if alerted else None))
    return PendingPage(deliveries, _encode_cursor(last) if last else None)


def _encode_cursor(key: dict[str, Any]) -> str:
    text = json.dumps(key, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if (not isinstance(key, dict) or set(key) != {"pk", "pending", "received_at"}
            or not all(isinstance(value, str) for value in key.values())):
        raise ValueError("not a cursor printed by `pending`")
    return key


# --- Replaying one delivery ------------------------------------------------------------------

ReplayStatus = Literal["applied", "would_apply", "already_applied", "refused", "missing"]
FORCEABLE = frozenset({"invalid"})
"""Outcomes `--force` re-runs: a delivery the worker could not apply (unreadable, unstorable,
its platform refusing the re-fetch), which a fix may cure. An applied one (created, updated,
stale, split, ignored) would only be applied the same way again."""


@dataclass(frozen=True)
class Replay:
    key: str
    status: ReplayStatus
    outcome: str = ""  # the inbox's outcome: what this replay made of it, or what it was
    detail: str = ""
    processed_at: str = ""
    previous: str = ""  # the outcome a forced replay replaced


def replay(pk: str, now: datetime, *, force: bool = False, dry_run: bool = False) -> Replay:
    """Apply one stored delivery through the order worker, if it is still pending; with
    `force`, also one whose outcome was "invalid" (marked pending again first). Raises what
    the worker raises for a temporary fault (the delivery then stays pending)."""
    from chalicelib.flows import order_worker

    item = inbox_store.get(pk)
    if item is None:
        return Replay(pk, "missing")
    previous = ""
    if inbox_store.PENDING not in item:
        if not force or item.get("outcome") not in FORCEABLE:
            return _as_stored(pk, "refused" if force else "already_applied", item)
        if dry_run:
            return Replay(pk, "would_apply", previous=str(item["outcome"]))
        previous = str(item["outcome"])
        if not inbox_store.reopen(pk, previous, now):
            return _as_stored(pk, "already_applied", inbox_store.get(pk))
        item = inbox_store.get(pk)
        if item is None or inbox_store.PENDING not in item:  # the worker applied it meanwhile
            return _as_stored(pk, "already_applied", item)
    elif dry_run:
        return Replay(pk, "would_apply")
    outcome = order_worker.apply_delivery(item, now)
    if outcome == "already_processed":  # the stream's worker applied it first
        return _as_stored(pk, "already_applied", inbox_store.get(pk))
    stored = inbox_store.get(pk) or {}
    return Replay(pk, "applied", outcome, str(stored.get("outcome_detail", "")),
                  str(stored.get("processed_at", "")), previous)


def _as_stored(pk: str, status: ReplayStatus, item: dict[str, Any] | None) -> Replay:
    if item is None:
        return Replay(pk, "missing")
    return Replay(pk, status, str(item.get("outcome", "")), str(item.get("outcome_detail", "")),
                  str(item.get("processed_at", "")))


# --- Dead-letter queues ----------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A dead-lettered message, as it may be shown."""

    message_id: str
    sent_at: datetime | None
    receives: int
    summary: str


@dataclass
class Moved:
    """What a redrive of a queue did (or, dry, would do)."""

    source: str
    target: str
    messages: list[Message] = field(default_factory=list)  # moved, or listed when dry
    failed: list[tuple[Message, str]] = field(default_factory=list)  # left where they were


VISIBILITY = 120  # seconds a message we hold is hidden from the queue's other consumers
Describe = Callable[[str], str]


def source_queue(dlq_url: str) -> str:
    """The queue whose redrive policy names this dead-letter queue: where its messages go."""
    urls = aws.client("sqs").list_dead_letter_source_queues(QueueUrl=dlq_url).get(
        "queueUrls", [])
    if len(urls) != 1:
        raise LookupError(f"{dlq_url} is the dead-letter queue of {len(urls)} queues; "
                          "expected one")
    return str(urls[0])


def move(dlq_url: str, target_url: str, *, dry_run: bool, limit: int,
         describe: Describe) -> Moved:
    """Move up to `limit` messages from a dead-letter queue back to `target_url`, body and
    attributes as they were (SQS's own redrive keeps neither a dry run nor a per-message
    account). Dry: list them and leave them, visible again at once."""
    sqs = aws.client("sqs")
    result = Moved(dlq_url, target_url)
    held: list[dict[str, Any]] = []
    for batch in _receive(dlq_url, limit):
        shown = {m["MessageId"]: _message(m, describe) for m in batch}
        if dry_run:
            held.extend(batch)
            result.messages.extend(shown.values())
            continue
        answer = sqs.send_message_batch(QueueUrl=target_url, Entries=[
            {"Id": str(n), "MessageBody": m["Body"],
             **({"MessageAttributes": _attributes(m)} if m.get("MessageAttributes") else {})}
            for n, m in enumerate(batch)])
        sent = {int(entry["Id"]) for entry in answer.get("Successful", [])}
        for entry in answer.get("Failed", []):
            message = batch[int(entry["Id"])]
            result.failed.append((shown[message["MessageId"]],
                                  f"{entry.get('Code')}: {entry.get('Message', '')}"))
            held.append(message)
        moved = [m for n, m in enumerate(batch) if n in sent]
        if moved:
            _delete(dlq_url, moved)
        result.messages.extend(shown[m["MessageId"]] for m in moved)
    _release(dlq_url, held)
    return result


def _receive(url: str, limit: int) -> Iterator[list[dict[str, Any]]]:
    """Batches of up to 10 messages, hidden while we work, until `limit` or the queue is
    empty (long polls of 1 s: a short poll may miss messages)."""
    sqs = aws.client("sqs")
    seen: set[str] = set()
    while len(seen) < limit:
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)), WaitTimeSeconds=1,
            VisibilityTimeout=VISIBILITY, AttributeNames=["All"],
            MessageAttributeNames=["All"])
        messages = answer.get("Messages", [])
        batch = [m for m in messages if m["MessageId"] not in seen]
        _release(url, [m for m in messages if m["MessageId"] in seen])  # met before: leave it
        if not batch:
            return
        seen.update(m["MessageId"] for m in batch)
        yield batch


def _release(url: str, messages: list[dict[str, Any]]) -> None:
    """Make held messages visible again now."""
    sqs = aws.client("sqs")
    for start in range(0, len(messages), 10):
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for n, m in enumerate(messages[start:start + 10])])


def _delete(url: str, messages: list[dict[str, Any]]) -> None:
    aws.client("sqs").delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])


def _attributes(message: dict[str, Any]) -> dict[str, Any]:
    """Message attributes as SendMessage takes them (ReceiveMessage adds empty list fields)."""
    return {name: {key: value for key, value in attribute.items()
                   if key in ("DataType", "StringValue", "BinaryValue")}
            for name, attribute in message.get("MessageAttributes", {}).items()}


def _message(message: dict[str, Any], describe: Describe) -> Message:
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    try:
        summary = describe(message["Body"])
    except Exception:  # a summary must never stop a redrive
        summary = f"unreadable ({len(message['Body'])} characters)"
    return Message(message["MessageId"],
                   datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
                   int(attributes.get("ApproximateReceiveCount", 0)), summary)


def describe_alert(body: str) -> str:
    """An alert, by kind, severity and subject (its summary and facts may name the buyer)."""
    from chalicelib.cs.alerts import Alert

    alert = Alert.model_validate_json(body)
    return f"alert {alert.kind} {alert.severity} {alert.subject}"


def describe_amazon(body: str) -> str:
    """An SP-API notification, by type and NotificationId."""
    from chalicelib.core.clock import utcnow
    from chalicelib.marketplaces import amazon

    accepted = amazon.accept_message(body.encode(), utcnow())
    return f"amazon {accepted.topic} {accepted.delivery_id}"


# --- The inbox's dead letters: stream batches ------------------------------------------------


@dataclass
class Batch:
    """One on-failure record of the inbox stream and what became of the deliveries it names."""

    message: Message
    named_by: str  # how its deliveries were found: the stream, or the pending index
    replays: list[Replay] = field(default_factory=list)
    error: str = ""  # a delivery failed again (temporary): the record stays in the queue
    deleted: bool = False


PENDING_MARGIN = timedelta(seconds=5)  # our clock (received_at) against the stream's
MAX_FALLBACK = 1000


def redrive_inbox(dlq_url: str, now: datetime, *, dry_run: bool, limit: int) -> list[Batch]:
    """For each on-failure record (up to `limit`): find the deliveries of its batch, apply
    those still pending (dry: say which would be), and delete the record once none is left
    pending. A record whose deliveries fail again stays, for the next redrive."""
    batches: list[Batch] = []
    kept: list[dict[str, Any]] = []
    for received in _receive(dlq_url, limit):
        done: list[dict[str, Any]] = []
        for message in received:
            batch = _redrive_batch(message, now, dry_run)
            batches.append(batch)
            (done if batch.deleted else kept).append(message)
        if done:
            _delete(dlq_url, done)
    _release(dlq_url, kept)  # after the last receive, which would take them again
    return batches


def _redrive_batch(message: dict[str, Any], now: datetime, dry_run: bool) -> Batch:
    shown = _message(message, describe_failure)
    try:
        info = json.loads(message["Body"])["DDBStreamBatchInfo"]
        keys, named_by = _batch_deliveries(info)
    except (ValueError, KeyError, TypeError) as exc:
        return Batch(shown, "", error=f"not an on-failure record of the inbox stream ({exc!r})")
    batch = Batch(shown, named_by)
    for key in keys:
        try:
            batch.replays.append(replay(key, now, dry_run=dry_run))
        except Exception as exc:  # temporary (the worker raises only those): keep the record
            batch.error = f"{key}: {type(exc).__name__}: {exc}"
            return batch
    batch.deleted = not dry_run
    return batch


def _batch_deliveries(info: dict[str, Any]) -> tuple[list[str], str]:
    """The inbox keys a stream batch names: read back from the stream while it keeps them
    (24 h); after that, every delivery still pending that was received by the batch's last
    record, a superset (a record may be an update of an older delivery), which is harmless
    as applying is idempotent."""
    first, last = str(info["startSequenceNumber"]), str(info["endSequenceNumber"])
    try:
        keys = inbox_store.batch_keys(str(info["streamArn"]), str(info["shardId"]), first, last)
        return keys, f"stream records {first}..{last}"
    except ClientError as exc:
        reason = str(exc.response.get("Error", {}).get("Code", "?"))
    except ParamValidationError:
        reason = "not a shard or sequence number of a stream"
    cutoff = parse_iso(str(info["approximateArrivalOfLastRecord"])) + PENDING_MARGIN
    items = inbox_store.pending_before(cutoff, limit=MAX_FALLBACK)
    return ([item["pk"] for item in items],
            f"the stream no longer has records {first}..{last} ({reason}): every delivery "
            f"still pending received before {iso(cutoff)}")


def describe_failure(body: str) -> str:
    record = json.loads(body)
    info = record["DDBStreamBatchInfo"]
    attempts = record.get("requestContext", {}).get("approximateInvokeCount", "?")
    return (f"stream batch of {info.get('batchSize', '?')} record(s), shard "
            f"{info.get('shardId', '?')}, {attempts} attempt(s), first arrived "
            f"{info.get('approximateArrivalOfFirstRecord', '?')}")
