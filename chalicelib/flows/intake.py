"""Webhook intake: verify, validate, store once, answer. One AWS call on this path.

Nothing is applied here: the order worker reads the inbox table's stream. A 2xx is sent only
after the conditional insert succeeded; if storing fails the sender gets 503 and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from chalicelib import marketplaces
from chalicelib.access import directory_store as directory
from chalicelib.core.dynamodb import storage_errors
from chalicelib.core.errors import ApiError, StorageUnavailable
from chalicelib.core.settings import settings
from chalicelib.orders import inbox_store as inbox

log = logging.getLogger(__name__)


def receive(source: str, headers: Mapping[str, str], raw: bytes, now: datetime) -> dict[str, str]:
    """Returns the answer body; raises ApiError with the status and reason otherwise."""
    limit = settings().max_webhook_bytes
    if len(raw) > limit:
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
    try:
        config = directory.source(source)
    except storage_errors() as exc:
        log.exception("webhook source %s unavailable", source)
        raise StorageUnavailable() from exc
    if config is None or config.scheme not in marketplaces.known_schemes():
        raise ApiError(404, "unknown_source", f"no webhook source named {source!r}")
    lowered = {name.lower(): value for name, value in headers.items()}
    inbound = marketplaces.inbound_for(config.scheme)  # no API calls loaded on this path
    try:
        accepted = inbound.accept(lowered, raw, config.secrets, now)
    except ApiError as exc:
        if exc.status == 422:  # correctly signed, yet unreadable: CS must know of this order
            _alert_rejected(source, exc, now)
        raise
    try:
        stored = inbox.put_delivery(source, config.scheme, accepted, raw, now)
    except storage_errors() as exc:
        log.exception("could not store delivery %s/%s", source, accepted.delivery_id)
        raise StorageUnavailable() from exc
    status = "accepted" if stored else "duplicate"
    if not accepted.actionable:
        status = "ignored" if stored else "duplicate"
    log.info("webhook %s %s %s %s", source, accepted.topic, accepted.delivery_id, status)
    return {"status": status, "delivery_id": accepted.delivery_id}


def _alert_rejected(source: str, error: ApiError, now: datetime) -> None:
    from chalicelib.cs import alert_topic, alerts  # only on this rare path: not on a cold start

    alert = alerts.Alert(
        kind="webhook.invalid_payload", severity=alerts.Severity.HIGH, subject=source, at=now,
        summary=f"{source} sent a signed notification we could not read; it was refused (422)",
        facts=error.details,
    )
    try:
        alert_topic.publish(alert)
    except storage_errors():
        log.exception("could not publish alert %s", alert.dedupe_key)


def reply_for(source: str) -> tuple[int, str, str] | None:
    """The platform's own success answer, for platforms that prescribe one (Shopee: an empty
    body); None: our JSON. The source was read (and cached) by `receive` just before."""
    config = directory.source(source)
    return marketplaces.inbound_for(config.scheme).reply if config else None
