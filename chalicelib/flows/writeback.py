"""Shipment writeback: the marketplaces learn what we shipped. The I/O around
chalicelib/marketplaces/writeback.py and each adapter's pure calls (reconciliation, the other
way of keeping marketplaces and us in step, is chalicelib/flows/reconciliation.py).

A writeback is created in the ship report's transaction (`writeback_actions`); the `write_back`
schedule sends what is due (`run_writebacks`): per package, the call of the platform's declared
writeback with the shop's credentials from SSM; a platform without idempotency is asked first
whether it already has the package when this is a retry (its `existing` read; one whose write
needs a read first, its `prepare`, on every attempt); the outcome goes on the order's timeline;
a writeback given up is a CS case. A platform that declares no writeback gets none.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from chalicelib.core import observability
from chalicelib.core.clock import utcnow
from chalicelib.core.dynamodb import Action, TransactionConflict, retrying, transact
from chalicelib.core.errors import Busy
from chalicelib.cs import alert_topic, alerts
from chalicelib.flows import marketplace_calls
from chalicelib.flows.marketplace_calls import credentials_for, send_json
from chalicelib.marketplaces import adapter_for, writeback, writeback_store
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.calls import (
    PlatformError,
    PlatformUnavailable,
    Shipped,
    WritebackResult,
)
from chalicelib.marketplaces.contract import PackageCheck, ShipmentWrite
from chalicelib.marketplaces.writeback import Writeback
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import OrderEvent
from chalicelib.warehouse.jobs import Job
from chalicelib.warehouse.jobs import Shipment as JobShipment

log = logging.getLogger(__name__)


def _writer(marketplace: str) -> ShipmentWrite | None:
    """How the marketplace takes a shipment, if it does (a Standard Webhooks source's orders
    carry the source's own name, which is no platform)."""
    try:
        return adapter_for(marketplace).writeback
    except LookupError:
        return None


def writeback_actions(job: Job, shipment: JobShipment, now: datetime) -> list[Action]:
    """The writeback of a shipment, for the ship report's transaction (none for a marketplace
    we cannot write back to, e.g. a generic Standard Webhooks source)."""
    if _writer(job.marketplace) is None:
        return []
    return [writeback_store.put(writeback.plan(job, shipment, now), None)]


def run_writebacks(now: datetime, limit: int = 50) -> dict[str, int]:
    counts = {"done": 0, "retry": 0, "failed": 0, "errors": 0}
    for partner_id, key in writeback_store.due(now, limit):
        with observability.unit(partner_id=partner_id, writeback=key):
            try:
                outcome = send(partner_id, key, now)
            except Exception:  # it stays due; the next run tries again
                log.exception("writeback %s/%s failed", partner_id, key)
                counts["errors"] += 1
                continue
        if outcome is not None:
            counts[outcome] += 1
    return counts


def send(partner_id: str, key: str, now: datetime) -> str | None:
    found = writeback_store.get(partner_id, key)
    if found is None or found[0].status != "pending" or found[0].due_at > now:
        return None
    old, version = found
    observability.tag(order_id=old.order_id, job_id=old.job_id, marketplace=old.marketplace)
    writer = _writer(old.marketplace)
    new = _attempt(old, writer, now) if writer else writeback.failed(
        old, "no adapter", False, now)
    events = _timeline(old, new, now)
    try:
        retrying(lambda: transact([writeback_store.put(new, version),
                                   *orders_store.put_events(new.order_id, events)]),
                 "writeback", reread=False)
    except TransactionConflict:
        raise Busy("writeback") from None
    _counted(new)
    if new.status == "failed":
        alert_topic.raise_case(
            "marketplace.writeback_failed", f"writeback:{new.key}", alerts.Severity.HIGH,
            f"{new.order_name} ({new.marketplace}): the marketplace was not told of shipment "
            f"{new.shipment_id}: {new.last_error}", now,
            {"order_id": new.order_id, "order_name": new.order_name,
             "marketplace": new.marketplace, "job_id": new.job_id})
    return "done" if new.status == "done" else "failed" if new.status == "failed" else "retry"


_METRICS = {"done": "WritebacksSent", "failed": "WritebacksGivenUp",
            "pending": "WritebacksRetried"}


def _counted(wb: Writeback) -> None:
    """Counted by marketplace; the line says the outcome, never the platform's error text (it
    may echo a token: it stays on the writeback and the order's timeline)."""
    observability.count(_METRICS[wb.status], marketplace=wb.marketplace)
    level = logging.WARNING if wb.status == "failed" else logging.INFO
    log.log(level, "writeback %s to %s: %s (%d failed attempt(s))", wb.key, wb.marketplace,
            {"done": "sent", "failed": "given up", "pending": "retried later"}[wb.status],
            wb.attempts)


def _attempt(wb: Writeback, writer: ShipmentWrite, now: datetime) -> Writeback:
    try:
        credentials = credentials_for(wb.marketplace, wb.shop, now)
    except shop_credentials.MissingCredentials as exc:
        return writeback.failed(wb, str(exc), False, now)
    except PlatformUnavailable as exc:
        return writeback.failed(wb, str(exc), True, now)
    except PlatformError as exc:  # e.g. a revoked refresh token: a person must act
        return writeback.failed(wb, str(exc), exc.retryable, now)
    for package in wb.remaining:
        try:
            there, prepared = _existing(writer, package, credentials, now, bool(wb.attempts))
            result = WritebackResult(ok=True) if there else _write(
                writer, package, credentials, now, prepared)
        except ValueError as exc:  # the platform cannot take this (no carrier code, no lines)
            return writeback.failed(wb, str(exc), False, now)
        except PlatformUnavailable as exc:
            return writeback.failed(wb, str(exc), True, now)
        except PlatformError as exc:  # a read before or after the write answered an error
            return writeback.failed(wb, str(exc), exc.retryable, now)
        if not result.ok:
            return writeback.failed(wb, f"{result.code} {result.detail}".strip(),
                                    result.retryable, now)
        wb = writeback.confirmed(wb, package.package_id)
    return wb


def _write(writer: ShipmentWrite, package: Shipped, credentials: dict[str, str], now: datetime,
           prepared: Any) -> WritebackResult:
    answer = marketplace_calls.send(writer.call(package, credentials, now, prepared))
    result = writer.parse(answer.status, answer.body)
    if not result.already_done:
        return result
    # "Shipped already" may also mean closed, refunded, or shipped by hand with another
    # waybill: where the platform can be asked, only its record of our number counts.
    if writer.existing and not _shown(writer.existing, package, credentials, now):
        return WritebackResult(ok=False, code=result.code, detail=f"{result.detail}: the "
                               f"platform has no shipment {package.tracking_number}")
    return result.model_copy(update={"ok": True})


def _shown(check: PackageCheck, package: Shipped, credentials: dict[str, str],
           now: datetime) -> bool:
    """Does the platform show this package (our tracking number) already?"""
    return check.already_shipped(send_json(check.call(package, credentials, now)), package)


def _existing(writer: ShipmentWrite, package: Shipped, credentials: dict[str, str],
              now: datetime, retry: bool) -> tuple[bool, Any]:
    """Is the package on the platform already, and the answer the write needs first (None for
    a write that needs none).

    A platform whose write needs a read first (`prepare`: Shopify's fulfillment orders) is read
    on every attempt and the answer both says whether the package is there and goes to the
    write. Otherwise a platform that does not deduplicate (`existing`) is asked only before a
    retry."""
    if writer.prepare:
        prepared = send_json(writer.prepare.call(package, credentials, now))
        return writer.prepare.already_shipped(prepared, package), prepared
    if retry and writer.existing:
        return _shown(writer.existing, package, credentials, now), None
    return False, None


def _timeline(old: Writeback, new: Writeback, now: datetime) -> list[OrderEvent]:
    actor = f"marketplace {new.marketplace}"
    told = [p for p in new.packages if p.package_id in new.done and p.package_id not in old.done]
    events = [OrderEvent(type="marketplace.shipped", at=now, actor=actor,
                         summary=f"{new.marketplace} told: shipped {p.carrier_code} "
                                 f"{p.tracking_number}",
                         data={"package_id": p.package_id, "tracking_number": p.tracking_number})
              for p in told]
    if new.status == "failed" and old.status != "failed":
        events.append(OrderEvent(type="marketplace.writeback_failed", at=now, actor=actor,
                                 summary=f"{new.marketplace} could not be told of the shipment: "
                                         f"{new.last_error}"))
    return events


def on_schedule() -> None:
    """The 1-minute run (app.py `write_back`)."""
    counts = run_writebacks(utcnow())
    if any(counts.values()):
        log.info("writebacks: %s", counts)
