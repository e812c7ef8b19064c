"""What lands in a dead-letter place becomes a CS alert: nothing fails silently."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chalicelib.core import batches
from chalicelib.core.clock import utcnow
from chalicelib.cs import alert_topic, alerts

EXCERPT_CHARACTERS = 1000  # of a dead message's text on its case (the queue keeps it whole)


def worker_gave_up(body: str, now: datetime) -> None:
    """An inbox-stream batch exhausted its retries (Lambda's on-failure record).

    The deliveries in it are still marked pending, so the unprocessed sweep names each one and
    a replay re-applies them; this alert says that the worker itself is failing.
    """
    record: dict[str, Any] = json.loads(body)
    batch = record.get("DDBStreamBatchInfo", {})
    alert_topic.publish(alerts.Alert(
        kind="worker.dead_letter", severity=alerts.Severity.CRITICAL,
        subject=f"{batch.get('shardId', '?')}:{batch.get('startSequenceNumber', '?')}",
        at=now,
        summary=f"The order worker gave up on {batch.get('batchSize', '?')} order notification(s) "
                f"after {record.get('requestContext', {}).get('approximateInvokeCount', '?')} "
                "attempts",
        facts={"batch": batch, "condition": record.get("requestContext", {}).get("condition")},
    ))


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
