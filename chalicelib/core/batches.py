"""Partial batch responses for queue and stream handlers (Powertools' batch utility).

A record that fails is reported back alone; the event source retries it (and, for a stream,
what follows it) and dead-letters it after its last attempt. `ReportBatchItemFailures` is
switched on for each mapping in infra/resources.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal


def partial_response(event: dict[str, Any], context: Any, record_handler: Callable[[Any], Any],
                     source: Literal["sqs", "dynamodb"]) -> dict[str, Any]:
    # Imported here: only event handlers pay for it, never a webhook request.
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    kind = EventType.SQS if source == "sqs" else EventType.DynamoDBStreams
    return dict(process_partial_response(event=event, record_handler=record_handler,
                                         processor=BatchProcessor(event_type=kind),
                                         context=context))
