"""Keeping marketplaces in step with what we did: shipment writeback (and, to come,
reconciliation). The I/O around chalicelib/writeback.py and each adapter's pure calls.

A writeback is created in the ship report's transaction (`writeback_actions`); the `write_back`
schedule sends what is due (`run_writebacks`): per package, the adapter's call with the shop's
credentials from SSM; a platform without idempotency is asked first whether it already has the
package when this is a retry; the outcome goes on the order's timeline; a writeback given up
is a CS case.
"""

from __future__ import annotations

import logging
from datetime import datetime
from types import ModuleType
from typing import cast

from chalicelib import alerts, shop_credentials, writeback
from chalicelib.errors import Busy
from chalicelib.jobs import Job
from chalicelib.jobs import Shipment as JobShipment
from chalicelib.marketplaces import adapter_for, http
from chalicelib.marketplaces.calls import Shipped
from chalicelib.orders import OrderEvent
from chalicelib.storage import Action, TransactionConflict, transact
from chalicelib.storage import jobs as jobs_store
from chalicelib.storage import orders as orders_store
from chalicelib.writeback import Writeback

log = logging.getLogger(__name__)


def _adapter(marketplace: str) -> ModuleType | None:
    """The marketplace's adapter module, if it can write a shipment back."""
    try:
        module = cast(ModuleType, adapter_for(marketplace))
    except LookupError:
        return None
    return module if hasattr(module, "writeback_call") else None


def writeback_actions(job: Job, shipment: JobShipment, now: datetime) -> list[Action]:
    """The writeback of a shipment, for the ship report's transaction (none for a marketplace
    we cannot write back to, e.g. a generic Standard Webhooks source)."""
    if _adapter(job.marketplace) is None:
        return []
    return [jobs_store.put_writeback(writeback.plan(job, shipment, now), None)]


def run_writebacks(now: datetime, limit: int = 50) -> dict[str, int]:
    counts = {"done": 0, "retry": 0, "failed": 0, "errors": 0}
    for partner_id, key in jobs_store.due_writebacks(now, limit):
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
    found = jobs_store.get_writeback(partner_id, key)
    if found is None or found[0].status != "pending" or found[0].due_at > now:
        return None
    old, version = found
    module = _adapter(old.marketplace)
    new = _attempt(old, module, now) if module else writeback.failed(
        old, "no adapter", False, now)
    events = _timeline(old, new, now)
    try:
        transact([jobs_store.put_writeback(new, version),
                  *orders_store.put_events(new.order_id, events)])
    except TransactionConflict:
        raise Busy("writeback") from None
    if new.status == "failed":
        alerts.raise_case(
            "marketplace.writeback_failed", f"writeback:{new.key}", alerts.Severity.HIGH,
            f"{new.order_name} ({new.marketplace}): the marketplace was not told of shipment "
            f"{new.shipment_id}: {new.last_error}", now,
            {"order_id": new.order_id, "order_name": new.order_name,
             "marketplace": new.marketplace, "job_id": new.job_id})
    return "done" if new.status == "done" else "failed" if new.status == "failed" else "retry"


def _attempt(wb: Writeback, module: ModuleType, now: datetime) -> Writeback:
    try:
        credentials = shop_credentials.get(wb.marketplace, wb.shop)
    except shop_credentials.MissingCredentials as exc:
        return writeback.failed(wb, str(exc), False, now)
    for package in wb.remaining:
        try:
            if wb.attempts and _already_there(module, package, credentials, now):
                wb = writeback.confirmed(wb, package.package_id)
                continue
            call = module.writeback_call(package, credentials, now)
        except ValueError as exc:  # the platform cannot take this (no carrier code, no lines)
            return writeback.failed(wb, str(exc), False, now)
        except http.PlatformUnavailable as exc:
            return writeback.failed(wb, str(exc), True, now)
        try:
            answer = http.send(call)
        except http.PlatformUnavailable as exc:
            return writeback.failed(wb, str(exc), True, now)
        result = module.parse_writeback(answer.status, answer.body)
        if not (result.ok or result.already_done):
            return writeback.failed(wb, f"{result.code} {result.detail}".strip(),
                                    result.retryable, now)
        wb = writeback.confirmed(wb, package.package_id)
    return wb


def _already_there(module: ModuleType, package: Shipped, credentials: dict[str, str],
                   now: datetime) -> bool:
    """Before repeating a write the platform does not deduplicate: is it there already?"""
    if not hasattr(module, "existing_call"):
        return False
    answer = http.send(module.existing_call(package, credentials, now))
    return bool(module.already_shipped(answer.json(), package))


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
