"""Marketplaces whose notifications we fetch rather than receive over HTTP: Amazon SP-API
(`ORDER_CHANGE` messages on an SQS queue we own) and Taobao/Tmall (the TMC message service,
polled and confirmed). Each notification goes into the same inbox as a webhook, so the same
dedupe (the platform's message id), order worker and newer-than rule apply.

Acknowledgement follows storage: an SQS message is deleted (the handler returns without error)
and a TMC message confirmed only after its delivery is stored or found stored, and only a
delivery the order worker can apply is stored (the same checks as a webhook's: its id, what it
names, its size). A message we cannot read or store is a CS case with its text, then
acknowledged: it would never read better.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from chalicelib import marketplaces
from chalicelib.core import batches, observability, runs
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ApiError
from chalicelib.cs import alert_topic, alerts
from chalicelib.flows.intake import will_apply
from chalicelib.flows.marketplace_calls import credentials_for, send_json
from chalicelib.marketplaces import amazon, taobao
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.calls import OrderRef
from chalicelib.orders import inbox_store as inbox
from chalicelib.orders.deliveries import Accepted
from chalicelib.orders.order import order_id_for

log = logging.getLogger(__name__)

AMAZON_SOURCE = "amazon"
TAOBAO_SOURCE = "taobao"


def amazon_message(body: str, now: datetime) -> str:
    """One SQS message body. Returns what became of it: accepted, duplicate, ignored or
    unreadable. Raises when storing fails, so the message stays on the queue and comes back.
    Counted as a webhook is (source "amazon")."""
    raw = body.encode("utf-8", "replace")
    observability.tag(source=AMAZON_SOURCE)
    try:
        accepted = _storable(AMAZON_SOURCE, amazon.NAME, amazon.accept_message(raw, now), raw,
                             now)
    except ApiError as exc:
        _unreadable(AMAZON_SOURCE, exc, raw, now)
        return "unreadable"
    stored = inbox.put_delivery(AMAZON_SOURCE, amazon.NAME, accepted, raw, now)
    if stored and accepted.headers.get("order-change-type") == "BuyerRequestedChange":
        _cancel_requested(amazon.NAME, amazon.ref(raw, accepted.headers), now)
    outcome = ("accepted" if accepted.actionable else "ignored") if stored else "duplicate"
    observability.count(f"Webhooks{outcome.capitalize()}", source=AMAZON_SOURCE)
    log.info("amazon %s %s %s", accepted.topic, accepted.delivery_id, outcome)
    return outcome


# Taobao TMC --------------------------------------------------------------------------------------

BATCH = 100  # messages per consume call
BUDGET_SECONDS = 20.0  # per run: the next run (every minute) goes on where this one stopped
BUDGET_MARGIN = 15.0  # a consume and its confirms in hand (poll_taobao's timeout is 60 s)


def poll_taobao(now: datetime, budget: float = BUDGET_SECONDS) -> dict[str, int]:
    """Drain each Taobao app's TMC queue: consume, store each message, confirm the stored ones.
    TMC queues are per app (every seller who authorised it), so one shop's credentials per app
    key are enough."""
    counts = {"apps": 0, "messages": 0, "stored": 0, "errors": 0}
    deadline = time.monotonic() + budget
    for shop in _one_shop_per_app():
        try:
            with observability.unit(shop=shop):
                consumed, stored = _drain(shop, now, deadline)
        except Exception:  # one app's trouble must not stop the others; unconfirmed comes back
            log.exception("TMC poll for taobao shop %s failed", shop)
            counts["errors"] += 1
            continue
        counts["apps"] += 1
        counts["messages"] += consumed
        counts["stored"] += stored
    return counts


def _one_shop_per_app() -> list[str]:
    seen: dict[str, str] = {}
    for marketplace, shop in shop_credentials.shops():
        if marketplace == taobao.NAME:
            seen.setdefault(shop_credentials.get(marketplace, shop).get("app_key", shop), shop)
    return sorted(seen.values())


def _drain(shop: str, now: datetime, deadline: float) -> tuple[int, int]:
    credentials = credentials_for(taobao.NAME, shop, now)
    group = credentials.get("tmc_group", "")
    consumed = stored = 0
    while time.monotonic() < deadline:  # until TMC answers with nothing
        answer = send_json(taobao.consume_call(group, BATCH, credentials, now))
        messages = taobao.parse_messages(answer)
        if not messages:
            break
        done: list[str] = []
        for message in messages:
            with observability.unit(source=TAOBAO_SOURCE):
                stored += _tmc_message(message, now)
            done.append(message.id)
        for start in range(0, len(done), taobao.CONFIRM_LIMIT):
            chunk = done[start:start + taobao.CONFIRM_LIMIT]
            confirmed = send_json(taobao.confirm_call(chunk, credentials, now, group=group))
            if not taobao.parse_confirm(confirmed):  # redelivered later: dedupe holds
                log.warning("TMC did not confirm %d messages", len(chunk))
        consumed += len(messages)
    return consumed, stored


def _tmc_message(message: taobao.TmcMessage, now: datetime) -> bool:
    """One TMC message stored (True: new), or a CS case if it cannot be; counted as a webhook
    is (source "taobao")."""
    raw = taobao.message_bytes(message)
    try:
        accepted = _storable(TAOBAO_SOURCE, taobao.NAME, taobao.accept_message(message, now),
                             raw, now)
    except ApiError as exc:
        _unreadable(TAOBAO_SOURCE, exc, raw, now)
        return False
    new = inbox.put_delivery(TAOBAO_SOURCE, taobao.NAME, accepted, raw, now)
    if new and message.topic == REFUND_REQUESTED:
        _cancel_requested(taobao.NAME, taobao.ref(raw, accepted.headers), now)
    outcome = ("accepted" if accepted.actionable else "ignored") if new else "duplicate"
    observability.count(f"Webhooks{outcome.capitalize()}", source=TAOBAO_SOURCE)
    return new


# A buyer's request to cancel (Amazon) or refund (Taobao) leaves the order paid until the seller
# agrees: the platform will not cancel it by itself, so CS must decide, before the parcel ships.
REFUND_REQUESTED = "taobao_refund_RefundCreated"


def _cancel_requested(marketplace: str, ref: OrderRef, now: datetime) -> None:
    order_id = order_id_for(marketplace, ref.shop, ref.external_id)
    alert_topic.raise_case(
        "order.buyer_cancel_requested", f"order:{order_id}", alerts.Severity.HIGH,
        f"{marketplace} order {ref.external_id}: the buyer asked to cancel or refund; decide "
        "before it ships (cancel it here to stop the warehouse)", now,
        {"order_id": order_id, "order_name": ref.external_id, "marketplace": marketplace})


def _storable(source: str, scheme: str, accepted: Accepted, raw: bytes,
              now: datetime) -> Accepted:
    """The delivery, if the order worker can apply it and the inbox can hold it; ApiError (a
    4xx, as a webhook would be answered) otherwise."""
    observability.tag(delivery_id=accepted.delivery_id)
    if accepted.actionable:
        will_apply(marketplaces.inbound_for(scheme), source, accepted, raw, now, scheme)
    try:
        inbox.check_storable(source, scheme, accepted, raw, now)
    except inbox.Unstorable as exc:
        raise ApiError(413 if exc.reason == "too_large" else 400, exc.reason, str(exc)) \
            from None
    return accepted


def _unreadable(source: str, error: ApiError, raw: bytes, now: datetime) -> None:
    observability.count("WebhooksRefused", source=source)
    log.warning("%s notification unreadable: %s", source, error.reason)
    alert_topic.raise_case(
        "marketplace.unreadable_notification", f"{source}:{error.reason}", alerts.Severity.HIGH,
        f"{source} sent a notification we cannot read ({error.reason}): an order may be "
        "missing; reconciliation will look for it", now,
        {"marketplace": source, "reason": error.reason,
         "excerpt": raw[:1000].decode("utf-8", "replace")})


# Event-source edges ------------------------------------------------------------------------


def on_amazon_queue(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Amazon's notifications queue (app.py `amazon_notifications`): a message is deleted only
    once stored (partial batch response)."""
    return batches.partial_response(event, context,
                                    lambda record: amazon_message(record.body, utcnow()), "sqs")


def on_schedule(context: Any = None) -> None:
    """The 1-minute TMC poll (app.py `poll_taobao`), no new consume in the last BUDGET_MARGIN
    seconds its Lambda context leaves. Two polls at once cannot store a message twice: TMC
    hands a message to one consumer until it is confirmed, and the inbox dedupes."""
    budget = runs.Budget.of(context, most=BUDGET_SECONDS, margin=BUDGET_MARGIN)
    counts = poll_taobao(utcnow(), budget=budget.left())
    if counts["messages"] or counts["errors"]:
        log.info("taobao tmc: %s", counts)
