"""Webhook intake: verify, validate, store once, answer. One AWS call on this path.

Nothing is applied here: the order worker reads the inbox table's stream. A 2xx is sent only
after the conditional insert succeeded, and only for a delivery the worker can apply: what it
will need is checked first (the order read from a full payload and the size of its stored
form, the orders a thin notification names), so a delivery that could never be stored or
applied is the caller's 4xx now, not a poison record later. If storing fails the sender gets
503 (with Retry-After) and retries; the whole request runs within a deadline
(core.aws.deadline), so the answer comes in time whatever the store does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from chalicelib import marketplaces
from chalicelib.access import accounts_store as accounts
from chalicelib.access.accounts import WebhookSource
from chalicelib.core import aws, observability
from chalicelib.core.dynamodb import MAX_ITEM_BYTES, is_validation_error, storage_errors
from chalicelib.core.errors import ApiError
from chalicelib.core.settings import settings
from chalicelib.core.signatures import bounded_id
from chalicelib.marketplaces.contract import Inbound
from chalicelib.orders import inbox_store as inbox
from chalicelib.orders.deliveries import Accepted, Delivery
from chalicelib.orders.order import InvalidOrder, order_id_for, received_bound

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 1


def receive(source: str, headers: Mapping[str, str], raw: bytes, now: datetime) -> dict[str, str]:
    """Returns the answer body; raises ApiError with the status and reason otherwise.

    Counted per source (WebhooksAccepted, WebhooksDuplicate, WebhooksIgnored, WebhooksRefused
    for a 4xx, WebhooksFailed for our 5xx); a request refused before its source is known (an
    unknown name, a body too large to read) counts under source "unknown": a URL anyone can
    post to is not a dimension."""
    with aws.deadline():
        try:
            config = _source(source, raw)
        except ApiError as exc:
            _refused(source, "unknown", exc)
            raise
        observability.tag(source=source)
        try:
            answer = _receive(source, config, headers, raw, now)
        except ApiError as exc:
            _refused(source, source, exc)
            raise
    observability.count(f"Webhooks{answer['status'].capitalize()}", source=source)
    return answer


def _refused(source: str, counted_as: str, error: ApiError) -> None:
    observability.count("WebhooksRefused" if error.status < 500 else "WebhooksFailed",
                        source=counted_as)
    if error.status < 500:  # the sender's to fix; ours (5xx) are logged where they happen
        log.info("webhook %s refused: %d %s", source[:64], error.status, error.reason)


def _source(source: str, raw: bytes) -> WebhookSource:
    """The sender's account; 413 for a body too large to read, 404 for a name no source has."""
    limit = settings().max_webhook_bytes
    if len(raw) > limit:
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
    try:
        lookup = accounts.source_soon(source)  # the extension reads the secrets while...
        aws.client("dynamodb")  # ...a cold start builds the client the insert will need
        config = lookup()
    except storage_errors() as exc:
        log.exception("webhook source %s unavailable", source[:64])
        raise store_unavailable() from exc
    if config is None or config.scheme not in marketplaces.known_schemes():
        raise ApiError(404, "unknown_source", f"no webhook source named {source!r}")
    return config


def _receive(source: str, config: WebhookSource, headers: Mapping[str, str], raw: bytes,
             now: datetime) -> dict[str, str]:
    lowered = {name.lower(): value for name, value in headers.items()}
    inbound = marketplaces.inbound_for(config.scheme)  # no API calls loaded on this path
    try:
        accepted = inbound.accept(lowered, raw, config.secrets, now)
        observability.tag(delivery_id=accepted.delivery_id)
        if accepted.record and accepted.actionable:
            will_apply(inbound, source, accepted, raw, now, config.scheme)
    except ApiError as exc:
        if exc.status in (413, 422):  # correctly signed, yet refused: CS must know of it
            _alert_rejected(source, exc, now)
        raise
    if not accepted.record:
        log.info("webhook %s %s %s answered, not stored", source, accepted.topic,
                 accepted.delivery_id)
        return {"status": "ignored", "delivery_id": accepted.delivery_id}
    try:
        stored = store(source, config.scheme, accepted, raw, now)
    except ApiError as exc:
        if exc.status == 413:
            _alert_rejected(source, exc, now)
        raise
    status = "accepted" if stored else "duplicate"
    if not accepted.actionable:
        status = "ignored" if stored else "duplicate"
    log.info("webhook %s %s %s %s", source, accepted.topic, accepted.delivery_id, status)
    return {"status": status, "delivery_id": accepted.delivery_id}


def will_apply(inbound: Inbound, source: str, accepted: Accepted, raw: bytes,
               now: datetime, scheme: str) -> None:
    """Read the delivery as the order worker will (with the headers it will get back), so what
    it could not apply is refused before we acknowledge it: 422 `invalid_payload` for an order
    we cannot read (a time out of range, a shape the adapter refuses), 413 `payload_too_large`
    for one whose stored form would not fit. Feeds (Amazon, Taobao) call it too. The order it
    names (read whole, or a lone reference) is tagged on the request's log lines."""
    headers = accepted.headers
    try:
        if inbound.normalise is not None:
            order = inbound.normalise(raw, headers, source)
            observability.tag(order_id=order.order_id)
            actor = Delivery(source=source, delivery_id=accepted.delivery_id,
                             topic=accepted.topic, received_at=now).actor
            text = raw.decode("utf-8", errors="replace")  # as the inbox stores it
            if received_bound(order, text, actor) > MAX_ITEM_BYTES:
                # Rare: a large order, sized exactly (the store is loaded for it only).
                from chalicelib.orders import order_store
                order_store.check_storable(order, text, actor, now)
            return
        assert inbound.ref is not None  # the contract: a notification is whole or a reference
        named = inbound.refs(raw, headers) if inbound.refs is not None else [
            inbound.ref(raw, headers)]
        for ref in named:
            bounded_id(ref.external_id, "order id")
            bounded_id(ref.shop, "shop id")
        if len(named) == 1:  # a reference's platform (the order's marketplace) is its scheme
            observability.tag(order_id=order_id_for(scheme, named[0].shop,
                                                    named[0].external_id))
    except InvalidOrder as exc:
        if exc.reason == "order_too_large":
            raise ApiError(413, "payload_too_large", str(exc)) from None
        raise _unreadable(str(exc)) from None
    except Exception as exc:  # whatever an adapter raises on it, the worker would meet too
        # By its type only: an adapter's error may quote the order (a buyer's address).
        log.warning("%s delivery %s unreadable: %s", source, accepted.delivery_id,
                    observability.describe(exc))
        raise _unreadable(f"{type(exc).__name__}: {exc}") from None


def _unreadable(problem: str) -> ApiError:
    return ApiError(422, "invalid_payload", "the notification cannot be read as an order",
                    problems=[{"field": "", "problem": problem[:500]}])


def store(source: str, scheme: str, accepted: Accepted, raw: bytes, now: datetime) -> bool:
    """Put the delivery in the inbox; False if it was there already. What DynamoDB would refuse
    as sent is the caller's 4xx, checked before writing; the store's own trouble is 503."""
    try:
        inbox.check_storable(source, scheme, accepted, raw, now)
    except inbox.Unstorable as exc:
        if exc.reason == "key_too_long":
            raise ApiError(400, "invalid_delivery_id", str(exc)) from None
        raise ApiError(413, "payload_too_large", str(exc)) from None
    try:
        return inbox.put_delivery(source, scheme, accepted, raw, now)
    except storage_errors() as exc:
        if is_validation_error(exc):  # checked above; kept as a net: never the caller's 503
            log.warning("store refused delivery %s/%s: %s", source, accepted.delivery_id,
                        observability.describe(exc))
            raise ApiError(400, "invalid_delivery", "the delivery cannot be stored as sent") \
                from None
        log.exception("could not store delivery %s/%s", source, accepted.delivery_id)
        raise store_unavailable() from exc


def store_unavailable() -> ApiError:
    """Our storage failed: 503 with Retry-After, the sender retries (nothing was stored)."""
    return ApiError(503, "storage_unavailable", "storage is temporarily unavailable; retry",
                    retry_after=RETRY_AFTER_SECONDS)


def _alert_rejected(source: str, error: ApiError, now: datetime) -> None:
    from chalicelib.cs import alert_topic, alerts  # only on this rare path: not on a cold start

    alert = alerts.Alert(
        kind="webhook.invalid_payload", severity=alerts.Severity.HIGH, subject=source, at=now,
        summary=f"{source} sent a signed notification we could not read; it was refused "
                f"({error.status} {error.reason})",
        facts={**error.details, "message": error.message[:300]},
    )
    try:
        alert_topic.publish(alert)
    except storage_errors():
        log.exception("could not publish alert %s", alert.dedupe_key)


def reply_for(source: str) -> tuple[int, str, str] | None:
    """The platform's own success answer, for platforms that prescribe one (Shopee: an empty
    body); None: our JSON. The source was read (and cached) by `receive` just before."""
    config = accounts.source(source)
    return marketplaces.inbound_for(config.scheme).reply if config else None
