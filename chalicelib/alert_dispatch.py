"""The alert queue's consumer: every alert becomes (part of) a CS case, then is shown.

Delivery to email and IM on the CS rota builds on the case outcome: a new or escalated case is
news; a repeat is counted on the case and not sent again.
"""

from __future__ import annotations

import logging

from chalicelib.alerts import Alert
from chalicelib.storage import cases as cases_store

log = logging.getLogger("chalicelib.alerts")


def handle(message: str) -> cases_store.Recorded:
    alert = Alert.model_validate_json(message)
    recorded = cases_store.record(alert)
    if recorded.outcome in ("opened", "escalated", "resolved"):
        case_id = recorded.case.case_id if recorded.case else "-"
        log.warning("CS CASE %s %s [%s/%s] %s: %s", recorded.outcome, case_id, alert.severity,
                    alert.case_type, alert.subject, alert.summary)
    return recorded
