"""What lands in a dead-letter place becomes a CS alert: nothing fails silently."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from chalicelib import marketplaces
from chalicelib.core import batches, observability
from chalicelib.core.clock import iso, parse_iso, utcnow
from chalicelib.core.settings import settings
from chalicelib.cs import alert_topic, alerts
from chalicelib.marketplaces.calls import OrderRef
from chalicelib.orders import inbox_store
from chalicelib.orders.deliveries import REF_HEADER
from chalicelib.orders.order import order_id_for

log = logging.getLogger(__name__)

EXCERPT_CHARACTERS = 1000  # of a dead message's text on its case (the queue keeps it whole)


NAMED = 25  # deliveries named on a case: a failed batch holds at most 25 (app.py)
IN_SUMMARY = 5
PENDING_NAMED = 100  # read when the stream no longer has the batch
PENDING_MARGIN = timedelta(seconds=5)  # our clock (received_at) against the stream's


def worker_gave_up(body: str, now: datetime) -> None:
    """An inbox-stream batch exhausted its retries (Lambda's on-failure record).

    The deliveries in it are still marked pending, so the unprocessed sweep names each one and
    a replay re-applies them; this alert says that the worker itself is failing, and names the
    batch's deliveries and their orders: read back from the stream while it keeps the records
    (24 h), else every delivery still pending that arrived by the batch's last record (as the
    admin's `redrive inbox` finds them; `named_by` says which). Naming is best effort: the
    alert goes out whatever it finds.
    """
    record: dict[str, Any] = json.loads(body)
    batch = record.get("DDBStreamBatchInfo", {})
    facts: dict[str, Any] = {"batch": batch,
                             "condition": record.get("requestContext", {}).get("condition")}
    named = ""
    try:
        keys, facts["named_by"] = _batch_deliveries(batch)
    except Exception as exc:  # the alert matters more than its details
        log.warning("dead-lettered batch: its deliveries could not be named: %s",
                    observability.describe(exc))
        facts["named_by"] = f"could not be named ({type(exc).__name__})"
    else:
        orders = {key: _orders_of(key) for key in keys[:NAMED]}
        facts["deliveries"] = list(orders)
        facts["orders"] = list(dict.fromkeys(o for found in orders.values() for o in found))
        if len(keys) > NAMED:
            facts["deliveries_not_named"] = len(keys) - NAMED
        if len(facts["orders"]) == 1:
            facts["order_id"] = facts["orders"][0]  # the case is then one of that order's
        shown = [f"{key} ({', '.join(found) or 'order unknown'})"
                 for key, found in list(orders.items())[:IN_SUMMARY]]
        more = len(keys) - len(shown)
        named = (": " + ", ".join(shown) + (f" and {more} more" if more else "")) if shown \
            else ": none of its deliveries is still known"
    alert_topic.publish(alerts.Alert(
        kind="worker.dead_letter", severity=alerts.Severity.CRITICAL,
        subject=f"{batch.get('shardId', '?')}:{batch.get('startSequenceNumber', '?')}",
        at=now,
        summary=f"The order worker gave up on {batch.get('batchSize', '?')} order notification(s) "
                f"after {record.get('requestContext', {}).get('approximateInvokeCount', '?')} "
                f"attempts{named}",
        facts=facts,
    ))


def _batch_deliveries(info: dict[str, Any]) -> tuple[list[str], str]:
    """The inbox keys a stream batch names, and how they were found: read back from the inbox
    stream (sequence numbers first..last of the shard) while it keeps them; else every delivery
    still pending received by the batch's last record, a superset (as the admin's `redrive
    inbox` does). Only the inbox's own stream is read, whatever the record names."""
    first, last = str(info["startSequenceNumber"]), str(info["endSequenceNumber"])
    stream = settings().inbox_stream_arn
    if info.get("streamArn") != stream:
        reason = "not the inbox stream"
    else:
        try:
            return (inbox_store.batch_keys(stream, str(info["shardId"]), first, last),
                    f"stream records {first}..{last}")
        except ClientError as exc:
            reason = str(exc.response.get("Error", {}).get("Code", "?"))
        except ParamValidationError:
            reason = "not a shard or sequence number of a stream"
    cutoff = parse_iso(str(info["approximateArrivalOfLastRecord"])) + PENDING_MARGIN
    items = inbox_store.pending_before(cutoff, limit=PENDING_NAMED)
    return ([item["pk"] for item in items],
            f"the stream no longer has records {first}..{last} ({reason}): every delivery "
            f"still pending received before {iso(cutoff)}"
            + (f" (the first {PENDING_NAMED})" if len(items) == PENDING_NAMED else ""))


def _orders_of(key: str) -> list[str]:
    """The orders a stored delivery names, read from its body alone (no platform is asked: a
    thin notification names its order too); none when it cannot be read."""
    try:
        item = inbox_store.get(key)
        if item is None:
            return []
        raw, headers = str(item["body"]).encode(), item.get("headers", {})
        scheme = str(item["scheme"])  # a reference's platform (the order's marketplace)
        if headers.get(REF_HEADER):
            refs = [OrderRef.model_validate_json(raw)]
        else:
            inbound = marketplaces.inbound_for(scheme)
            if inbound.normalise is not None:
                return [inbound.normalise(raw, headers, str(item["source"])).order_id]
            assert inbound.ref is not None  # the contract: whole or a reference
            refs = inbound.refs(raw, headers) if inbound.refs else [inbound.ref(raw, headers)]
        return [order_id_for(scheme, ref.shop, ref.external_id) for ref in refs]
    except Exception as exc:  # unreadable (the worker's own reason to fail, maybe)
        log.warning("delivery %s: its orders could not be read: %s", key,
                    observability.describe(exc))
        return []


def on_dead_letters(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The inbox dead-letter queue (app.py `inbox_dead_letters`): each record one alert."""
    return batches.partial_response(event, context,
                                    lambda record: worker_gave_up(record.body, utcnow()), "sqs")


def notification_gave_up(queue: str, message_id: str, body: str, receive_count: str,
                         now: datetime) -> None:
    """A marketplace notification its queue gave up on (Amazon's: five failed attempts to
    store it, our storage down for longer than the retries): a case with its text, so CS can
    have reconciliation fetch the order or redrive the message. One case per message."""
    alert_topic.raise_case(
        "marketplace.notification_dead_letter", f"{queue}:{message_id}", alerts.Severity.HIGH,
        f"A notification on {queue} could not be stored after {receive_count} attempts: an "
        "order change may be missing until reconciliation or a redrive brings it in", now,
        {"queue": queue, "message_id": message_id, "receive_count": receive_count,
         "excerpt": body[:EXCERPT_CHARACTERS]})


def on_amazon_dead_letters(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Amazon notifications dead-letter queue (app.py `amazon_dead_letters`): each message
    one case, never dropped (a record whose case cannot be raised stays on the queue)."""
    return batches.partial_response(
        event, context,
        lambda record: notification_gave_up(
            "amazon-notifications", record.message_id, record.body,
            str(record.attributes.get("ApproximateReceiveCount", "several")), utcnow()),
        "sqs")
