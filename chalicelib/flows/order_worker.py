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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib import marketplaces
from chalicelib.core import batches, observability
from chalicelib.core.clock import parse_iso, utcnow
from chalicelib.core.dynamodb import (
    MAX_TRANSACTION_ITEMS,
    Action,
    TransactionConflict,
    from_attrs,
    is_validation_error,
    retrying,
    storage_errors,
    too_large,
    transact,
)
from chalicelib.core.settings import settings
from chalicelib.cs import alert_topic, alerts, refunds
from chalicelib.flows import marketplace_calls, warehouse
from chalicelib.orders import deliveries, inbox_store
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.deliveries import Delivery
from chalicelib.orders.order import Decision, InvalidOrder, Order, check_size, decide
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse import jobs
from chalicelib.warehouse.jobs import protocol_rules

log = logging.getLogger(__name__)


def apply_delivery(item: Mapping[str, Any], now: datetime) -> str:
    """Apply one inbox item (as plain Python values). Returns the outcome.

    Raises for temporary faults only (the platform or our storage unavailable: `transient`),
    so the stream retries; anything else it meets is permanent: an order it cannot read,
    store or apply is recorded on the delivery as "invalid" and sent to CS at once, and the
    stream moves on (a bad record never holds back, or dead-letters, the good ones).
    """
    if "pending" not in item:
        return "already_processed"
    delivery = Delivery(source=item["source"], delivery_id=item["delivery_id"],
                        topic=item["topic"], received_at=parse_iso(item["received_at"]))
    try:
        return _apply(item, delivery, now)
    except InvalidOrder as exc:
        return _reject(item, delivery, exc, now)
    except Exception as exc:
        if transient(exc):
            raise
        log.exception("delivery %s cannot be applied", item["pk"])
        reason = "unstorable" if is_validation_error(exc) else "unreadable_notification"
        return _reject(item, delivery, InvalidOrder(reason, f"{type(exc).__name__}: {exc}"),
                       now)


def transient(error: BaseException) -> bool:
    """A fault that may pass: the platform unavailable (or an error it marks retryable), our
    storage throttled or failing. Not a request DynamoDB refuses as written, which no retry
    cures."""
    if isinstance(error, storage_errors()):
        return not is_validation_error(error)
    return getattr(error, "retryable", False) is True


def _apply(item: Mapping[str, Any], delivery: Delivery, now: datetime) -> str:
    raw = item["body"].encode()
    split = _split(item, raw, now)
    if split is not None:
        return split
    # A thin notification is re-fetched here; a platform that is down raises: retried.
    incoming = marketplace_calls.read_order(item["scheme"], raw, item.get("headers", {}),
                                            item["source"], now)
    observability.tag(order_id=incoming.order_id)
    check_size(incoming)

    tried: list[tuple[int, str]] = []  # each write of the current view tried: version, outcome

    def attempt() -> str:
        stored = orders_store.get_current(incoming.order_id)
        if tried and stored is not None and stored.written(tried[-1][0], now):
            return tried[-1][1]  # an earlier attempt's write landed; its answer was lost
        decision = decide(stored.order if stored else None, incoming, delivery,
                          has_job=bool(stored and stored.job), now=now,
                          overrides=stored.overrides if stored else None)
        job_step = _job_step(stored, decision, delivery, now)
        observability.tag(job_id=job_step[1].job.job_id if job_step
                          else stored.job.job_id if stored and stored.job else None)
        actions = _actions(item, decision, stored, job_step, delivery.actor, now)
        refused = too_large(actions)
        if refused:
            raise InvalidOrder("order_too_large", f"the {', '.join(refused)} item would "
                               "exceed DynamoDB's 400 KB")
        # Alerts go out before the write: a retry may repeat one (CS dedupes), never lose it.
        if decision.problems:
            _alert_invalid(decision.order, decision.problems, now)
        if job_step:
            warehouse.announce(job_step[1], now)
            _refund_task(stored, decision, job_step[1], delivery.actor, now)
        if decision.outcome != "stale":  # the current view is written: ours to recognise
            tried.append((stored.version + 1 if stored else 1, decision.outcome))
        try:
            transact(actions)
        except TransactionConflict as conflict:
            if "inbox" in conflict.failed:  # applied before (by us: an answer lost, or not)
                return "already_processed"
            raise  # a concurrent update of this order or its job: read again
        if job_step:
            warehouse.committed(job_step[1])
        return decision.outcome

    # Given up: Busy (retryable), so the stream retries the record.
    return retrying(attempt, "order")


# Child deliveries per transaction: the parent's completion rides with the last chunk.
_SPLIT_CHUNK = MAX_TRANSACTION_ITEMS - 1


def _split(item: Mapping[str, Any], raw: bytes, now: datetime) -> str | None:
    """A push naming several orders (Douyin batches its messages) becomes one delivery per
    order, written in chunks that fit a transaction, the last with this one's completion;
    None when it names one. A chunk written by an earlier attempt is found complete (its
    puts are conditional, all or nothing) and skipped, so a retry finishes the rest."""
    headers = item.get("headers", {})
    refs_of = marketplaces.inbound_for(item["scheme"]).refs
    if refs_of is None or headers.get(deliveries.REF_HEADER):  # the body is one reference
        return None
    try:
        refs = refs_of(raw, headers)
    except InvalidOrder:
        return None  # read_order reports it
    if len(refs) < 2:
        return None
    actions = [inbox_store.delivery_action(
        item["source"], item["scheme"], deliveries.Accepted(
            delivery_id=f"{item['delivery_id']}#{ref.external_id}", topic=item["topic"],
            shop=ref.shop, headers={deliveries.REF_HEADER: "1"}),
        ref.model_dump_json().encode(), now) for ref in refs]
    refused = too_large(actions)
    if refused:
        raise InvalidOrder("unstorable", f"{len(refused)} of the orders it names cannot be "
                           "keyed or stored")
    chunks = [actions[start:start + _SPLIT_CHUNK]
              for start in range(0, len(actions), _SPLIT_CHUNK)]
    for chunk in chunks[:-1]:
        try:
            _transact_contended(chunk)
        except TransactionConflict:
            continue  # written before, by an attempt that stopped before finishing
    try:
        _transact_contended([inbox_store.finish(item["pk"], "split", now, f"{len(refs)} orders"),
                             *chunks[-1]])
    except TransactionConflict:
        return "already_processed"
    return "split"


def _transact_contended(actions: Sequence[Action]) -> None:
    """`transact`, sent again after a pause while it collides with another transaction; a
    condition that failed is raised (the caller knows what it means)."""
    retrying(lambda: transact(actions), "delivery", reread=False)


JobStep = tuple[jobs.Job | None, jobs.Transition]


def _job_step(stored: orders_store.StoredOrder | None, decision: Decision, delivery: Delivery,
              now: datetime) -> JobStep | None:
    """A new job for a newly paid order, or the marketplace's changes as change requests."""
    if decision.create_job:
        job = jobs.new_job(decision.order, settings().warehouse_partner, now,
                           protocol_rules())
        return None, jobs.Transition(job=job, events=(jobs.offered_event(job),))
    if stored is None or stored.job is None or decision.outcome != "updated":
        return None
    requests = _change_requests(decision)
    if not requests:
        return None
    current = jobs_store.get(stored.job.partner_id, stored.job.job_id)
    if current is None:
        return None
    transition = jobs.chain(current, [
        lambda j, r=request: jobs.request_change(j, r, delivery.actor, now,  # type: ignore[misc]
                                                      protocol_rules())
        for request in requests])
    return (current, transition) if transition.changed else None


def _refund_task(stored: orders_store.StoredOrder | None, decision: Decision,
                 transition: jobs.Transition, actor: str, now: datetime) -> None:
    """The marketplace's cancellation applied before print: after-sales refunds the buyer
    there (an intercepted one is handed over when the factory intercepts it). The amount is
    the one paid: the view before the cancellation, which a platform may have zeroed since."""
    if stored is None or not decision.cancel_job or not any(
            c.kind is jobs.ChangeKind.CANCEL and c.status is jobs.ChangeStatus.APPLIED
            and c.requested_at == now for c in transition.job.changes):
        return
    reason = f"order {decision.order.status} on {decision.order.marketplace}"
    paid = stored.order.model_copy(update={"status": decision.order.status})
    task = refunds.refund_task(paid, "applied", actor, reason, now, transition.job.job_id)
    if task is not None:
        alert_topic.publish(task)


def _change_requests(decision: Decision) -> list[jobs.ChangeRequest]:
    order, changed = decision.order, decision.changed
    why = f"changed on {order.marketplace}"
    if decision.cancel_job:
        return [jobs.ChangeRequest(kind=jobs.ChangeKind.CANCEL, reason=f"order {order.status} "
                                   f"on {order.marketplace}")]
    requests = []
    if "shipping_address" in changed and order.shipping_address is not None:
        requests.append(jobs.ChangeRequest(kind=jobs.ChangeKind.ADDRESS, reason=why,
                                           address=order.shipping_address))
    if "lines" in changed and order.lines:
        requests.append(jobs.ChangeRequest(kind=jobs.ChangeKind.ATTRIBUTES, reason=why,
                                           lines=jobs.lines_of(order)))
    if "requested_courier" in changed and order.requested_courier:
        # Re-routed through the stage rules like a CS courier change (one the rules cannot
        # honour falls back to the rule table, and the job says why).
        requests.append(jobs.ChangeRequest(kind=jobs.ChangeKind.COURIER, reason=why,
                                           carrier_code=order.requested_courier[:64]))
    for field, kind in (("buyer_note", "note"), ("gift_message", "gift_message"),
                        ("invoice_title", "invoice_title")):
        text = getattr(order, field)
        if field in changed and text:
            requests.append(jobs.ChangeRequest(kind=jobs.ChangeKind.PROMISE, reason=why,
                                               promise=jobs.Promise(kind=kind,
                                                                    text=jobs.promise_text(text))))
    if "attributes" in changed and order.attributes:
        requests.append(jobs.ChangeRequest(kind=jobs.ChangeKind.PROMISE, reason=why,
                                           promise=jobs.Promise(kind="note",
                                                                text=jobs.attributes_note(order))))
    return requests


def _actions(item: Mapping[str, Any], decision: Decision,
             stored: orders_store.StoredOrder | None, job_step: JobStep | None, actor: str,
             now: datetime) -> list[Action]:
    finish = inbox_store.finish(item["pk"], decision.outcome, now, decision.order.order_id)
    if decision.outcome == "stale":
        return [finish]
    order = decision.order
    actions = [finish]
    if stored is None:
        actions.append(orders_store.put_received(order, item["body"], actor, now))
    job_ref = stored.job if stored else None
    if job_step is None:
        actions.extend(orders_store.put_events(order.order_id, decision.events))
    else:
        old, transition = job_step
        job = transition.job
        job_ref = orders_store.JobRef(job.partner_id, job.job_id)
        actions.extend(warehouse.actions_for(old, transition, actor, now,
                                             order_events=decision.events))
    actions.append(orders_store.put_current(order, stored, job_ref, now, decision.overrides))
    return actions


def _reject(item: Mapping[str, Any], delivery: Delivery, error: InvalidOrder,
            now: datetime) -> str:
    log.warning("delivery %s cannot become an order: %s", item["pk"], error.reason)
    alert_topic.publish(alerts.Alert(
        kind="order.invalid", severity=alerts.Severity.HIGH, subject=item["pk"], at=now,
        summary=f"{delivery.source} delivery {delivery.delivery_id} could not be read as an order",
        facts={"reason": error.reason, "detail": error.detail[:500],
               "topic": delivery.topic[:200]},
    ))
    try:
        _transact_contended([inbox_store.finish(item["pk"], "invalid", now, str(error)[:1000])])
    except TransactionConflict:
        return "already_processed"
    return "invalid"


_SHOWN_PROBLEMS = 20  # an alert is one SNS message (256 KB): a list a buyer can grow is cut


def _alert_invalid(order: Order, problems: tuple[str, ...], now: datetime) -> None:
    shown = ", ".join(p[:200] for p in problems[:_SHOWN_PROBLEMS])
    if len(problems) > _SHOWN_PROBLEMS:
        shown += f" and {len(problems) - _SHOWN_PROBLEMS} more"
    name = (order.name or order.external_id)[:200]
    alert_topic.publish(alerts.Alert(
        kind="order.invalid", severity=alerts.Severity.HIGH, subject=order.order_id, at=now,
        summary=f"Paid order {name} ({order.marketplace}) cannot be sent to the warehouse: "
                f"{shown}",
        facts={"order_id": order.order_id, "order_name": name,
               "marketplace": order.marketplace,
               "problems": [p[:200] for p in problems[:_SHOWN_PROBLEMS]],
               "external_id": order.external_id[:200], "shop": order.shop[:200]},
    ))


# Event-source edges ------------------------------------------------------------------------


def on_stream(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Inbox stream batch -> partial batch response, so one bad record never blocks others."""
    return batches.partial_response(event, context, _stream_record, "dynamodb")


def _stream_record(record: Any) -> None:
    """One stream record (a unit of work of its own: chalicelib.core.batches). Counted as
    OrdersApplied by outcome: created, updated, unchanged, stale, split, invalid,
    already_processed, or retried (a transient fault: the stream tries it again)."""
    image = record.raw_event["dynamodb"].get("NewImage") or {}
    if "pending" in image:  # our own "applied" update comes through the stream too: skip it
        item = from_attrs(image)
        observability.tag(delivery_id=item.get("delivery_id"), source=item.get("source"))
        try:
            outcome = apply_delivery(item, utcnow())
        except Exception:
            observability.count("OrdersApplied", outcome="retried")
            raise
        observability.count("OrdersApplied", outcome=outcome)
        log.info("delivery %s %s: %s", item.get("source"), item.get("delivery_id"), outcome)


# The sweep's bounds: the function's timeout is 60 s (.chalice/config.json); what a run leaves
# undone the next run (5 minutes later) carries on, since what is done is marked on each item.
SWEEP_SECONDS = 40.0
SWEEP_PAGES = 50  # per index and run: a page reads up to 1 MB of the index


@dataclass
class Swept:
    alerted: int = 0
    redriven: int = 0
    failed: int = 0
    finished: bool = True  # False: stopped at its time or page bound; the next run carries on


def sweep_unprocessed(now: datetime, budget_seconds: float = SWEEP_SECONDS) -> int:
    """Deliveries still pending after the pickup deadline (10 min) go to CS, once each, and are
    re-driven through the stream (their item touched: a new image the worker applies) then and
    again with back-off (orders/deliveries.py REDRIVE_AFTER). Returns how many were alerted."""
    return sweep(now, budget_seconds).alerted


def sweep(now: datetime, budget_seconds: float = SWEEP_SECONDS) -> Swept:
    """Every pending delivery not yet alerted, page by page from the oldest (the index's filter
    leaves out those alerted before, so a backlog of them costs reads, not work), then every
    alerted one due for its next re-drive; one delivery failing does not stop the others."""
    stop_at = time.monotonic() + budget_seconds
    swept = Swept()
    cutoff = now - timedelta(minutes=settings().unprocessed_alert_minutes)
    after: dict[str, Any] | None = None
    for _page in range(SWEEP_PAGES):
        items, after = inbox_store.unalerted_before(cutoff, after)
        for item in items:
            if time.monotonic() > stop_at:
                swept.finished = False
                return swept
            source, _, delivery_id = str(item["pk"]).partition("#")
            with observability.unit(source=source, delivery_id=delivery_id):
                try:
                    swept.alerted += _alert_unprocessed(item, now)
                except Exception:
                    swept.failed += 1
                    log.exception("unprocessed delivery %s: alert failed", item["pk"])
        if after is None:
            break
    else:
        swept.finished = False
    start: dict[str, Any] | None = None
    for _page in range(SWEEP_PAGES):
        due, start = inbox_store.redrives_due(now, start)
        for item in due:
            if time.monotonic() > stop_at:
                swept.finished = False
                return swept
            try:
                following = deliveries.next_redrive(parse_iso(item["received_at"]), now)
                done = inbox_store.redrive(item["pk"], item["redrive_at"], now, following)
                swept.redriven += done == "redriven"
            except Exception:
                swept.failed += 1
                log.exception("unprocessed delivery %s: re-drive failed", item["pk"])
        if start is None:
            break
    else:
        swept.finished = False
    return swept


def _alert_unprocessed(item: Mapping[str, Any], now: datetime) -> int:
    alert_topic.publish(alerts.Alert(
        kind="delivery.unprocessed", severity=alerts.Severity.HIGH, subject=item["pk"],
        at=now, summary=f"Order notification {item['pk']} not processed within "
                        f"{settings().unprocessed_alert_minutes} minutes",
        facts={"received_at": item["received_at"]},
    ))
    following = deliveries.next_redrive(parse_iso(item["received_at"]), now)
    return int(inbox_store.mark_alerted(item["pk"], now, following))


def on_schedule() -> None:
    """The 5-minute sweep (app.py `sweep_unprocessed`)."""
    swept = sweep(utcnow())
    if swept.alerted or swept.failed:
        log.warning("unprocessed deliveries: %d alerted, %d re-driven, %d failed",
                    swept.alerted, swept.redriven, swept.failed)
    elif swept.redriven:
        log.info("unprocessed deliveries re-driven: %d", swept.redriven)
    if not swept.finished:
        log.warning("unprocessed sweep stopped at its bound (%d s, %d pages an index): the "
                    "next run carries on", SWEEP_SECONDS, SWEEP_PAGES)
