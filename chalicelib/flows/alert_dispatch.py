"""The alert queue's consumer: every alert becomes (part of) a CS case, and a new or escalated
case gets its notes planned in the outbox (chalicelib/flows/notifier.py sends them). A repeat is
counted on the case and not sent again. Planning is idempotent, so a redelivered alert
whose first delivery failed between the two steps still gets its notes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from chalicelib.core import batches
from chalicelib.core.clock import utcnow
from chalicelib.cs import case_store
from chalicelib.cs.alerts import Alert
from chalicelib.flows import notifier

log = logging.getLogger("chalicelib.cs.alerts")


def handle(message: str, now: datetime | None = None) -> case_store.Recorded:
    alert = Alert.model_validate_json(message)
    recorded = case_store.record(alert)
    notifier.plan_for(recorded, now or utcnow())
    if recorded.outcome in ("opened", "escalated", "resolved"):
        case_id = recorded.case.case_id if recorded.case else "-"
        log.warning("CS CASE %s %s [%s/%s] %s: %s", recorded.outcome, case_id, alert.severity,
                    alert.case_type, alert.subject, alert.summary)
    return recorded


def dead_letter(message: str, message_id: str, now: datetime) -> None:
    """An alert the dispatcher gave up on (the alerts queue's dead letters): kept where the CS
    API lists what was not delivered (/cs/v1/notifications), never dropped."""
    from chalicelib.cs import outbox_store as outbox

    outbox.put_dead_alert(message_id, message, now)
    log.error("CS ALERT UNDELIVERABLE %s: %s", message_id, message[:500])


# Event-source edges ------------------------------------------------------------------------


def on_queue(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The alerts queue (app.py `alert_dispatch`), fed by the alert topic (infra/)."""
    return batches.partial_response(event, context, lambda record: handle(record.body), "sqs")


def on_dead_letters(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The alerts dead-letter queue (app.py `alert_dead_letters`)."""
    return batches.partial_response(
        event, context,
        lambda record: dead_letter(record.body, record.message_id, utcnow()), "sqs")
