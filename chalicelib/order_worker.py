"""The order worker: applies stored webhook deliveries to orders, exactly once.

Fed by the inbox table's DynamoDB stream rather than a queue: the webhook then needs one write
(no dual write to a table and a queue), the stream keeps per-key order, and Lambda's stream
mapping gives retries, partial batch responses and an on-failure destination (the inbox
dead-letter queue). Every step is a conditional transaction, so replays change nothing:
- the inbox item loses its `pending` mark in the same transaction that applies it;
- the current view is guarded by its version (a concurrent worker makes us re-read);
- the job id is derived from the order id and inserted only if absent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from chalicelib import alerts, batches, jobs, marketplaces
from chalicelib.config import settings
from chalicelib.orders import Decision, Delivery, InvalidOrder, Order, OrderEvent, decide
from chalicelib.storage import Action, TransactionConflict, from_attrs, transact
from chalicelib.storage import inbox as inbox_store
from chalicelib.storage import jobs as jobs_store
from chalicelib.storage import orders as orders_store
from chalicelib.timeutil import parse_iso, utcnow

log = logging.getLogger(__name__)
_ATTEMPTS = 4


def apply_delivery(item: Mapping[str, Any], now: datetime) -> str:
    """Apply one inbox item (as plain Python values). Returns the outcome.

    Raises for temporary faults only, so the stream retries; an unreadable order is a
    permanent failure, recorded on the delivery and sent to CS.
    """
    if "pending" not in item:
        return "already_processed"
    delivery = Delivery(source=item["source"], delivery_id=item["delivery_id"],
                        topic=item["topic"], received_at=parse_iso(item["received_at"]))
    adapter = marketplaces.adapter_for(item["scheme"])
    raw = item["body"].encode()
    try:
        incoming = adapter.normalise(raw, item.get("headers", {}), item["source"])
    except InvalidOrder as exc:
        return _reject(item, delivery, exc, now)
    cancel_mode = "cancel"
    for _attempt in range(_ATTEMPTS):
        stored = orders_store.get_current(incoming.order_id)
        decision = decide(stored.order if stored else None, incoming, delivery,
                          has_job=bool(stored and stored.job), now=now)
        actions = _actions(item, decision, stored, cancel_mode, now)
        if decision.problems:
            # Before the write: a retry may repeat the alert (CS dedupes), never lose it.
            _alert_invalid(decision.order, decision.problems, now)
        try:
            transact(actions)
        except TransactionConflict as conflict:
            if "inbox" in conflict.failed:
                return "already_processed"
            if "job_cancel" in conflict.failed:
                cancel_mode = "request"  # the warehouse holds it: ask instead
            elif "job_request" in conflict.failed:
                cancel_mode = "none"  # shipped or cancelled already
            continue  # otherwise a concurrent update of this order: read again
        return decision.outcome
    raise RuntimeError(f"order {incoming.order_id} kept changing under us; stream will retry")


def _actions(item: Mapping[str, Any], decision: Decision,
             stored: orders_store.StoredOrder | None, cancel_mode: str,
             now: datetime) -> list[Action]:
    finish = inbox_store.finish(item["pk"], decision.outcome, now, decision.order.order_id)
    if decision.outcome == "stale":
        return [finish]
    order = decision.order
    job_ref = stored.job if stored else None
    events: list[OrderEvent] = list(decision.events)
    actions = [finish]
    if stored is None:
        actions.append(orders_store.put_received(order, item["body"], events[0].actor, now))
    if decision.create_job:
        job = jobs.new_job(order, settings().warehouse_partner, now)
        job_ref = orders_store.JobRef(job.partner_id, job.job_id)
        actions.append(jobs_store.put_new(job))
        events.append(_job_event("job.created", now, job,
                                 f"Job {job.job_id} offered to {job.partner_id}"))
    if decision.cancel_job and job_ref and cancel_mode != "none":
        action, event = _cancellation(job_ref, cancel_mode, now)
        actions.append(action)
        events.append(event)
    actions.append(orders_store.put_current(order, stored, job_ref, now))
    actions.extend(orders_store.put_events(order.order_id, events))
    return actions


def _cancellation(job: orders_store.JobRef, mode: str,
                  now: datetime) -> tuple[Action, OrderEvent]:
    if mode == "cancel":
        return jobs_store.cancel(job.partner_id, job.job_id, now), OrderEvent(
            type="job.cancelled", at=now, actor="order worker", data={"job_id": job.job_id},
            summary=f"Job {job.job_id} cancelled before the warehouse claimed it")
    return jobs_store.request_cancellation(job.partner_id, job.job_id, now), OrderEvent(
        type="job.cancellation_requested", at=now, actor="order worker",
        data={"job_id": job.job_id},
        summary=f"Order cancelled while {job.partner_id} holds job {job.job_id}: "
                "cancellation requested from the warehouse")


def _job_event(kind: Any, now: datetime, job: jobs.Job, summary: str) -> OrderEvent:
    return OrderEvent(type=kind, at=now, actor="order worker", summary=summary,
                      data={"job_id": job.job_id, "partner_id": job.partner_id})


def _reject(item: Mapping[str, Any], delivery: Delivery, error: InvalidOrder,
            now: datetime) -> str:
    alerts.publish(alerts.Alert(
        kind="order.invalid", severity=alerts.Severity.HIGH, subject=item["pk"], at=now,
        summary=f"{delivery.source} delivery {delivery.delivery_id} could not be read as an order",
        facts={"reason": error.reason, "detail": error.detail[:500], "topic": delivery.topic},
    ))
    try:
        transact([inbox_store.finish(item["pk"], "invalid", now, str(error)[:1000])])
    except TransactionConflict:
        return "already_processed"
    return "invalid"


def _alert_invalid(order: Order, problems: tuple[str, ...], now: datetime) -> None:
    alerts.publish(alerts.Alert(
        kind="order.invalid", severity=alerts.Severity.HIGH, subject=order.order_id, at=now,
        summary=f"Paid order {order.name or order.external_id} ({order.marketplace}) cannot be "
                f"sent to the warehouse: {', '.join(problems)}",
        facts={"problems": list(problems), "external_id": order.external_id,
               "shop": order.shop},
    ))


# Event-source edges ------------------------------------------------------------------------


def handle_stream(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Inbox stream batch -> partial batch response, so one bad record never blocks others."""
    return batches.partial_response(event, context, _stream_record, "dynamodb")


def _stream_record(record: Any) -> None:
    image = record.raw_event["dynamodb"].get("NewImage") or {}
    if "pending" in image:  # our own "applied" update comes through the stream too: skip it
        outcome = apply_delivery(from_attrs(image), utcnow())
        log.info("delivery %s: %s", record.raw_event["dynamodb"]["Keys"], outcome)


def sweep_unprocessed(now: datetime) -> int:
    """Deliveries still pending after the pickup deadline (10 min) go to CS, once each.

    Marking one also touches it, which sends it through the stream again: a free retry.
    """
    cutoff = now - timedelta(minutes=settings().unprocessed_alert_minutes)
    alerted = 0
    for item in inbox_store.pending_before(cutoff):
        if item.get("alerted_at"):
            continue
        alerts.publish(alerts.Alert(
            kind="delivery.unprocessed", severity=alerts.Severity.HIGH, subject=item["pk"],
            at=now, summary=f"Order notification {item['pk']} not processed within "
                            f"{settings().unprocessed_alert_minutes} minutes",
            facts={"received_at": item["received_at"]},
        ))
        alerted += inbox_store.mark_alerted(item["pk"], now)
    return alerted
