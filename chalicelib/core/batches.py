"""Partial batch responses for queue and stream handlers (Powertools' batch utility).

A record that fails is reported back alone; the event source retries it (and, for a stream,
what follows it) and dead-letters it after its last attempt. `ReportBatchItemFailures` is
switched on for each mapping in infra/resources.yaml.

Each record is one unit of work for the logs (chalicelib.core.observability): what a record
handler tags (a delivery id, an order id, a case id) is on that record's lines only, and a
record that fails is logged, by its ids, before it is reported back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from chalicelib.core import observability

log = logging.getLogger(__name__)


def partial_response(event: dict[str, Any], context: Any, record_handler: Callable[[Any], Any],
                     source: Literal["sqs", "dynamodb"]) -> dict[str, Any]:
    # Imported here: only event handlers pay for it, never a webhook request.
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    def one_record(record: Any) -> Any:
        record_id = record.message_id if source == "sqs" else record.event_id
        with observability.unit(record_id=record_id):
            try:
                return record_handler(record)
            except Exception:
                log.warning("%s record %s failed: reported back, the event source retries it",
                            source, record_id, exc_info=True)
                raise

    kind = EventType.SQS if source == "sqs" else EventType.DynamoDBStreams
    return dict(process_partial_response(event=event, record_handler=one_record,
                                         processor=BatchProcessor(event_type=kind),
                                         context=context))
