"""Refund tasks for after-sales (domain: "for a cancellation, once voided, after-sales CS is told
to handle the refund"). Pure.

A cancellation that took effect (applied before print, on an order without a job, or
intercepted by the factory) leaves money with us that the buyer paid on the marketplace: a
`refund.due` case tells after-sales to refund it there. Its lifecycle is the case's: due
(open, acknowledged) until resolved with an outcome, `refunded` or `not_needed`
(chalicelib/cs/cases.py `OUTCOMES`). One task per order: its subject is the order id, so a
cancellation reported twice (CS, then the marketplace) stays one task.

Nothing is due when nothing was paid, or when the marketplace itself reports the order refunded
(its money already went back).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from chalicelib.cs.alerts import Alert, Severity
from chalicelib.cs.cases import OUTCOMES, REFUND_DUE
from chalicelib.orders.order import Order, OrderStatus

__all__ = ["REFUND_DUE", "REFUND_OUTCOMES", "refund_due", "refund_task"]

REFUND_OUTCOMES = OUTCOMES[REFUND_DUE]

# How the cancellation took effect: before print (or with no job to ask), or by the factory's
# intercept after print.
How = Literal["applied", "intercepted"]


def refund_due(order: Order, has_job: bool) -> bool:
    """Whether a cancellation of this order leaves a refund to make: the buyer paid (a job is
    only ever made for a paid order; a marketplace's cancelled version may no longer say when
    it was paid), and the marketplace has not already refunded it."""
    paid = has_job or order.paid_at is not None
    return paid and order.status is not OrderStatus.REFUNDED


def refund_task(order: Order, how: How, by: str, reason: str, at: datetime,
                job_id: str | None = None) -> Alert | None:
    """The alert that opens the order's refund task, or None when no refund is due."""
    if not refund_due(order, has_job=job_id is not None):
        return None
    amount = f"{order.totals.total} {order.currency}".strip()
    when = "before print" if how == "applied" else "intercepted by the factory"
    return Alert(
        kind=REFUND_DUE, severity=Severity.MEDIUM, subject=order.order_id, at=at,
        summary=f"{order.name or order.external_id} ({order.marketplace}) cancelled {when} "
                f"by {by}: refund {amount} on {order.marketplace}"
                + (f" ({reason})" if reason else ""),
        facts={"order_id": order.order_id, "order_name": order.name or order.external_id,
               "external_id": order.external_id, "marketplace": order.marketplace,
               "shop": order.shop, "amount": str(order.totals.total),
               "currency": order.currency, "cancelled": how, "cancelled_by": by,
               **({"job_id": job_id} if job_id else {})},
    )
