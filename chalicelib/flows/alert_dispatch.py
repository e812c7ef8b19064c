"""The alert queue's consumer: every alert becomes (part of) a CS case, and a new or escalated
case gets its notes planned in the outbox (chalicelib/flows/notifier.py sends them). A repeat is
counted on the case and not sent again. Planning is idempotent, so a redelivered alert
whose first delivery failed between the two steps still gets its notes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from chalicelib.core import batches, observability
from chalicelib.core.clock import utcnow
from chalicelib.cs import case_store
from chalicelib.cs.alerts import Alert
from chalicelib.flows import notifier

log = logging.getLogger("chalicelib.cs.alerts")


_COUNTED = {"opened": "CasesOpened", "escalated": "CasesEscalated", "resolved": "CasesResolved"}


def handle(message: str, now: datetime | None = None) -> case_store.Recorded:
    """One alert (one unit of work: chalicelib.core.batches), tagged with its case and order
    ids; a case opened, escalated or resolved is counted by type (CasesOpened, ...)."""
    alert = Alert.model_validate_json(message)
    order_id = alert.facts.get("order_id")
    observability.tag(case_type=alert.case_type, order_id=order_id if isinstance(order_id, str)
                      else None)
    recorded = case_store.record(alert)
    if recorded.case is not None:
        observability.tag(case_id=recorded.case.case_id)
    notifier.plan_for(recorded, now or utcnow())
    if recorded.outcome in _COUNTED:
        observability.count(_COUNTED[recorded.outcome], case_type=alert.case_type)
        case_id = recorded.case.case_id if recorded.case else "-"
        log.warning("CS CASE %s %s %s", recorded.outcome, case_id, _ids(alert))
    return recorded


def _ids(alert: Alert) -> str:
    """What a log line says of an alert: ids only. Its summary and facts carry buyers' names,
    phones and addresses and partners' free text; they stay in the case, behind the CS API."""
    order_id = alert.facts.get("order_id")
    order = order_id if isinstance(order_id, str) and order_id else "-"
    return (f"[{alert.severity}/{_printable(alert.case_type)}] {_printable(alert.subject)} "
            f"order {_printable(order)}")


def _printable(value: str, limit: int = 120) -> str:
    # Ids come from outside too (a tracking number, an order id): one line, bounded.
    return "".join(c if c.isprintable() else "?" for c in value[:limit])


def dead_letter(message: str, message_id: str, now: datetime) -> None:
    """An alert the dispatcher gave up on (the alerts queue's dead letters): kept where the CS
    API lists what was not delivered (/cs/v1/notifications), never dropped. The log line names
    it by ids, never by its summary or facts."""
    from chalicelib.cs import outbox_store as outbox

    outbox.put_dead_alert(message_id, message, now)
    observability.count("AlertsUndeliverable")
    try:
        described = _ids(Alert.model_validate_json(message))
    except ValueError:
        described = f"not an alert ({len(message)} characters)"
    log.error("CS ALERT UNDELIVERABLE %s: %s", _printable(message_id), described)


# Event-source edges ------------------------------------------------------------------------


def on_queue(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The alerts queue (app.py `alert_dispatch`), fed by the alert topic (infra/)."""
    return batches.partial_response(event, context, lambda record: handle(record.body), "sqs")


def on_dead_letters(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The alerts dead-letter queue (app.py `alert_dead_letters`)."""
    return batches.partial_response(
        event, context,
        lambda record: dead_letter(record.body, record.message_id, utcnow()), "sqs")
