"""Keeping marketplaces and us in step: shipment writeback, and reconciliation. The I/O around
chalicelib/marketplaces/writeback.py and each adapter's pure calls.

A writeback is created in the ship report's transaction (`writeback_actions`); the `write_back`
schedule sends what is due (`run_writebacks`): per package, the adapter's call with the shop's
credentials from SSM; a platform without idempotency is asked first whether it already has the
package when this is a retry (one whose write needs a read first, on every attempt); the
outcome goes on the order's timeline; a writeback given up is a CS case.
"""

from __future__ import annotations

import inspect
import logging
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, cast

from chalicelib.core.dynamodb import Action, TransactionConflict, transact
from chalicelib.core.errors import Busy
from chalicelib.cs import alert_topic, alerts
from chalicelib.flows import marketplace_calls
from chalicelib.flows.marketplace_calls import credentials_for, send_json
from chalicelib.marketplaces import adapter_for, writeback, writeback_store
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.calls import (
    OrderRef,
    PlatformError,
    PlatformUnavailable,
    Shipped,
    WritebackResult,
)
from chalicelib.marketplaces.writeback import Writeback
from chalicelib.orders import inbox_store as inbox
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.deliveries import REF_HEADER, Accepted
from chalicelib.orders.order import OrderEvent, order_id_for
from chalicelib.warehouse.jobs import Job
from chalicelib.warehouse.jobs import Shipment as JobShipment

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
    return [writeback_store.put(writeback.plan(job, shipment, now), None)]


def run_writebacks(now: datetime, limit: int = 50) -> dict[str, int]:
    counts = {"done": 0, "retry": 0, "failed": 0, "errors": 0}
    for partner_id, key in writeback_store.due(now, limit):
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
    module = _adapter(old.marketplace)
    new = _attempt(old, module, now) if module else writeback.failed(
        old, "no adapter", False, now)
    events = _timeline(old, new, now)
    try:
        transact([writeback_store.put(new, version),
                  *orders_store.put_events(new.order_id, events)])
    except TransactionConflict:
        raise Busy("writeback") from None
    if new.status == "failed":
        alert_topic.raise_case(
            "marketplace.writeback_failed", f"writeback:{new.key}", alerts.Severity.HIGH,
            f"{new.order_name} ({new.marketplace}): the marketplace was not told of shipment "
            f"{new.shipment_id}: {new.last_error}", now,
            {"order_id": new.order_id, "order_name": new.order_name,
             "marketplace": new.marketplace, "job_id": new.job_id})
    return "done" if new.status == "done" else "failed" if new.status == "failed" else "retry"


def _attempt(wb: Writeback, module: ModuleType, now: datetime) -> Writeback:
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
            there, prepared = _existing(module, package, credentials, now, bool(wb.attempts))
            result = WritebackResult(ok=True) if there else _write(
                module, package, credentials, now, prepared)
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


def _write(module: ModuleType, package: Shipped, credentials: dict[str, str], now: datetime,
           prepared: tuple[Any, ...]) -> WritebackResult:
    answer = marketplace_calls.send(module.writeback_call(package, credentials, now, *prepared))
    result: WritebackResult = module.parse_writeback(answer.status, answer.body)
    if not result.already_done:
        return result
    # "Shipped already" may also mean closed, refunded, or shipped by hand with another
    # waybill: where the platform can be asked, only its record of our number counts.
    if hasattr(module, "existing_call") and not _shown(module, package, credentials, now):
        return WritebackResult(ok=False, code=result.code, detail=f"{result.detail}: the "
                               f"platform has no shipment {package.tracking_number}")
    return result.model_copy(update={"ok": True})


def _shown(module: ModuleType, package: Shipped, credentials: dict[str, str],
           now: datetime) -> bool:
    """Does the platform show this package (our tracking number) already?"""
    answer = send_json(module.existing_call(package, credentials, now))
    return bool(module.already_shipped(answer, package))


def _existing(module: ModuleType, package: Shipped, credentials: dict[str, str],
              now: datetime, retry: bool) -> tuple[bool, tuple[Any, ...]]:
    """Is the package on the platform already, and what the write needs to know first.

    A platform whose write needs a read first (`prepare_call`: Shopify's fulfillment orders)
    is read on every attempt and the answer both says whether the package is there and goes to
    `writeback_call`. Otherwise a platform that does not deduplicate (`existing_call`) is asked
    only before a retry."""
    if hasattr(module, "prepare_call"):
        prepared = send_json(module.prepare_call(package, credentials, now))
        return bool(module.already_shipped(prepared, package)), (prepared,)
    if retry and hasattr(module, "existing_call"):
        return _shown(module, package, credentials, now), ()
    return False, ()


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


# Reconciliation -------------------------------------------------------------------------------

WINDOW = timedelta(hours=2)  # each run re-reads the last two hours: overlaps are free
MAX_PAGES = 20


def run_reconciliation(now: datetime) -> dict[str, int]:
    """Every shop with credentials, over the sliding window: what the notifications missed."""
    counts = {"shops": 0, "listed": 0, "queued": 0, "errors": 0}
    for marketplace, shop in shop_credentials.shops():
        try:
            listed, queued = reconcile(marketplace, shop, now - WINDOW, now, now)
        except Exception:  # one shop's platform down must not stop the others
            log.exception("reconciliation of %s %s failed", marketplace, shop)
            counts["errors"] += 1
            continue
        counts["shops"] += 1
        counts["listed"] += listed
        counts["queued"] += queued
    return counts


def reconcile(marketplace: str, shop: str, since: datetime, until: datetime,
              now: datetime) -> tuple[int, int]:
    """List the shop's orders changed in the window; queue each one we do not have at that
    version as an inbox delivery, so it takes the same idempotent path as a notification.
    Returns (listed, queued)."""
    module = _reconcilable(marketplace)
    if module is None:
        return 0, 0
    credentials = credentials_for(marketplace, shop, now)
    listed = queued = 0
    cursor: str | None = None
    for _page in range(MAX_PAGES):
        answer = send_json(module.list_call(shop, since, until, cursor, credentials, now))
        refs, cursor = _parse_list(module, answer, shop, cursor)
        listed += len(refs)
        queued += sum(_queue(marketplace, ref, now) for ref in refs)
        if cursor is None:
            break
    return listed, queued


def _reconcilable(marketplace: str) -> ModuleType | None:
    try:
        module = cast(ModuleType, adapter_for(marketplace))
    except LookupError:
        return None
    needed = ("list_call", "parse_list", "parse_order")
    fetches = hasattr(module, "fetch_call") or hasattr(module, "fetch_calls")
    return module if fetches and all(hasattr(module, n) for n in needed) else None


def _parse_list(module: ModuleType, answer: Any, shop: str,
                cursor: str | None) -> tuple[list[OrderRef], str | None]:
    # Some platforms' list answers do not name the shop, or need the cursor used.
    accepted = inspect.signature(module.parse_list).parameters
    extra = {k: v for k, v in (("shop", shop), ("cursor", cursor)) if k in accepted}
    refs, following = module.parse_list(answer, **extra)
    # Every order listed is the listed shop's, whatever name its links carry.
    return [r.model_copy(update={"shop": shop}) for r in refs], following


def _queue(marketplace: str, ref: OrderRef, now: datetime) -> bool:
    stored = orders_store.get_current(order_id_for(marketplace, ref.shop, ref.external_id))
    if stored is not None and ref.updated_at is not None \
            and stored.order.updated_at >= ref.updated_at:
        return False  # we have this version (or a newer one)
    # A listing without update times (Shopee) is keyed by the status it shows, so the next
    # run's listing of an unchanged order is a duplicate delivery, not another re-fetch.
    version = (ref.updated_at.isoformat() if ref.updated_at
               else f"status:{ref.status}" if ref.status else now.isoformat())
    accepted = Accepted(delivery_id=f"{ref.shop}:{ref.external_id}:{version}",
                        topic="reconciliation", shop=ref.shop, headers={REF_HEADER: "1"})
    return inbox.put_delivery(f"reconcile-{marketplace}", marketplace, accepted,
                              ref.model_dump_json().encode(), now)
