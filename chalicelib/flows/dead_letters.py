"""What lands in a dead-letter place becomes a CS alert: nothing fails silently."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chalicelib.core import batches
from chalicelib.core.clock import utcnow
from chalicelib.cs import alert_topic, alerts


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
